package etcd

import (
	"github.com/ctnet/ctnet/internal/store"
	"github.com/ctnet/ctnet/internal/store/storetest"

	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ctnet/ctnet/internal/store/etcd/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
)

var prefixSeq atomic.Int64

func newPrefix() string { return fmt.Sprintf("/test%d/", prefixSeq.Add(1)) }

// openEtcd opens a client of c under a prefix of its own, so tests can share
// a cluster without seeing each other's keys.
func openEtcd(t testing.TB, c *etcdtest.Cluster, change ...func(*Config)) *Store {
	t.Helper()
	cfg := Config{
		Endpoints:   c.Endpoints(),
		Prefix:      newPrefix(),
		DialContext: c.Dial,
		Timeout:     5 * time.Second,
	}
	for _, f := range change {
		f(&cfg)
	}
	e, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// hosts are n separate clients of one state, as n ctnet hosts would be.
func hosts(t testing.TB, c *etcdtest.Cluster, n int) []*Store {
	prefix := newPrefix()
	var hs []*Store
	for range n {
		hs = append(hs, openEtcd(t, c, func(cfg *Config) { cfg.Prefix = prefix }))
	}
	return hs
}

func TestEtcd(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Members: 1})
	storetest.Suite(t, func(t *testing.T) store.Store { return openEtcd(t, c) })
	// Pages of three keys put page boundaries everywhere.
	t.Run("SmallPages", func(t *testing.T) {
		storetest.Suite(t, func(t *testing.T) store.Store { e := openEtcd(t, c); e.pageSize = 3; return e })
	})
}

// TestEtcdContention: several hosts, each with several goroutines, change one
// counter and allocate from one pool at once.
func TestEtcdContention(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Members: 3})
	const nhosts, workers = 3, 4
	// The default timeout: every worker hits the same key, as hard as it
	// can, and some lose many times in a row.
	hosts := func(t *testing.T, c *etcdtest.Cluster, n int) []*Store {
		hs := hosts(t, c, n)
		for _, h := range hs {
			h.cfg.Timeout = 10 * time.Second
		}
		return hs
	}
	t.Run("Counter", func(t *testing.T) {
		hs := hosts(t, c, nhosts)
		const each = 8
		var wg sync.WaitGroup
		for _, h := range hs {
			for range workers {
				wg.Go(func() {
					for range each {
						err := h.Update(func(tx store.Tx) error {
							n, _ := strconv.Atoi(string(tx.Get(store.Meta, "n")))
							return tx.Put(store.Meta, "n", []byte(strconv.Itoa(n+1)))
						})
						if err != nil {
							t.Error(err)
							return
						}
					}
				})
			}
		}
		wg.Wait()
		if got, want := storetest.Get(t, hs[0], store.Meta, "n"), strconv.Itoa(nhosts*workers*each); got != want {
			t.Errorf("counter = %s, want %s (lost updates)", got, want)
		}
	})
	t.Run("AddressPool", func(t *testing.T) {
		hs := hosts(t, c, nhosts)
		const size = 40
		full := errors.New("pool full")
		// Half the workers find a free address by scanning the leases,
		// half by looking addresses up one by one: both kinds of read
		// must conflict.
		alloc := func(h *Store, owner string, scan bool) (string, error) {
			var got string
			err := h.Update(func(tx store.Tx) error {
				got = ""
				taken := map[string]bool{}
				if scan {
					tx.ForEach(store.Leases, "pool/", func(k string, _ []byte) error { taken[k] = true; return nil })
				}
				for i := 1; i <= size; i++ {
					k := fmt.Sprintf("pool/10.1.0.%d", i)
					if scan && !taken[k] || !scan && tx.Get(store.Leases, k) == nil {
						got = k
						return tx.Put(store.Leases, k, []byte(owner))
					}
				}
				return full
			})
			return got, err
		}
		var mu sync.Mutex
		leased := map[string]string{}
		var wg sync.WaitGroup
		for i, h := range hs {
			for w := range workers {
				wg.Go(func() {
					for n := 0; ; n++ {
						owner := fmt.Sprintf("h%d-w%d-%d", i, w, n)
						k, err := alloc(h, owner, w%2 == 0)
						if errors.Is(err, full) {
							return
						}
						if err != nil {
							t.Error(err)
							return
						}
						mu.Lock()
						if prev, dup := leased[k]; dup {
							t.Errorf("%s given to %s and %s", k, prev, owner)
						}
						leased[k] = owner
						mu.Unlock()
					}
				})
			}
		}
		wg.Wait()
		if len(leased) != size {
			t.Errorf("%d addresses allocated, want %d", len(leased), size)
		}
		stored := map[string]string{}
		hs[1].View(func(tx store.Tx) error {
			return tx.ForEach(store.Leases, "", func(k string, v []byte) error { stored[k] = string(v); return nil })
		})
		if fmt.Sprint(stored) != fmt.Sprint(leased) {
			t.Errorf("stored leases differ from those handed out:\nstored %v\nhanded %v", stored, leased)
		}
	})
}

