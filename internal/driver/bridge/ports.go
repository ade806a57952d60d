package bridge

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/ctnet/ctnet/internal/driver"
	"github.com/ctnet/ctnet/internal/firewall"
	"github.com/ctnet/ctnet/internal/loopback"
	"github.com/ctnet/ctnet/internal/portspec"
)

// Published ports are elements of the firewall's DNAT maps, one batch per
// endpoint: no proxy process, no rule per port. Ports on [::1], which no
// packet rewrite can serve, are entries of the loopback table instead (ports
// on every address get one too, so that [::1] answers for them as it does
// with Docker's proxy).

// published is how an endpoint's ports are served: DNAT elements, and socket
// redirections for [::1] — asked for (-p [::1]:…), or that come with a port
// on every IPv6 address and are only a convenience.
type published struct {
	fw         []firewall.Port
	lo, loAlso []loopback.Port
}

func (p published) allLo() []loopback.Port { return append(slices.Clip(p.lo), p.loAlso...) }

// publishedPorts turns an endpoint's mappings into what serves them; mappings
// of a family the endpoint has no address of are left out, but [::1] reaches
// an IPv4-only endpoint too. Ports on every address answer on [::1] only
// where a cgroup2 hierarchy is there for it.
func publishedPorts(n driver.Network, ep driver.Endpoint, loUsable bool) published {
	var out published
	var v4, v6 netip.Addr
	for _, a := range ep.Addrs {
		if a.Addr().Is4() && !v4.IsValid() {
			v4 = a.Addr()
		} else if a.Addr().Is6() && !v6.IsValid() {
			v6 = a.Addr()
		}
	}
	// On an IPv4-only network, IPv6 clients reach the container's address
	// in the network's private /64; [::1] stays on IPv4.
	private6 := endpointIPv6(n, ep).Addr()
	for _, m := range ep.Ports {
		ctr, lctr := v4, v4
		if m.HostIP.Is6() && v6.IsValid() {
			ctr, lctr = v6, v6
		} else if m.HostIP.Is6() && private6.IsValid() {
			ctr = private6
		}
		if !ctr.IsValid() {
			continue
		}
		lp := loopback.Port{Proto: m.Proto, HostPort: m.HostPort, ContainerIP: lctr, ContainerPort: m.ContainerPort}
		if m.HostIP.Is6() && m.HostIP.IsLoopback() {
			out.lo = append(out.lo, lp)
			continue
		}
		if ctr.Is4() != m.HostIP.Is4() {
			continue
		}
		out.fw = append(out.fw, firewall.Port{
			Proto: m.Proto, HostIP: m.HostIP.AsSlice(), HostPort: m.HostPort,
			ContainerIP: ctr.AsSlice(), ContainerPort: m.ContainerPort, Bridge: n.Device,
		})
		// Every address includes [::1]; with both wildcards, the IPv6 one serves it.
		if m.HostIP.IsUnspecified() && loUsable && loopback.Supported(m.Proto) &&
			(m.HostIP.Is6() || !slices.ContainsFunc(ep.Ports, func(o portspec.Mapping) bool {
				return o.HostIP == netip.IPv6Unspecified() && o.Proto == m.Proto && o.HostPort == m.HostPort
			})) {
			out.loAlso = append(out.loAlso, lp)
		}
	}
	return out
}

func (d *Driver) ports(n driver.Network, ep driver.Endpoint) published {
	_, loErr := d.sh.Loopback()
	return publishedPorts(n, ep, loErr == nil)
}

// Publish programs the endpoint's ports: one batch of map elements, and the
// [::1] entries.
func (d *Driver) Publish(ctx context.Context, n driver.Network, ep driver.Endpoint) error {
	ports := d.ports(n, ep)
	if endpointIPv6(n, ep).IsValid() {
		// DNATed IPv6 is forwarded to the bridge.
		if err := d.enableForwarding(true); err != nil {
			return err
		}
	}
	if len(ports.fw) > 0 {
		fw, err := d.sh.Firewall()
		if err != nil {
			return err
		}
		if err := fw.Publish(ports.fw); err != nil {
			if errors.Is(err, firewall.ErrNoTable) {
				return driver.Stale(err)
			}
			return err
		}
	}
	all := ports.allLo()
	if len(all) == 0 {
		return nil
	}
	// One round for both: what fails is the cgroup or the programs, not an
	// entry, and only ports asked for on [::1] make that an error.
	lo, err := d.sh.Loopback()
	if err == nil {
		err = lo.Add(all)
	}
	if err != nil && len(ports.lo) > 0 {
		if len(ports.fw) > 0 {
			if fw, ferr := d.sh.Firewall(); ferr == nil {
				fw.Unpublish(ports.fw)
			}
		}
		return err
	}
	if err != nil {
		return &driver.Warning{Err: fmt.Errorf("its ports on every address do not answer on [::1]: %w", err)}
	}
	return nil
}

// Unpublish removes exactly the endpoint's elements.
func (d *Driver) Unpublish(ctx context.Context, n driver.Network, ep driver.Endpoint) error {
	ports := d.ports(n, ep)
	if len(ports.fw) > 0 {
		fw, err := d.sh.Firewall()
		if err != nil {
			return err
		}
		if err := fw.Unpublish(ports.fw); err != nil {
			return err
		}
	}
	// Without a usable cgroup nothing can have been added.
	if lo, err := d.sh.Loopback(); err == nil {
		return lo.Remove(ports.allLo())
	}
	return nil
}
