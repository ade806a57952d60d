package netx

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// BridgeMAC is the MAC address EnsureBridge gives bridge name: locally
// administered, unicast and derived from the name. A bridge whose address
// was set explicitly keeps its bridge id when ports come and go, and the
// same name gets the same id again after a reboot or a reconcile.
func BridgeMAC(name string) net.HardwareAddr {
	sum := sha256.Sum256([]byte("ctnet bridge " + name))
	mac := net.HardwareAddr(sum[:6])
	mac[0] = mac[0]&^0x01 | 0x02
	return mac
}

// EnsureBridge creates bridge name if it is missing (STP off, the given MTU,
// MAC BridgeMAC(name), up) and makes sure every address in addrs is on it.
// An existing bridge gets its MTU corrected and is brought up. It returns the
// link as the kernel has it afterwards.
func EnsureBridge(h *Handle, name string, mtu int, addrs []*net.IPNet) (netlink.Link, error) {
	if err := ValidIfName(name); err != nil {
		return nil, fmt.Errorf("bridge: %w", err)
	}
	l, err := LinkOrNil(h, name)
	if err != nil {
		return nil, fmt.Errorf("bridge %q: %w", name, err)
	}
	created, success := false, false
	defer func() {
		if created && !success {
			_ = DeleteLink(h, name)
		}
	}()
	if l == nil {
		// No MTU here: see the explicit set below. Born down, so that
		// duplicate address detection is off before its link-local exists.
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{
			Name:         name,
			TxQLen:       -1,
			HardwareAddr: BridgeMAC(name),
		}}
		// STP is off by default in the kernel; ctnet never turns it on.
		err := h.LinkAdd(br)
		switch {
		case err == nil:
			created = true
		case !errors.Is(err, unix.EEXIST): // EEXIST: someone else made it meanwhile
			return nil, fmt.Errorf("bridge %q: create: %w", name, err)
		}
		if l, err = h.LinkByName(name); err != nil {
			return nil, fmt.Errorf("bridge %q: %w", name, err)
		}
	}
	if _, ok := l.(*netlink.Bridge); !ok {
		return nil, fmt.Errorf("bridge %q: device exists and is a %s, not a bridge", name, l.Type())
	}
	changed := false
	// An MTU given only at creation is not "set by the user" for the kernel,
	// which then follows the smallest port and drifts back to 1500 when the
	// last port leaves; a set that changes the MTU pins it (a set to the
	// value it already has is ignored, hence none at creation).
	if mtu > 0 && l.Attrs().MTU != mtu {
		if err := h.LinkSetMTU(l, mtu); err != nil {
			return nil, fmt.Errorf("bridge %q: set mtu %d: %w", name, mtu, err)
		}
		changed = true
	}
	if created {
		// The bridge's MAC is ctnet's own (BridgeMAC), so its link-local
		// address cannot clash; waiting a second for DAD would only keep
		// the bridge from answering IPv6 neighbours (first connections to
		// a published port on IPv6 stalled on it).
		// A kernel without IPv6 has no ipv6 tree: nothing to turn off.
		if err := SetSysctl(h, "/proc/sys/net/ipv6/conf/"+name+"/accept_dad", "0"); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("bridge %q: %w", name, err)
		}
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(l); err != nil {
			return nil, fmt.Errorf("bridge %q: set up: %w", name, err)
		}
		changed = true
	}
	if err := ensureAddrs(h, l, addrs); err != nil {
		return nil, fmt.Errorf("bridge %q: %w", name, err)
	}
	if changed {
		if l, err = h.LinkByName(name); err != nil {
			return nil, fmt.Errorf("bridge %q: %w", name, err)
		}
	}
	success = true
	return l, nil
}

// ensureAddrs adds each of addrs to l unless it is there already. The same
// address with another prefix length is a conflict the caller must resolve.
func ensureAddrs(h *Handle, l netlink.Link, addrs []*net.IPNet) error {
	if len(addrs) == 0 {
		return nil
	}
	have, err := Addrs(h, l)
	if err != nil {
		return fmt.Errorf("list addresses: %w", err)
	}
next:
	for _, want := range addrs {
		for _, a := range have {
			if !a.IP.Equal(want.IP) {
				continue
			}
			if a.IPNet.String() == want.String() {
				continue next
			}
			return fmt.Errorf("address %s wanted but %s is there; remove it or pick another subnet", want, a.IPNet)
		}
		if err := addAddr(h, l, want); err != nil {
			return err
		}
	}
	return nil
}

// addAddr adds ip to l; IPv6 without duplicate address detection so that it
// is usable at once. An address already there is not an error.
func addAddr(h *Handle, l netlink.Link, ip *net.IPNet) error {
	a := &netlink.Addr{IPNet: ip}
	if ip.IP.To4() == nil {
		a.Flags = unix.IFA_F_NODAD
	}
	if err := h.AddrAdd(l, a); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add address %s: %w", ip, err)
	}
	return nil
}

// IPNet is p as the net package has it, the address kept (not masked).
func IPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
