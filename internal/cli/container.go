package cli

import (
	"context"
	"fmt"
	"github.com/ctnet/ctnet/internal/errdefs"
	"io"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ctnet/ctnet/internal/containers"
	"github.com/ctnet/ctnet/internal/network"
	"github.com/ctnet/ctnet/internal/portspec"
)

func (a *app) containerCmds() []*cobra.Command {
	return []*cobra.Command{a.runCmd(), a.psCmd(), a.execCmd(), a.stopCmd(), a.killCmd(), a.rmCmd(), a.logsCmd(), a.inspectCmd(), a.portCmd()}
}

// containerGroupCmd is `ctnet container …`, Docker's management command:
// the same commands, with ps called ls.
func (a *app) containerGroupCmd() *cobra.Command {
	group := &cobra.Command{Use: "container", Short: "Manage containers (the same commands as at the top: run, ls, exec, …)"}
	for _, c := range a.containerCmds() {
		if c.Name() == "ps" {
			c.Use, c.Aliases = strings.Replace(c.Use, "ps", "ls", 1), []string{"ps", "list"}
		}
		group.AddCommand(c)
	}
	return group
}

func (a *app) runCmd() *cobra.Command {
	var s containers.RunSpec
	var publish, sysctls, labels []string
	var entrypoint string
	cmd := &cobra.Command{
		Use:   "run [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Create and run a new container from an image",
		Example: `  ctnet run --rm host ip a                    # the embedded "host" image: the host's files, read-only
  ctnet run -d --name web busybox httpd -f -p 80
  ctnet run --rm --network container:web busybox wget -qO- 127.0.0.1
  ctnet run -it --rm busybox sh`,
		Args: minArgs(1, "IMAGE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			s.Image, s.Cmd = args[0], args[1:]
			var err error
			if s.Publish, err = portspec.ParseAll(publish); err != nil {
				return err
			}
			if s.Sysctls, err = keyValues("--sysctl", sysctls); err != nil {
				return err
			}
			if s.Labels, err = labelValues(labels); err != nil {
				return err
			}
			if cmd.Flags().Changed("entrypoint") {
				s.Entrypoint = []string{}
				if entrypoint != "" {
					s.Entrypoint = []string{entrypoint}
				}
			}
			s.Stdio = containers.Stdio{In: os.Stdin, Out: a.out, Err: a.errOut}
			m, err := a.containers()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			c, code, err := m.Run(ctx, s)
			if err != nil {
				return err
			}
			if s.Detach {
				fmt.Fprintln(a.out, c.ID)
				return nil
			}
			if code != 0 {
				return exitError{code}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false) // flags after IMAGE belong to the command
	f.StringVar(&s.Name, "name", "", "assign a name to the container")
	f.StringVarP(&s.Hostname, "hostname", "h", "", "container host name")
	f.StringVar(&s.Network, "network", "default", "network mode: bridge, host, none, container:NAME, or a network's name")
	f.StringVar(&s.Network, "net", "default", "")
	f.MarkHidden("net")
	f.StringVar(&s.IP, "ip", "", "IPv4 address on the network")
	f.StringVar(&s.IP6, "ip6", "", "IPv6 address on the network")
	f.StringVar(&s.MAC, "mac-address", "", "MAC address of eth0")
	f.StringArrayVar(&s.Aliases, "network-alias", nil, "network-scoped alias")
	f.StringArrayVar(&s.DNS, "dns", nil, "DNS server for the container's resolv.conf")
	f.StringArrayVar(&s.AddHosts, "add-host", nil, "add a line to /etc/hosts (NAME:IP)")
	f.StringArrayVarP(&s.Volumes, "volume", "v", nil, "bind mount a host path: SRC:DST[:ro]")
	f.StringVar(&s.IPC, "ipc", "", "IPC namespace: private (default), shareable, container:NAME, host")
	f.StringArrayVarP(&s.Env, "env", "e", nil, "set an environment variable K=V")
	f.StringArrayVarP(&publish, "publish", "p", nil, "publish a container's port(s) to the host: [IP:][HOST_PORT:]PORT[/PROTO], ranges allowed")
	f.BoolVarP(&s.PublishAll, "publish-all", "P", false, "publish every port the image exposes to a free host port")
	f.BoolVarP(&s.Detach, "detach", "d", false, "run in the background and print the container id")
	f.BoolVarP(&s.Interactive, "interactive", "i", false, "keep stdin open")
	f.BoolVarP(&s.Tty, "tty", "t", false, "allocate a pseudo-terminal")
	f.BoolVar(&s.Remove, "rm", false, "remove the container (and its network endpoints) when it exits")
	f.StringVar(&s.Runtime, "runtime", "runc", "OCI runtime: runc or crun")
	f.StringVarP(&s.WorkDir, "workdir", "w", "", "working directory inside the container")
	f.StringVarP(&s.User, "user", "u", "", "user (uid[:gid] or name) inside the container")
	f.BoolVar(&s.Privileged, "privileged", false, "every capability, no seccomp filter, the host's devices")
	f.StringArrayVar(&s.CapAdd, "cap-add", nil, "add a Linux capability (NET_ADMIN, ALL, …)")
	f.StringArrayVar(&s.CapDrop, "cap-drop", nil, "drop a Linux capability")
	f.StringArrayVar(&s.SecurityOpt, "security-opt", nil, "seccomp=unconfined|FILE, no-new-privileges")
	f.StringArrayVar(&sysctls, "sysctl", nil, "namespaced kernel parameter KEY=VALUE")
	f.StringArrayVarP(&labels, "label", "l", nil, "set a label KEY[=VALUE] on the container")
	f.StringVar(&entrypoint, "entrypoint", "", "override the image's entrypoint (\"\" clears it)")
	f.StringArrayVar(&s.DNSSearch, "dns-search", nil, "search domain for the container's resolv.conf")
	f.StringArrayVar(&s.DNSOptions, "dns-option", nil, "option for the container's resolv.conf (ndots:2, …)")
	f.BoolVar(&s.ReadOnly, "read-only", false, "mount the container's root filesystem read-only")
	cmd.Flags().BoolP("help", "", false, "help for run") // -h is --hostname, as in Docker
	return cmd
}

type psRow struct {
	ID, Image, Command, CreatedAt, RunningFor, Status, State, Ports, Names, Networks string
	labels                                                                           map[string]string
}

// Label is one label's value, as {{.Label "KEY"}} in Docker's templates.
func (r psRow) Label(key string) string { return r.labels[key] }

// Labels are the labels as Docker's ps shows them: k=v,k2=v2 sorted.
func (r psRow) Labels() string {
	var kv []string
	for k, v := range r.labels {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

var psHeaders = map[string]string{
	"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
	"RunningFor": "CREATED", "Status": "STATUS", "State": "STATE", "Ports": "PORTS", "Names": "NAMES", "Networks": "NETWORKS",
}

func (a *app) psCmd() *cobra.Command {
	var (
		all, quiet, noTrunc, latest bool
		last                        int
		format                      string
		filters                     []string
	)
	cmd := &cobra.Command{
		Use:   "ps [OPTIONS]",
		Short: "List containers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			filter, err := parsePSFilter(filters)
			if err != nil {
				return err
			}
			m, err := a.containers()
			if err != nil {
				return err
			}
			cs, err := m.Containers()
			if err != nil {
				return err
			}
			var rows []psRow
			// Newest first, as Docker lists them; -n and -l count every
			// container, a status filter shows stopped ones (as Docker).
			sort.SliceStable(cs, func(i, j int) bool { return cs[i].Created.After(cs[j].Created) })
			if latest {
				last = 1
			}
			if last > 0 && last < len(cs) {
				all, cs = true, cs[:last]
			} else if last > 0 {
				all = true
			}
			if len(filter["status"]) > 0 {
				all = true
			}
			for _, c := range cs {
				if !all && !c.Status.Running || !filter.match(c, cs) {
					continue
				}
				id, command := network.ShortID(c.ID), `"`+strings.Join(c.Args, " ")+`"`
				if noTrunc {
					id = c.ID
				} else if len(command) > 22 {
					command = command[:19] + `…"`
				}
				var nets []string
				for _, at := range c.Attachments {
					nets = append(nets, at.Network)
				}
				if len(nets) == 0 && (c.NetworkMode == "host" || c.NetworkMode == "none") {
					nets = []string{c.NetworkMode}
				}
				rows = append(rows, psRow{
					ID: id, Image: c.Image, Command: command, Names: c.Name, labels: c.Labels,
					CreatedAt:  c.Created.Local().Format("2006-01-02 15:04:05 -0700 MST"),
					RunningFor: ago(c.Created) + " ago", Status: statusText(c.Status), State: c.Status.Status,
					Networks: strings.Join(nets, ","), Ports: portspec.DisplayPorts(publishedNow(c)),
				})
			}
			if quiet {
				format = "{{.ID}}"
			}
			if format == "" {
				format = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
			}
			return writeList(a.out, format, psHeaders, rows)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&all, "all", "a", false, "show all containers (default shows just running)")
	f.BoolVarP(&quiet, "quiet", "q", false, "only display container IDs")
	f.BoolVar(&noTrunc, "no-trunc", false, "do not truncate output")
	f.StringVar(&format, "format", "", "format output with a Go template, 'table TEMPLATE' or 'json'")
	f.StringArrayVarP(&filters, "filter", "f", nil, "filter KEY=VALUE: "+strings.Join(psFilterKeys, ", "))
	f.BoolVarP(&latest, "latest", "l", false, "show the latest created container (of any state)")
	f.IntVarP(&last, "last", "n", -1, "show the n last created containers (of any state)")
	return cmd
}

func statusText(s containers.Status) string {
	switch {
	case s.Running:
		return "Up " + ago(s.StartedAt)
	case s.Status == "exited" || !s.FinishedAt.IsZero():
		return fmt.Sprintf("Exited (%d) %s ago", s.ExitCode, ago(s.FinishedAt))
	default:
		return "Created"
	}
}

// ago renders a duration the way Docker's ps does.
func ago(t time.Time) string {
	d := time.Since(t)
	switch {
	case t.IsZero():
		return "a while"
	case d < time.Second:
		return "Less than a second"
	case d < time.Minute:
		return plural(int(d.Seconds()), "second")
	case d < time.Hour:
		return plural(int(d.Minutes()), "minute")
	case d < 48*time.Hour:
		return plural(int(d.Hours()), "hour")
	default:
		return plural(int(d.Hours()/24), "day")
	}
}

func plural(n int, unit string) string {
	if n == 1 {
		if unit == "hour" {
			return "About an hour"
		}
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

func (a *app) execCmd() *cobra.Command {
	var x containers.ExecSpec
	cmd := &cobra.Command{
		Use:   "exec [OPTIONS] CONTAINER COMMAND [ARG...]",
		Short: "Run a command in a running container",
		Args:  minArgs(2, "CONTAINER COMMAND"),
		RunE: func(cmd *cobra.Command, args []string) error {
			x.Args = args[1:]
			m, err := a.containers()
			if err != nil {
				return err
			}
			code, err := m.Exec(cmd.Context(), args[0], x, containers.Stdio{In: os.Stdin, Out: a.out, Err: a.errOut})
			if err != nil {
				return err
			}
			if code != 0 {
				return exitError{code}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false)
	f.BoolVarP(&x.Interactive, "interactive", "i", false, "keep stdin open")
	f.BoolVarP(&x.Tty, "tty", "t", false, "allocate a pseudo-terminal")
	f.StringArrayVarP(&x.Env, "env", "e", nil, "set an environment variable K=V")
	f.StringVarP(&x.WorkDir, "workdir", "w", "", "working directory inside the container")
	f.StringVarP(&x.User, "user", "u", "", "user (uid[:gid])")
	return cmd
}

// eachContainer runs fn for every argument, prints what Docker prints (the
// argument) on success, and reports every failure.
func (a *app) eachContainer(args []string, fn func(m *containers.Manager, ref string) error) error {
	m, err := a.containers()
	if err != nil {
		return err
	}
	var errs []string
	for _, ref := range args {
		if err := fn(m, ref); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		fmt.Fprintln(a.out, ref)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

func (a *app) stopCmd() *cobra.Command {
	var timeout int
	cmd := &cobra.Command{
		Use:   "stop [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Stop one or more running containers (SIGTERM, then SIGKILL after --time)",
		Args:  minArgs(1, "CONTAINER"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.eachContainer(args, func(m *containers.Manager, ref string) error {
				_, err := m.Stop(cmd.Context(), ref, time.Duration(timeout)*time.Second)
				return err
			})
		},
	}
	cmd.Flags().IntVarP(&timeout, "time", "t", 10, "seconds to wait before killing the container")
	return cmd
}

func (a *app) killCmd() *cobra.Command {
	var sig string
	cmd := &cobra.Command{
		Use:   "kill [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Send a signal (default KILL) to one or more running containers",
		Args:  minArgs(1, "CONTAINER"),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := parseSignal(sig)
			if err != nil {
				return err
			}
			return a.eachContainer(args, func(m *containers.Manager, ref string) error {
				_, err := m.Kill(ref, s)
				if errdefs.Is(err, errdefs.NotFound) {
					return &errdefs.Error{Kind: errdefs.NotFound, Msg: fmt.Sprintf("Cannot kill container: %s: %v", ref, err), Err: err}
				}
				return err
			})
		},
	}
	cmd.Flags().StringVarP(&sig, "signal", "s", "KILL", "signal to send (name or number)")
	return cmd
}

func parseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.ParseUint(s, 10, 8); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	names := map[string]syscall.Signal{
		"KILL": syscall.SIGKILL, "TERM": syscall.SIGTERM, "INT": syscall.SIGINT, "HUP": syscall.SIGHUP,
		"QUIT": syscall.SIGQUIT, "USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2, "STOP": syscall.SIGSTOP, "CONT": syscall.SIGCONT,
	}
	if sig, ok := names[strings.TrimPrefix(strings.ToUpper(s), "SIG")]; ok {
		return sig, nil
	}
	return 0, fmt.Errorf("--signal %q: unknown signal; use a name like TERM or a number", s)
}

func (a *app) rmCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "rm [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Remove one or more containers and their network endpoints",
		Args:  minArgs(1, "CONTAINER"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.eachContainer(args, func(m *containers.Manager, ref string) error {
				_, err := m.Remove(cmd.Context(), ref, force)
				return err
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "kill and remove a running container")
	return cmd
}

func (a *app) logsCmd() *cobra.Command {
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs [OPTIONS] CONTAINER",
		Short: "Print the output of a detached container",
		Args:  exactArgs(1, "CONTAINER"),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := a.containers()
			if err != nil {
				return err
			}
			path, c, err := m.LogPath(args[0])
			if err != nil {
				return err
			}
			f, err := os.Open(path)
			if os.IsNotExist(err) {
				return nil // a foreground container's output went to its terminal
			}
			if err != nil {
				return err
			}
			defer f.Close()
			for {
				if _, err := io.Copy(a.out, f); err != nil {
					return err
				}
				if !follow {
					return nil
				}
				if !m.Running(c) {
					_, err := io.Copy(a.out, f) // what came after the last read
					return err
				}
				time.Sleep(100 * time.Millisecond)
			}
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "follow the output until the container stops")
	return cmd
}

// publishedNow is what a container publishes while it runs (Docker shows no
// ports for a stopped container).
func publishedNow(c containers.Info) []portspec.Mapping {
	if !c.Status.Running {
		return nil
	}
	return c.Ports
}

func (a *app) portCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "port CONTAINER [PRIVATE_PORT[/PROTO]]",
		Short: "List a container's published ports, as `docker port`",
		Args:  rangeArgs(1, 2, "CONTAINER [PRIVATE_PORT[/PROTO]]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := a.containers()
			if err != nil {
				return err
			}
			c, err := m.Inspect(args[0])
			if err != nil {
				return err
			}
			ms := publishedNow(*c)
			lines := portspec.FormatPort(ms)
			if len(args) == 2 {
				port, proto, err := portspec.ParsePrivate(args[1])
				if err != nil {
					return err
				}
				if lines = portspec.FormatPrivate(ms, port, proto); len(lines) == 0 {
					//lint:ignore ST1005 Docker's words, which scripts grep
					return fmt.Errorf("No public port '%d/%s' published for %s", port, proto, c.Name)
				}
			}
			for _, l := range lines {
				fmt.Fprintln(a.out, l)
			}
			return nil
		},
	}
}
