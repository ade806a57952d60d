package dns

import (
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// TestHostileNamespace is issue 18's item 11 against a real resolver
// process, whose open file limit is the kernel's default hard limit (4096):
// one namespace opens 5000 idle TCP connections to 127.0.0.11 (some stuck
// halfway through a length prefix) and floods names its upstream never
// answers. Meanwhile another namespace resolves local and external names
// with dig, over UDP and TCP, a new namespace can still be served, and the
// resolver's file descriptors stay within its limits.
func TestHostileNamespace(t *testing.T) {
	e := newEnv(t, webRecords)
	e.srv.Close() // this test's resolver is the child process
	hostile, good, later := e.container(t), e.container(t), e.container(t)
	r := newResolverProcs(t, e, nofileEnv+"=4096")
	snap := Snapshot{
		Upstreams: []string{upstream1},
		Records:   webRecords,
		Namespaces: []Namespace{
			{Path: hostile.NetPath(), Networks: []string{"web"}},
			{Path: good.NetPath(), Networks: []string{"web"}},
		},
	}
	r.publish(snap)
	pid := r.all()[0].cmd.Process.Pid

	openIdleTCP(t, hostile.NetPath(), 5000)
	slowloris(t, hostile.NetPath(), 50)
	stop := floodUDP(t, hostile.NetPath())
	defer stop()
	// Let the flood take what it can before looking.
	for i := 0; i < 100 && e.up[upstream1].slow.Load() < 100; i++ {
		time.Sleep(50 * time.Millisecond)
	}

	for _, tc := range []struct{ args, want string }{
		{"db", "10.89.0.2"},
		{"example.test", "198.51.100.7"},
		{"+tcp db", "10.89.0.2"},
		{"+tcp example.test", "198.51.100.7"},
		{"-x 10.89.0.3", "app.web."},
	} {
		args := append([]string{"@127.0.0.11", "+short", "+tries=1", "+time=5"}, strings.Fields(tc.args)...)
		out, err := good.Run("dig", args...)
		if err != nil || strings.TrimSpace(out) != tc.want {
			t.Errorf("dig %s from the quiet namespace during the flood: %q (%v), want %q", tc.args, out, err, tc.want)
		}
	}

	// A container started now is served at once.
	snap.Namespaces = append(snap.Namespaces, Namespace{Path: later.NetPath(), Networks: []string{"web"}})
	r.publish(snap)
	if out, err := later.Run("dig", "@127.0.0.11", "+short", "+tries=1", "+time=5", "example.test"); err != nil || strings.TrimSpace(out) != "198.51.100.7" {
		t.Errorf("dig example.test from a namespace added during the flood: %q (%v)", out, err)
	}

	// Listeners, one namespace at its limits, the others' guaranteed
	// shares, and a few descriptors of the runtime's own.
	cfg := Config{}.withDefaults()
	bound := 2*3 + cfg.MaxTCPPerNS + cfg.MaxQueriesPerNS + 2*(minTCPPerNS+minQueriesPerNS) + 32
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	if len(fds) > bound {
		t.Errorf("resolver holds %d file descriptors during the flood, want at most %d", len(fds), bound)
	}
	t.Logf("resolver: %d file descriptors; upstream saw %d slow queries", len(fds), e.up[upstream1].slow.Load())
}

// openIdleTCP opens n TCP connections to 127.0.0.11:53 from the namespace
// and leaves them idle (non-blocking connects: the kernel completes them as
// the resolver accepts). They are closed when the test ends.
func openIdleTCP(t *testing.T, nsPath string, n int) {
	t.Helper()
	var fds []int
	t.Cleanup(func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	})
	err := inNS(nsPath, func() error {
		for range n {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			fds = append(fds, fd)
			err = unix.Connect(fd, &unix.SockaddrInet4{Port: 53, Addr: Addr.Addr().As4()})
			if err != nil && err != unix.EINPROGRESS {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("open %d connections: %v", n, err)
	}
}

// slowloris opens n connections that each send the first byte of a length
// prefix and nothing more.
func slowloris(t *testing.T, nsPath string, n int) {
	t.Helper()
	for range n {
		var c net.Conn
		if err := inNS(nsPath, func() (err error) {
			c, err = net.DialTimeout("tcp", Addr.String(), time.Second)
			return err
		}); err != nil {
			continue // the resolver may refuse it: that is fine
		}
		c.Write([]byte{0})
		t.Cleanup(func() { c.Close() })
	}
}

// floodUDP sends queries for distinct names under slow.test from the
// namespace, a few thousand a second, until stopped.
func floodUDP(t *testing.T, nsPath string) (stop func()) {
	t.Helper()
	var c net.Conn
	if err := inNS(nsPath, func() (err error) {
		c, err = net.Dial("udp", Addr.String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // drain the answers
		defer wg.Done()
		buf := make([]byte, 512)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			for range 30 {
				m := new(mdns.Msg)
				m.SetQuestion(fmt.Sprintf("q%d.slow.test.", i), mdns.TypeA)
				b, _ := m.Pack()
				c.Write(b)
				i++
			}
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			close(done)
			c.Close()
			wg.Wait()
		})
	}
	t.Cleanup(stop)
	return stop
}
