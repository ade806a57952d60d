package dns

import (
	"context"
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"

	mdns "github.com/miekg/dns"
)

func seedQuery(name string, qtype uint16, edns uint16) []byte {
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), qtype)
	if edns != 0 {
		m.SetEdns0(edns, true)
	}
	b, err := m.Pack()
	if err != nil {
		panic(err)
	}
	return b
}

// FuzzHandle feeds arbitrary bytes to the packet handler as a query arriving
// over UDP and over TCP. The upstream is a stand-in that echoes the query
// back as a reply, possibly padded past the client's limit, so the
// forwarding path (id rewrite, truncation) is fuzzed too without a network.
func FuzzHandle(f *testing.F) {
	for _, seed := range [][]byte{
		seedQuery("db", mdns.TypeA, 0),
		seedQuery("db.web", mdns.TypeAAAA, 0),
		seedQuery("pool", mdns.TypeA, 1232),
		seedQuery("2.0.89.10.in-addr.arpa", mdns.TypePTR, 0),
		seedQuery("2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.9.8.0.0.0.0.d.f.ip6.arpa", mdns.TypePTR, 0),
		seedQuery("example.test", mdns.TypeA, 4096),
		seedQuery("db", mdns.TypeMX, 0),
		seedQuery(".", mdns.TypeNS, 512),
		{0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0x0c}, // compression loop
		{0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0},                                              // a response
		{0xff},
		seedQuery("secret", mdns.TypeA, 0),                      // local on the internal network
		seedQuery("2.0.90.10.in-addr.arpa", mdns.TypePTR, 1232), // its PTR
		seedQuery("6f6e65.exfil.test", mdns.TypeTXT, 4096),      // what must not leave it
		seedQuery("11.0.0.127.in-addr.arpa", mdns.TypePTR, 0),
		{0x12, 0x34, 0x29, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0, 0, 1, 0, 1},                // opcode UPDATE
		{0x12, 0x34, 0x01, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0, 0, 1, 0, 1, 0, 0, 1, 0, 1}, // two questions
	} {
		for _, internal := range []bool{false, true} {
			f.Add(seed, uint16(0), internal)
			f.Add(seed, uint16(3000), internal)
		}
	}
	s := New(Config{Upstreams: []string{"192.0.2.1"}})
	defer s.Close()
	s.Update(append(slices.Clone(webRecords), Record{Network: "web", Name: "bad name\x00", Addrs: addrs("10.89.0.99")},
		Record{Network: "web", Name: "many", Addrs: manyAddrs(100)}))
	s.SetNetworks([]Network{{Name: "back", Internal: true}})
	web := &served{Namespace: Namespace{Networks: []string{"web"}}}
	back := &served{Namespace: Namespace{Networks: []string{"back"}}}
	f.Fuzz(func(t *testing.T, pkt []byte, pad uint16, internal bool) {
		ns := web
		if internal {
			ns = back
		}
		s.exchange = func(_ context.Context, from *origin, ups []string, q []byte, _ bool) ([]byte, error) {
			if internal {
				t.Fatalf("query %x from an internal-only namespace forwarded to %v", pkt, ups)
			}
			r := append([]byte(nil), q...)
			r[2] |= 0x80
			return append(r, make([]byte, pad)...), nil
		}
		for _, tcp := range []bool{false, true} {
			resp := s.respond(context.Background(), ns, pkt, tcp)
			if resp == nil {
				continue
			}
			if len(resp) < headerSize || len(pkt) < 2 || binary.BigEndian.Uint16(resp) != binary.BigEndian.Uint16(pkt) {
				t.Fatalf("reply %x does not carry the query's id", resp)
			}
			if resp[2]&0x80 == 0 {
				t.Fatalf("reply %x lacks the QR bit", resp)
			}
			if !tcp && len(resp) > maxUDP {
				t.Fatalf("UDP reply of %d bytes", len(resp))
			}
		}
	})
}

func manyAddrs(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = netip.AddrFrom4([4]byte{10, 89, 2, byte(i)})
	}
	return out
}
