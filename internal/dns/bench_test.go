package dns

import (
	"context"
	"net"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// BenchmarkRespondLocal is the handler alone answering a local A query.
func BenchmarkRespondLocal(b *testing.B) {
	s := New(Config{})
	defer s.Close()
	s.Update(webRecords)
	ns := &served{Namespace: Namespace{Networks: []string{"web"}}}
	q := seedQuery("db", mdns.TypeA, 0)
	for b.Loop() {
		if s.respond(context.Background(), ns, q, false) == nil {
			b.Fatal("no reply")
		}
	}
}

// BenchmarkQuery is a client in a container namespace asking over UDP: a
// local name, and a name forwarded to the upstream from the sandbox host
// (which enters that namespace for each upstream socket).
func BenchmarkQuery(b *testing.B) {
	e := newEnv(b, webRecords)
	c := e.container(b)
	e.listen(b, Namespace{Path: c.NetPath(), Networks: []string{"web"}})
	var conn net.Conn
	if err := inNS(c.NetPath(), func() (err error) {
		conn, err = net.Dial("udp", Addr.String())
		return err
	}); err != nil {
		b.Fatal(err)
	}
	co := &mdns.Conn{Conn: conn}
	defer co.Close()
	cl := &mdns.Client{Timeout: 5 * time.Second}
	for _, name := range []string{"db", "example.test"} {
		b.Run(name, func(b *testing.B) {
			req := new(mdns.Msg)
			req.SetQuestion(mdns.Fqdn(name), mdns.TypeA)
			for b.Loop() {
				if m, _, err := cl.ExchangeWithConn(req, co); err != nil || len(m.Answer) != 1 {
					b.Fatalf("%s: %v %v", name, m, err)
				}
			}
		})
	}
}
