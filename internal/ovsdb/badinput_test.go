package ovsdb

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
)

// TestBadInput: every refused request says what and which in one line and
// changes nothing in the database.
func TestBadInput(t *testing.T) {
	e := newEnv(t, false)
	c := e.c
	e.mustBridge(t, BridgeSpec{Name: "br0", DatapathType: DatapathNetdev})
	e.mustBridge(t, BridgeSpec{Name: "br1", DatapathType: DatapathNetdev})
	e.mustPort(t, PortSpec{Bridge: "br0", Name: "veth0", Tag: Tag(10)})
	e.mustPort(t, PortSpec{Bridge: "br0", Name: "gw0", Type: "internal"})
	e.mustPort(t, PortSpec{Bridge: "br0", Name: "p0", Type: "patch", Peer: "p1"})
	before := e.dump(t)

	long := "abcdefghijklmnop" // 16 bytes
	names := []string{"", long, "a/b", "a b", "a:b", ".", "..", "tab\there", "nl\n", "del\x7f", "x\x00y"}
	type call struct {
		what string
		do   func(context.Context) error
		want string // in the message
	}
	var calls []call
	for _, n := range names {
		n := n
		calls = append(calls,
			call{"bridge name " + n, func(cx context.Context) error { return c.EnsureBridge(cx, BridgeSpec{Name: n}) }, "bridge"},
			call{"delete bridge " + n, func(cx context.Context) error { return c.DeleteBridge(cx, n) }, "bridge"},
			call{"port name " + n, func(cx context.Context) error { return c.AddPort(cx, PortSpec{Bridge: "br0", Name: n}) }, "port"},
			call{"port's bridge " + n, func(cx context.Context) error { return c.AddPort(cx, PortSpec{Bridge: n, Name: "vethx"}) }, "bridge"},
			call{"delete port " + n, func(cx context.Context) error { return c.DeletePort(cx, "br0", n) }, "port"},
			call{"patch peer " + n, func(cx context.Context) error {
				return c.AddPort(cx, PortSpec{Bridge: "br0", Name: "px", Type: "patch", Peer: n})
			}, "peer"},
		)
	}
	port := func(p PortSpec) func(context.Context) error {
		return func(cx context.Context) error {
			if p.Bridge == "" {
				p.Bridge = "br0"
			}
			if p.Name == "" {
				p.Name = "vethx"
			}
			return c.AddPort(cx, p)
		}
	}
	bridge := func(b BridgeSpec) func(context.Context) error {
		return func(cx context.Context) error { return c.EnsureBridge(cx, b) }
	}
	calls = append(calls,
		call{"tag -1", port(PortSpec{Tag: Tag(-1)}), "VLAN tag -1 out of range 0..4095"},
		call{"tag 4096", port(PortSpec{Tag: Tag(4096)}), "VLAN tag 4096"},
		call{"tag 1<<20", port(PortSpec{Tag: Tag(1 << 20)}), "out of range"},
		call{"MTU 10", port(PortSpec{MTU: 10}), "MTU 10"},
		call{"MTU 70000", port(PortSpec{MTU: 70000}), "MTU 70000"},
		call{"negative MTU", port(PortSpec{MTU: -1}), "MTU -1"},
		call{"unknown type", port(PortSpec{Type: "warp"}), `unknown interface type "warp"`},
		call{"patch without peer", port(PortSpec{Type: "patch"}), "needs a peer"},
		call{"patch to itself", port(PortSpec{Name: "px", Type: "patch", Peer: "px"}), "own peer"},
		call{"peer on a veth", port(PortSpec{Peer: "p1"}), "only for a patch port"},
		call{"peer as option", port(PortSpec{Type: "patch", Peer: "p9", Options: map[string]string{"peer": "p8"}}), "as Peer"},
		call{"MAC on a veth", port(PortSpec{MAC: "02:00:00:00:00:01"}), "only on an internal port"},
		call{"bad MAC", port(PortSpec{Type: "internal", MAC: "02:00:00:00:01"}), "not an Ethernet address"},
		call{"long MAC", port(PortSpec{Type: "internal", MAC: "02:00:00:00:00:00:00:01"}), "not an Ethernet address"},
		call{"multicast MAC", port(PortSpec{Type: "internal", MAC: "01:00:5e:00:00:01"}), "multicast"},
		call{"empty external_ids key", port(PortSpec{ExternalIDs: map[string]string{"": "x"}}), "external_ids key is empty"},
		call{"empty iface external_ids key", port(PortSpec{IfaceExternalIDs: map[string]string{"": "x"}}), "external_ids key is empty"},
		call{"missing bridge", port(PortSpec{Bridge: "nosuch"}), `no bridge "nosuch"; create it first`},
		call{"port on another bridge", port(PortSpec{Bridge: "br1", Name: "veth0", Tag: Tag(10)}), "exists on bridge br0"},
		call{"port with another tag", port(PortSpec{Name: "veth0", Tag: Tag(11)}), "tag 10"},
		call{"port untagged", port(PortSpec{Name: "veth0"}), "tag 10"},
		call{"port of another type", port(PortSpec{Name: "gw0"}), `type "internal"`},
		call{"patch with another peer", port(PortSpec{Name: "p0", Type: "patch", Peer: "p2"}), `options:peer="p1"`},
		call{"bridge's own port", port(PortSpec{Bridge: "br1", Name: "br0", Type: "internal"}), "exists on bridge br0"},
		call{"delete port from the wrong bridge", func(cx context.Context) error { return c.DeletePort(cx, "br1", "veth0") }, "is on bridge br0"},
		call{"unknown datapath", bridge(BridgeSpec{Name: "br2", DatapathType: "dpdk"}), `unknown datapath type "dpdk"`},
		call{"datapath case", bridge(BridgeSpec{Name: "br2", DatapathType: "Netdev"}), "unknown datapath type"},
		call{"other datapath", bridge(BridgeSpec{Name: "br0", DatapathType: DatapathSystem}), `exists with datapath type "netdev"`},
		call{"bridge MTU", bridge(BridgeSpec{Name: "br2", MTU: 67}), "MTU 67"},
		call{"bridge external_ids", bridge(BridgeSpec{Name: "br2", ExternalIDs: map[string]string{"": "1"}}), "external_ids key is empty"},
	)
	for _, cl := range calls {
		err := cl.do(ctx(t))
		if err == nil {
			t.Errorf("%s: accepted", cl.what)
			continue
		}
		msg := err.Error()
		if strings.Contains(msg, "\n") || !strings.Contains(msg, cl.want) {
			t.Errorf("%s: %q, want one line with %q", cl.what, msg, cl.want)
		}
	}
	if after := e.dump(t); after != before {
		t.Errorf("bad input changed the database:\nbefore %s\nafter  %s", before, after)
	}
	// good input that is already so changes nothing either
	for _, p := range []PortSpec{{Bridge: "br0", Name: "veth0", Tag: Tag(10)}, {Bridge: "br0", Name: "gw0", Type: "internal"},
		{Bridge: "br0", Name: "p0", Type: "patch", Peer: "p1"}} {
		if err := c.AddPort(ctx(t), p); err != nil {
			t.Errorf("adding %s again: %v", p.Name, err)
		}
	}
	for _, n := range []string{"nosuch", "br0"} {
		if err := c.DeletePort(ctx(t), "", n+"x"); err != nil {
			t.Errorf("deleting missing port %sx: %v", n, err)
		}
	}
	if err := c.DeleteBridge(ctx(t), "nosuch"); err != nil {
		t.Errorf("deleting a missing bridge: %v", err)
	}
	if after := e.dump(t); after != before {
		t.Errorf("repeated requests changed the database:\nbefore %s\nafter  %s", before, after)
	}
}

