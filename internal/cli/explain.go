package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ctnet/ctnet/internal/driver"
	"github.com/ctnet/ctnet/internal/errdefs"
	"github.com/ctnet/ctnet/internal/network"
	"github.com/ctnet/ctnet/internal/portspec"
)

func (a *app) explainCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "explain COMMAND [ARG...]",
		Short: "Print what a ctnet command would do, as commands a person could type, and do nothing",
		Long: `Print what a ctnet command would do to the kernel, as the ip, bridge, sysctl and nft
commands a person could type instead, without changing anything: the command is
planned as it would run (the same checks, the same addresses and ports) against a
copy of ctnet's state, and the driver tells each step instead of taking it.
Explained: network create, network rm, network connect, network disconnect, run.`,
		Example: `  ctnet explain network create --subnet 10.10.0.0/24 web
  ctnet explain network connect web --netns /run/netns/demo
  ctnet explain run -d -p 8080:80 --name web host sleep 600`,
		Args: minArgs(1, "COMMAND"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.explain(cmd.Context(), args)
		},
	}
	cmd.Flags().SetInterspersed(false) // flags after COMMAND are that command's
	return cmd
}

// explain runs args against a dry run of the network service and prints
// what the drivers said they would do.
func (a *app) explain(ctx context.Context, args []string) error {
	dry, err := network.OpenDryRun(network.Config{Root: a.root, RunRoot: a.runRoot, Cgroup: a.cgroup})
	if err != nil {
		return err
	}
	defer dry.Close()
	var out bytes.Buffer
	b := &app{root: a.root, runRoot: a.runRoot, cgroup: a.cgroup, out: &out, errOut: io.Discard, net: dry.Service}
	root := b.rootCmd()
	c, rest, err := root.Find(args)
	if err != nil {
		return err
	}
	path := strings.TrimPrefix(c.CommandPath(), root.Name()+" ")
	if err := c.ParseFlags(rest); err != nil {
		return errdefs.New(errdefs.Invalid, fmt.Sprintf("%s: %v", path, err))
	}
	pos := c.Flags().Args()
	var pre []driver.Command
	switch {
	case path == "network create" || path == "network rm" ||
		(path == "network connect" || path == "network disconnect") && c.Flags().Lookup("netns").Value.String() != "":
		// The command's own code, on the dry run (a fresh tree: flags
		// parsed above would be parsed twice).
		root := b.rootCmd()
		root.SetArgs(args)
		root.SetOut(&out)
		root.SetErr(io.Discard)
		if _, err := root.ExecuteC(); err != nil {
			return err
		}
	case path == "network connect" && len(pos) == 2:
		m, err := b.containers()
		if err != nil {
			return err
		}
		ctr, err := m.Container(pos[1])
		if err != nil {
			return err
		}
		if !ctr.OwnNS {
			return errdefs.New(errdefs.Conflict, fmt.Sprintf("container %q shares another namespace (--network %s) and cannot join networks of its own", ctr.Name, ctr.NetworkMode))
		}
		f := c.Flags()
		spec := network.AttachSpec{Network: pos[0], NetNS: ctr.NetNS, Owner: network.Container(ctr.ID), Name: ctr.Name}
		spec.IP, _ = f.GetString("ip")
		spec.IP6, _ = f.GetString("ip6")
		spec.IfName, _ = f.GetString("ifname")
		spec.MAC, _ = f.GetString("mac-address")
		spec.Aliases, _ = f.GetStringArray("alias")
		if _, err := dry.Attach(ctx, spec); err != nil {
			return err
		}
	case path == "network disconnect" && len(pos) == 2:
		m, err := b.containers()
		if err != nil {
			return err
		}
		ctr, err := m.Container(pos[1])
		if err != nil {
			return err
		}
		if err := dry.Detach(ctx, network.DetachSpec{Owner: network.Container(ctr.ID), Network: pos[0], What: fmt.Sprintf("container %q", ctr.Name)}); err != nil {
			return err
		}
	case path == "run":
		if pre, err = a.explainRun(ctx, dry, c); err != nil {
			return err
		}
	default:
		return errdefs.New(errdefs.Invalid, fmt.Sprintf("ctnet explain knows network create, network rm, network connect, network disconnect and run, not %q", path))
	}
	fmt.Fprintf(a.out, "# ctnet %s\n", strings.Join(quoteAll(args), " "))
	fmt.Fprintln(a.out, "# would do this (nothing was changed):")
	for _, cmd := range append(pre, dry.Log.Commands()...) {
		if cmd.Why != "" {
			fmt.Fprintf(a.out, "# %s\n", cmd.Why)
		}
		if len(cmd.Args) > 0 {
			fmt.Fprintln(a.out, cmd.Line())
		}
	}
	if s := strings.TrimSpace(out.String()); s != "" {
		fmt.Fprintf(a.out, "# and print: %s\n", strings.ReplaceAll(s, "\n", " "))
	}
	return nil
}

