package bridge

import "github.com/ctnet/ctnet/internal/driver"

// NewEmbedded makes a bridge driver for another driver to build on (the
// overlay's local bridge per network): its bridges carry alias and the
// network's name, so that each driver's reconcile keeps to its own bridges.
// alias must not start with AliasPrefix, nor AliasPrefix with it.
func NewEmbedded(sh *driver.Shared, alias string) *Driver {
	return &Driver{sh: sh, host: sh.Host, alias: alias}
}