// TestNoRootRow: a database never initialised (no Open_vSwitch row) is
// named as such, and nothing is left in it.
func TestNoRootRow(t *testing.T) {
	e := newEnv(t, false)
	if _, err := e.c.Transact(ctx(t), DB, Delete{Table: "Open_vSwitch"}); err != nil {
		t.Fatal(err)
	}
	for what, err := range map[string]error{
		"ensure": e.c.EnsureBridge(ctx(t), BridgeSpec{Name: "br0"}),
		"sync":   e.c.Sync(ctx(t)),
	} {
		if err == nil || !strings.Contains(err.Error(), "not initialised") {
			t.Errorf("%s: %v", what, err)
		}
	}
	if _, err := e.c.System(ctx(t)); err == nil {
		t.Error("System of a database without its root row succeeded")
	}
	e.emptyDB(t)
}

// TestHelpersConcurrent: callers racing to ensure the same bridge and to add
// the same and different ports all succeed, each change landing once.
func TestHelpersConcurrent(t *testing.T) {
	e := newEnv(t, false)
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, 4*n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := Dial(ctx(t), e.ovs.Socket) // separate connections, as separate ctnet processes
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			if err := c.EnsureBridge(ctx(t), BridgeSpec{Name: "br0", DatapathType: DatapathNetdev,
				ExternalIDs: map[string]string{fmt.Sprintf("k%d", i): "v"}}); err != nil {
				errs <- err
			}
			if err := c.AddPort(ctx(t), PortSpec{Bridge: "br0", Name: "shared", Tag: Tag(5)}); err != nil {
				errs <- err
			}
			if err := c.AddPort(ctx(t), PortSpec{Bridge: "br0", Name: fmt.Sprintf("own%d", i)}); err != nil {
				errs <- err
			}
			if i%2 == 0 {
				if err := c.DeletePort(ctx(t), "br0", fmt.Sprintf("own%d", i)); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	bs, err := e.c.Bridges(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 1 || len(bs[0].ExternalIDs) != n {
		t.Fatalf("bridges %+v", bs)
	}
	var names []string
	for _, p := range bs[0].Ports {
		names = append(names, p.Name)
	}
	slices.Sort(names)
	if fmt.Sprint(names) != "[br0 own1 own3 own5 own7 shared]" {
		t.Errorf("ports %v", names)
	}
}
