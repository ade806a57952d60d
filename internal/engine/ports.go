package engine

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ctnet/ctnet/internal/firewall"
	"github.com/ctnet/ctnet/internal/loopback"
	"github.com/ctnet/ctnet/internal/portspec"
	"github.com/ctnet/ctnet/internal/store"
)

// Published ports are elements of the firewall's DNAT maps, one batch per
// container: no proxy process, no rule per port. Ports on [::1], which no
// packet rewrite can serve, are entries of the loopback table instead (ports
// on every address get one too, so that [::1] answers for them as it does
// with Docker's proxy). The store keeps an index of host ports in use so
// that conflicts are found before anything changes.

func portKey(m portspec.Mapping) string {
	return fmt.Sprintf("%s/%d/%s", m.Proto, m.HostPort, m.HostIP)
}

// portOwner returns the container holding a host port that overlaps m: same
// protocol and port, and the same address or a wildcard of the same family
// on either side (m without an address means every address of both). A TCP
// or UDP port on every IPv4 address answers on [::1] too, as Docker's proxy
// does, so it also overlaps [::1] and every IPv6 address. Ports of the
// container self (already reserved, or being reserved) are no conflict.
func portOwner(tx store.Tx, m portspec.Mapping, self string) string {
	var owner string
	tx.ForEach(store.Ports, fmt.Sprintf("%s/%d/", m.Proto, m.HostPort), func(k string, v []byte) error {
		ip, err := netip.ParseAddr(k[strings.LastIndex(k, "/")+1:])
		if string(v) == self {
			return nil
		}
		if err != nil || !m.HostIP.IsValid() ||
			(ip.Is4() == m.HostIP.Is4() && (ip.IsUnspecified() || m.HostIP.IsUnspecified() || ip == m.HostIP)) ||
			(loopback.Supported(m.Proto) && (claimsLoopback6(ip) && claimsLoopback6(m.HostIP))) {
			owner = string(v)
		}
		return nil
	})
	return owner
}

// claimsLoopback6 tells whether a host address of a published TCP or UDP
// port makes it answer on [::1]: [::1] itself, and both wildcards.
func claimsLoopback6(ip netip.Addr) bool {
	return ip.IsUnspecified() || (ip.Is6() && ip.IsLoopback())
}

// hostListens reports whether a process on the host already holds the port:
// its traffic would be taken from it by the DNAT (or the [::1] redirection
// that comes with every IPv4 address), so Docker refuses too.
func hostListens(m portspec.Mapping) bool {
	ip := ""
	if m.HostIP.IsValid() {
		ip = m.HostIP.String()
	}
	if listening(m.Proto, net.JoinHostPort(ip, strconv.Itoa(int(m.HostPort)))) {
		return true
	}
	return m.HostIP == netip.IPv4Unspecified() && loopback.Supported(m.Proto) &&
		listening(m.Proto, net.JoinHostPort("::1", strconv.Itoa(int(m.HostPort))))
}

func listening(proto, addr string) bool {
	switch proto {
	case "tcp":
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return errors.Is(err, unix.EADDRINUSE)
		}
		l.Close()
	case "udp":
		c, err := net.ListenPacket("udp", addr)
		if err != nil {
			return errors.Is(err, unix.EADDRINUSE)
		}
		c.Close()
	}
	return false
}

// ephemeralRange is the kernel's local port range, where Docker picks host
// ports for `-p 80`.
func ephemeralRange() (uint16, uint16) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if f := strings.Fields(string(b)); err == nil && len(f) == 2 {
		lo, err1 := strconv.Atoi(f[0])
		hi, err2 := strconv.Atoi(f[1])
		if err1 == nil && err2 == nil && lo > 0 && hi <= 65535 && lo <= hi {
			return uint16(lo), uint16(hi)
		}
	}
	return 32768, 60999
}

// reservePorts chooses host ports for open mappings, checks every one
// against other containers and host listeners, and records them for c.
// lo6 is asked first whether [::1] can be served at all.
func reservePorts(tx store.Tx, c *Container, ms []portspec.Mapping, ipv6 bool, lo6 func() (*loopback.Table, error)) ([]portspec.Mapping, error) {
	if len(ms) == 0 {
		return nil, nil
	}
	for _, m := range ms {
		switch {
		case m.HostIP.Is6() && m.HostIP.IsLoopback():
			if !loopback.Supported(m.Proto) {
				return nil, fmt.Errorf("port %s: only tcp and udp can be published on [::1] (the kernel rewrites connect and sendmsg of those only); publish on 127.0.0.1", m)
			}
			if _, err := lo6(); err != nil {
				return nil, fmt.Errorf("port %s: %w", m, err)
			}
		case m.HostIP.Is6() && !ipv6:
			return nil, fmt.Errorf("port %s: the network has no IPv6, so the container has no IPv6 address to forward to; use a network made with --ipv6, or an IPv4 host address", m)
		}
	}
	lo, hi := ephemeralRange()
	taken := func(m portspec.Mapping) bool { return portOwner(tx, m, c.ID) != "" || hostListens(m) }
	ms, err := portspec.Allocate(ms, lo, hi, taken)
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	ms = portspec.ExpandFamilies(ms, ipv6)
	for _, m := range ms {
		if id := portOwner(tx, m, c.ID); id != "" {
			who := ShortID(id)
			if o, _ := getJSON[Container](tx, store.Containers, id); o != nil {
				who = strconv.Quote(o.Name)
			}
			return nil, fmt.Errorf("port %s: host port %d/%s is already published by container %s; pick another host port", m, m.HostPort, m.Proto, who)
		}
		if hostListens(m) {
			return nil, fmt.Errorf("port %s: a process on the host already listens on %d/%s; stop it or pick another host port", m, m.HostPort, m.Proto)
		}
		if err := tx.Put(store.Ports, portKey(m), []byte(c.ID)); err != nil {
			return nil, err
		}
	}
	return ms, nil
}

