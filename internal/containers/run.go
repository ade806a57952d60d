package containers

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ctnet/ctnet/internal/crash"
	"github.com/ctnet/ctnet/internal/errdefs"
	"github.com/ctnet/ctnet/internal/namespace"
	"github.com/ctnet/ctnet/internal/network"
	"github.com/ctnet/ctnet/internal/ocirt"
	"github.com/ctnet/ctnet/internal/portspec"
	"github.com/ctnet/ctnet/internal/store"
)

// RunSpec is what `ctnet run` asks for.
type RunSpec struct {
	Name, Hostname, Image string
	Cmd                   []string
	Env                   []string
	Network               string // bridge (default), host, none, container:NAME, or a network
	IP, IP6, MAC          string
	Aliases               []string
	DNS                   []string
	AddHosts              []string // NAME:IP
	Volumes               []string // SRC:DST[:ro]
	IPC                   string
	Tty, Interactive      bool
	Detach, Remove        bool
	Publish               []portspec.Mapping // -p, parsed
	PublishAll            bool               // -P: every port the image exposes
	Runtime               string             // runc (default) or crun
	WorkDir, User         string
	Stdio                 Stdio
	// Privileged, CapAdd, CapDrop and SecurityOpt are Docker's flags.
	Privileged      bool
	CapAdd, CapDrop []string
	SecurityOpt     []string
	Sysctls         map[string]string // --sysctl
	Labels          map[string]string // --label
	// Entrypoint is --entrypoint: nil keeps the image's, empty clears it.
	Entrypoint []string
	DNSSearch  []string // --dns-search
	DNSOptions []string // --dns-option
	ReadOnly   bool     // --read-only
}

