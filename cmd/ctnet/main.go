// Command ctnet is container networking for Linux in one binary.

// ctnet is a short-lived command: finding a cgroup CPU limit means reading
// /proc/self/mountinfo, which costs milliseconds on hosts with many mounts.
//
//go:debug containermaxprocs=0
//go:debug updatemaxprocs=0
package main

import (
	"os"

	"github.com/ctnet/ctnet/internal/cli"
	"github.com/ctnet/ctnet/internal/network"
	"github.com/ctnet/ctnet/internal/ocirt"
)

func main() {
	// A detached container's monitor is this binary re-executed; while its
	// container runs it keeps the embedded resolver alive and holds its
	// published ports.
	ocirt.MaybeRunMonitor(network.Watch)
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
