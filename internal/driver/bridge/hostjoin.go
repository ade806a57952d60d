package bridge

import (
	"context"
	"fmt"

	"github.com/ctnet/ctnet/internal/driver"
	"github.com/ctnet/ctnet/internal/netx"
)

var _ driver.HostJoiner = (*Driver)(nil)

// JoinHost makes the endpoint's veth pair with both ends in the host: the
// host end enslaved and up, as Join makes it, the inner end under peer, down,
// with the endpoint's MAC (Docker moves it into the container and brings it
// up). The port is bound to the MAC and addresses before either end is up.
func (d *Driver) JoinHost(ctx context.Context, n driver.Network, ep driver.Endpoint, peer string) error {
	if err := netx.ValidIfName(peer); err != nil {
		return fmt.Errorf("veth %s: inner end: %w", ep.HostIf, err)
	}
	// A pair left by an earlier try (a plugin killed mid-join) goes first:
	// its inner end was never handed out.
	if err := netx.DeleteLink(d.host, ep.HostIf); err != nil {
		return err
	}
	if err := netx.DeleteLink(d.host, peer); err != nil {
		return err
	}
	_, err := d.makePair(n, ep, peer, d.host.NS())
	return err
}
