package cli

import (
	"fmt"
	"net/netip"

	"github.com/spf13/cobra"
)

func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return fmt.Errorf("%q requires exactly %d argument(s) (%s), got %d; see '%s --help'", cmd.CommandPath(), n, names, len(args), cmd.CommandPath())
		}
		return nil
	}
}

// argCountError is a wrong number of arguments: exit status 1 for every
// command, run and exec too (as Docker's).
type argCountError struct{ error }

func (e argCountError) Unwrap() error { return e.error }

func minArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < n {
			return argCountError{fmt.Errorf("%q requires at least %d argument(s) (%s); see '%s --help'", cmd.CommandPath(), n, names, cmd.CommandPath())}
		}
		return nil
	}
}

func rangeArgs(lo, hi int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < lo || len(args) > hi {
			return argCountError{fmt.Errorf("%q requires %d to %d arguments (%s), got %d; see '%s --help'", cmd.CommandPath(), lo, hi, names, len(args), cmd.CommandPath())}
		}
		return nil
	}
}

func containsAddr(prefix, addr string) bool {
	p, err1 := netip.ParsePrefix(prefix)
	a, err2 := netip.ParseAddr(addr)
	return err1 == nil && err2 == nil && p.Contains(a)
}