// published is how a container's ports are served: DNAT elements, and
// socket redirections for [::1] — asked for (-p [::1]:…), or that come with
// a port on every IPv6 address and are only a convenience.
type published struct {
	fw         []firewall.Port
	lo, loAlso []loopback.Port
}

func (p published) allLo() []loopback.Port { return append(slices.Clip(p.lo), p.loAlso...) }

// publishedPorts turns a container's mappings into what serves them on its
// endpoint; mappings of a family the container has no address of are left
// out, but [::1] reaches an IPv4-only container too. Ports on every address
// answer on [::1] only where a cgroup2 hierarchy is there for it.
func publishedPorts(c *Container, ep *Endpoint, bridgeName string, loUsable bool) published {
	var out published
	v4, _ := netip.ParsePrefix(ep.IPv4)
	v6, _ := netip.ParsePrefix(ep.IPv6)
	for _, m := range c.Ports {
		ctr := v4.Addr()
		if m.HostIP.Is6() && v6.IsValid() {
			ctr = v6.Addr()
		}
		if !ctr.IsValid() {
			continue
		}
		lp := loopback.Port{Proto: m.Proto, HostPort: m.HostPort, ContainerIP: ctr, ContainerPort: m.ContainerPort}
		if m.HostIP.Is6() && m.HostIP.IsLoopback() {
			out.lo = append(out.lo, lp)
			continue
		}
		if ctr.Is4() != m.HostIP.Is4() {
			continue
		}
		out.fw = append(out.fw, firewall.Port{
			Proto: m.Proto, HostIP: net.IP(m.HostIP.AsSlice()), HostPort: m.HostPort,
			ContainerIP: net.IP(ctr.AsSlice()), ContainerPort: m.ContainerPort, Bridge: bridgeName,
		})
		// Every address includes [::1]; with both wildcards, the IPv6 one serves it.
		if m.HostIP.IsUnspecified() && loUsable && loopback.Supported(m.Proto) &&
			(m.HostIP.Is6() || !slices.ContainsFunc(c.Ports, func(o portspec.Mapping) bool {
				return o.HostIP == netip.IPv6Unspecified() && o.Proto == m.Proto && o.HostPort == m.HostPort
			})) {
			out.loAlso = append(out.loAlso, lp)
		}
	}
	return out
}

// containerPorts finds what a container's ports are published as.
func (e *Engine) containerPorts(tx store.Tx, c *Container) (published, error) {
	if len(c.Ports) == 0 {
		return published{}, nil
	}
	eps, err := listJSON[Endpoint](tx, store.Endpoints, ownerOfContainer(c.ID))
	if err != nil {
		return published{}, err
	}
	for _, ep := range eps {
		if ep.Network == c.NetworkMode {
			n, err := findNetwork(tx, ep.NetworkID)
			if err != nil {
				return published{}, err
			}
			_, loErr := e.loopback()
			return publishedPorts(c, &ep, n.Bridge, loErr == nil), nil
		}
	}
	return published{}, nil
}

// publish programs the container's ports: one batch of map elements, and
// the [::1] entries.
func (e *Engine) publish(c *Container) error {
	var ports published
	if err := e.store.View(func(tx store.Tx) error {
		var err error
		ports, err = e.containerPorts(tx, c)
		return err
	}); err != nil {
		return err
	}
	if len(ports.fw) > 0 {
		fw, err := e.firewall()
		if err != nil {
			return err
		}
		err = fw.Publish(ports.fw)
		if errors.Is(err, firewall.ErrNoTable) {
			// Reconcile brings back the whole table, these ports included.
			_, err = e.Reconcile()
		}
		if err != nil {
			return fmt.Errorf("container %q: %w", c.Name, err)
		}
	}
	if all := ports.allLo(); len(all) > 0 {
		// One round for both: what fails is the cgroup or the programs, not
		// an entry, and only ports asked for on [::1] make that an error.
		lo, err := e.loopback()
		if err == nil {
			err = lo.Add(all)
		}
		switch {
		case err != nil && len(ports.lo) > 0:
			return fmt.Errorf("container %q: %w", c.Name, err)
		case err != nil:
			e.Log("warning: container %q: its ports on every address do not answer on [::1]: %v", c.Name, err)
		}
	}
	crashPoint("publish")
	return nil
}

// unpublish removes exactly the container's elements and frees its host
// ports in the store; called inside the transaction that forgets its endpoints.
func (e *Engine) unpublish(tx store.Tx, c *Container) error {
	ports, err := e.containerPorts(tx, c)
	if err != nil {
		return err
	}
	if len(ports.fw) > 0 {
		fw, err := e.firewall()
		if err != nil {
			return err
		}
		if err := fw.Unpublish(ports.fw); err != nil {
			return fmt.Errorf("container %q: %w", c.Name, err)
		}
	}
	// Without a usable cgroup nothing can have been added.
	if lo, err := e.loopback(); err == nil {
		if err := lo.Remove(ports.allLo()); err != nil {
			return fmt.Errorf("container %q: %w", c.Name, err)
		}
	}
	for _, m := range c.Ports {
		if string(tx.Get(store.Ports, portKey(m))) == c.ID {
			if err := tx.Delete(store.Ports, portKey(m)); err != nil {
				return err
			}
		}
	}
	return nil
}
