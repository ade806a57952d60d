// Package drivers is the list of the network drivers ctnet has: adding one
// is a folder under internal/driver and a line here.
package drivers

import (
	"github.com/ctnet/ctnet/internal/driver"
	"github.com/ctnet/ctnet/internal/driver/bridge"
	"github.com/ctnet/ctnet/internal/driver/macvlan"
	"github.com/ctnet/ctnet/internal/driver/overlay"
	"github.com/ctnet/ctnet/internal/driver/ovs"
)

// All makes every driver over what the host's drivers share; the first is
// the default (`network create` without --driver).
func All(sh *driver.Shared) []driver.Driver {
	return []driver.Driver{
		bridge.New(sh),
		overlay.New(sh),
		macvlan.New(sh),
		ovs.New(sh),
	}
}
