// Package etcdtest starts real etcd clusters for tests: Debian's etcd
// binary, one process per member, inside a sandbox network namespace (never
// the machine's). Each member listens on an address of its own on the
// sandbox's loopback and keeps its data in a directory of the test's, so a
// restarted member finds its data again. Tests reach the members through
// Dial, which opens sockets inside the sandbox.
package etcdtest

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ctnet/ctnet/internal/sandbox"
	"github.com/vishvananda/netns"
)

// Options shape a cluster.
type Options struct {
	Members int  // 1 or 3 (default 1)
	TLS     bool // clients must speak TLS and show a certificate of the test CA
}

// Cluster is a running etcd cluster in its own sandbox.
type Cluster struct {
	t       testing.TB
	Sandbox *sandbox.Sandbox
	Members []*Member
	// CACert, ClientCert and ClientKey are PEM files of a TLS cluster.
	CACert, ClientCert, ClientKey string
	tls                           *tls.Config
	initial                       string
}

// Member is one etcd process.
type Member struct {
	c        *Cluster
	Name     string
	Addr     string // its address in the sandbox
	Endpoint string // host:port of its client URL
	dataDir  string
	logPath  string
	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{}
}

// Start starts a cluster and waits until every member is healthy.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if _, err := exec.LookPath("etcd"); err != nil {
		t.Skip("needs etcd (Debian's etcd-server; scripts/deps.sh installs it)")
	}
	if opts.Members == 0 {
		opts.Members = 1
	}
	s := sandbox.New(t)
	c := &Cluster{t: t, Sandbox: s}
	logs, data := t.TempDir(), t.TempDir()
	if opts.TLS {
		c.makeCerts(t.TempDir(), opts.Members)
	}
	var peers []string
	for i := range opts.Members {
		m := &Member{c: c, Name: fmt.Sprintf("m%d", i+1), Addr: fmt.Sprintf("10.99.0.%d", i+1)}
		m.Endpoint = m.Addr + ":2379"
		m.dataDir = filepath.Join(data, m.Name)
		m.logPath = filepath.Join(logs, m.Name+".log")
		s.Host.MustRun("ip", "addr", "add", m.Addr+"/32", "dev", "lo")
		peers = append(peers, fmt.Sprintf("%s=http://%s:2380", m.Name, m.Addr))
		c.Members = append(c.Members, m)
	}
	c.initial = strings.Join(peers, ",")
	// Stops exactly the members' processes, before the sandbox goes.
	t.Cleanup(func() {
		for _, m := range c.Members {
			m.Kill()
		}
		if t.Failed() {
			for _, m := range c.Members {
				t.Logf("etcd log of %s: %s", m.Name, m.logPath)
			}
		}
	})
	for _, m := range c.Members {
		m.start()
	}
	c.WaitHealthy()
	return c
}

// Endpoints are the members' host:port.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.Members {
		eps = append(eps, m.Endpoint)
	}
	return eps
}

// Dial opens a TCP connection from inside the sandbox: the socket is made
// on a thread that has entered the sandbox's network namespace, and keeps
// that namespace when the thread goes back.
func (c *Cluster) Dial(ctx context.Context, addr string) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: err}
			return
		}
		defer orig.Close()
		target, err := netns.GetFromPid(c.Sandbox.Host.PID)
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: err}
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			done <- result{err: err}
			return
		}
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		// A thread that cannot go back is left locked: it dies with this
		// goroutine instead of running others in the sandbox.
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		done <- result{conn, err}
	}()
	r := <-done
	return r.conn, r.err
}

func (m *Member) args() []string {
	c := m.c
	scheme := "http"
	if c.tls != nil {
		scheme = "https"
	}
	client := fmt.Sprintf("%s://%s", scheme, m.Endpoint)
	a := []string{
		"--name", m.Name,
		"--data-dir", m.dataDir,
		"--listen-client-urls", client,
		"--advertise-client-urls", client,
		"--listen-peer-urls", "http://" + m.Addr + ":2380",
		"--initial-advertise-peer-urls", "http://" + m.Addr + ":2380",
		"--initial-cluster", c.initial,
		"--initial-cluster-state", "new",
		"--initial-cluster-token", "ctnet-test",
		// Quick elections: a test that cuts quorum or restarts a member
		// sees the cluster settle within a second or two.
		"--heartbeat-interval", "50",
		"--election-timeout", "500",
		"--logger", "zap",
		"--log-outputs", "stderr",
	}
	if c.tls != nil {
		a = append(a, "--cert-file", filepath.Join(filepath.Dir(c.CACert), m.Name+".pem"),
			"--key-file", filepath.Join(filepath.Dir(c.CACert), m.Name+"-key.pem"),
			"--trusted-ca-file", c.CACert, "--client-cert-auth")
	}
	return a
}

