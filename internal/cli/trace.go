package cli

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ctnet/ctnet/internal/errdefs"
	"github.com/ctnet/ctnet/internal/topology"
	"github.com/ctnet/ctnet/internal/trace"
)

func (a *app) traceCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "trace FROM TO [PORT/PROTO]",
		Short: "Say step by step what one packet from FROM to TO would meet, and where it ends",
		Long: `Follow one packet (an ICMP echo, or the first packet to PORT/PROTO) from FROM to
TO through the kernel as it is now: the route in its namespace, the bridge port
it enters (anti-spoofing, the isolated flag of icc=false), the DNAT maps, the
forward chain (isolation between networks, --internal, only published ports
from outside), masquerade and the guards of 127.0.0.1. FROM and TO are a
container (name or id), a namespace path, an address, "host" or "outside".
Nothing is sent and nothing changes.`,
		Example: `  ctnet trace web db 5432/tcp
  ctnet trace outside 203.0.113.2 8080/tcp
  ctnet trace /run/netns/bare outside`,
		Args: rangeArgs(2, 3, "FROM TO [PORT/PROTO]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "text" && format != "json" {
				return errdefs.Field("format", fmt.Sprintf("%s %q: want text or json", errdefs.FieldToken, format))
			}
			pkt := trace.Packet{Proto: "icmp"}
			if len(args) == 3 {
				var err error
				if pkt, err = trace.ParsePacket(args[2]); err != nil {
					return errdefs.New(errdefs.Invalid, "PORT/PROTO "+err.Error())
				}
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
			tr, err := trace.New(t)
			if err != nil {
				return err
			}
			defer tr.Close()
			container := func(ref string) (string, string, error) {
				m, err := a.containers()
				if err != nil {
					return "", "", err
				}
				c, err := m.Container(ref)
				if err != nil {
					return "", "", err
				}
				return c.Name, c.NetNS, nil
			}
			var ends [2]trace.Point
			for i, arg := range args[:2] {
				if ends[i], err = tr.Resolve(arg, container); err != nil {
					return err
				}
			}
			r, err := tr.Trace(ends[0], ends[1], pkt)
			if err != nil {
				return err
			}
			if format == "json" {
				enc := json.NewEncoder(a.out)
				enc.SetIndent("", "  ")
				return enc.Encode(r)
			}
			_, err = fmt.Fprint(a.out, r)
			return err
		},
	}
	cmd.Flags().StringVar(&format, "format", "text", "text or json")
	return cmd
}