// race runs two transactions whose first runs both read before either
// commits, and returns how often each function ran.
func race(t *testing.T, a, b *Store, fa, fb func(tx store.Tx) error) (int, int) {
	t.Helper()
	var both sync.WaitGroup
	both.Add(2)
	run := func(s *Store, fn func(store.Tx) error, runs *int) {
		err := s.Update(func(tx store.Tx) error {
			*runs++
			err := fn(tx)
			if *runs == 1 {
				both.Done()
				both.Wait()
			}
			return err
		})
		if err != nil {
			t.Error(err)
		}
	}
	var ra, rb int
	var wg sync.WaitGroup
	wg.Go(func() { run(a, fa, &ra) })
	wg.Go(func() { run(b, fb, &rb) })
	wg.Wait()
	return ra, rb
}

func count(tx store.Tx, bucket, prefix string) int {
	n := 0
	tx.ForEach(bucket, prefix, func(string, []byte) error { n++; return nil })
	return n
}

func TestEtcdSerialisable(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Members: 1})
	// Two hosts each take the network's single VTEP slot if nobody has:
	// the key each inserts is not one the other read, only a range was.
	t.Run("PhantomInsert", func(t *testing.T) {
		hs := hosts(t, c, 2)
		insertIfEmpty := func(key string) func(store.Tx) error {
			return func(tx store.Tx) error {
				if count(tx, store.Leases, "net/") == 0 {
					return tx.Put(store.Leases, "net/"+key, []byte(key))
				}
				return nil
			}
		}
		ra, rb := race(t, hs[0], hs[1], insertIfEmpty("a"), insertIfEmpty("b"))
		if got := storetest.Collect(t, hs[0], store.Leases, "net/"); len(got) != 1 {
			t.Errorf("both inserted: %q", got)
		}
		if ra+rb != 3 {
			t.Errorf("runs %d and %d, want one retry", ra, rb)
		}
	})
	// Each deletes its own key if another is left: one must stay.
	t.Run("PhantomDelete", func(t *testing.T) {
		hs := hosts(t, c, 2)
		storetest.MustUpdate(t, hs[0], func(tx store.Tx) error {
			tx.Put(store.Leases, "net/a", nil)
			return tx.Put(store.Leases, "net/b", nil)
		})
		deleteIfNotLast := func(key string) func(store.Tx) error {
			return func(tx store.Tx) error {
				if count(tx, store.Leases, "net/") > 1 {
					return tx.Delete(store.Leases, "net/"+key)
				}
				return nil
			}
		}
		race(t, hs[0], hs[1], deleteIfNotLast("a"), deleteIfNotLast("b"))
		if got := storetest.Collect(t, hs[0], store.Leases, "net/"); len(got) != 1 {
			t.Errorf("keys left: %q, want one", got)
		}
	})
	// x+y >= 1 holds if each transaction zeroes its own only when both are set.
	t.Run("WriteSkew", func(t *testing.T) {
		hs := hosts(t, c, 2)
		storetest.MustUpdate(t, hs[0], func(tx store.Tx) error {
			tx.Put(store.Meta, "x", []byte("1"))
			return tx.Put(store.Meta, "y", []byte("1"))
		})
		zero := func(mine string) func(store.Tx) error {
			return func(tx store.Tx) error {
				if string(tx.Get(store.Meta, "x")) == "1" && string(tx.Get(store.Meta, "y")) == "1" {
					return tx.Put(store.Meta, mine, []byte("0"))
				}
				return nil
			}
		}
		race(t, hs[0], hs[1], zero("x"), zero("y"))
		if storetest.Get(t, hs[0], store.Meta, "x") == "0" && storetest.Get(t, hs[0], store.Meta, "y") == "0" {
			t.Error("both zeroed")
		}
	})
	// Reads after another transaction's commit still see the snapshot of
	// the first read.
	t.Run("Snapshot", func(t *testing.T) {
		hs := hosts(t, c, 2)
		storetest.MustUpdate(t, hs[0], func(tx store.Tx) error {
			tx.Put(store.Meta, "x", []byte("1"))
			return tx.Put(store.Meta, "y", []byte("1"))
		})
		runs := 0
		check := func(tx store.Tx) {
			x := string(tx.Get(store.Meta, "x"))
			if runs++; runs == 1 {
				storetest.MustUpdate(t, hs[1], func(tx store.Tx) error {
					tx.Put(store.Meta, "x", []byte("2"))
					return tx.Put(store.Meta, "y", []byte("2"))
				})
			}
			if y := string(tx.Get(store.Meta, "y")); x != y {
				t.Errorf("run %d saw x=%s y=%s", runs, x, y)
			}
		}
		hs[0].View(func(tx store.Tx) error { check(tx); return nil })
		runs = 0
		storetest.MustUpdate(t, hs[0], func(tx store.Tx) error {
			check(tx)
			return tx.Put(store.Meta, "z", nil)
		})
	})
	// More reads than etcd allows compares in one Txn: still one commit,
	// still a conflict when one of them changes.
	t.Run("ManyReads", func(t *testing.T) {
		hs := hosts(t, c, 2)
		runs := 0
		storetest.MustUpdate(t, hs[0], func(tx store.Tx) error {
			runs++
			for i := range 300 {
				tx.Get(store.Leases, fmt.Sprintf("probe/%03d", i))
			}
			count(tx, store.Endpoints, "")
			if runs == 1 {
				storetest.MustUpdate(t, hs[1], func(tx store.Tx) error { return tx.Put(store.Leases, "probe/150", nil) })
			}
			return tx.Put(store.Meta, "done", nil)
		})
		if runs != 2 {
			t.Errorf("ran %d times, want 2 (a read changed before the commit)", runs)
		}
	})
	t.Run("TooManyChanges", func(t *testing.T) {
		s := openEtcd(t, c)
		err := s.Update(func(tx store.Tx) error {
			for i := range 200 {
				tx.Put(store.Leases, strconv.Itoa(i), nil)
			}
			return nil
		})
		if err == nil || !strings.Contains(err.Error(), "--max-txn-ops") || strings.Contains(err.Error(), "\n") {
			t.Errorf("err = %v, want one line naming --max-txn-ops", err)
		}
		if got := storetest.Collect(t, s, store.Leases, ""); len(got) != 0 {
			t.Errorf("a refused transaction wrote %d keys", len(got))
		}
	})
	// A snapshot compacted away under a transaction: it runs again.
	t.Run("Compacted", func(t *testing.T) {
		s := openEtcd(t, c)
		runs := 0
		storetest.MustUpdate(t, s, func(tx store.Tx) error {
			tx.Get(store.Meta, "a")
			if runs++; runs == 1 {
				storetest.MustUpdate(t, s, func(tx store.Tx) error { return tx.Put(store.Meta, "other", nil) })
				resp, err := s.cli.Get(context.Background(), "x")
				if err != nil {
					t.Fatal(err)
				}
				if _, err := s.cli.Compact(context.Background(), resp.Header.Revision); err != nil {
					t.Fatal(err)
				}
			}
			tx.Get(store.Meta, "b")
			return tx.Put(store.Meta, "a", nil)
		})
		if runs != 2 {
			t.Errorf("ran %d times, want 2", runs)
		}
	})
	t.Run("BadNames", func(t *testing.T) {
		s := openEtcd(t, c)
		for _, b := range []string{"", "a/b", "~del", "/"} {
			err := s.Update(func(tx store.Tx) error { return tx.Put(b, "k", nil) })
			if err == nil {
				t.Errorf("bucket %q accepted", b)
			}
		}
		if err := s.Update(func(tx store.Tx) error { return tx.Put(store.Meta, "", nil) }); err == nil {
			t.Error("empty key accepted")
		}
	})
}

