package ovs

import (
	"context"
	"io"
	"slices"

	"github.com/ctnet/ctnet/internal/ovsdb"
)

// Show prints what `ovs-vsctl show` prints, limited to the bridges that
// carry ctnet's networks or that ctnet made (to those of names, when given).
func Show(ctx context.Context, w io.Writer, names ...string) error {
	db, err := (&Driver{}).client(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	sw, err := db.Switch(ctx, names...)
	if err != nil {
		return err
	}
	sw.Bridges = slices.DeleteFunc(sw.Bridges, func(b ovsdb.Bridge) bool {
		return b.ExternalIDs[KeyMade] != "true" && !slices.ContainsFunc(b.Ports, func(p ovsdb.Port) bool { return p.ExternalIDs[KeyNetwork] != "" })
	})
	return ovsdb.WriteShow(w, sw)
}
