package dns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

const (
	helperEnv = "CTNET_DNS_TEST_SNAPSHOT"
	nofileEnv = "CTNET_DNS_TEST_NOFILE" // the resolver process's open file limit
)

// TestServeHelper is the resolver process of the tests that need one: the
// test binary run again inside the sandbox host, as `ctnet dns serve` would
// be.
func TestServeHelper(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		t.Skip("only runs as a test's resolver process")
	}
	if n, err := strconv.ParseUint(os.Getenv(nofileEnv), 10, 64); err == nil {
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: n, Max: n}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	err := ServeFromFile(context.Background(), path, Config{Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }})
	if errors.Is(err, ErrServing) {
		fmt.Fprintf(os.Stderr, "pid %d: %v\n", os.Getpid(), err)
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// lockedBuffer collects a child's stderr.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// resolverProcs starts resolver processes for the snapshot at path in the
// sandbox host, as the engine's start callback does, and kills those still
// running when the test ends.
type resolverProcs struct {
	t      testing.TB
	e      *env
	path   string
	env    []string
	stderr lockedBuffer
	mu     sync.Mutex
	procs  []*resolverProc
}

type resolverProc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process is reaped
	err  error
}

func newResolverProcs(t testing.TB, e *env, env ...string) *resolverProcs {
	r := &resolverProcs{t: t, e: e, path: filepath.Join(t.TempDir(), "dns.json"), env: env}
	t.Cleanup(func() {
		for _, p := range r.all() {
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("resolver process stderr:\n%s", r.stderr.String())
		}
	})
	return r
}

// start is the callback Publish and Ensure get.
func (r *resolverProcs) start() error {
	cmd := r.e.sb.Host.Command(os.Args[0], "-test.run=^TestServeHelper$")
	cmd.Env = append(append(os.Environ(), helperEnv+"="+r.path), r.env...)
	cmd.Stderr = &r.stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	p := &resolverProc{cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	r.mu.Lock()
	r.procs = append(r.procs, p)
	r.mu.Unlock()
	return nil
}

func (r *resolverProcs) all() []*resolverProc {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.procs)
}

// running lists the processes started that have not exited.
func (r *resolverProcs) running() []*resolverProc {
	var out []*resolverProc
	for _, p := range r.all() {
		select {
		case <-p.done:
		default:
			out = append(out, p)
		}
	}
	return out
}

// exit waits for p to end by itself.
func (p *resolverProc) exit(t testing.TB) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(30 * time.Second):
		t.Fatalf("resolver process %d did not exit", p.cmd.Process.Pid)
		return nil
	}
}

// publish publishes snap and, if it has namespaces, waits until the
// resolver serves all of them.
func (r *resolverProcs) publish(snap Snapshot) {
	r.t.Helper()
	gen, err := Publish(r.path, snap, r.start)
	if err != nil {
		r.t.Fatal(err)
	}
	if len(snap.Namespaces) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := WaitApplied(ctx, r.path, gen)
	if err != nil {
		r.t.Fatal(err)
	}
	if len(st.Errors) > 0 {
		r.t.Fatalf("resolver could not serve: %v", st.Errors)
	}
}

func TestServeFromFile(t *testing.T) {
	e := newEnv(t, nil)
	e.srv.Close() // this test's resolver is the child process
	c1, c2 := e.container(t), e.container(t)
	r := newResolverProcs(t, e)
	dig := func(ns, name string) string {
		t.Helper()
		m := ask(t, ns, name, mdns.TypeA, qopt{})
		return fmt.Sprint(addrsOf(m))
	}

	snap := Snapshot{
		Upstreams:  []string{upstream1},
		Records:    slices.Clone(webRecords),
		Namespaces: []Namespace{{Path: c1.NetPath(), Networks: []string{"web"}}},
	}
	r.publish(snap)
	if out := c1.MustRun("dig", "@127.0.0.11", "+short", "+tries=1", "+time=5", "db"); out != "10.89.0.2\n" {
		t.Errorf("dig db: %q", out)
	}
	if got := dig(c1.NetPath(), "example.test"); got != "[198.51.100.7]" {
		t.Errorf("example.test forwarded from the resolver process: %s", got)
	}

	// A changed snapshot: db moved, a second container appears.
	snap.Records[0].Addrs = addrs("10.89.0.99")
	snap.Namespaces = append(snap.Namespaces, Namespace{Path: c2.NetPath(), Networks: []string{"back"}})
	r.publish(snap)
	if n := len(r.all()); n != 1 {
		t.Fatalf("%d resolver processes started, want 1", n)
	}
	if got := dig(c1.NetPath(), "db"); got != "[10.89.0.99]" {
		t.Errorf("db after update: %s", got)
	}
	if got := dig(c2.NetPath(), "secret"); got != "[10.90.0.2]" {
		t.Errorf("secret from the new namespace: %s", got)
	}

	// A namespace left out of the snapshot is no longer served.
	snap.Namespaces = snap.Namespaces[1:]
	r.publish(snap)
	if _, err := tryAsk(c1.NetPath(), "db", mdns.TypeA, qopt{tcp: true}); err == nil {
		t.Errorf("namespace dropped from the snapshot is still answered")
	}

	// Nothing left to serve: the process exits by itself.
	r.publish(Snapshot{})
	if err := r.all()[0].exit(t); err != nil {
		t.Errorf("resolver process: %v", err)
	}
	if alive, err := Alive(r.path); alive || err != nil {
		t.Errorf("Alive after the resolver exited: %v, %v", alive, err)
	}

	// The next container needing DNS starts a new one.
	snap.Namespaces = []Namespace{{Path: c1.NetPath(), Networks: []string{"web"}}}
	r.publish(snap)
	if n := len(r.all()); n != 2 {
		t.Fatalf("%d resolver processes started, want a second one", n)
	}
	if got := dig(c1.NetPath(), "db"); got != "[10.89.0.99]" {
		t.Errorf("db from the restarted resolver: %s", got)
	}
}

func TestPublishNoNamespacesStartsNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dns.json")
	for want := uint64(1); want <= 2; want++ {
		gen, err := Publish(path, Snapshot{Records: webRecords}, func() error {
			t.Fatal("started a resolver for a snapshot without namespaces")
			return nil
		})
		if err != nil || gen != want {
			t.Fatalf("Publish: generation %d, %v; want %d", gen, err, want)
		}
	}
	snap, err := ReadSnapshot(path)
	if err != nil || len(snap.Records) != len(webRecords) || snap.Generation != 2 {
		t.Errorf("ReadSnapshot: %+v, %v", snap, err)
	}
}
