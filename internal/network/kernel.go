package network

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ctnet/ctnet/internal/driver"
	"github.com/ctnet/ctnet/internal/errdefs"
	"github.com/ctnet/ctnet/internal/namespace"
	"github.com/ctnet/ctnet/internal/netx"
)

// Kernel is what the service itself asks of the kernel; everything that
// changes it is the drivers' work.
type Kernel interface {
	// BootID changes with every boot: runtime state from another boot is stale.
	BootID() []byte
	// HostPrefixes are the host's addresses and routes, which a new
	// network's subnet must not overlap.
	HostPrefixes() ([]netip.Prefix, error)
	// OpenNamespace opens the namespace an attachment goes into.
	OpenNamespace(path string) (Namespace, error)
	// NamespaceKey is the identity of the namespace at path now, "" if none.
	NamespaceKey(path string) string
	// Listening reports whether a host process holds proto/addr:port (no
	// address: every address).
	Listening(proto string, addr netip.Addr, port uint16) bool
	// TCPListeners are the TCP ports host processes listen on.
	TCPListeners() map[uint16]bool
}

// Namespace is an open namespace an attachment goes into; it is the
// driver's sandbox.
type Namespace interface {
	driver.Sandbox
	Key() string
	NextIfName(prefix string) (string, error)
	HasLink(name string) (bool, error)
	// SetDefaultRoute points the namespace's default route of gw's family
	// at gw on the interface ifname. Which of a namespace's networks holds
	// the default route is the service's choice (as Docker's), not a
	// driver's: it spans the namespace's attachments.
	SetDefaultRoute(ifname string, gw netip.Addr) error
	Close()
}

type hostKernel struct {
	self *namespace.NS
	host *netx.Handle
}

// HostKernel is the kernel as seen from the calling thread's namespace,
// which the service takes as the host.
func HostKernel() (*hostKernel, error) {
	self, err := namespace.Current()
	if err != nil {
		return nil, err
	}
	h, err := netx.Open(self.Handle)
	if err != nil {
		self.Close()
		return nil, err
	}
	return &hostKernel{self: self, host: h}, nil
}

func (k *hostKernel) Close() error {
	k.host.Close()
	return k.self.Close()
}

func (k *hostKernel) BootID() []byte {
	b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return bytes.TrimSpace(b)
}

func (k *hostKernel) HostPrefixes() ([]netip.Prefix, error) {
	nets, err := netx.HostPrefixes(k.host)
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, n := range nets {
		a, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		ones, _ := n.Mask.Size()
		out = append(out, netip.PrefixFrom(a.Unmap(), ones).Masked())
	}
	return out, nil
}

func (k *hostKernel) NamespaceKey(path string) string { return namespace.KeyOf(path) }

func (k *hostKernel) OpenNamespace(path string) (Namespace, error) {
	ns, err := namespace.Open(path)
	if errors.Is(err, namespace.ErrNoPath) {
		return nil, errdefs.Field("netns", "no namespace given; pass {field} PATH (for example /proc/PID/ns/net or /run/netns/NAME)")
	}
	if err != nil {
		return nil, &errdefs.Error{Kind: errdefs.NotFound, Field: "netns", Msg: err.Error(), Err: err}
	}
	if ns.Key == k.self.Key {
		ns.Close()
		return nil, errdefs.Field("netns", fmt.Sprintf("%s is the host's own network namespace (the one ctnet runs in); attaching it would take over the host's routes: give a container's or a namespace of its own", path))
	}
	h, err := netx.Open(ns.Handle)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("namespace %s: %w", path, err)
	}
	return &openNS{ns: ns, h: h}, nil
}

type openNS struct {
	ns *namespace.NS
	h  *netx.Handle
}

func (o *openNS) Key() string          { return o.ns.Key }
func (o *openNS) Path() string         { return o.ns.Path }
func (o *openNS) Handle() *netx.Handle { return o.h }
func (o *openNS) Close()               { o.h.Close(); o.ns.Close() }

func (o *openNS) NextIfName(prefix string) (string, error) { return netx.NextIfName(o.h, prefix) }

func (o *openNS) SetDefaultRoute(ifname string, gw netip.Addr) error {
	return netx.SetDefaultRoute(o.h, ifname, gw.AsSlice())
}

func (o *openNS) HasLink(name string) (bool, error) {
	l, err := netx.LinkOrNil(o.h, name)
	return l != nil, err
}

func (k *hostKernel) Listening(proto string, addr netip.Addr, port uint16) bool {
	ip := ""
	if addr.IsValid() {
		ip = addr.String()
	}
	hostport := net.JoinHostPort(ip, strconv.Itoa(int(port)))
	switch proto {
	case "tcp":
		l, err := net.Listen("tcp", hostport)
		if err != nil {
			return errors.Is(err, unix.EADDRINUSE)
		}
		l.Close()
	case "udp":
		c, err := net.ListenPacket("udp", hostport)
		if err != nil {
			return errors.Is(err, unix.EADDRINUSE)
		}
		c.Close()
	}
	return false
}

// ShowBridges writes the bridges of the calling thread's namespace (all, or
// those named) exactly as `brctl show` prints them; it needs no state and no
// privileges.
func ShowBridges(w io.Writer, names ...string) error {
	self, err := namespace.Current()
	if err != nil {
		return err
	}
	defer self.Close()
	h, err := netx.Open(self.Handle)
	if err != nil {
		return err
	}
	defer h.Close()
	bs, err := netx.Bridges(h, names...)
	if err != nil {
		return err
	}
	return netx.WriteBrctl(w, bs)
}

func (k *hostKernel) TCPListeners() map[uint16]bool {
	out := map[uint16]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, _ := os.ReadFile(f)
		for _, line := range strings.Split(string(b), "\n")[1:] {
			// sl local_address rem_address st …; st 0A is LISTEN
			fs := strings.Fields(line)
			if len(fs) < 4 || fs[3] != "0A" {
				continue
			}
			if i := strings.LastIndexByte(fs[1], ':'); i >= 0 {
				if p, err := strconv.ParseUint(fs[1][i+1:], 16, 16); err == nil {
					out[uint16(p)] = true
				}
			}
		}
	}
	return out
}