// oneLine checks the shape of an error about an unhealthy cluster.
func oneLine(t *testing.T, what string, err error, c *etcdtest.Cluster, words ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error", what)
		return
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") {
		t.Errorf("%s: error of several lines: %q", what, msg)
	}
	for _, w := range append([]string{"etcd at " + strings.Join(c.Endpoints(), ",")}, words...) {
		if !strings.Contains(msg, w) {
			t.Errorf("%s: error %q does not say %q", what, msg, w)
		}
	}
}

func TestEtcdQuorum(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Members: 3})
	const timeout = 3 * time.Second
	s := openEtcd(t, c, func(cfg *Config) { cfg.Timeout = timeout })
	storetest.MustUpdate(t, s, func(tx store.Tx) error { return tx.Put(store.Meta, "k", []byte("before")) })
	c.CutQuorum()
	calls := map[string]func() error{
		"update": func() error {
			return s.Update(func(tx store.Tx) error {
				n, _ := strconv.Atoi(string(tx.Get(store.Meta, "n")))
				tx.Put(store.Meta, "k", []byte("during"))
				return tx.Put(store.Meta, "n", []byte(strconv.Itoa(n+1)))
			})
		},
		"blind update": func() error { return s.Update(func(tx store.Tx) error { return tx.Put(store.Meta, "blind", nil) }) },
		"view":         func() error { return s.View(func(tx store.Tx) error { tx.Get(store.Meta, "k"); return nil }) },
		"session":      func() error { _, err := s.NewSession(time.Minute); return err },
		"watch":        func() error { _, err := s.Watch(context.Background(), store.Meta, ""); return err },
	}
	type result struct {
		err  error
		took time.Duration
	}
	results := make(map[string]result)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, call := range calls {
		wg.Go(func() {
			began := time.Now()
			err := call()
			mu.Lock()
			results[name] = result{err, time.Since(began)}
			mu.Unlock()
		})
	}
	wg.Wait()
	for _, name := range slices.Sorted(mapKeys(calls)) {
		err, took := results[name].err, results[name].took
		oneLine(t, name, err, c, "no quorum (2 of 3 members unreachable", "retry when the cluster is healthy")
		if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrOutcomeUnknown) {
			t.Errorf("%s: %v is not ErrUnavailable alone", name, err)
		}
		// The bound is the configured one, with room for a loaded machine.
		if took > timeout+time.Second {
			t.Errorf("%s failed after %s, beyond its timeout %s", name, took, timeout)
		}
		t.Logf("%s: %v after %s", name, err, took.Round(time.Millisecond))
	}
	c.RestoreQuorum()
	if got := storetest.Get(t, s, store.Meta, "k"); got != "before" {
		t.Errorf("k = %q after the failed update, want before", got)
	}
	if got := storetest.Collect(t, s, store.Meta, ""); !slices.Equal(got, []string{"k"}) {
		t.Errorf("keys after the failed calls: %q", got)
	}
	storetest.MustUpdate(t, s, func(tx store.Tx) error { return tx.Put(store.Meta, "k", []byte("after")) })
	if got := storetest.Get(t, s, store.Meta, "k"); got != "after" {
		t.Errorf("k = %q after quorum came back", got)
	}
}

