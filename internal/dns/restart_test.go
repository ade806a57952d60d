package dns

import (
	"context"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/ctnet/ctnet/internal/sandbox"
)

// restartEnv is a resolver process serving two namespaces.
func restartEnv(t *testing.T) (*env, *resolverProcs, []*sandbox.NS) {
	e := newEnv(t, webRecords)
	e.srv.Close()
	c1, c2 := e.container(t), e.container(t)
	r := newResolverProcs(t, e)
	r.publish(Snapshot{
		Upstreams: []string{upstream1},
		Records:   webRecords,
		Namespaces: []Namespace{
			{Path: c1.NetPath(), Networks: []string{"web"}},
			{Path: c2.NetPath(), Networks: []string{"back"}},
		},
	})
	return e, r, []*sandbox.NS{c1, c2}
}

// answered checks that every namespace gets its local and forwarded names.
func answered(t *testing.T, cs []*sandbox.NS) {
	t.Helper()
	for i, c := range cs {
		local := []string{"db", "secret"}[i]
		for _, name := range []string{local, "example.test"} {
			if got := addrsOf(ask(t, c.NetPath(), name, mdns.TypeA, qopt{})); len(got) != 1 {
				t.Errorf("%s from namespace %d: %v", name, i, got)
			}
		}
	}
}

func alive(t *testing.T, path string) bool {
	t.Helper()
	ok, err := Alive(path)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// kill SIGKILLs the resolver process p (which this test started) and reaps it.
func kill(t *testing.T, p *resolverProc) {
	t.Helper()
	p.cmd.Process.Kill()
	<-p.done
}

// TestRestart is issue 18's item 13: a resolver killed with SIGKILL leaves
// its lock and status files behind; Alive says it is gone, and of two
// Ensure calls racing to restart it exactly one starts a process, which
// serves every namespace again by the time Ensure returns.
func TestRestart(t *testing.T) {
	_, r, cs := restartEnv(t)
	if !alive(t, r.path) {
		t.Fatal("Alive: false while the resolver runs")
	}
	kill(t, r.all()[0])
	if alive(t, r.path) {
		t.Fatal("Alive: true after SIGKILL")
	}
	if _, err := os.Stat(r.path + ".status"); err != nil {
		t.Fatalf("the dead resolver's status file: %v", err)
	}
	if _, err := tryAsk(cs[0].NetPath(), "db", mdns.TypeA, qopt{tcp: true}); err == nil {
		t.Fatal("answered with no resolver running")
	}

	var wg sync.WaitGroup
	started := make([]bool, 2)
	for i := range started {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if started[i], err = Ensure(r.path, r.start); err != nil {
				t.Errorf("Ensure: %v", err)
			}
		}()
	}
	wg.Wait()
	if n := len(r.all()); n != 2 || started[0] == started[1] {
		t.Fatalf("racing Ensure calls: started %v, %d processes in all, want exactly one new", started, n)
	}
	if !alive(t, r.path) {
		t.Fatal("Alive: false after Ensure")
	}
	answered(t, cs)

	// Ensure with a live resolver starts nothing.
	if started, err := Ensure(r.path, r.start); started || err != nil {
		t.Errorf("Ensure with the resolver running: %v, %v", started, err)
	}

	// Even started behind Ensure's back, resolvers sort themselves out:
	// the ones that find the lock taken exit.
	kill(t, r.running()[0])
	for range 3 {
		if err := r.start(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Ensure(r.path, r.start); err != nil {
		t.Fatal(err)
	}
	holder, _, _ := lockHolder(r.path + ".lock")
	for _, p := range r.running() {
		if p.cmd.Process.Pid != holder {
			if err := p.exit(t); err != nil {
				t.Errorf("resolver that lost the race: %v", err)
			}
		}
	}
	if run := r.running(); len(run) != 1 || run[0].cmd.Process.Pid != holder {
		t.Fatalf("%d resolvers running, want only the lock holder %d", len(run), holder)
	}
	answered(t, cs)
}

// TestWatch: watchers (one per container monitor, say) notice a killed
// resolver at once through a pidfd, and between them start exactly one.
func TestWatch(t *testing.T) {
	_, r, cs := restartEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for range 3 {
		wg.Add(1)
		go func() { defer wg.Done(); Watch(ctx, r.path, r.start, t.Logf) }()
	}
	for round := range 2 {
		old := r.running()[0]
		kill(t, old)
		if !eventually(func() bool {
			st, err := ReadStatus(r.path)
			run := r.running()
			return err == nil && st.PID != old.cmd.Process.Pid && len(run) == 1 && st.PID == run[0].cmd.Process.Pid
		}) {
			t.Fatalf("round %d: no resolver restarted (%d processes started)", round, len(r.all()))
		}
		answered(t, cs)
	}
	if n := len(r.all()); n != 3 {
		t.Errorf("%d resolver processes started by three watchers over two kills, want 3 in all", n)
	}
}

// TestLockFileRemoved: removing the lock file (say, someone cleaning the
// run root) does not let a second resolver start beside the first: the
// resolver takes the new file over.
func TestLockFileRemoved(t *testing.T) {
	_, r, cs := restartEnv(t)
	pid := r.all()[0].cmd.Process.Pid
	if err := os.Remove(r.path + ".lock"); err != nil {
		t.Fatal(err)
	}
	if !eventually(func() bool { p, held, _ := lockHolder(r.path + ".lock"); return held && p == pid }) {
		t.Fatal("the resolver did not take the new lock file")
	}
	if started, err := Ensure(r.path, r.start); started || err != nil {
		t.Errorf("Ensure: %v, %v; want nothing started", started, err)
	}
	answered(t, cs)
	if got := r.running(); len(got) != 1 || !slices.Contains(got, r.all()[0]) {
		t.Errorf("%d resolvers running", len(got))
	}
}

// eventually polls cond for up to 30 seconds.
func eventually(cond func() bool) bool {
	for range 600 {
		if cond() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}
