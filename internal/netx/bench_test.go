package netx

import (
	"fmt"
	"net"
	"testing"

	"github.com/ctnet/ctnet/internal/namespace"
)

// BenchmarkAddVeth measures one AddVeth into a fresh container namespace,
// the host end going onto a bridge that already has the given number of
// ports (made the same way, peers up in one other namespace, as on a network
// whose containers are all IPv4-only or all not). Namespace creation
// is outside the timer; each used namespace is dropped at once, so the kernel
// reclaims its veth in the background as it would for a stopped container.
func BenchmarkAddVeth(b *testing.B) {
	for _, ports := range []int{0, 500} {
		for _, v6off := range []bool{false, true} {
			b.Run(fmt.Sprintf("ports=%d/disableIPv6=%v", ports, v6off), func(b *testing.B) {
				benchAddVeth(b, ports, v6off)
			})
		}
	}
}

func benchAddVeth(b *testing.B, ports int, v6off bool) {
	needRoot(b)
	_, h := newNS(b)
	others, oh := newNS(b)
	br, err := EnsureBridge(h, "nxbr0", 1500, []*net.IPNet{mustCIDR(b, "10.77.0.1/16")})
	if err != nil {
		b.Fatal(err)
	}
	for i := range ports {
		s := VethSpec{HostName: fmt.Sprintf("nxp%d", i), PeerName: fmt.Sprintf("nxq%d", i), PeerNS: others, MTU: 1500, MasterIndex: br.Attrs().Index, DisableIPv6: v6off}
		if err := AddVeth(h, s); err != nil {
			b.Fatal(err)
		}
		if err := oh.LinkSetUp(mustLink(b, oh, s.PeerName)); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		ns, err := namespace.Fresh()
		if err != nil {
			b.Fatal(err)
		}
		s := VethSpec{HostName: fmt.Sprintf("nxv%07x", i), PeerName: "eth0", PeerNS: ns, MTU: 1500, MasterIndex: br.Attrs().Index, DisableIPv6: v6off}
		b.StartTimer()
		err = AddVeth(h, s)
		b.StopTimer()
		ns.Close()
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
