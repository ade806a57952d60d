// Package cli is ctnet's command line: Docker's verbs, flags and output
// shapes, translated into calls of the network service and the container
// manager, and their errors worded in flags.
package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ctnet/ctnet/internal/containers"
	"github.com/ctnet/ctnet/internal/errdefs"
	"github.com/ctnet/ctnet/internal/network"
)

// Version is set at build time with -ldflags "-X …cli.Version=…".
var Version = "dev"

type app struct {
	root, runRoot string
	cgroup        string
	out, errOut   io.Writer
	net           *network.Service
	ctrs          *containers.Manager
	cluster       clusterOpts
}

// self is how the processes ctnet starts (the resolver, a container
// monitor's exit hook) run ctnet again: this binary with every global option
// this one was given, flags or environment alike.
func (a *app) self(args ...string) (string, []string) {
	exe, err := os.Executable()
	if err != nil {
		exe = "/proc/self/exe"
	}
	return exe, append(append([]string{"--root", a.root, "--run-root", a.runRoot, "--cgroup", a.cgroup}, a.cluster.args()...), args...)
}

// network opens the host's network service on first use, so `--help`
// costs nothing.
func (a *app) network() (*network.Service, error) {
	if a.net == nil {
		exe, args := a.self("system", "dns-serve")
		cfg := network.Config{
			Root: a.root, RunRoot: a.runRoot, Cgroup: a.cgroup,
			Resolver: network.Command{Path: exe, Args: args},
			Log:      func(format string, args ...any) { fmt.Fprintf(a.errOut, format+"\n", args...) },
		}
		exe, args = a.self("system", "overlay-agent")
		if err := a.cluster.configure(&cfg, network.Command{Path: exe, Args: args}); err != nil {
			return nil, err
		}
		n, err := network.Open(cfg)
		if err != nil {
			return nil, err
		}
		a.net = n
	}
	return a.net, nil
}

// containers opens the container manager over the network service.
func (a *app) containers() (*containers.Manager, error) {
	if a.ctrs == nil {
		n, err := a.network()
		if err != nil {
			return nil, err
		}
		a.ctrs = containers.New(containers.Config{
			Root: a.root, RunRoot: a.runRoot,
			OnExit: func(id string) []string {
				exe, args := a.self("system", "container-exited", id)
				return append([]string{exe}, args...)
			},
		}, n)
	}
	return a.ctrs, nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// Main runs the command line and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	a := &app{out: stdout, errOut: stderr}
	cmd := a.rootCmd()
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	ran, err := cmd.ExecuteC()
	if a.net != nil {
		a.net.Close()
	}
	if err != nil {
		var ex exitError
		if errors.As(err, &ex) {
			return ex.code
		}
		fmt.Fprintf(stderr, "Error: %s\n", oneLine(errdefs.Word(err, flagName)))
		return failureStatus(ran, err)
	}
	return 0
}

// failureStatus is the exit status of a failed command, as Docker's: run
// exits 125 when ctnet fails and 126 or 127 when the container's command
// cannot be started; exec 126 or 127 for its command, 1 otherwise; every
// other command 1.
func failureStatus(cmd *cobra.Command, err error) int {
	var argc argCountError
	switch {
	case errors.As(err, &argc):
		return 1
	case cmd != nil && cmd.Name() == "run":
		return containers.ExitStatus(err)
	case cmd != nil && cmd.Name() == "exec":
		if code := containers.ExitStatus(err); code != 125 {
			return code
		}
	}
	return 1
}

// flagName is the flag that sets a request field: -o KEY for a driver
// option, --FIELD for the rest.
func flagName(field string) string {
	if k, ok := strings.CutPrefix(field, "option:"); ok {
		return "-o " + k
	}
	return "--" + field
}

// requireRoot is the check every command but the read-only views makes
// before changing anything.
func requireRoot() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("ctnet must run as root to change networks (it needs CAP_NET_ADMIN); try: sudo ctnet %s", strings.Join(os.Args[1:], " "))
	}
	return nil
}

// oneLine folds a multi-line message (cobra's "Did you mean this?", joined
// errors) into the one line every ctnet error is.
func oneLine(msg string) string {
	var parts []string
	for _, l := range strings.Split(msg, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, " ")
}

// exitError passes a status through without printing anything more (for
// example a container's own exit status).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "ctnet",
		Short: "Container networking: Docker's bridge, veth, NAT, ports and DNS in one binary, no daemon",
		Long: `ctnet gives containers and any network namespace the network Docker builds:
a bridge (ctnet0 for the default network "bridge"), one veth pair per endpoint
whose inner end is eth0, addresses, NAT to the outside — without a daemon.`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		Version:           Version,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
		// Every command but the read-only views of the kernel works on
		// root-owned state; say so before anything else can fail.
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Annotations["root"] == "no" {
				return nil
			}
			return requireRoot()
		},
	}
	root.PersistentFlags().StringVar(&a.root, "root", envOr("CTNET_ROOT", "/var/lib/ctnet"), "directory of persistent state (network definitions) [$CTNET_ROOT]")
	root.PersistentFlags().StringVar(&a.runRoot, "run-root", envOr("CTNET_RUN_ROOT", "/run/ctnet"), "directory of runtime state (endpoints, leases) [$CTNET_RUN_ROOT]")
	root.PersistentFlags().StringVar(&a.cgroup, "cgroup", os.Getenv("CTNET_CGROUP"), "cgroup2 directory whose processes reach ports published on [::1] (default: the cgroup2 root) [$CTNET_CGROUP]")
	a.cluster.flags(root.PersistentFlags())
	sys := a.systemCmd()
	sys.AddCommand(a.overlayAgentCmd())
	root.AddCommand(a.networkCmd(), a.bridgeCmd(), sys)
	root.AddCommand(a.dockerPluginCmd())
	root.AddCommand(a.cniCmd())
	root.AddCommand(a.containerCmds()...)
	root.AddCommand(a.containerGroupCmd())
	root.AddCommand(a.imageCmds()...)
	root.AddCommand(a.topologyCmd())
	root.AddCommand(a.traceCmd())
	root.AddCommand(a.explainCmd())
	root.AddCommand(a.ovsCmd())
	return root
}
