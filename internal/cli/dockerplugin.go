package cli

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ctnet/ctnet/internal/dockerdriver"
)

func (a *app) dockerPluginCmd() *cobra.Command {
	var socket, dockerHost string
	cmd := &cobra.Command{
		Use:   "docker-plugin [--socket PATH] [--docker-host unix:///run/docker.sock]",
		Short: "Serve Docker's network and IPAM driver protocols: docker network create -d ctnet",
		Long: `Serve Docker's remote network-driver and IPAM-driver protocols on a UNIX socket
that dockerd discovers as the plugin "ctnet":

  docker network create -d ctnet [--subnet CIDR] [--ipam-driver ctnet] [-o KEY=VALUE] NAME
  docker run --network NAME -p 8080:80 IMAGE

Containers get ctnet's networks (its bridge, veth names and MTU, NAT, published
ports as elements of its nft maps: no docker-proxy). Every fact is in ctnet's
store, shared with the ctnet command line (ctnet network ls/inspect show the
same networks and endpoints), so the plugin may be stopped, killed or restarted
at any time: running containers keep their network, and dockerd's next calls
succeed once it answers again. Start it before dockerd (the systemd unit in
contrib/systemd does), so that forwarding is on before dockerd looks: dockerd
sets the FORWARD policy of iptables to DROP when it turns forwarding on itself.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, err := a.network()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			logf := func(format string, args ...any) { fmt.Fprintf(a.errOut, format+"\n", args...) }
			// The default network and a repair after a reboot come first:
			// dockerd's IPAM then sees ctnet's subnets as host routes,
			// and forwarding is on.
			if _, err := svc.Networks(ctx); err != nil {
				return err
			}
			o := dockerdriver.Options{Log: logf, Context: ctx}
			if dockerHost != "" {
				o.Names = dockerdriver.DockerNames(dockerHost)
			}
			p := dockerdriver.New(svc, o)
			p.SyncNames(ctx)
			logf("ctnet docker-plugin: serving %s", socket)
			return dockerdriver.Serve(ctx, socket, p.Handler())
		},
	}
	cmd.Flags().StringVar(&socket, "socket", dockerdriver.DefaultSocket, "UNIX socket to serve (dockerd looks in /run/docker/plugins for NAME.sock)")
	cmd.Flags().StringVar(&dockerHost, "docker-host", envOr("DOCKER_HOST", "unix:///run/docker.sock"), `dockerd's API socket, asked for the names of networks ("" = never ask) [$DOCKER_HOST]`)
	return cmd
}