// TestEtcdQuorumLostUnderLeader: the followers stop while a leader still
// believes it leads (for an election timeout) and takes a commit it cannot
// replicate; once quorum is back the commit may apply. The error must not
// claim that nothing was written unless nothing was.
func TestEtcdQuorumLostUnderLeader(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Members: 3})
	const timeout = 3 * time.Second
	s := openEtcd(t, c, func(cfg *Config) { cfg.Timeout = timeout })
	storetest.MustUpdate(t, s, func(tx store.Tx) error { return tx.Put(store.Meta, "warm", nil) })
	leader := leaderOf(t, c, s)
	for _, m := range c.Members {
		if m != leader {
			m.Kill()
		}
	}
	err := s.Update(func(tx store.Tx) error { return tx.Put(store.Meta, "k", nil) })
	oneLine(t, "update", err, c, "retry when the cluster is healthy")
	t.Log(err)
	c.RestoreQuorum()
	written := storetest.Get(t, s, store.Meta, "k") != "" || slices.Contains(storetest.Collect(t, s, store.Meta, ""), "k")
	if written && !errors.Is(err, ErrOutcomeUnknown) {
		t.Errorf("written, yet the error did not say the outcome is unknown: %v", err)
	}
	t.Logf("written: %v", written)
}

func TestEtcdNoMember(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Members: 1})
	s := openEtcd(t, c, func(cfg *Config) { cfg.Timeout = 2 * time.Second })
	c.Members[0].Kill()
	err := s.Update(func(tx store.Tx) error { return tx.Put(store.Meta, "k", nil) })
	oneLine(t, "update", err, c, "no member answers", "check that etcd runs there")
	t.Log(err)
}

