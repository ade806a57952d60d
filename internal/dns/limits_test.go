package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// TestLimits is the accounting alone: guaranteed shares, the shared pool,
// the per-namespace limit and the bound on everything together, in every
// order of giving back.
func TestLimits(t *testing.T) {
	var l limits
	l.init(Config{MaxQueriesPerNS: 12, MaxQueries: 6, MaxTCPPerNS: 3, MaxTCP: 1}.withDefaults(), 1<<20)
	var a, b, c usage
	take := func(u *usage, k kind, n int) int { return takeN(&l, u, k, n) }
	// a takes its 8 and 4 of the pool's 6, then stops at its limit.
	if got := take(&a, queries, 20); got != 12 {
		t.Fatalf("first namespace got %d queries, want its limit 12", got)
	}
	// b gets its guaranteed 8 and the 2 left in the pool.
	if got := take(&b, queries, 20); got != 10 {
		t.Fatalf("second namespace got %d, want 8 guaranteed + 2 pooled", got)
	}
	// c finds the pool empty but still has its guaranteed share.
	if got := take(&c, queries, 20); got != 8 {
		t.Fatalf("third namespace got %d, want its guaranteed 8", got)
	}
	// Giving back below the floor does not return pool units; above it does.
	for range 5 {
		l.give(&a, queries)
	}
	if got := take(&c, queries, 20); got != 4 {
		t.Fatalf("after a gave back 4 pooled units, c got %d more, want 4", got)
	}
	// Connections are a separate pool with its own floor.
	if got := take(&a, conns, 10); got != 3 {
		t.Fatalf("connections: %d, want the limit 3", got)
	}
	if got := take(&b, conns, 10); got != 3 {
		t.Fatalf("connections of b: %d, want 3 (all within its floor)", got)
	}
	for _, u := range []*usage{&a, &b, &c} {
		for u[queries] > 0 {
			l.give(u, queries)
		}
		for u[conns] > 0 {
			l.give(u, conns)
		}
	}
	if l.open != 0 || l.pools[queries].fromShared != 0 || l.pools[conns].fromShared != 0 {
		t.Fatalf("after giving everything back: open %d, pooled %d/%d", l.open, l.pools[queries].fromShared, l.pools[conns].fromShared)
	}

	// Half the process's descriptors bound everything, floors included.
	var small limits
	small.init(Config{}.withDefaults(), 40)
	var us [10]usage
	got := 0
	for i := range us {
		got += takeN(&small, &us[i], queries, 8)
	}
	if got != 20 {
		t.Fatalf("with 40 descriptors: %d units, want 20", got)
	}
}

func takeN(l *limits, u *usage, k kind, n int) int {
	got := 0
	for range n {
		if l.take(u, k) {
			got++
		}
	}
	return got
}

// stallExchange stands in for the upstream: names under slow.test wait
// until released (or the query's context ends), others get an answer.
type stallExchange struct {
	release chan struct{}
	mu      sync.Mutex
	asked   int
}

func (x *stallExchange) exchange(ctx context.Context, _ *origin, _ []string, q []byte, _ bool) ([]byte, error) {
	m := new(mdns.Msg)
	if err := m.Unpack(q); err != nil {
		return nil, err
	}
	x.mu.Lock()
	x.asked++
	x.mu.Unlock()
	if strings.HasSuffix(m.Question[0].Name, ".slow.test.") {
		select {
		case <-x.release:
		case <-ctx.Done():
		}
		return nil, errors.New("upstream gave up")
	}
	r := new(mdns.Msg)
	r.SetReply(m)
	r.Answer = append(r.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: m.Question[0].Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 60}, A: net.IPv4(198, 51, 100, 7)})
	return r.Pack()
}

