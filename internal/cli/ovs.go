package cli

import (
	"github.com/spf13/cobra"

	"github.com/ctnet/ctnet/internal/driver/ovs"
)

func (a *app) ovsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "ovs", Short: "Look at the Open vSwitch bridges of ctnet's networks", Args: cobra.NoArgs}
	cmd.AddCommand(&cobra.Command{
		Use:   "show [BRIDGE...]",
		Short: "Show the OVS bridges ctnet uses, exactly as `ovs-vsctl show` prints them",
		Long: `Show the Open vSwitch bridges that carry ctnet's networks (or that ctnet made),
with their ports, VLAN tags and interfaces, as ` + "`ovs-vsctl show`" + ` prints them. The
database is found as ovs-vsctl finds it: $OVS_RUNDIR/db.sock, else
/run/openvswitch/db.sock.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return ovs.Show(cmd.Context(), a.out, args...)
		},
	})
	return cmd
}