// TestEtcdMemberRestart: hosts keep changing a counter while members crash
// and come back, the leader first.
func TestEtcdMemberRestart(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Members: 3})
	hs := hosts(t, c, 3)
	var done atomic.Bool
	var ok atomic.Int64
	var wg sync.WaitGroup
	for _, h := range hs {
		for range 2 {
			wg.Go(func() {
				for !done.Load() {
					err := h.Update(func(tx store.Tx) error {
						n, _ := strconv.Atoi(string(tx.Get(store.Meta, "n")))
						return tx.Put(store.Meta, "n", []byte(strconv.Itoa(n+1)))
					})
					if err != nil {
						t.Error(err)
						return
					}
					ok.Add(1)
				}
			})
		}
	}
	progress := func(what string) {
		t.Helper()
		from := ok.Load()
		for deadline := time.Now().Add(20 * time.Second); ok.Load() < from+20; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no progress %s", what)
			}
		}
	}
	progress("at the start")
	leader := leaderOf(t, c, hs[0])
	leader.Kill()
	progress("with the leader killed")
	leader.Restart()
	progress("after the leader came back")
	other := c.Members[(slices.Index(c.Members, leader)+1)%3]
	other.Stop()
	progress("with a member stopped")
	other.Restart()
	progress("after it came back")
	done.Store(true)
	wg.Wait()
	if got := storetest.Get(t, hs[0], store.Meta, "n"); got != strconv.FormatInt(ok.Load(), 10) {
		t.Errorf("counter = %s after %d successful increments", got, ok.Load())
	}
}

func leaderOf(t *testing.T, c *etcdtest.Cluster, s *Store) *etcdtest.Member {
	t.Helper()
	for _, m := range c.Members {
		resp, err := s.cli.Status(context.Background(), m.Endpoint)
		if err == nil && resp.Leader == resp.Header.MemberId {
			return m
		}
	}
	t.Fatal("no leader")
	return nil
}

func nextEvent(t *testing.T, events <-chan Event) Event {
	t.Helper()
	select {
	case ev, ok := <-events:
		if !ok {
			t.Fatal("watch ended")
		}
		return ev
	case <-time.After(30 * time.Second):
		t.Fatal("no event within 30s")
	}
	return Event{}
}

func describe(ev Event) string {
	switch {
	case ev.Synced:
		return "synced"
	case ev.Reset:
		return "reset"
	case ev.Deleted:
		return "delete " + ev.Key
	}
	return "put " + ev.Key + "=" + string(ev.Value)
}

func expectEvents(t *testing.T, events <-chan Event, want ...string) {
	t.Helper()
	for _, w := range want {
		if got := describe(nextEvent(t, events)); got != w {
			t.Fatalf("event %q, want %q", got, w)
		}
	}
}

func TestEtcdWatch(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Members: 1})
	s := openEtcd(t, c)
	storetest.MustUpdate(t, s, func(tx store.Tx) error {
		tx.Put("hosts", "a", []byte("1"))
		tx.Put("hosts", "b", []byte{})
		return tx.Put("hostsx", "c", []byte("other bucket"))
	})
	ctx, cancel := context.WithCancel(context.Background())
	events, err := s.Watch(ctx, "hosts", "")
	if err != nil {
		t.Fatal(err)
	}
	expectEvents(t, events, "put a=1", "put b=", "synced")
	storetest.MustUpdate(t, s, func(tx store.Tx) error {
		tx.Put("hostsx", "d", nil)
		tx.Put("hosts", "c", []byte("3"))
		return tx.Delete("hosts", "a")
	})
	expectEvents(t, events, "delete a", "put c=3")
	cancel()
	for range events {
	}

	// A watch that must resume from history compacted away starts over.
	resp, _ := s.cli.Get(context.Background(), "x")
	if _, err := s.cli.Compact(context.Background(), resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	w := &watch{e: s, ctx: ctx, bk: s.bucketKey("hosts"), start: s.bucketKey("hosts"), out: make(chan Event)}
	w.end = clientv3.GetPrefixRangeEnd(w.start)
	w.rev = 1
	go w.run(nil)
	expectEvents(t, w.out, "reset", "put b=", "put c=3", "synced")
	storetest.MustUpdate(t, s, func(tx store.Tx) error { return tx.Put("hosts", "e", nil) })
	expectEvents(t, w.out, "put e=")
}