// Run creates and starts a container. Without Detach it waits for the
// container and returns its exit status. On any failure before the
// container starts, everything it made is undone.
func (m *Manager) Run(ctx context.Context, spec RunSpec) (c *Container, code int, err error) {
	imgs, err := m.Images()
	if err != nil {
		return nil, -1, err
	}
	img, err := imgs.Get(spec.Image)
	if err != nil {
		return nil, -1, err
	}
	rt, err := m.runtimeFor(spec.Runtime)
	if err != nil {
		return nil, -1, err
	}
	mounts, err := parseVolumes(spec.Volumes)
	if err != nil {
		return nil, -1, err
	}
	for _, h := range spec.AddHosts {
		if err := checkAddHost(h); err != nil {
			return nil, -1, err
		}
	}
	if spec.Hostname != "" {
		if err := checkHostName("hostname", spec.Hostname); err != nil {
			return nil, -1, err
		}
	}
	for _, a := range spec.Aliases {
		if err := checkHostName("network-alias", a); err != nil {
			return nil, -1, err
		}
	}
	for _, d := range spec.DNS {
		if _, err := netip.ParseAddr(d); err != nil {
			return nil, -1, errdefs.Field("dns", fmt.Sprintf("%s %q is not an IP address", errdefs.FieldToken, d))
		}
	}
	sec := ocirt.Security{Privileged: spec.Privileged, CapAdd: spec.CapAdd, CapDrop: spec.CapDrop}
	for _, o := range spec.SecurityOpt {
		if err := ocirt.ParseSecurityOpt(&sec, o); err != nil {
			return nil, -1, &errdefs.Error{Kind: errdefs.Invalid, Field: "security-opt", Msg: err.Error(), Err: err}
		}
	}

	for _, s := range spec.DNSSearch {
		if s != "." && !network.ValidHostName(s) {
			return nil, -1, errdefs.Field("dns-search", fmt.Sprintf("%s %q is not a domain name", errdefs.FieldToken, s))
		}
	}
	for _, o := range spec.DNSOptions {
		if o == "" || strings.ContainsAny(o, " \t\n#;") {
			return nil, -1, errdefs.Field("dns-option", fmt.Sprintf("%s %q is not a resolv.conf option", errdefs.FieldToken, o))
		}
	}
	icfg := img.Config
	if spec.Entrypoint != nil {
		// As Docker: --entrypoint replaces the image's entrypoint and
		// drops its Cmd.
		icfg.Entrypoint, icfg.Cmd = spec.Entrypoint, nil
	}
	c = &Container{
		ID: network.NewID(), Name: spec.Name, Image: spec.Image, ImageID: img.ID,
		Args: ocirt.ResolveArgs(icfg, spec.Cmd), Entrypoint: icfg.Entrypoint, Env: spec.Env, Created: time.Now().UTC(),
		Hostname: spec.Hostname, IPC: spec.IPC, Volumes: spec.Volumes, DNS: spec.DNS,
		DNSSearch: spec.DNSSearch, DNSOptions: spec.DNSOptions, Labels: spec.Labels, PortBindings: spec.Publish,
		WorkDir: spec.WorkDir, User: spec.User, ReadOnly: spec.ReadOnly,
		AddHosts: spec.AddHosts, AutoRemove: spec.Remove, Tty: spec.Tty, Runtime: rt.Binary,
		CreatorPID: os.Getpid(),
	}
	if len(c.Args) == 0 {
		return nil, -1, errdefs.New(errdefs.Invalid, fmt.Sprintf("image %q has no command; give one after the image name", spec.Image))
	}
	if c.Hostname == "" {
		c.Hostname = network.ShortID(c.ID)
	}
	mode := spec.Network
	if mode != "default" {
		c.Mode = mode
	}
	if mode == "" || mode == "default" {
		mode = network.DefaultNetwork
	}
	publish := spec.Publish
	if spec.PublishAll {
		exposed, err := portspec.Exposed(img.Config.ExposedPorts)
		if err != nil {
			return nil, -1, fmt.Errorf("image %q: %w", spec.Image, err)
		}
		publish = append(publish, exposed...)
	}
	own := mode != "host" && mode != "none" && !strings.HasPrefix(mode, "container:")
	if own {
		n, err := m.net.Network(ctx, mode)
		if err != nil {
			return nil, -1, &errdefs.Error{Kind: errdefs.KindOf(err), Field: "network", Msg: fmt.Sprintf("%s %s: %v", errdefs.FieldToken, mode, err), Err: err}
		}
		if network.Predefined(n.Name) {
			own, mode = false, n.Name
		} else {
			mode = n.Name
		}
	}
	if (spec.IP != "" || spec.IP6 != "") && !own {
		return nil, -1, errdefs.Field("ip", fmt.Sprintf("--ip and --ip6 need a network (not --network %s)", mode))
	}
	if len(publish) > 0 && mode == "host" {
		// As Docker: the ports are the host's own already.
		if spec.Stdio.Err != nil {
			fmt.Fprintln(spec.Stdio.Err, "WARNING: Published ports are discarded when using host network mode")
		}
		publish = nil
	}
	if len(publish) > 0 && !own {
		return nil, -1, errdefs.Field("publish", fmt.Sprintf("publishing ports needs a network of the container's own (not --network %s)", mode))
	}

	// Reserve the name and record the container first: a crash from here on
	// leaves a record that reconcile can see and clean.
	err = m.st.Update(func(tx store.Tx) error {
		if c.Name == "" {
			c.Name = randomName(tx)
		} else if !network.ValidName(c.Name) {
			return errdefs.Field("name", fmt.Sprintf("Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", c.Name))
		}
		if o, _ := findContainer(tx, c.Name); o != nil {
			return &errdefs.Error{Kind: errdefs.Conflict, Field: "name", Msg: fmt.Sprintf("Conflict. The container name %q is already in use by container %q; remove it (ctnet rm %s) or pick another %s", "/"+c.Name, o.ID, c.Name, errdefs.FieldToken)}
		}
		switch {
		case mode == "host":
			c.NetworkMode = "host"
			if c.Hostname == network.ShortID(c.ID) && spec.Hostname == "" {
				c.Hostname, _ = os.Hostname()
			}
		case mode == "none":
			c.NetworkMode, c.NetNS, c.OwnNS = "none", m.pinPath(c.ID), true
		case strings.HasPrefix(mode, "container:"):
			o, err := findContainer(tx, strings.TrimPrefix(mode, "container:"))
			if err != nil {
				return err
			}
			if o.NetworkMode == "host" || o.NetNS == "" {
				return errdefs.Field("network", fmt.Sprintf("%s %s: container %q uses the host's network; use %s host", errdefs.FieldToken, mode, o.Name, errdefs.FieldToken))
			}
			if _, err := os.Stat(o.NetNS); err != nil {
				return &errdefs.Error{Kind: errdefs.Conflict, Field: "network", Msg: fmt.Sprintf("%s %s: container %q is not running; start it first", errdefs.FieldToken, mode, o.Name)}
			}
			c.NetworkMode, c.NetNS = "container:"+o.ID, o.NetNS
		default:
			c.NetworkMode, c.NetNS, c.OwnNS = mode, m.pinPath(c.ID), true
		}
		return store.PutJSON(tx, store.Containers, c.ID, c)
	})
	if err != nil {
		return nil, -1, err
	}
	started, ctr := false, c
	defer func() {
		if !started {
			m.remove(context.WithoutCancel(ctx), rt, ctr)
		}
	}()

	if c.OwnNS {
		if err := namespace.Pin(c.NetNS); err != nil {
			return nil, -1, fmt.Errorf("%s: %w", c.what(), err)
		}
		crash.Point("run-netns")
		if c.NetworkMode != "none" {
			a, err := m.net.Attach(ctx, network.AttachSpec{
				Network: c.NetworkMode, NetNS: c.NetNS, Owner: network.Container(c.ID), Name: c.Name,
				IfName: "eth0", IP: spec.IP, IP6: spec.IP6, MAC: spec.MAC, Aliases: spec.Aliases,
				DNSNames: dnsNames(c, spec.Aliases), Resolver: &network.Resolver{Upstreams: c.DNS},
				Ports: publish,
			})
			if err != nil {
				return nil, -1, fmt.Errorf("%s: %w", c.what(), err)
			}
			c.Ports = a.Ports
		}
	}
	crash.Point("run-attach")
	etc, err := m.etcFiles(c)
	if err != nil {
		return nil, -1, err
	}
	ipc := spec.IPC
	if strings.HasPrefix(ipc, "container:") {
		o, err := m.Container(strings.TrimPrefix(ipc, "container:"))
		if err != nil {
			return nil, -1, errdefs.Field("ipc", fmt.Sprintf("%s %s: %v", errdefs.FieldToken, ipc, err))
		}
		ipc = "container:" + o.ID
	}
	var onExit []string
	if m.cfg.OnExit != nil {
		onExit = m.cfg.OnExit(c.ID)
	}
	usesDNS := c.OwnNS && c.NetworkMode != network.DefaultNetwork && c.NetworkMode != "none"
	watch := m.net.MonitorWatch(usesDNS, c.Ports)
	rc, err := rt.Create(ctx, ocirt.Spec{
		ID: c.ID, Name: c.Name, Hostname: c.Hostname, Image: img, Args: c.Args, Env: spec.Env,
		Tty: spec.Tty, Interactive: spec.Interactive, NetNSPath: c.NetNS, IPC: ipc,
		Mounts: mounts, EtcFiles: etc, WorkDir: spec.WorkDir, User: spec.User, OnExit: onExit,
		Security: sec, Sysctls: spec.Sysctls, Watch: watch, ReadOnlyRoot: spec.ReadOnly,
	})
	if err != nil {
		return nil, -1, fmt.Errorf("%s: %w", c.what(), err)
	}
	crash.Point("run-create")
	if spec.Detach {
		if err := rc.Start(ctx); err != nil {
			return nil, -1, startError(c, err)
		}
	}
	started = true
	c.CreatorPID = 0
	if err := m.st.Update(func(tx store.Tx) error {
		if tx.Get(store.Containers, c.ID) == nil {
			return nil // it ended and removed itself already
		}
		return store.PutJSON(tx, store.Containers, c.ID, c)
	}); err != nil {
		return c, -1, err
	}
	if spec.Detach {
		return c, 0, nil
	}
	// In the foreground this process holds the ports, as a monitor would.
	release, herr := network.HoldPorts(c.Ports)
	if herr != nil {
		fmt.Fprintf(spec.Stdio.Err, "warning: %s: %v\n", c.what(), herr)
	}
	code, err = rc.Run(ctx, spec.Stdio.In, spec.Stdio.Out, spec.Stdio.Err)
	release()
	err = startError(c, err)
	if cerr := m.Exited(context.WithoutCancel(ctx), c.ID); cerr != nil && err == nil {
		err = cerr
	}
	return c, code, err
}

