// Package netx holds the kernel helpers of ctnet: bridges, veth pairs,
// addresses and routes over vishvananda/netlink. Every function acts in the
// namespace of the Handle it is given; none assumes the process's current
// namespace, and link facts come from netlink, never from /sys/class/net.
package netx

import (
	"errors"
	"fmt"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// MaxIfNameLen is the kernel's limit on interface names (IFNAMSIZ-1).
const MaxIfNameLen = unix.IFNAMSIZ - 1

// dumpRetries bounds the retries of a dump the kernel marked interrupted
// (NLM_F_DUMP_INTR) because links, addresses or routes changed meanwhile.
const dumpRetries = 5

// retryDump runs a netlink dump until it is not interrupted, at most
// dumpRetries times, in the manner of CNI's netlinksafe.
func retryDump[T any](dump func() (T, error)) (T, error) {
	var v T
	var err error
	for range dumpRetries {
		v, err = dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, fmt.Errorf("still interrupted after %d tries: %w", dumpRetries, err)
}

// Links lists the links of h's namespace, retrying interrupted dumps (links
// come and go while containers start and the kernel reclaims namespaces).
func Links(h *Handle) ([]netlink.Link, error) {
	return retryDump(h.LinkList)
}

// Addrs lists the addresses of l (nil: of every link), retrying
// interrupted dumps.
func Addrs(h *Handle, l netlink.Link) ([]netlink.Addr, error) {
	return retryDump(func() ([]netlink.Addr, error) { return h.AddrList(l, netlink.FAMILY_ALL) })
}

// ValidIfName reports whether name can be an interface name.
func ValidIfName(name string) error {
	switch {
	case name == "":
		return errors.New("interface name is empty")
	case len(name) > MaxIfNameLen:
		return fmt.Errorf("interface name %q is %d bytes, longer than the kernel's limit of %d", name, len(name), MaxIfNameLen)
	case name == "." || name == "..":
		return fmt.Errorf("interface name %q is not allowed", name)
	}
	for _, c := range []byte(name) {
		if c == '/' || c == ':' || c <= ' ' || c == 0x7f {
			return fmt.Errorf("interface name %q contains %q", name, c)
		}
	}
	return nil
}

// LinkOrNil returns the link called name, or nil if there is none.
func LinkOrNil(h *Handle, name string) (netlink.Link, error) {
	l, err := h.LinkByName(name)
	if err != nil {
		if isNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("link %q: %w", name, err)
	}
	return l, nil
}

// DeleteLink deletes the link called name; a missing link is not an error.
func DeleteLink(h *Handle, name string) error {
	l, err := LinkOrNil(h, name)
	if err != nil || l == nil {
		return err
	}
	if err := h.LinkDel(l); err != nil && !isNotFound(err) {
		return fmt.Errorf("link %q: delete: %w", name, err)
	}
	return nil
}

func isNotFound(err error) bool {
	var lnf netlink.LinkNotFoundError
	return errors.As(err, &lnf) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT)
}

// Handle is ctnet's netlink handle in one network namespace: vishvananda's
// Handle for the requests that library builds, and a socket of ctnet's own
// (made on first use, through the library's exported socket API) for those
// it cannot: a veth whose host end is enslaved at creation, and the bridge id
// and STP state of a link dump. Both act in the namespace the Handle was
// opened on, never in the calling thread's. A Handle is safe for concurrent
// use.
type Handle struct {
	*netlink.Handle
	ns  netns.NsHandle
	mu  sync.Mutex
	raw *nl.SocketHandle
}

// Open returns a handle acting in ns; ns is duplicated, so the caller may
// close its own.
func Open(ns netns.NsHandle) (*Handle, error) {
	fd, err := unix.FcntlInt(uintptr(ns), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("netlink: namespace handle: %w", err)
	}
	own := netns.NsHandle(fd)
	h, err := netlink.NewHandleAt(own, unix.NETLINK_ROUTE)
	if err != nil {
		own.Close()
		return nil, fmt.Errorf("netlink: %w", err)
	}
	return &Handle{Handle: h, ns: own}, nil
}

// NS is the namespace the handle acts in (owned by the handle).
func (h *Handle) NS() netns.NsHandle { return h.ns }

// Close releases the sockets and the namespace handle.
func (h *Handle) Close() {
	h.Handle.Close()
	h.mu.Lock()
	if h.raw != nil {
		h.raw.Close()
		h.raw = nil
	}
	h.mu.Unlock()
	h.ns.Close()
}

// request starts a netlink request that goes out on the handle's own socket.
func (h *Handle) request(proto, flags int) (*nl.NetlinkRequest, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.raw == nil {
		s, err := nl.GetNetlinkSocketAt(h.ns, netns.None(), unix.NETLINK_ROUTE)
		if err != nil {
			return nil, fmt.Errorf("netlink socket: %w", err)
		}
		h.raw = &nl.SocketHandle{Socket: s}
	}
	return &nl.NetlinkRequest{
		NlMsghdr: unix.NlMsghdr{
			Len:   unix.SizeofNlMsghdr,
			Type:  uint16(proto),
			Flags: unix.NLM_F_REQUEST | uint16(flags),
		},
		Sockets: map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: h.raw},
	}, nil
}
