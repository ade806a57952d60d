// Command ctnet is container networking for Linux in one binary.
package main

import (
	"os"

	"github.com/ctnet/ctnet/internal/cli"
	ocirt "github.com/ctnet/ctnet/internal/runtime"
)

func main() {
	// A detached container's monitor is this binary re-executed.
	ocirt.MaybeRunMonitor()
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