// TestForwardLimits: two namespaces flood names whose upstream never
// answers; each is refused at once beyond its share (REFUSED, as Docker's
// resolver answers when overloaded) and a third namespace still gets its
// guaranteed share: its names are answered while the others are at their
// limits.
func TestForwardLimits(t *testing.T) {
	e := newEnvConfig(t, webRecords, Config{MaxQueriesPerNS: 16, MaxQueries: 8})
	x := &stallExchange{release: make(chan struct{})}
	e.srv.exchange = x.exchange
	defer close(x.release)
	h1, h2, good := e.container(t), e.container(t), e.container(t)
	for _, c := range []string{h1.NetPath(), h2.NetPath(), good.NetPath()} {
		e.listen(t, Namespace{Path: c, Networks: []string{"web"}})
	}
	// h1 gets 8 guaranteed + the pool's 8; h2 only its guaranteed 8.
	for _, tc := range []struct {
		ns      string
		refused int
	}{{h1.NetPath(), 40 - 16}, {h2.NetPath(), 40 - 8}} {
		if got := floodSlow(t, tc.ns, 40); got != tc.refused {
			t.Errorf("flood from %s: %d REFUSED, want %d", tc.ns, got, tc.refused)
		}
	}
	x.mu.Lock()
	asked := x.asked
	x.mu.Unlock()
	if asked != 24 {
		t.Errorf("upstream asked %d slow names, want 24", asked)
	}
	// Over UDP and TCP, local and forwarded: the third namespace is served.
	for _, o := range []qopt{{}, {tcp: true}} {
		if got := addrsOf(ask(t, good.NetPath(), "example.test", mdns.TypeA, o)); len(got) != 1 {
			t.Errorf("example.test from the quiet namespace (tcp %v): %v", o.tcp, got)
		}
		if got := addrsOf(ask(t, good.NetPath(), "db", mdns.TypeA, o)); len(got) != 1 {
			t.Errorf("db from the quiet namespace (tcp %v): %v", o.tcp, got)
		}
	}
	// A namespace at its limit still gets local names: they cost no slot.
	if got := addrsOf(ask(t, h1.NetPath(), "db", mdns.TypeA, qopt{})); len(got) != 1 {
		t.Errorf("db from the flooding namespace: %v", got)
	}
	if m := ask(t, h1.NetPath(), "example.test", mdns.TypeA, qopt{tcp: true}); m.Rcode != mdns.RcodeRefused {
		t.Errorf("forwarded name over TCP from the namespace at its limit: %s, want REFUSED", mdns.RcodeToString[m.Rcode])
	}
}

