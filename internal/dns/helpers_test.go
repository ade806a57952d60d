package dns

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/ctnet/ctnet/internal/sandbox"
)

// Upstream resolvers the tests run in the sandbox's upstream namespace; they
// answer example.test differently so a test can tell which one was asked.
const (
	upstream1 = sandbox.UpstreamAddr // example.test → 198.51.100.7
	upstream2 = sandbox.FarAddr      // example.test → 198.51.100.8
)

// env is one test's world: a sandbox host (where forwarding happens), an
// upstream namespace with two resolvers, and a Server.
type env struct {
	sb  *sandbox.Sandbox
	srv *Server
	up  map[string]*fakeUpstream
}

func newEnv(t testing.TB, records []Record) *env {
	t.Helper()
	return newEnvConfig(t, records, Config{})
}

// newEnvConfig is newEnv with a server configured by cfg (its upstreams,
// forwarding namespace and logger are the env's).
func newEnvConfig(t testing.TB, records []Record, cfg Config) *env {
	t.Helper()
	sb := sandbox.New(t)
	e := &env{sb: sb, up: map[string]*fakeUpstream{}}
	for addr, answer := range map[string]string{upstream1: "198.51.100.7", upstream2: "198.51.100.8"} {
		e.up[addr] = startUpstream(t, sb.Upstream.NetPath(), addr, answer)
	}
	cfg.Upstreams, cfg.ForwardNS, cfg.Logf = []string{upstream1}, sb.Host.NetPath(), t.Logf
	e.srv = New(cfg)
	t.Cleanup(func() { e.srv.Close() })
	e.srv.Update(records)
	return e
}

// container makes a namespace like a container's: only lo, up, no route out.
func (e *env) container(t testing.TB) *sandbox.NS {
	t.Helper()
	ns := e.sb.Netns()
	ns.MustRun("ip", "link", "set", "lo", "up")
	return ns
}

func (e *env) listen(t testing.TB, ns Namespace) {
	t.Helper()
	if err := e.srv.Listen(ns); err != nil {
		t.Fatal(err)
	}
}

// fakeUpstream is a resolver in the upstream namespace that remembers the
// names it was asked. Names under slow.test it never answers, as an
// upstream waiting on an authority that does not answer.
type fakeUpstream struct {
	mu    sync.Mutex
	asked map[string]int
	slow  atomic.Int64 // queries for names under slow.test
	total atomic.Int64
}

func (u *fakeUpstream) count(name string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.asked[mdns.Fqdn(name)]
}

func startUpstream(t testing.TB, nsPath, addr, exampleA string) *fakeUpstream {
	t.Helper()
	u := &fakeUpstream{asked: map[string]int{}}
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, req *mdns.Msg) {
		q := req.Question[0]
		u.total.Add(1)
		if strings.HasSuffix(strings.ToLower(q.Name), ".slow.test.") {
			u.slow.Add(1)
			return
		}
		u.mu.Lock()
		u.asked[strings.ToLower(q.Name)]++
		u.mu.Unlock()
		m := new(mdns.Msg)
		m.SetReply(req)
		m.RecursionAvailable = true
		switch {
		case strings.EqualFold(q.Name, "example.test.") && q.Qtype == mdns.TypeA:
			m.Answer = append(m.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 60}, A: net.ParseIP(exampleA)})
		case strings.EqualFold(q.Name, "big.test.") && q.Qtype == mdns.TypeTXT:
			for i := range 40 {
				m.Answer = append(m.Answer, &mdns.TXT{Hdr: mdns.RR_Header{Name: q.Name, Rrtype: mdns.TypeTXT, Class: mdns.ClassINET, Ttl: 60},
					Txt: []string{fmt.Sprintf("%02d-%s", i, strings.Repeat("x", 60))}})
			}
		default:
			m.Rcode = mdns.RcodeNameError
		}
		if w.RemoteAddr().Network() == "udp" {
			size := mdns.MinMsgSize
			if o := req.IsEdns0(); o != nil {
				size = int(o.UDPSize())
				m.SetEdns0(o.UDPSize(), false)
			}
			m.Truncate(size)
		}
		w.WriteMsg(m)
	})
	var pc net.PacketConn
	var ln net.Listener
	err := inNS(nsPath, func() error {
		var err error
		if pc, err = net.ListenPacket("udp", addr+":53"); err != nil {
			return err
		}
		ln, err = net.Listen("tcp", addr+":53")
		return err
	})
	if err != nil {
		t.Fatalf("upstream %s: %v", addr, err)
	}
	for _, srv := range []*mdns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	return u
}

type qopt struct {
	tcp  bool
	edns uint16 // 0: no EDNS0 record
}

// ask sends one query to 127.0.0.11 from inside the namespace at nsPath.
func ask(t testing.TB, nsPath, name string, qtype uint16, o qopt) *mdns.Msg {
	t.Helper()
	m, err := tryAsk(nsPath, name, qtype, o)
	if err != nil {
		t.Fatalf("query %s %s in %s: %v", name, mdns.TypeToString[qtype], nsPath, err)
	}
	return m
}

func tryAsk(nsPath, name string, qtype uint16, o qopt) (*mdns.Msg, error) {
	network := "udp"
	if o.tcp {
		network = "tcp"
	}
	var c net.Conn
	err := inNS(nsPath, func() error {
		var err error
		c, err = net.DialTimeout(network, Addr.String(), 5*time.Second)
		return err
	})
	if err != nil {
		return nil, err
	}
	co := &mdns.Conn{Conn: c}
	defer co.Close()
	req := new(mdns.Msg)
	req.SetQuestion(mdns.Fqdn(name), qtype)
	if o.edns != 0 {
		req.SetEdns0(o.edns, false)
	}
	cl := &mdns.Client{Timeout: 10 * time.Second}
	m, _, err := cl.ExchangeWithConn(req, co)
	return m, err
}

// addrsOf lists the A and AAAA answers of m in order.
func addrsOf(m *mdns.Msg) []netip.Addr {
	var out []netip.Addr
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *mdns.A:
			a, _ := netip.AddrFromSlice(rr.A)
			out = append(out, a.Unmap())
		case *mdns.AAAA:
			a, _ := netip.AddrFromSlice(rr.AAAA)
			out = append(out, a)
		}
	}
	return out
}

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}
