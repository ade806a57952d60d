package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ctnet/ctnet/internal/errdefs"
	"github.com/ctnet/ctnet/internal/network"
	"github.com/ctnet/ctnet/internal/store/etcd"
)

// clusterOpts are the global options of hosts that share a store: the
// store's URL, its TLS files as etcdctl names them (--cacert, --cert,
// --key), its user, and this host's part in the cluster.
type clusterOpts struct {
	store               string
	cacert, cert, key   string
	user, password      string
	timeout             time.Duration
	advertise, hostName string
	hostTTL             time.Duration
}

// passwordEnv carries the store's password to the processes ctnet starts:
// an argument would show in ps.
const passwordEnv = "CTNET_STORE_PASSWORD"

func durationEnv(key string, def time.Duration) time.Duration {
	if v := os.Getenv(key); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}

func (c *clusterOpts) flags(f *pflag.FlagSet) {
	f.StringVar(&c.store, "store", os.Getenv("CTNET_STORE"), "store shared by the hosts of a cluster: etcd://HOST[:PORT][,HOST[:PORT]…][/PREFIX/] (etcds:// for TLS); default: this host's own files [$CTNET_STORE]")
	f.StringVar(&c.cacert, "cacert", os.Getenv("CTNET_STORE_CACERT"), "verify the etcd members' certificates with this CA bundle (as etcdctl --cacert) [$CTNET_STORE_CACERT]")
	f.StringVar(&c.cert, "cert", os.Getenv("CTNET_STORE_CERT"), "client certificate for etcd (as etcdctl --cert) [$CTNET_STORE_CERT]")
	f.StringVar(&c.key, "key", os.Getenv("CTNET_STORE_KEY"), "key of the client certificate for etcd (as etcdctl --key) [$CTNET_STORE_KEY]")
	f.StringVar(&c.user, "store-user", os.Getenv("CTNET_STORE_USER"), "etcd user, NAME or NAME:PASSWORD (as etcdctl --user) [$CTNET_STORE_USER]")
	f.StringVar(&c.password, "store-password", os.Getenv(passwordEnv), "etcd password (as etcdctl --password; the variable keeps it out of ps) [$"+passwordEnv+"]")
	f.DurationVar(&c.timeout, "command-timeout", durationEnv("CTNET_STORE_TIMEOUT", 0), "how long one store operation may take with its retries (as etcdctl --command-timeout; default 10s) [$CTNET_STORE_TIMEOUT]")
	f.StringVar(&c.advertise, "advertise-addr", os.Getenv("CTNET_ADVERTISE_ADDR"), "address or interface the other hosts reach this one at (default: the source address of the route to the first etcd endpoint) [$CTNET_ADVERTISE_ADDR]")
	f.StringVar(&c.hostName, "host-name", os.Getenv("CTNET_HOST_NAME"), "this host's name in the cluster (default: its hostname) [$CTNET_HOST_NAME]")
	f.DurationVar(&c.hostTTL, "host-ttl", durationEnv("CTNET_HOST_TTL", network.DefaultHostTTL), "how long a host that stopped answering keeps its endpoints and addresses before the others free them [$CTNET_HOST_TTL]")
}

// args are the options as the processes ctnet starts get them; the
// password goes by the environment (set for them in configure).
func (c *clusterOpts) args() []string {
	if c.store == "" {
		return nil
	}
	out := []string{"--store", c.store}
	for _, kv := range [][2]string{{"--cacert", c.cacert}, {"--cert", c.cert}, {"--key", c.key}, {"--advertise-addr", c.advertise}, {"--host-name", c.hostName}} {
		if kv[1] != "" {
			out = append(out, kv[0], kv[1])
		}
	}
	if user, _, _ := strings.Cut(c.user, ":"); user != "" {
		out = append(out, "--store-user", user)
	}
	if c.timeout > 0 {
		out = append(out, "--command-timeout", c.timeout.String())
	}
	return append(out, "--host-ttl", c.hostTTL.String())
}

// configure puts the store and the cluster options into cfg.
func (c *clusterOpts) configure(cfg *network.Config, agent network.Command) error {
	if c.store == "" {
		for _, f := range [][2]string{{"--cacert", c.cacert}, {"--cert", c.cert}, {"--key", c.key}, {"--store-user", c.user}, {"--advertise-addr", c.advertise}} {
			if f[1] != "" {
				return fmt.Errorf("%s is an option of a shared store; give --store etcd://… too (or unset it)", f[0])
			}
		}
		return nil
	}
	ec, err := etcd.ParseURL(c.store)
	if err != nil {
		return errdefs.Field("store", err.Error())
	}
	ec.CACert, ec.Cert, ec.Key, ec.Timeout = c.cacert, c.cert, c.key, c.timeout
	ec.Username, ec.Password = c.user, c.password
	if u, p, ok := strings.Cut(c.user, ":"); ok {
		ec.Username, ec.Password = u, p
	}
	if ec.Password != "" {
		os.Setenv(passwordEnv, ec.Password) // for the resolver, the agent, the monitors
	}
	if c.hostTTL < time.Second {
		return errdefs.Field("host-ttl", fmt.Sprintf("%s %s is shorter than a second; etcd's leases count whole seconds", errdefs.FieldToken, c.hostTTL))
	}
	cfg.Etcd = &ec
	cfg.ClusterOptions = network.ClusterOptions{Advertise: c.advertise, HostName: c.hostName, HostTTL: c.hostTTL, Agent: agent}
	return nil
}

// overlayAgentCmd runs this host's overlay agent (started by ctnet itself).
func (a *app) overlayAgentCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "overlay-agent",
		Short:  "Run this host's overlay agent (started on demand by ctnet itself)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := a.network()
			if err != nil {
				network.AgentFailed(err)
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return n.ServeOverlay(ctx)
		},
	}
}

// scopeOf is a network's scope as Docker shows it: local, or global for a
// network on every host of a cluster.
func scopeOf(n network.NetworkInfo) string {
	if n.Scope == "" {
		return "local"
	}
	return n.Scope
}

// peerJSON is a host of a global network, as Docker's Peers.
type peerJSON struct{ Name, IP string }

// hostOf names the host of an attachment on a global network: its name and
// address, or its id when the host is gone.
func hostOf(n network.NetworkInfo, a network.Attachment) string {
	h, ok := n.Hosts[a.Host]
	switch {
	case !ok:
		return ""
	case h.Addr.IsValid():
		return h.Name + " (" + h.Addr.String() + ")"
	default:
		return a.Host + " (gone)"
	}
}

// peersOf lists the hosts of a global network's endpoints.
func peersOf(n network.NetworkInfo) []peerJSON {
	var out []peerJSON
	for _, h := range n.Hosts {
		if h.Addr.IsValid() {
			out = append(out, peerJSON{Name: h.Name, IP: h.Addr.String()})
		}
	}
	slices.SortFunc(out, func(a, b peerJSON) int { return strings.Compare(a.IP, b.IP) })
	return out
}
