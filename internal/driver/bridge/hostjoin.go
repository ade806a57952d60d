package bridge

import (
	"context"
	"errors"
	"fmt"

	"github.com/ctnet/ctnet/internal/driver"
	"github.com/ctnet/ctnet/internal/firewall"
	"github.com/ctnet/ctnet/internal/netx"
)

var _ driver.HostJoiner = (*Driver)(nil)

// JoinHost makes the endpoint's veth pair with both ends in the host: the
// host end enslaved and up, as Join makes it, the inner end under peer, down,
// with the endpoint's MAC (Docker moves it into the container and brings it
// up). The port is bound to the MAC and addresses before either end is up.
func (d *Driver) JoinHost(ctx context.Context, n driver.Network, ep driver.Endpoint, peer string) (err error) {
	if err := netx.ValidIfName(peer); err != nil {
		return fmt.Errorf("veth %s: inner end: %w", ep.HostIf, err)
	}
	br, err := netx.LinkOrNil(d.host, n.Device)
	if err != nil {
		return err
	}
	if br == nil {
		return driver.Stale(fmt.Errorf("bridge %s: %w", n.Device, errBridgeMissing))
	}
	fw, err := d.sh.Firewall()
	if err != nil {
		return err
	}
	fep := endpointRules(n, ep)
	if err := fw.AddEndpoint(rules(n), fep); err != nil {
		if errors.Is(err, firewall.ErrNoTable) {
			return driver.Stale(err)
		}
		return fmt.Errorf("firewall: %w", err)
	}
	defer func() {
		if err != nil {
			fw.DelEndpoint(fep)
		}
	}()
	// A pair left by an earlier try (a plugin killed mid-join) goes first:
	// its inner end was never handed out.
	if err := netx.DeleteLink(d.host, ep.HostIf); err != nil {
		return err
	}
	if err := netx.DeleteLink(d.host, peer); err != nil {
		return err
	}
	err = netx.AddVeth(d.host, netx.VethSpec{
		HostName:    ep.HostIf,
		PeerName:    peer,
		PeerNS:      d.host.NS(),
		MTU:         n.MTU,
		MasterIndex: br.Attrs().Index,
		PeerMAC:     ep.MAC,
		DisableIPv6: !n.IPv6,
		NoRA:        true,
	})
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			netx.DeleteLink(d.host, ep.HostIf)
		}
	}()
	return d.portFlags(n, ep.HostIf)
}
