package main

import (
	"fmt"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// BenchmarkFloorAttach is the in-process floor: one container's netlink work,
// in a throwaway host namespace with n namespaces already on the bridge.
func BenchmarkFloorAttach(b *testing.B) {
	for _, n := range []int{0, 100, 500} {
		b.Run(fmt.Sprintf("onbridge=%d", n), func(b *testing.B) { benchAttach(b, n) })
	}
}

func benchAttach(b *testing.B, n int) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: creates network namespaces")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		b.Fatal(err)
	}
	defer orig.Close()
	defer netns.Set(orig)
	host, err := netns.New()
	if err != nil {
		b.Fatal(err)
	}
	defer host.Close()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "bnfl0"}}
	if err := netlink.LinkAdd(br); err != nil {
		b.Fatal(err)
	}
	addr, _ := netlink.ParseAddr("10.77.0.1/16")
	netlink.AddrAdd(br, addr)
	netlink.LinkSetUp(br)
	var held []netns.NsHandle
	defer func() {
		for _, h := range held {
			h.Close()
		}
	}()
	newNS := func() netns.NsHandle {
		ns, err := netns.New()
		if err != nil {
			b.Fatal(err)
		}
		if err := netns.Set(host); err != nil {
			b.Fatal(err)
		}
		held = append(held, ns)
		return ns
	}
	attach := func(i int) {
		ns := newNS()
		a := fmt.Sprintf("10.77.%d.%d/16", (i+2)/250, (i+2)%250+1)
		if err := attachNS(ns, "bench", "bnfl0", fmt.Sprintf("bnf%07x", i), a, "10.77.0.1"); err != nil {
			b.Fatal(err)
		}
	}
	for i := 0; i < n; i++ {
		attach(i)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		ns := newNS()
		a := fmt.Sprintf("10.77.%d.%d/16", (n+i+2)/250, (n+i+2)%250+1)
		b.StartTimer()
		if err := attachNS(ns, "bench", "bnfl0", fmt.Sprintf("bnf%07x", n+i), a, "10.77.0.1"); err != nil {
			b.Fatal(err)
		}
	}
}
