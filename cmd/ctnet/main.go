// Command ctnet is container networking for Linux in one binary.
package main

import (
	"os"

	"github.com/ctnet/ctnet/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr)) }
