package ovsdb

import (
	"fmt"
	"testing"
)

// BenchmarkAddPort measures AddPort — the lookup transaction and the one
// that writes the port — on bridges that already hold 0 and 500 ports, and,
// with ovs-vswitchd running, AddPort of a real veth end followed by Sync
// (until the userspace datapath has the port): the OVS share of a
// container's attach; and ovs-vsctl doing the same. Each added port is deleted again outside the timer.
func BenchmarkAddPort(b *testing.B) {
	for _, n := range []int{0, 500} {
		b.Run(fmt.Sprintf("ports=%d", n), func(b *testing.B) {
			e := newEnv(b, false)
			if err := e.c.EnsureBridge(ctx(b), BridgeSpec{Name: "br0", DatapathType: DatapathNetdev}); err != nil {
				b.Fatal(err)
			}
			for i := 0; i < n; i++ {
				if err := e.c.AddPort(ctx(b), PortSpec{Bridge: "br0", Name: fmt.Sprintf("fill%d", i), Tag: Tag(10)}); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				name := fmt.Sprintf("veth%d", i)
				if err := e.c.AddPort(ctx(b), PortSpec{Bridge: "br0", Name: name, Tag: Tag(10),
					ExternalIDs: map[string]string{"ctnet-endpoint": name}}); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := e.c.DeletePort(ctx(b), "br0", name); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
	// The same transaction made by ovs-vsctl, as a driver that execs it
	// would pay (process start, schema fetch, nsenter included).
	b.Run("ovs-vsctl", func(b *testing.B) {
		e := newEnv(b, false)
		e.ovs.MustVsctl("--no-wait", "add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev")
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			name := fmt.Sprintf("veth%d", i)
			e.ovs.MustVsctl("--no-wait", "add-port", "br0", name, "tag=10", "--", "set", "port", name, "external_ids:ctnet-endpoint="+name)
			b.StopTimer()
			e.ovs.MustVsctl("--no-wait", "del-port", "br0", name)
			b.StartTimer()
		}
	})
	b.Run("veth+sync", func(b *testing.B) {
		e := newEnv(b, true)
		if err := e.c.EnsureBridge(ctx(b), BridgeSpec{Name: "br0", DatapathType: DatapathNetdev}); err != nil {
			b.Fatal(err)
		}
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			name := fmt.Sprintf("veth%d", i)
			e.s.Host.MustRun("ip", "link", "add", name, "type", "veth", "peer", "name", "p"+name)
			e.s.Host.MustRun("ip", "link", "set", name, "up")
			b.StartTimer()
			if err := e.c.AddPort(ctx(b), PortSpec{Bridge: "br0", Name: name, Tag: Tag(10)}); err != nil {
				b.Fatal(err)
			}
			if err := e.c.Sync(ctx(b)); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := e.c.CheckInterfaces(ctx(b), name); err != nil {
				b.Fatal(err)
			}
			if err := e.c.DeletePort(ctx(b), "br0", name); err != nil {
				b.Fatal(err)
			}
			e.s.Host.MustRun("ip", "link", "del", name)
			b.StartTimer()
		}
	})
}
