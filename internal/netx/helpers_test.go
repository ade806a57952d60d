package netx

import (
	"net"
	"os"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/ctnet/ctnet/internal/namespace"
)

func needRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root to create network namespaces")
	}
}

// newNS makes a fresh network namespace without moving the caller's thread
// and returns it with a handle bound to it; both go away in Cleanup.
func newNS(tb testing.TB) (netns.NsHandle, *Handle) {
	tb.Helper()
	ns, err := namespace.Fresh()
	if err != nil {
		tb.Fatalf("new netns: %v", err)
	}
	h, err := Open(ns)
	if err != nil {
		ns.Close()
		tb.Fatalf("handle at netns: %v", err)
	}
	tb.Cleanup(func() {
		h.Close()
		ns.Close()
	})
	return ns, h
}

func mustCIDR(tb testing.TB, s string) *net.IPNet {
	tb.Helper()
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		tb.Fatal(err)
	}
	n.IP = ip
	return n
}

func mustLink(tb testing.TB, h *Handle, name string) netlink.Link {
	tb.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		tb.Fatalf("link %q: %v", name, err)
	}
	return l
}

// addLink adds a veth pair name/name+"p" inside h's namespace, both ends up
// (this kernel has no dummy driver), and returns the end called name.
func addLink(tb testing.TB, h *Handle, name string, mtu int) netlink.Link {
	tb.Helper()
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu, TxQLen: -1}, PeerName: name + "p"}
	if err := h.LinkAdd(v); err != nil {
		tb.Fatalf("add veth %q: %v", name, err)
	}
	for _, n := range []string{name + "p", name} {
		if err := h.LinkSetUp(mustLink(tb, h, n)); err != nil {
			tb.Fatalf("set %q up: %v", n, err)
		}
	}
	return mustLink(tb, h, name)
}
