package sandbox

import (
	"net"
	"strings"

	"github.com/miekg/dns"
	"github.com/vishvananda/netns"

	"github.com/ctnet/ctnet/internal/namespace"
)

// UpstreamDNS serves DNS on 203.0.113.1:53 (UDP) inside the upstream
// namespace: the "internet's" resolver. It answers A queries for names in
// records (name → IPv4) and NXDOMAIN for everything else, and records every
// name it was asked.
type UpstreamDNS struct {
	srv  *dns.Server
	seen chan string
}

// Asked returns the names queried so far.
func (u *UpstreamDNS) Asked() []string {
	var out []string
	for {
		select {
		case n := <-u.seen:
			out = append(out, n)
		default:
			return out
		}
	}
}

// ServeDNS starts the upstream resolver until the test ends.
func (s *Sandbox) ServeDNS(records map[string]string) *UpstreamDNS {
	s.t.Helper()
	pc, err := listenIn(s.Upstream.NetPath(), UpstreamAddr+":53")
	if err != nil {
		s.t.Fatalf("upstream DNS: %v", err)
	}
	u := &UpstreamDNS{seen: make(chan string, 1000)}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		if len(q.Question) == 1 {
			name := strings.ToLower(strings.TrimSuffix(q.Question[0].Name, "."))
			select {
			case u.seen <- name:
			default:
			}
			if ip, ok := records[name]; ok && q.Question[0].Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
					A:   net.ParseIP(ip),
				})
			} else if !ok {
				m.Rcode = dns.RcodeNameError
			}
		}
		w.WriteMsg(m)
	})
	u.srv = &dns.Server{PacketConn: pc, Handler: handler}
	go u.srv.ActivateAndServe()
	s.t.Cleanup(func() { u.srv.Shutdown() })
	return u
}

// listenIn opens a UDP socket inside the namespace at path; the socket keeps
// that namespace for its whole life.
func listenIn(path, addr string) (net.PacketConn, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	var pc net.PacketConn
	err = namespace.In(ns, func() error {
		var err error
		pc, err = net.ListenPacket("udp", addr)
		return err
	})
	return pc, err
}
