// Command floor does only the netlink work that attaching one container to a
// bridge cannot avoid: one request creating the veth pair with its inner end
// already inside the container's namespace under its final name and its host
// end enslaved and up, then address, up and default route inside. It is the
// yardstick the benchmark divides ctnet by.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func main() {
	nsPath := flag.String("netns", "", "container network namespace (path)")
	bridge := flag.String("bridge", "bnfl0", "bridge in the current namespace")
	hostIf := flag.String("host-if", "", "name of the host end of the veth")
	addr := flag.String("addr", "", "address of eth0, CIDR")
	gw := flag.String("gw", "", "default gateway")
	flag.Parse()
	start := time.Now()
	if err := attach(*nsPath, *bridge, *hostIf, *addr, *gw); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
	// The in-process cost, so the report can show process start separately.
	fmt.Println(time.Since(start).Nanoseconds())
}

func attach(nsPath, bridge, hostIf, cidr, gw string) error {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return fmt.Errorf("namespace %s: %w", nsPath, err)
	}
	defer ns.Close()
	return attachNS(ns, nsPath, bridge, hostIf, cidr, gw)
}

// attachNS works in the calling thread's namespace (the host) and in ns.
func attachNS(ns netns.NsHandle, nsPath, bridge, hostIf, cidr, gw string) error {
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("bridge %q: %w", bridge, err)
	}
	la := netlink.NewLinkAttrs()
	la.Name = hostIf
	la.MasterIndex = br.Attrs().Index
	la.Flags = net.FlagUp
	la.MTU = br.Attrs().MTU
	veth := &netlink.Veth{LinkAttrs: la, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ns))}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("veth %q: %w", hostIf, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("namespace %s: handle: %w", nsPath, err)
	}
	defer h.Close()
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("eth0 in %s: %w", nsPath, err)
	}
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		return fmt.Errorf("address %q: %w", cidr, err)
	}
	if err := h.AddrAdd(eth0, a); err != nil {
		return fmt.Errorf("eth0 in %s: add %s: %w", nsPath, cidr, err)
	}
	if err := h.LinkSetUp(eth0); err != nil {
		return fmt.Errorf("eth0 in %s: up: %w", nsPath, err)
	}
	r := &netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: net.ParseIP(gw)}
	if err := h.RouteAdd(r); err != nil {
		return fmt.Errorf("eth0 in %s: default via %s: %w", nsPath, gw, err)
	}
	return nil
}
