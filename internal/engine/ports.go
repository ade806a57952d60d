package engine

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ctnet/ctnet/internal/firewall"
	"github.com/ctnet/ctnet/internal/portspec"
	"github.com/ctnet/ctnet/internal/store"
)

// Published ports are elements of the firewall's DNAT maps, one batch per
// container: no proxy process, no rule per port. The store keeps an index of
// host ports in use so that conflicts are found before anything changes.

func portKey(m portspec.Mapping) string {
	return fmt.Sprintf("%s/%d/%s", m.Proto, m.HostPort, m.HostIP)
}

// portOwner returns the container holding a host port that overlaps m: same
// protocol and port, and the same address or a wildcard of the same family
// on either side (m without an address means every address of both).
func portOwner(tx store.Tx, m portspec.Mapping) string {
	var owner string
	tx.ForEach(store.Ports, fmt.Sprintf("%s/%d/", m.Proto, m.HostPort), func(k string, v []byte) error {
		ip, err := netip.ParseAddr(k[strings.LastIndex(k, "/")+1:])
		if err != nil || !m.HostIP.IsValid() ||
			(ip.Is4() == m.HostIP.Is4() && (ip.IsUnspecified() || m.HostIP.IsUnspecified() || ip == m.HostIP)) {
			owner = string(v)
		}
		return nil
	})
	return owner
}

// hostListens reports whether a process on the host already holds the port:
// its traffic would be taken from it by the DNAT, so Docker refuses too.
func hostListens(m portspec.Mapping) bool {
	ip := ""
	if m.HostIP.IsValid() {
		ip = m.HostIP.String()
	}
	addr := net.JoinHostPort(ip, strconv.Itoa(int(m.HostPort)))
	switch m.Proto {
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
func reservePorts(tx store.Tx, c *Container, ms []portspec.Mapping, ipv6 bool) ([]portspec.Mapping, error) {
	if len(ms) == 0 {
		return nil, nil
	}
	for _, m := range ms {
		switch {
		case m.HostIP.Is6() && m.HostIP.IsLoopback():
			return nil, fmt.Errorf("port %s: publishing on [::1] cannot work: IPv6 has no route_localnet, so the kernel never forwards loopback traffic to a container; publish on 127.0.0.1, or on [::] for every IPv6 address", m)
		case m.HostIP.Is6() && !ipv6:
			return nil, fmt.Errorf("port %s: the network has no IPv6, so the container has no IPv6 address to forward to; use a network made with --ipv6, or an IPv4 host address", m)
		}
	}
	lo, hi := ephemeralRange()
	taken := func(m portspec.Mapping) bool { return portOwner(tx, m) != "" || hostListens(m) }
	ms, err := portspec.Allocate(ms, lo, hi, taken)
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	ms = portspec.ExpandFamilies(ms, ipv6)
	for _, m := range ms {
		if id := portOwner(tx, m); id != "" {
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

// firewallPorts turns a container's mappings into DNAT elements towards its
// endpoint on its first network; mappings of a family the container has no
// address of are left out.
func firewallPorts(c *Container, ep *Endpoint, bridgeName string) []firewall.Port {
	var out []firewall.Port
	for _, m := range c.Ports {
		cidr := ep.IPv4
		if m.HostIP.Is6() {
			cidr = ep.IPv6
		}
		p, err := netip.ParsePrefix(cidr)
		if err != nil {
			continue
		}
		out = append(out, firewall.Port{
			Proto: m.Proto, HostIP: net.IP(m.HostIP.AsSlice()), HostPort: m.HostPort,
			ContainerIP: net.IP(p.Addr().AsSlice()), ContainerPort: m.ContainerPort, Bridge: bridgeName,
		})
	}
	return out
}

// containerPorts finds the elements a container's ports are published as.
func containerPorts(tx store.Tx, c *Container) ([]firewall.Port, error) {
	if len(c.Ports) == 0 {
		return nil, nil
	}
	eps, err := listJSON[Endpoint](tx, store.Endpoints, ownerOfContainer(c.ID))
	if err != nil {
		return nil, err
	}
	for _, ep := range eps {
		if ep.Network == c.NetworkMode {
			n, err := findNetwork(tx, ep.NetworkID)
			if err != nil {
				return nil, err
			}
			return firewallPorts(c, &ep, n.Bridge), nil
		}
	}
	return nil, nil
}

// publish programs the container's ports: one batch of map elements.
func (e *Engine) publish(c *Container) error {
	var ports []firewall.Port
	if err := e.store.View(func(tx store.Tx) error {
		var err error
		ports, err = containerPorts(tx, c)
		return err
	}); err != nil || len(ports) == 0 {
		return err
	}
	fw, err := e.firewall()
	if err != nil {
		return err
	}
	err = fw.Publish(ports)
	if errors.Is(err, firewall.ErrNoTable) {
		// Reconcile brings back the whole table, these ports included.
		_, err = e.Reconcile()
	}
	if err != nil {
		return fmt.Errorf("container %q: %w", c.Name, err)
	}
	crashPoint("publish")
	return nil
}

// unpublish removes exactly the container's elements and frees its host
// ports in the store; called inside the transaction that forgets its endpoints.
func (e *Engine) unpublish(tx store.Tx, c *Container) error {
	ports, err := containerPorts(tx, c)
	if err != nil {
		return err
	}
	if len(ports) > 0 {
		fw, err := e.firewall()
		if err != nil {
			return err
		}
		if err := fw.Unpublish(ports); err != nil {
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