// dnsNames are the names a container answers to on a user network: its
// name, its aliases, its short id and its host name, as Docker's.
func dnsNames(c *Container, aliases []string) []string {
	names := append([]string{c.Name}, aliases...)
	names = append(names, network.ShortID(c.ID))
	if c.Hostname != c.Name && c.Hostname != network.ShortID(c.ID) {
		names = append(names, c.Hostname)
	}
	return names
}

func parseVolumes(vs []string) ([]ocirt.Mount, error) {
	var out []ocirt.Mount
	for _, v := range vs {
		bad := func(msg string) error { return errdefs.Field("volume", fmt.Sprintf("-v %q: %s", v, msg)) }
		parts := strings.Split(v, ":")
		if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
			return nil, bad("want SRC:DST[:ro]")
		}
		m := ocirt.Mount{Source: parts[0], Destination: parts[1]}
		if !filepath.IsAbs(m.Source) || !filepath.IsAbs(m.Destination) {
			return nil, bad("both paths must be absolute (named volumes are not supported)")
		}
		if len(parts) == 3 {
			switch parts[2] {
			case "ro":
				m.ReadOnly = true
			case "rw":
			default:
				return nil, bad(fmt.Sprintf("unknown mode %q; use ro or rw", parts[2]))
			}
		}
		if _, err := os.Stat(m.Source); err != nil {
			return nil, bad(err.Error())
		}
		out = append(out, m)
	}
	return out, nil
}