func quoteAll(args []string) []string {
	out := make([]string, len(args))
	for i, s := range args {
		out[i] = driver.Quote(s)
	}
	return out
}

// explainRun is the network part of `ctnet run`: the container's namespace,
// pinned under the run root, attached as the run would attach it.
func (a *app) explainRun(ctx context.Context, dry *network.DryRun, c *cobra.Command) ([]driver.Command, error) {
	f := c.Flags()
	mode, _ := f.GetString("network")
	if f.Changed("net") && !f.Changed("network") {
		mode, _ = f.GetString("net")
	}
	if mode == "" || mode == "default" {
		mode = network.DefaultNetwork
	}
	if all, _ := f.GetBool("publish-all"); all {
		return nil, errdefs.Field("publish-all", "ctnet explain does not read the image's exposed ports: give them with -p")
	}
	publish, _ := f.GetStringArray("publish")
	ports, err := portspec.ParseAll(publish)
	if err != nil {
		return nil, err
	}
	switch {
	case mode == "host":
		return []driver.Command{driver.Note("--network host: the container runs in the host's namespace; nothing to make")}, nil
	case mode == "none":
		return []driver.Command{driver.Note("--network none: a namespace of its own with only lo (unshare --net); nothing to attach")}, nil
	case strings.HasPrefix(mode, "container:"):
		return []driver.Command{driver.Note("--network %s: the container joins that container's namespace; nothing to make", mode)}, nil
	}
	id := network.NewID()
	name, _ := f.GetString("name")
	if name == "" {
		name = network.ShortID(id)
	}
	pin := filepath.Join(a.runRoot, "netns", id)
	pre := []driver.Command{
		driver.Cmd("the container's network namespace, pinned on a file (ctnet drops the pin with the container; the kernel then reclaims its veth)",
			"mkdir", "-p", filepath.Dir(pin)),
		driver.Cmd("", "touch", pin),
		driver.Cmd("", "unshare", "--net="+pin, "true"),
	}
	dry.PlanNamespace(pin)
	spec := network.AttachSpec{Network: mode, NetNS: pin, Owner: network.Container(id), Name: name, IfName: "eth0", Ports: ports}
	spec.IP, _ = f.GetString("ip")
	spec.IP6, _ = f.GetString("ip6")
	spec.MAC, _ = f.GetString("mac-address")
	spec.Aliases, _ = f.GetStringArray("network-alias")
	if _, err := dry.Attach(ctx, spec); err != nil {
		return nil, err
	}
	dry.Log.Add(driver.Note("then the OCI runtime starts the container in %s", pin))
	if rm, _ := f.GetBool("rm"); rm {
		dry.Log.Add(driver.Note("--rm: when it exits, ctnet removes its ports and firewall elements and unmounts and removes %s; the kernel reclaims the veth with the namespace", pin))
	}
	return pre, nil
}
