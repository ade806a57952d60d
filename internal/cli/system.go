package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ctnet/ctnet/internal/network"
)

func (a *app) systemCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "system", Short: "Manage ctnet itself", Args: cobra.NoArgs}
	cmd.AddCommand(&cobra.Command{
		Use:   "reconcile",
		Short: "Make the kernel agree with ctnet's state and release what nothing owns",
		Long: `Compare the stored networks and endpoints with the kernel and repair every
difference: recreate missing bridges and firewall rules, release addresses of
namespaces that are gone, delete veths, bridges and leases that nothing owns.
Prints one line per change (nothing when all is in order).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := a.containers()
			if err != nil {
				return err
			}
			changes, err := m.Reconcile(cmd.Context())
			for _, c := range changes {
				fmt.Fprintln(a.out, c)
			}
			return err
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:    "dns-serve",
		Short:  "Run the embedded DNS resolver (started on demand by ctnet itself)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := a.network()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return n.ServeDNS(ctx)
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:    "container-exited ID",
		Short:  "Release what an ended container no longer needs (called by its monitor)",
		Hidden: true,
		Args:   exactArgs(1, "ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := a.containers()
			if err != nil {
				return err
			}
			return m.Exited(cmd.Context(), args[0])
		},
	})
	return cmd
}

func (a *app) bridgeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "bridge", Short: "Look at bridges", Args: cobra.NoArgs}
	cmd.AddCommand(&cobra.Command{
		Use:         "show [BRIDGE...]",
		Annotations: map[string]string{"root": "no"},
		Short:       "Show bridges and their ports, exactly as `brctl show` prints them",
		RunE: func(cmd *cobra.Command, args []string) error {
			return network.ShowBridges(a.out, args...)
		},
	})
	return cmd
}