func checkAddHost(h string) error {
	name, ip, ok := strings.Cut(h, ":")
	if !ok || name == "" {
		return errdefs.Field("add-host", fmt.Sprintf("%s %q: want NAME:IP", errdefs.FieldToken, h))
	}
	if err := checkHostName("add-host", name); err != nil {
		return err
	}
	if _, err := netip.ParseAddr(strings.Trim(ip, "[]")); err != nil {
		return errdefs.Field("add-host", fmt.Sprintf("%s %q: %q is not an IP address", errdefs.FieldToken, h, ip))
	}
	return nil
}

// checkHostName refuses what is no host name (a newline, a space or a '#'
// would change /etc/hosts or the resolver's records).
func checkHostName(field, name string) error {
	if !network.ValidHostName(name) {
		return errdefs.Field(field, fmt.Sprintf("%s %q is not a host name: use letters, digits, '-' and '_' in dot-separated labels of 1 to 63 characters", errdefs.FieldToken, name))
	}
	return nil
}

var (
	nameLeft  = []string{"brave", "calm", "eager", "fond", "gentle", "happy", "jolly", "keen", "lucid", "merry", "nifty", "proud", "quirky", "sharp", "tender", "vivid", "witty", "zen"}
	nameRight = []string{"babbage", "curie", "darwin", "euler", "fermi", "galois", "hopper", "kepler", "lovelace", "noether", "pascal", "ritchie", "shannon", "turing", "volta", "wozniak"}
)

// randomName picks a free Docker-style name, adjective_scientist.
func randomName(tx store.Tx) string {
	for i := 0; ; i++ {
		id := network.NewID()
		n := nameLeft[int(id[0])%len(nameLeft)] + "_" + nameRight[int(id[1])%len(nameRight)]
		if i > 10 {
			n += "_" + id[:4]
		}
		if c, _ := findContainer(tx, n); c == nil {
			return n
		}
	}
}

// Connect attaches a running container to one more network, as eth1,
// eth2…, and updates its /etc/hosts.
func (m *Manager) Connect(ctx context.Context, ref string, spec network.AttachSpec) (*network.Attachment, error) {
	c, rt, err := m.containerRuntime(ref)
	if err != nil {
		return nil, err
	}
	if err := connectable(c, spec.Network); err != nil {
		return nil, err
	}
	if st, _ := rt.State(c.ID); !st.Running {
		return nil, errdefs.New(errdefs.Conflict, fmt.Sprintf("container %q is not running; start it first", c.Name))
	}
	for _, a := range spec.Aliases {
		if err := checkHostName("alias", a); err != nil {
			return nil, err
		}
	}
	spec.NetNS, spec.Owner, spec.Name = c.NetNS, network.Container(c.ID), c.Name
	spec.DNSNames, spec.Resolver = dnsNames(c, spec.Aliases), &network.Resolver{Upstreams: c.DNS}
	a, err := m.net.Attach(ctx, spec)
	if err != nil {
		return nil, err
	}
	return a, m.refresh(rt, c)
}

// connectable refuses what Docker refuses, in Docker's words (scripts grep
// them): the host and none modes are not networks to join or leave, and a
// container sharing another's namespace has no interfaces of its own.
func connectable(c *Container, net string) error {
	conflict := func(msg string) error {
		return errdefs.New(errdefs.Conflict, fmt.Sprintf("container %q: %s", c.Name, msg))
	}
	switch {
	case net == "host" || c.NetworkMode == "host":
		return conflict("container cannot be disconnected from host network or connected to host network (run it again with or without --network host)")
	case net == "none" || c.NetworkMode == "none":
		return conflict("container cannot be connected to multiple networks with one of the networks in private (none) mode")
	case !c.OwnNS:
		return conflict(fmt.Sprintf("container sharing network namespace with another container or host cannot be connected to any other network (--network %s)", c.NetworkMode))
	}
	return nil
}

// Disconnect removes one network's interface from a container; its other
// networks keep working.
func (m *Manager) Disconnect(ctx context.Context, networkRef, ref string) error {
	c, rt, err := m.containerRuntime(ref)
	if err != nil {
		return err
	}
	if networkRef == "host" || c.NetworkMode == "host" {
		return connectable(c, networkRef)
	}
	if err := m.net.Detach(ctx, network.DetachSpec{Owner: network.Container(c.ID), Network: networkRef, What: c.what()}); err != nil {
		return err
	}
	return m.refresh(rt, c)
}

// refresh rewrites a running container's /etc files after its networks
// changed.
func (m *Manager) refresh(rt *ocirt.Runtime, c *Container) error {
	etc, err := m.etcFiles(c)
	if err != nil {
		return err
	}
	for _, f := range []string{"/etc/hosts", "/etc/resolv.conf"} {
		if err := rt.WriteEtcFile(c.ID, f, etc[f]); err != nil {
			return err
		}
	}
	return nil
}