func (m *Member) start() {
	m.c.t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		m.c.t.Fatalf("etcd member %s runs already", m.Name)
	}
	log, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		m.c.t.Fatal(err)
	}
	defer log.Close()
	cmd := m.c.Sandbox.Host.Command("etcd", m.args()...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		m.c.t.Fatalf("start etcd member %s: %v", m.Name, err)
	}
	m.cmd, m.exited = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(m.exited) }()
}

// Running reports whether the member's process is alive.
func (m *Member) Running() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cmd != nil
}

func (m *Member) signal(sig syscall.Signal) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Signal(sig)
	select {
	case <-m.exited:
	case <-time.After(10 * time.Second):
		m.cmd.Process.Kill()
		<-m.exited
	}
	m.cmd = nil
}

// Stop ends the member as an operator would (SIGTERM) and waits for it.
func (m *Member) Stop() { m.signal(syscall.SIGTERM) }

// Kill ends the member at once (SIGKILL), as a crash would.
func (m *Member) Kill() { m.signal(syscall.SIGKILL) }

// Restart starts a stopped member again on its data and waits until it is
// healthy.
func (m *Member) Restart() {
	m.c.t.Helper()
	m.start()
	m.WaitHealthy()
}

// CutQuorum stops a majority of the members, leaving the first one (of
// three) running, and returns once the members left know they have no
// leader: until then a leader could still take a request it will never
// commit (or commit once quorum is back).
func (c *Cluster) CutQuorum() []*Member {
	c.t.Helper()
	stopped := c.Members[len(c.Members)-(len(c.Members)/2+1):]
	for _, m := range stopped {
		m.Stop()
	}
	for _, m := range c.Members {
		if m.Running() {
			m.waitLeaderless()
		}
	}
	return stopped
}

// RestoreQuorum starts every stopped member and waits for the cluster.
func (c *Cluster) RestoreQuorum() {
	c.t.Helper()
	for _, m := range c.Members {
		if !m.Running() {
			m.start()
		}
	}
	c.WaitHealthy()
}

// WaitHealthy waits until every running member answers /health with a
// leader known.
func (c *Cluster) WaitHealthy() {
	c.t.Helper()
	for _, m := range c.Members {
		if m.Running() {
			m.WaitHealthy()
		}
	}
}

// WaitHealthy waits up to 30 s for the member to report itself healthy.
func (m *Member) WaitHealthy() {
	m.c.t.Helper()
	m.waitHealth(true)
}

// waitLeaderless waits until the member has noticed it has no leader (its
// /health fails earlier: as soon as a read cannot reach a quorum).
func (m *Member) waitLeaderless() {
	m.c.t.Helper()
	m.poll("/metrics", "leaderless", func(body string) bool {
		return strings.Contains(body, "\netcd_server_has_leader 0\n")
	})
}

func (m *Member) waitHealth(healthy bool) {
	m.c.t.Helper()
	m.poll("/health", fmt.Sprintf("healthy=%v", healthy), func(body string) bool {
		return strings.Contains(body, `"health":"true"`) == healthy
	})
}

// poll GETs path from the member until done says yes, for up to 30 s.
func (m *Member) poll(path, what string, done func(body string) bool) {
	m.c.t.Helper()
	scheme := "http"
	tr := &http.Transport{DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) { return m.c.Dial(ctx, addr) }}
	if m.c.tls != nil {
		scheme, tr.TLSClientConfig = "https", m.c.tls
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 2 * time.Second}
	var last string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		select {
		case <-m.exitedCh():
			m.c.t.Fatalf("etcd member %s exited:\n%s", m.Name, tail(m.logPath))
		default:
		}
		resp, err := hc.Get(scheme + "://" + m.Endpoint + path)
		if err != nil {
			last = err.Error()
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if done(string(body)) {
			return
		}
		last = string(body[:min(len(body), 200)])
	}
	m.c.t.Fatalf("etcd member %s not %s within 30s: %s\n%s", m.Name, what, last, tail(m.logPath))
}

func (m *Member) exitedCh() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return nil
	}
	return m.exited
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-15):], "\n")
}
