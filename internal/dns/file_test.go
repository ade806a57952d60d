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
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

const helperEnv = "CTNET_DNS_TEST_SNAPSHOT"

// TestServeHelper is the resolver process of TestServeFromFile: the test
// binary run again inside the sandbox host, as `ctnet dns serve` would be.
func TestServeHelper(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		t.Skip("only runs as TestServeFromFile's resolver process")
	}
	err := ServeFromFile(context.Background(), path, Config{Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }})
	if err != nil && !errors.Is(err, ErrServing) {
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

func TestServeFromFile(t *testing.T) {
	e := newEnv(t, nil)
	e.srv.Close() // this test's resolver is the child process
	c1, c2 := e.container(t), e.container(t)
	path := filepath.Join(t.TempDir(), "dns.json")

	var stderr lockedBuffer
	var procs []*exec.Cmd
	t.Cleanup(func() {
		for _, p := range procs {
			p.Process.Kill()
			p.Wait()
		}
		if t.Failed() {
			t.Logf("resolver process stderr:\n%s", stderr.String())
		}
	})
	start := func() error {
		cmd := e.sb.Host.Command(os.Args[0], "-test.run=^TestServeHelper$")
		cmd.Env = append(os.Environ(), helperEnv+"="+path)
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			return err
		}
		procs = append(procs, cmd)
		return nil
	}
	publish := func(snap Snapshot) {
		t.Helper()
		gen, err := Publish(path, snap, start)
		if err != nil {
			t.Fatal(err)
		}
		if len(snap.Namespaces) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		st, err := WaitApplied(ctx, path, gen)
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Errors) > 0 {
			t.Fatalf("resolver could not serve: %v", st.Errors)
		}
	}
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
	publish(snap)
	if out := c1.MustRun("dig", "@127.0.0.11", "+short", "+tries=1", "+time=5", "db"); out != "10.89.0.2\n" {
		t.Errorf("dig db: %q", out)
	}
	if got := dig(c1.NetPath(), "example.test"); got != "[198.51.100.7]" {
		t.Errorf("example.test forwarded from the resolver process: %s", got)
	}

	// A changed snapshot: db moved, a second container appears.
	snap.Records[0].Addrs = addrs("10.89.0.99")
	snap.Namespaces = append(snap.Namespaces, Namespace{Path: c2.NetPath(), Networks: []string{"back"}})
	publish(snap)
	if len(procs) != 1 {
		t.Fatalf("%d resolver processes started, want 1", len(procs))
	}
	if got := dig(c1.NetPath(), "db"); got != "[10.89.0.99]" {
		t.Errorf("db after update: %s", got)
	}
	if got := dig(c2.NetPath(), "secret"); got != "[10.90.0.2]" {
		t.Errorf("secret from the new namespace: %s", got)
	}

	// A namespace left out of the snapshot is no longer served.
	snap.Namespaces = snap.Namespaces[1:]
	publish(snap)
	if _, err := tryAsk(c1.NetPath(), "db", mdns.TypeA, qopt{tcp: true}); err == nil {
		t.Errorf("namespace dropped from the snapshot is still answered")
	}

	// Nothing left to serve: the process exits by itself.
	publish(Snapshot{})
	done := make(chan error, 1)
	go func() { done <- procs[0].Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("resolver process: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("resolver process did not exit with an empty snapshot")
	}
	procs = procs[1:]

	// The next container needing DNS starts a new one.
	snap.Namespaces = []Namespace{{Path: c1.NetPath(), Networks: []string{"web"}}}
	publish(snap)
	if len(procs) != 1 {
		t.Fatalf("no new resolver process started")
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
