// Package cli is ctnet's command line: Docker's verbs, flags and output
// shapes, translated into engine calls and nothing else.
package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ctnet/ctnet/internal/engine"
)

// Version is set at build time with -ldflags "-X …cli.Version=…".
var Version = "dev"

type app struct {
	root, runRoot string
	cgroup        string
	out, errOut   io.Writer
	eng           *engine.Engine
}

// engine opens the instance on first use, so `--help` costs nothing.
func (a *app) engine() (*engine.Engine, error) {
	if a.eng == nil {
		e, err := engine.New(engine.Config{Root: a.root, RunRoot: a.runRoot, Cgroup: a.cgroup})
		if err != nil {
			return nil, err
		}
		e.Log = func(format string, args ...any) { fmt.Fprintf(a.errOut, format+"\n", args...) }
		a.eng = e
	}
	return a.eng, nil
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
	err := cmd.Execute()
	if a.eng != nil {
		a.eng.Close()
	}
	if err != nil {
		var ex exitError
		if errors.As(err, &ex) {
			return ex.code
		}
		fmt.Fprintf(stderr, "Error: %s\n", oneLine(err.Error()))
		return 1
	}
	return 0
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
			return engine.RequireRoot()
		},
	}
	root.PersistentFlags().StringVar(&a.root, "root", envOr("CTNET_ROOT", "/var/lib/ctnet"), "directory of persistent state (network definitions) [$CTNET_ROOT]")
	root.PersistentFlags().StringVar(&a.runRoot, "run-root", envOr("CTNET_RUN_ROOT", "/run/ctnet"), "directory of runtime state (endpoints, leases) [$CTNET_RUN_ROOT]")
	root.PersistentFlags().StringVar(&a.cgroup, "cgroup", os.Getenv("CTNET_CGROUP"), "cgroup2 directory whose processes reach ports published on [::1] (default: the cgroup2 root) [$CTNET_CGROUP]")
	root.AddCommand(a.networkCmd(), a.bridgeCmd(), a.systemCmd())
	root.AddCommand(a.containerCmds()...)
	root.AddCommand(a.imageCmds()...)
	return root
}