// TestEtcdSession: a host's record lives while the host does. The host here
// is a separate process in the sandbox (this test binary again), reaching
// etcd without help; killing it stops the lease's renewal.
func TestEtcdSession(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Members: 3})
	s := openEtcd(t, c)
	events, err := s.Watch(t.Context(), "hosts", "")
	if err != nil {
		t.Fatal(err)
	}
	expectEvents(t, events, "synced")

	const ttl = 2 * time.Second
	holder := c.Sandbox.Host.Command(os.Args[0], "-test.run=^TestEtcdSessionHolder$")
	holder.Env = append(os.Environ(), "CTNET_TEST_HOLDER="+strings.Join([]string{
		strings.Join(c.Endpoints(), ","), s.cfg.Prefix, ttl.String()}, " "))
	out, _ := holder.StdoutPipe()
	holder.Stderr = os.Stderr
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("holder said %q, %v", line, err)
	}
	expectEvents(t, events, "put h2=vtep 10.99.0.2")
	// Renewed: still there well past its TTL.
	time.Sleep(2 * ttl)
	if storetest.Get(t, s, "hosts", "h2") == "" {
		t.Fatal("the record of a live host vanished")
	}
	holder.Process.Kill()
	holder.Wait()
	expectEvents(t, events, "delete h2")
	if storetest.Get(t, s, "hosts", "h2") != "" {
		t.Error("record of a dead host still there")
	}

	// Closing a session removes its records at once.
	sess, err := s.NewSession(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Put("hosts", "h1", []byte("me")); err != nil {
		t.Fatal(err)
	}
	expectEvents(t, events, "put h1=me")
	if err := sess.Close(); err != nil {
		t.Fatal(err)
	}
	expectEvents(t, events, "delete h1")
	select {
	case <-sess.Done():
	case <-time.After(10 * time.Second):
		t.Error("Done not closed after Close")
	}

	// A session that stopped renewing (as one cut off from the cluster
	// longer than its TTL) says so when used.
	sess, err = s.NewSession(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	sess.s.Orphan()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		err = sess.Put("hosts", "h3", nil)
		if err != nil || time.Now().After(deadline) {
			break
		}
		sess.s.Client().Delete(t.Context(), s.bucketKey("hosts")+"h3")
	}
	if err == nil || !strings.Contains(err.Error(), "the session has expired") {
		t.Errorf("put under an expired session: %v", err)
	}
}

// TestEtcdSessionHolder is the host process of TestEtcdSession.
func TestEtcdSessionHolder(t *testing.T) {
	args := strings.Fields(os.Getenv("CTNET_TEST_HOLDER"))
	if len(args) != 3 {
		t.Skip("run by TestEtcdSession")
	}
	ttl, _ := time.ParseDuration(args[2])
	s, err := Open(Config{Endpoints: strings.Split(args[0], ","), Prefix: args[1]})
	if err != nil {
		t.Fatal(err)
	}
	sess, err := s.NewSession(ttl)
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Put("hosts", "h2", []byte("vtep 10.99.0.2")); err != nil {
		t.Fatal(err)
	}
	fmt.Println("ready")
	select {
	case <-sess.Done():
		t.Fatal("session lost")
	case <-time.After(time.Minute):
	}
}

func TestEtcdTLS(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Members: 1, TLS: true})
	good := func(cfg *Config) { cfg.CACert, cfg.Cert, cfg.Key = c.CACert, c.ClientCert, c.ClientKey }
	storetest.Suite(t, func(t *testing.T) store.Store { return openEtcd(t, c, good) })
	t.Run("URL", func(t *testing.T) {
		cfg, err := ParseURL("etcds://" + strings.Join(c.Endpoints(), ",") + "/tls/")
		if err != nil {
			t.Fatal(err)
		}
		cfg.CACert, cfg.Cert, cfg.Key, cfg.DialContext = c.CACert, c.ClientCert, c.ClientKey, c.Dial
		s, err := Open(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		storetest.MustUpdate(t, s, func(tx store.Tx) error { return tx.Put(store.Meta, "k", nil) })
	})
	for _, tc := range []struct {
		name   string
		change func(*Config)
		says   string
	}{
		{"NoClientCert", func(cfg *Config) { cfg.CACert = c.CACert }, "no member answers"},
		{"UnknownCA", func(cfg *Config) { cfg.TLS, cfg.Cert, cfg.Key = true, c.ClientCert, c.ClientKey }, "certificate signed by unknown authority"},
		{"Plain", func(cfg *Config) {}, "no member answers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openEtcd(t, c, tc.change, func(cfg *Config) { cfg.Timeout = 2 * time.Second })
			err := s.Update(func(tx store.Tx) error { return tx.Put(store.Meta, "k", nil) })
			oneLine(t, tc.name, err, c, tc.says)
			t.Log(err)
		})
	}
}

