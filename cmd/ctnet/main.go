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
	"github.com/ctnet/ctnet/internal/cni"
	"github.com/ctnet/ctnet/internal/network"
	"github.com/ctnet/ctnet/internal/ocirt"
)

func main() {
	// A detached container's monitor is this binary re-executed; while its
	// container runs it keeps the embedded resolver alive and holds its
	// published ports.
	ocirt.MaybeRunMonitor(network.Watch)
	// A runtime calls CNI plugins without arguments; the processes ctnet
	// starts (the resolver) inherit CNI_COMMAND but always have some.
	if len(os.Args) == 1 && os.Getenv("CNI_COMMAND") != "" {
		os.Exit(cni.Main("ctnet " + cli.Version + ": CNI plugin of ctnet networks"))
	}
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