// floodSlow sends n queries for distinct slow names from one socket in the
// namespace at nsPath and returns how many were answered REFUSED; the
// others stay unanswered while the upstream stalls.
func floodSlow(t *testing.T, nsPath string, n int) int {
	t.Helper()
	var c net.Conn
	if err := inNS(nsPath, func() (err error) {
		c, err = net.Dial("udp", Addr.String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range n {
		m := new(mdns.Msg)
		m.SetQuestion(fmt.Sprintf("q%d.slow.test.", i), mdns.TypeA)
		b, _ := m.Pack()
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	refused := 0
	buf := make([]byte, 512)
	// The refusals come at once; the stalled ones never before release.
	for {
		c.SetReadDeadline(time.Now().Add(time.Second))
		k, err := c.Read(buf)
		if err != nil {
			return refused
		}
		if k > 3 && buf[3]&0xf == mdns.RcodeRefused {
			refused++
		}
	}
}

// TestTCPLimits: the connections of one namespace are bounded in number,
// in idle time, in the time to send a whole query (a slow sender dribbling
// its length prefix), in queries and in size; the other namespace is
// unaffected.
func TestTCPLimits(t *testing.T) {
	e := newEnvConfig(t, webRecords, Config{MaxTCPPerNS: 4, TCPIdleTimeout: 300 * time.Millisecond, TCPMaxQueries: 3})
	c1, c2 := e.container(t), e.container(t)
	e.listen(t, Namespace{Path: c1.NetPath(), Networks: []string{"web"}})
	e.listen(t, Namespace{Path: c2.NetPath(), Networks: []string{"web"}})
	// dial connects from ns; a connection refused may already be reset
	// when the dial returns, and then fails any query.
	dial := func(ns string) net.Conn {
		var c net.Conn
		if err := inNS(ns, func() (err error) {
			c, err = net.Dial("tcp", Addr.String())
			return err
		}); err != nil {
			return nil
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	query := func(c net.Conn) error {
		if c == nil {
			return errors.New("connection refused")
		}
		m := new(mdns.Msg)
		m.SetQuestion("db.", mdns.TypeA)
		b, _ := m.Pack()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if err := writeTCP(c, b); err != nil {
			return err
		}
		_, err := readTCP(c, mdns.MaxMsgSize)
		return err
	}
	// closed waits for the server to close c, sending nothing.
	closed := func(c net.Conn) bool {
		if c == nil {
			return true
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		return err != nil && !(errors.As(err, &ne) && ne.Timeout())
	}

	// quiet waits until the server has seen every connection of c1 close,
	// so a subtest starts with its whole allowance.
	quiet := func(t *testing.T) {
		t.Helper()
		for range 1000 {
			e.srv.mu.Lock()
			l := e.srv.nss[c1.NetPath()]
			e.srv.mu.Unlock()
			e.srv.lim.mu.Lock()
			n := l.use[conns]
			e.srv.lim.mu.Unlock()
			if n == 0 {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatal("connections of the previous subtest still open")
	}

	t.Run("count", func(t *testing.T) {
		quiet(t)
		var held []net.Conn
		for range 4 {
			c := dial(c1.NetPath())
			if err := query(c); err != nil {
				t.Fatalf("connection within the limit: %v", err)
			}
			held = append(held, c)
		}
		if over := dial(c1.NetPath()); query(over) == nil {
			t.Errorf("a fifth connection was served")
		}
		// The other namespace is not affected.
		for range 4 {
			if err := query(dial(c2.NetPath())); err != nil {
				t.Fatalf("other namespace: %v", err)
			}
		}
		// Closing one makes room.
		held[0].Close() // the server sees it at once: its read fails
		ok := false
		for range 50 {
			c := dial(c1.NetPath())
			if query(c) == nil {
				ok = true
				c.Close()
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if !ok {
			t.Errorf("no connection served after one of four closed")
		}
		for _, c := range held {
			c.Close()
		}
	})
	t.Run("idle", func(t *testing.T) {
		quiet(t)
		c := dial(c1.NetPath())
		if err := query(c); err != nil {
			t.Fatal(err)
		}
		if !closed(c) {
			t.Errorf("idle connection not closed")
		}
	})
	t.Run("slow sender", func(t *testing.T) {
		quiet(t)
		c := dial(c1.NetPath())
		if c == nil {
			t.Fatal("connection refused")
		}
		m := new(mdns.Msg)
		m.SetQuestion("db.", mdns.TypeA)
		b, _ := m.Pack()
		msg := binary.BigEndian.AppendUint16(nil, uint16(len(b)))
		msg = append(msg, b...)
		// One byte every 50 ms never finishes a query within 300 ms, though
		// the connection is never silent for that long.
		for i := range msg {
			c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(msg[i : i+1]); err != nil {
				return // closed on us: good
			}
			time.Sleep(50 * time.Millisecond)
		}
		if !closed(c) {
			t.Errorf("a query dribbled byte by byte was answered")
		}
	})
	t.Run("queries", func(t *testing.T) {
		quiet(t)
		c := dial(c1.NetPath())
		for i := range 3 {
			if err := query(c); err != nil {
				t.Fatalf("query %d: %v", i+1, err)
			}
		}
		if query(c) == nil {
			t.Errorf("fourth query on a connection limited to three was answered")
		}
	})
	t.Run("huge", func(t *testing.T) {
		quiet(t)
		c := dial(c1.NetPath())
		if c == nil {
			t.Fatal("connection refused")
		}
		c.Write([]byte{0xff, 0xff})
		c.Write(make([]byte, 1000))
		if !closed(c) {
			t.Errorf("connection announcing a 64 KiB query not closed")
		}
	})
	if got := addrsOf(ask(t, c1.NetPath(), "db", mdns.TypeA, qopt{tcp: true})); len(got) != 1 {
		t.Errorf("db over TCP afterwards: %v", got)
	}
}

// TestSelfUpstream: a namespace served that is also the one forwarding is
// done from, with 127.0.0.11 as its upstream, would forward each query to
// the resolver itself, hop after hop without end. It gets SERVFAIL at once
// and nothing stays in flight.
func TestSelfUpstream(t *testing.T) {
	e := newEnv(t, webRecords)
	other := e.container(t)
	e.listen(t, Namespace{Path: e.sb.Host.NetPath(), Networks: []string{"web"}, Upstreams: []string{"127.0.0.11"}})
	e.listen(t, Namespace{Path: other.NetPath(), Networks: []string{"web"}, Upstreams: []string{"127.0.0.11:53"}})
	for range 3 {
		out := e.sb.Host.MustRun("dig", "@127.0.0.11", "+tries=1", "+time=5", "example.test")
		if !strings.Contains(out, "status: SERVFAIL") {
			t.Fatalf("query looping through the resolver: want SERVFAIL\n%s", out)
		}
	}
	// In a container's own namespace 127.0.0.11 is the resolver too, for
	// the internal-only case that forwards from there.
	e.srv.SetNetworks([]Network{{Name: "web", Internal: true}})
	if m := ask(t, other.NetPath(), "example.test", mdns.TypeA, qopt{}); m.Rcode != mdns.RcodeServerFailure {
		t.Errorf("internal namespace with 127.0.0.11 as --dns: %s, want SERVFAIL", mdns.RcodeToString[m.Rcode])
	}
	// A slot is given back just after the reply is sent; a loop would
	// keep them taken.
	open := -1
	for range 100 {
		e.srv.lim.mu.Lock()
		open = e.srv.lim.open
		e.srv.lim.mu.Unlock()
		if open == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if open != 0 {
		t.Errorf("%d queries still being forwarded after the answers", open)
	}
	if got := addrsOf(ask(t, other.NetPath(), "db", mdns.TypeA, qopt{})); len(got) != 1 {
		t.Errorf("db: %v", got)
	}
}
