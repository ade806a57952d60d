package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ctnet/ctnet/internal/errdefs"
	"github.com/ctnet/ctnet/internal/topology"
)

func (a *app) topologyCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "topology [NETWORK...]",
		Short: "Show the container network as the kernel holds it: bridges, veth pairs, owners, ports, NAT, drift",
		Long: `Show, read from the kernel and from ctnet's store, the host's uplink, each network's
bridge with its addresses and MTU, each veth pair as host end <-> inner end (with the
peer indexes ip link shows, vethX@if7), the container or namespace it belongs to, its
addresses, MAC and published ports, what the firewall tables hold for each network
(masquerade, isolation, --internal), foreign bridges (docker0, ...) and every
difference between the kernel and the store (drift). Changes nothing.`,
		Example: `  ctnet topology
  ctnet topology --format html > net.html     # one self-contained page with the picture
  ctnet topology --format dot web | dot -Tpng > web.png`,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch format {
			case "text", "json", "dot", "svg", "html":
			default:
				return errdefs.Field("format", fmt.Sprintf("%s %q: want text, json, dot, svg or html", errdefs.FieldToken, format))
			}
			svc, err := a.network()
			if err != nil {
				return err
			}
			v, err := svc.View(cmd.Context())
			if err != nil {
				return err
			}
			t, err := topology.Gather(v)
			if err != nil {
				return err
			}
			if err := t.Only(args...); err != nil {
				return errdefs.New(errdefs.NotFound, err.Error())
			}
			switch format {
			case "json":
				return topology.WriteJSON(a.out, t)
			case "dot":
				return topology.WriteDOT(a.out, t)
			case "svg":
				return topology.SVG(cmd.Context(), a.out, t)
			case "html":
				return topology.HTML(cmd.Context(), a.out, t)
			}
			return topology.WriteText(a.out, t)
		},
	}
	cmd.Flags().StringVar(&format, "format", "text", "text, json, dot, svg or html (one self-contained page)")
	return cmd
}
