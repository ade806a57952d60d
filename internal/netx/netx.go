// Package netx holds the kernel helpers of ctnet: bridges, veth pairs,
// addresses and routes over vishvananda/netlink. Every function acts in the
// namespace of the *netlink.Handle it is given (netlink.NewHandleAt); none
// assumes the process's current namespace, and link facts come from netlink,
// never from /sys/class/net.
package netx

import (
	"errors"
	"fmt"
	"reflect"
	"unsafe"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
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
func Links(h *netlink.Handle) ([]netlink.Link, error) {
	return retryDump(h.LinkList)
}

// Addrs lists the addresses of l (nil: of every link), retrying
// interrupted dumps.
func Addrs(h *netlink.Handle, l netlink.Link) ([]netlink.Addr, error) {
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
func LinkOrNil(h *netlink.Handle, name string) (netlink.Link, error) {
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
func DeleteLink(h *netlink.Handle, name string) error {
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

// rawRequest starts a netlink request that goes out on h's own socket, so it
// acts in h's namespace. vishvananda/netlink does not export the socket, nor
// can its Link types carry IFLA_MASTER at creation or decode the bridge id
// and STP state; both need a hand-built message. Reading the unexported
// field is pinned by the module version in go.mod and checked at run time.
func rawRequest(h *netlink.Handle, proto, flags int) (*nl.NetlinkRequest, error) {
	socks, err := handleSockets(h)
	if err != nil {
		return nil, err
	}
	return &nl.NetlinkRequest{
		NlMsghdr: unix.NlMsghdr{
			Len:   unix.SizeofNlMsghdr,
			Type:  uint16(proto),
			Flags: unix.NLM_F_REQUEST | uint16(flags),
		},
		Sockets: socks,
	}, nil
}

var socketsType = reflect.TypeFor[map[int]*nl.SocketHandle]()

func handleSockets(h *netlink.Handle) (map[int]*nl.SocketHandle, error) {
	if h == nil {
		return nil, errors.New("netlink handle is nil")
	}
	f := reflect.ValueOf(h).Elem().FieldByName("sockets")
	if !f.IsValid() || f.Type() != socketsType {
		return nil, errors.New("netlink.Handle has no sockets field of the expected type; netx needs updating for this vishvananda/netlink version")
	}
	socks := *(*map[int]*nl.SocketHandle)(unsafe.Pointer(f.UnsafeAddr()))
	if socks[unix.NETLINK_ROUTE] == nil {
		// Without a socket the request would act in the calling thread's namespace.
		return nil, errors.New("netlink handle has no NETLINK_ROUTE socket; make it with netlink.NewHandleAt")
	}
	return socks, nil
}