func TestEtcdAuth(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Members: 1})
	admin := openEtcd(t, c)
	ctx := context.Background()
	prefix := "/auth/"
	for _, step := range []func() error{
		func() error { _, err := admin.cli.RoleAdd(ctx, "ctnet"); return err },
		func() error {
			_, err := admin.cli.RoleGrantPermission(ctx, "ctnet", prefix, clientv3.GetPrefixRangeEnd(prefix), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := admin.cli.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := admin.cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := admin.cli.UserAdd(ctx, "ctnet", "secret"); return err },
		func() error { _, err := admin.cli.UserGrantRole(ctx, "ctnet", "ctnet"); return err },
		func() error { _, err := admin.cli.UserAdd(ctx, "nobody", "pw"); return err },
		func() error { _, err := admin.cli.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	as := func(user, pw string) func(*Config) {
		return func(cfg *Config) { cfg.Prefix, cfg.Username, cfg.Password = prefix, user, pw }
	}
	s := openEtcd(t, c, as("ctnet", "secret"))
	storetest.MustUpdate(t, s, func(tx store.Tx) error {
		n := count(tx, store.Meta, "")
		tx.Delete(store.Meta, "gone")
		return tx.Put(store.Meta, "k", []byte(strconv.Itoa(n)))
	})
	sess, err := s.NewSession(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Put("hosts", "h1", nil); err != nil {
		t.Fatal(err)
	}
	if err := sess.Close(); err != nil {
		t.Fatal(err)
	}

	cfg := s.cfg
	cfg.Password = "wrong"
	_, err = Open(cfg)
	oneLine(t, "wrong password", err, c, `authentication of user "ctnet" failed; check --user and --password`)

	nobody := openEtcd(t, c, as("nobody", "pw"))
	err = nobody.Update(func(tx store.Tx) error { tx.Get(store.Meta, "k"); return tx.Put(store.Meta, "k", nil) })
	oneLine(t, "no role", err, c, `permission denied to user "nobody" under /auth/`)
}

func TestParseEtcdURL(t *testing.T) {
	for _, tc := range []struct {
		in, eps, prefix string
		tls             bool
	}{
		{"etcd://h1:2379,h2:2379,h3:2379", "h1:2379 h2:2379 h3:2379", "", false},
		{"etcd://h1", "h1:2379", "", false},
		{"ETCD://10.0.0.1:12379", "10.0.0.1:12379", "", false},
		{"etcds://h1,h2:2000", "h1:2379 h2:2000", "", true},
		{"etcd://[fd00::1]:2379,[fd00::2]", "[fd00::1]:2379 [fd00::2]:2379", "", false},
		{"etcd://h1/", "h1:2379", "", false},
		{"etcd://h1/lab", "h1:2379", "/lab/", false},
		{"etcd://h1/lab/a/", "h1:2379", "/lab/a/", false},
		{"etcd://etcd-1.example.org.:2379", "etcd-1.example.org.:2379", "", false},
	} {
		cfg, err := ParseURL(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if got := strings.Join(cfg.Endpoints, " "); got != tc.eps || cfg.Prefix != tc.prefix || cfg.TLS != tc.tls {
			t.Errorf("%s: endpoints %q prefix %q tls %v", tc.in, got, cfg.Prefix, cfg.TLS)
		}
	}
	for _, in := range []string{
		"", "h1:2379", "http://h1:2379", "etcd:/h1", "etcd://", "etcd:///prefix",
		"etcd://h1,", "etcd://,h1", "etcd://h1,,h2", "etcd://h1:", "etcd://h1:0", "etcd://h1:65536",
		"etcd://h1:x", "etcd://h1:02379", "etcd://:2379", "etcd://fd00::1", "etcd://[h1]:2379",
		"etcd://[10.0.0.1]:2379", "etcd://[fd00::1", "etcd://h_1", "etcd://-h1", "etcd://h1..",
		"etcd://user:pw@h1", "etcd://h1?cacert=x", "etcd://h1#x", "etcd://h1,h1", "etcd://h1:2379,h1",
		"etcd://h1//x", "etcd://h1/a b", "etcd://h1 h2", "etcd://h1:2379:2379",
	} {
		if cfg, err := ParseURL(in); err == nil {
			t.Errorf("%q accepted: %+v", in, cfg)
		} else if strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "want etcd://") {
			t.Errorf("%q: error %q does not show the form", in, err)
		}
	}
}

func TestOpenEtcdRefuses(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	ep := []string{"10.99.0.1:2379"}
	for _, tc := range []struct {
		cfg  Config
		says string
	}{
		{Config{}, "no endpoint"},
		{Config{Endpoints: ep, Prefix: "ctnet"}, "must start and end with /"},
		{Config{Endpoints: ep, Username: "u"}, "--user and --password go together"},
		{Config{Endpoints: ep, Cert: "c.pem"}, "--cert and --key go together"},
		{Config{Endpoints: ep, CACert: filepath.Join(dir, "missing.pem")}, "--cacert"},
		{Config{Endpoints: ep, CACert: notPEM}, "no PEM certificate"},
		{Config{Endpoints: ep, Cert: notPEM, Key: notPEM}, "--cert"},
	} {
		_, err := Open(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%+v: err %v, want one saying %q", tc.cfg, err, tc.says)
		}
	}
}

// BenchmarkUpdate is one small read-modify-write transaction.
func BenchmarkUpdate(b *testing.B) {
	incr := func(tx store.Tx) error {
		n, _ := strconv.Atoi(string(tx.Get(store.Meta, "n")))
		return tx.Put(store.Meta, "n", []byte(strconv.Itoa(n+1)))
	}
	run := func(b *testing.B, s store.Store) {
		for b.Loop() {
			if err := s.Update(incr); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("bolt", func(b *testing.B) {
		dir := b.TempDir()
		s, err := store.OpenBolt(filepath.Join(dir, "root"), filepath.Join(dir, "run"))
		if err != nil {
			b.Fatal(err)
		}
		run(b, s)
	})
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("etcd-%d", n), func(b *testing.B) {
			run(b, openEtcd(b, etcdtest.Start(b, etcdtest.Options{Members: n})))
		})
	}
}

// cutter makes connections that close right after sending a commit (a
// request naming a commit marker) while armed: the commit may or may not
// reach the member, and its answer is lost either way.
type cutter struct {
	dial  func(context.Context, string) (net.Conn, error)
	armed atomic.Bool
	cuts  atomic.Int64
}

type cutConn struct {
	net.Conn
	c *cutter
}

func (c *cutter) Dial(ctx context.Context, addr string) (net.Conn, error) {
	conn, err := c.dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	return &cutConn{conn, c}, nil
}

func (c *cutConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if bytes.Contains(p, []byte(reserved+"txn/")) && c.c.armed.CompareAndSwap(true, false) {
		c.c.cuts.Add(1)
		c.Conn.Close()
	}
	return n, err
}

// TestEtcdLostCommit: every commit's answer is lost, and each Update still
// takes effect exactly once.
func TestEtcdLostCommit(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Members: 1})
	cut := &cutter{dial: c.Dial}
	s := openEtcd(t, c, func(cfg *Config) { cfg.DialContext = cut.Dial })
	const n = 10
	runs := 0
	for range n {
		cut.armed.Store(true)
		storetest.MustUpdate(t, s, func(tx store.Tx) error {
			runs++
			k, _ := strconv.Atoi(string(tx.Get(store.Meta, "n")))
			return tx.Put(store.Meta, "n", []byte(strconv.Itoa(k+1)))
		})
	}
	if got := storetest.Get(t, s, store.Meta, "n"); got != strconv.Itoa(n) {
		t.Errorf("counter = %s after %d updates", got, n)
	}
	if cut.cuts.Load() != n {
		t.Errorf("%d commits cut, want %d", cut.cuts.Load(), n)
	}
	t.Logf("%d updates, %d runs: %d lost commits were applied, %d voided and run again", n, runs, 2*n-runs, runs-n)
}

// TestEtcdOutcome: the two ends of a lost commit's resolution.
func TestEtcdOutcome(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Members: 1})
	s := openEtcd(t, c)
	ctx := context.Background()
	lease, err := s.markerLease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lost := errors.New("answer lost")
	marker := func(n int) string { return fmt.Sprintf("%s%stxn/test/%d", s.cfg.Prefix, reserved, n) }
	commit := func(m string) bool {
		resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(m), "=", 0)).
			Then(clientv3.OpPut(m, "", clientv3.WithLease(lease))).Commit()
		if err != nil {
			t.Fatal(err)
		}
		return resp.Succeeded
	}
	// Applied before its answer was lost: found.
	commit(marker(1))
	if applied, err := s.outcome(ctx, marker(1), lease, lost); !applied || err != nil {
		t.Errorf("applied commit: outcome %v, %v", applied, err)
	}
	// Not applied yet: voided, so that it can never apply later.
	if applied, err := s.outcome(ctx, marker(2), lease, lost); applied || err != lost {
		t.Errorf("unapplied commit: outcome %v, %v", applied, err)
	}
	if commit(marker(2)) {
		t.Error("a voided commit applied late")
	}
	if applied, err := s.outcome(ctx, marker(2), lease, lost); applied || err != lost {
		t.Errorf("asked again: outcome %v, %v", applied, err)
	}
}
