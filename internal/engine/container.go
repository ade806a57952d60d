package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ctnet/ctnet/internal/image"
	"github.com/ctnet/ctnet/internal/nspin"
	"github.com/ctnet/ctnet/internal/ocirt"
	"github.com/ctnet/ctnet/internal/portspec"
	"github.com/ctnet/ctnet/internal/store"
)

// Container is a container as stored (runtime fact: containers, like their
// endpoints, do not survive a reboot).
type Container struct {
	ID          string
	Name        string
	Image       string // as the user named it
	ImageID     string
	Args        []string
	Env         []string `json:",omitempty"`
	Created     time.Time
	Hostname    string
	NetworkMode string   // bridge, host, none, container:<id>, or a network name
	NetNS       string   // namespace the container runs in; "" = the host's
	OwnNS       bool     // NetNS is this container's own pin, dropped with it
	IPC         string   `json:",omitempty"`
	Volumes     []string `json:",omitempty"`
	DNS         []string `json:",omitempty"`
	AddHosts    []string `json:",omitempty"`
	AutoRemove  bool
	Tty         bool
	Runtime     string
	Ports       []portspec.Mapping `json:",omitempty"` // published, host ports chosen
	// CreatorPID is the ctnet process still setting the container up;
	// reconcile leaves such a container alone while that process lives.
	CreatorPID int `json:",omitempty"`
}

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
	Stdin                 io.Reader
	Stdout, Stderr        io.Writer
}

// Images opens the image store under the persistent root.
func (e *Engine) Images() (*image.Store, error) {
	return image.Open(filepath.Join(e.cfg.Root, "images"))
}

func (e *Engine) runtimeFor(name string) (*ocirt.Runtime, error) {
	if name == "" {
		name = "runc"
	}
	return ocirt.New(name, filepath.Join(e.cfg.RunRoot, "containers"))
}

func (e *Engine) pinPath(id string) string { return filepath.Join(e.cfg.RunRoot, "netns", id) }

// Run creates and starts a container. Without Detach it waits for the
// container and returns its exit status. On any failure before the
// container starts, everything it made is undone.
func (e *Engine) Run(ctx context.Context, spec RunSpec) (c *Container, code int, err error) {
	if err := e.prepare(); err != nil {
		return nil, -1, err
	}
	imgs, err := e.Images()
	if err != nil {
		return nil, -1, err
	}
	img, err := imgs.Get(spec.Image)
	if err != nil {
		return nil, -1, err
	}
	rt, err := e.runtimeFor(spec.Runtime)
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
	for _, d := range spec.DNS {
		if _, err := netip.ParseAddr(d); err != nil {
			return nil, -1, fmt.Errorf("--dns %q is not an IP address", d)
		}
	}

	c = &Container{
		ID: newID(), Name: spec.Name, Image: spec.Image, ImageID: img.ID,
		Args: ocirt.ResolveArgs(img.Config, spec.Cmd), Env: spec.Env, Created: time.Now().UTC(),
		Hostname: spec.Hostname, IPC: spec.IPC, Volumes: spec.Volumes, DNS: spec.DNS,
		AddHosts: spec.AddHosts, AutoRemove: spec.Remove, Tty: spec.Tty, Runtime: rt.Binary,
		CreatorPID: os.Getpid(),
	}
	if len(c.Args) == 0 {
		return nil, -1, fmt.Errorf("image %q has no command; give one after the image name", spec.Image)
	}
	if c.Hostname == "" {
		c.Hostname = ShortID(c.ID)
	}
	mode := spec.Network
	if mode == "" || mode == "default" {
		mode = DefaultNetwork
	}
	publish := spec.Publish
	if spec.PublishAll {
		exposed, err := portspec.Exposed(img.Config.ExposedPorts)
		if err != nil {
			return nil, -1, fmt.Errorf("image %q: %w", spec.Image, err)
		}
		publish = append(publish, exposed...)
	}

	// Reserve the name and record the container first: a crash from here on
	// leaves a record that reconcile can see and clean.
	err = e.store.Update(func(tx store.Tx) error {
		if c.Name == "" {
			c.Name = randomName(tx)
		} else if !validName(c.Name) {
			return fmt.Errorf("invalid container name %q: use letters, digits and _ . - (starting with a letter or digit)", c.Name)
		}
		if o, _ := findContainer(tx, c.Name); o != nil {
			return fmt.Errorf("the container name %q is already in use by container %s; remove it (ctnet rm %s) or pick another --name", c.Name, ShortID(o.ID), c.Name)
		}
		switch {
		case mode == "host":
			c.NetworkMode = "host"
			if c.Hostname == ShortID(c.ID) && spec.Hostname == "" {
				c.Hostname, _ = os.Hostname()
			}
		case mode == "none":
			c.NetworkMode, c.NetNS, c.OwnNS = "none", e.pinPath(c.ID), true
		case strings.HasPrefix(mode, "container:"):
			o, err := findContainer(tx, strings.TrimPrefix(mode, "container:"))
			if err != nil {
				return err
			}
			if o.NetworkMode == "host" || o.NetNS == "" {
				return fmt.Errorf("--network %s: container %q uses the host's network; use --network host", mode, o.Name)
			}
			if _, err := os.Stat(o.NetNS); err != nil {
				return fmt.Errorf("--network %s: container %q is not running; start it first", mode, o.Name)
			}
			c.NetworkMode, c.NetNS = "container:"+o.ID, o.NetNS
		default:
			n, err := findNetwork(tx, mode)
			if err != nil {
				return fmt.Errorf("--network %s: %w", mode, err)
			}
			c.NetworkMode, c.NetNS, c.OwnNS = n.Name, e.pinPath(c.ID), true
		}
		if (spec.IP != "" || spec.IP6 != "") && (!c.OwnNS || c.NetworkMode == "none") {
			return fmt.Errorf("--ip and --ip6 need a network (not --network %s)", mode)
		}
		if len(publish) > 0 {
			if !c.OwnNS || c.NetworkMode == "none" {
				return fmt.Errorf("publishing ports needs a network of the container's own (not --network %s)", mode)
			}
			n, err := findNetwork(tx, c.NetworkMode)
			if err != nil {
				return err
			}
			if c.Ports, err = reservePorts(tx, c, publish, n.IPv6, e.loopback); err != nil {
				return err
			}
		}
		return putJSON(tx, store.Containers, c.ID, c)
	})
	if err != nil {
		return nil, -1, err
	}
	started, ctr := false, c
	defer func() {
		if !started {
			e.removeContainer(rt, ctr)
		}
	}()

	if c.OwnNS {
		if err := nspin.New(c.NetNS); err != nil {
			return nil, -1, fmt.Errorf("container %q: %w", c.Name, err)
		}
		crashPoint("run-netns")
		if c.NetworkMode != "none" {
			err := e.repairing(func() error { // prepared above already
				_, err := e.attach(AttachSpec{
					Network: c.NetworkMode, NetNS: c.NetNS, IfName: "eth0", IP: spec.IP, IP6: spec.IP6,
					MAC: spec.MAC, Aliases: spec.Aliases, Container: c.ID, Name: c.Name,
				})
				return err
			})
			if err != nil {
				return nil, -1, fmt.Errorf("container %q: %w", c.Name, err)
			}
			if err := e.publish(c); err != nil {
				return nil, -1, err
			}
		}
	}
	crashPoint("run-attach")
	etc, err := e.etcFiles(c)
	if err != nil {
		return nil, -1, err
	}
	ipc := spec.IPC
	if strings.HasPrefix(ipc, "container:") {
		o, err := e.Container(strings.TrimPrefix(ipc, "container:"))
		if err != nil {
			return nil, -1, fmt.Errorf("--ipc %s: %w", ipc, err)
		}
		ipc = "container:" + o.ID
	}
	self, _ := os.Executable()
	rc, err := rt.Create(ctx, ocirt.Spec{
		ID: c.ID, Name: c.Name, Hostname: c.Hostname, Image: img, Args: c.Args, Env: spec.Env,
		Tty: spec.Tty, Interactive: spec.Interactive, NetNSPath: c.NetNS, IPC: ipc,
		Mounts: mounts, EtcFiles: etc, WorkDir: spec.WorkDir, User: spec.User,
		OnExit: []string{self, "--root", e.cfg.Root, "--run-root", e.cfg.RunRoot, "system", "container-exited", c.ID},
	})
	if err != nil {
		return nil, -1, fmt.Errorf("container %q: %w", c.Name, err)
	}
	crashPoint("run-create")
	if c.OwnNS && c.NetworkMode != DefaultNetwork && c.NetworkMode != "none" {
		if err := e.publishDNS(true); err != nil {
			return nil, -1, fmt.Errorf("container %q: %w", c.Name, err)
		}
	}
	if spec.Detach {
		if err := rc.Start(ctx); err != nil {
			return nil, -1, fmt.Errorf("container %q: %w", c.Name, err)
		}
	}
	started = true
	c.CreatorPID = 0
	if err := e.store.Update(func(tx store.Tx) error {
		if tx.Get(store.Containers, c.ID) == nil {
			return nil // it ended and removed itself already
		}
		return putJSON(tx, store.Containers, c.ID, c)
	}); err != nil {
		return c, -1, err
	}
	if spec.Detach {
		return c, 0, nil
	}
	code, err = rc.Run(ctx, spec.Stdin, spec.Stdout, spec.Stderr)
	if cerr := e.ContainerExited(c.ID); cerr != nil && err == nil {
		err = cerr
	}
	return c, code, err
}

// ContainerExited releases what a stopped container no longer needs: its
// network (endpoints, leases, namespace pin), or everything with --rm.
// Idempotent; the monitor of a detached container calls it when it ends.
func (e *Engine) ContainerExited(id string) error {
	c, err := e.Container(id)
	if err != nil {
		return err
	}
	rt, err := e.runtimeFor(c.Runtime)
	if err != nil {
		return err
	}
	if st, err := rt.State(c.ID); err == nil && st.Running {
		return nil
	}
	if c.AutoRemove {
		return e.removeContainer(rt, c)
	}
	return e.releaseNetwork(c)
}

// releaseNetwork forgets the container's endpoints and drops its namespace
// pin; the kernel then reclaims the veths in the background, which costs
// ctnet nothing (deleting a veth synchronously costs ~30 ms).
func (e *Engine) releaseNetwork(c *Container) error {
	named := false // was it on a network with names?
	err := e.store.Update(func(tx store.Tx) error {
		if err := e.unpublish(tx, c); err != nil {
			return err
		}
		eps, err := listJSON[Endpoint](tx, store.Endpoints, ownerOfContainer(c.ID))
		if err != nil {
			return err
		}
		for _, ep := range eps {
			if err := forgetEndpoint(tx, &ep); err != nil {
				return err
			}
			if c.OwnNS {
				if err := markReclaim(tx, ep.HostIf); err != nil {
					return err
				}
			}
			named = named || ep.Network != DefaultNetwork
		}
		return nil
	})
	if err != nil {
		return err
	}
	if c.OwnNS {
		if err := nspin.Remove(c.NetNS); err != nil {
			return err
		}
	}
	if named {
		return e.publishDNS(false)
	}
	return nil
}

// removeContainer deletes everything of a container; missing pieces are fine.
func (e *Engine) removeContainer(rt *ocirt.Runtime, c *Container) error {
	var errs []error
	if rt != nil {
		errs = append(errs, rt.Delete(c.ID, true))
	}
	errs = append(errs, e.releaseNetwork(c))
	crashPoint("rm")
	errs = append(errs, e.store.Update(func(tx store.Tx) error { return tx.Delete(store.Containers, c.ID) }))
	return errors.Join(errs...)
}

// Container finds a container by name, full id or unique id prefix.
func (e *Engine) Container(ref string) (*Container, error) {
	var c *Container
	err := e.store.View(func(tx store.Tx) error {
		var err error
		c, err = findContainer(tx, ref)
		return err
	})
	return c, err
}

func findContainer(tx store.Tx, ref string) (*Container, error) {
	if c, err := getJSON[Container](tx, store.Containers, ref); c != nil || err != nil {
		return c, err
	}
	all, err := listJSON[Container](tx, store.Containers, "")
	if err != nil {
		return nil, err
	}
	var found *Container
	for i := range all {
		if all[i].Name == ref {
			return &all[i], nil
		}
		if len(ref) >= 3 && strings.HasPrefix(all[i].ID, ref) {
			if found != nil {
				return nil, fmt.Errorf("container id prefix %q is ambiguous; give more characters", ref)
			}
			found = &all[i]
		}
	}
	if found == nil {
		return nil, &NotFoundError{Kind: "container", Ref: ref, Hint: "list containers with `ctnet ps -a`"}
	}
	return found, nil
}

// ContainerInfo is a container with its runtime status and endpoints.
type ContainerInfo struct {
	Container
	Status    ocirt.Status
	Endpoints []Endpoint
}

// Containers lists every container with its status.
func (e *Engine) Containers() ([]ContainerInfo, error) {
	var out []ContainerInfo
	err := e.store.View(func(tx store.Tx) error {
		cs, err := listJSON[Container](tx, store.Containers, "")
		if err != nil {
			return err
		}
		for _, c := range cs {
			info, err := containerInfo(tx, c)
			if err != nil {
				return err
			}
			out = append(out, info)
		}
		return nil
	})
	for i := range out {
		out[i].Status = e.status(&out[i].Container)
	}
	return out, err
}

// InspectContainer returns one container with its status and endpoints.
func (e *Engine) InspectContainer(ref string) (*ContainerInfo, error) {
	var info ContainerInfo
	err := e.store.View(func(tx store.Tx) error {
		c, err := findContainer(tx, ref)
		if err != nil {
			return err
		}
		info, err = containerInfo(tx, *c)
		return err
	})
	if err != nil {
		return nil, err
	}
	info.Status = e.status(&info.Container)
	return &info, nil
}

// containerInfo is a container with its own endpoints (status comes later,
// outside the transaction: asking the OCI runtime can take a while).
func containerInfo(tx store.Tx, c Container) (ContainerInfo, error) {
	eps, err := listJSON[Endpoint](tx, store.Endpoints, ownerOfContainer(c.ID))
	return ContainerInfo{Container: c, Endpoints: eps}, err
}

// status asks the OCI runtime how the container is; one never started is
// "created".
func (e *Engine) status(c *Container) ocirt.Status {
	var st ocirt.Status
	if rt, err := e.runtimeFor(c.Runtime); err == nil {
		st, _ = rt.State(c.ID)
	}
	if st.Status == "" {
		st.Status = "created"
	}
	return st
}

// Exec runs a command in a running container.
func (e *Engine) Exec(ctx context.Context, ref string, x ocirt.ExecSpec, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	c, err := e.Container(ref)
	if err != nil {
		return -1, err
	}
	rt, err := e.runtimeFor(c.Runtime)
	if err != nil {
		return -1, err
	}
	return rt.Exec(ctx, c.ID, x, stdin, stdout, stderr)
}

// Stop sends SIGTERM, then SIGKILL after timeout, and releases the network.
func (e *Engine) Stop(ctx context.Context, ref string, timeout time.Duration) (*Container, error) {
	c, rt, err := e.containerRuntime(ref)
	if err != nil {
		return nil, err
	}
	if err := rt.Stop(ctx, c.ID, timeout); err != nil {
		return nil, err
	}
	return c, e.ContainerExited(c.ID)
}

// Kill sends a signal to the container's main process.
func (e *Engine) Kill(ref string, sig syscall.Signal) (*Container, error) {
	c, rt, err := e.containerRuntime(ref)
	if err != nil {
		return nil, err
	}
	if st, _ := rt.State(c.ID); !st.Running {
		return nil, fmt.Errorf("container %q is not running", c.Name)
	}
	return c, rt.Kill(c.ID, sig)
}

// Remove deletes a container; a running one only with force.
func (e *Engine) Remove(ref string, force bool) (*Container, error) {
	c, rt, err := e.containerRuntime(ref)
	if err != nil {
		return nil, err
	}
	if st, _ := rt.State(c.ID); st.Running && !force {
		return nil, fmt.Errorf("container %q is running; stop it first (ctnet stop %s) or use ctnet rm -f", c.Name, c.Name)
	}
	return c, e.removeContainer(rt, c)
}

// LogPath is where a detached container's output goes.
func (e *Engine) LogPath(ref string) (string, *Container, error) {
	c, rt, err := e.containerRuntime(ref)
	if err != nil {
		return "", nil, err
	}
	return rt.LogPath(c.ID), c, nil
}

// Running reports whether the container's main process still runs.
func (e *Engine) Running(c *Container) bool { return e.status(c).Running }

func (e *Engine) containerRuntime(ref string) (*Container, *ocirt.Runtime, error) {
	if err := RequireRoot(); err != nil {
		return nil, nil, err
	}
	c, err := e.Container(ref)
	if err != nil {
		return nil, nil, err
	}
	rt, err := e.runtimeFor(c.Runtime)
	if err != nil {
		return nil, nil, err
	}
	return c, rt, nil
}

func parseVolumes(vs []string) ([]ocirt.Mount, error) {
	var out []ocirt.Mount
	for _, v := range vs {
		parts := strings.Split(v, ":")
		if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
			return nil, fmt.Errorf("-v %q: want SRC:DST[:ro]", v)
		}
		m := ocirt.Mount{Source: parts[0], Destination: parts[1]}
		if !filepath.IsAbs(m.Source) || !filepath.IsAbs(m.Destination) {
			return nil, fmt.Errorf("-v %q: both paths must be absolute (named volumes are not supported)", v)
		}
		if len(parts) == 3 {
			switch parts[2] {
			case "ro":
				m.ReadOnly = true
			case "rw":
			default:
				return nil, fmt.Errorf("-v %q: unknown mode %q; use ro or rw", v, parts[2])
			}
		}
		if _, err := os.Stat(m.Source); err != nil {
			return nil, fmt.Errorf("-v %q: %w", v, err)
		}
		out = append(out, m)
	}
	return out, nil
}

func checkAddHost(h string) error {
	name, ip, ok := strings.Cut(h, ":")
	if !ok || name == "" {
		return fmt.Errorf("--add-host %q: want NAME:IP", h)
	}
	if _, err := netip.ParseAddr(strings.Trim(ip, "[]")); err != nil {
		return fmt.Errorf("--add-host %q: %q is not an IP address", h, ip)
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
		id := newID()
		n := nameLeft[int(id[0])%len(nameLeft)] + "_" + nameRight[int(id[1])%len(nameRight)]
		if i > 10 {
			n += "_" + id[:4]
		}
		if c, _ := findContainer(tx, n); c == nil {
			return n
		}
	}
}

// ConnectContainer attaches a running container to one more network, as
// eth1, eth2…, and updates its /etc/hosts and the embedded DNS.
func (e *Engine) ConnectContainer(spec AttachSpec, ref string) (*Endpoint, error) {
	c, rt, err := e.containerRuntime(ref)
	if err != nil {
		return nil, err
	}
	if !c.OwnNS {
		return nil, fmt.Errorf("container %q shares another namespace (--network %s) and cannot join networks of its own", c.Name, c.NetworkMode)
	}
	if st, _ := rt.State(c.ID); !st.Running {
		return nil, fmt.Errorf("container %q is not running; start it first", c.Name)
	}
	spec.NetNS, spec.Container, spec.Name = c.NetNS, c.ID, c.Name
	ep, err := e.Attach(spec)
	if err != nil {
		return nil, err
	}
	if err := e.refreshContainer(rt, c); err != nil {
		return ep, err
	}
	return ep, nil
}

// DisconnectContainer removes one network's interface from a container;
// its other networks keep working.
func (e *Engine) DisconnectContainer(network, ref string) error {
	c, rt, err := e.containerRuntime(ref)
	if err != nil {
		return err
	}
	err = e.detach(network, fmt.Sprintf("container %q", c.Name), ownerOfContainer(c.ID), func(*Endpoint) bool { return true })
	if err != nil {
		return err
	}
	return e.refreshContainer(rt, c)
}

// refreshContainer rewrites a running container's /etc files and the
// resolver's view after its networks changed.
func (e *Engine) refreshContainer(rt *ocirt.Runtime, c *Container) error {
	etc, err := e.etcFiles(c)
	if err != nil {
		return err
	}
	for _, f := range []string{"/etc/hosts", "/etc/resolv.conf"} {
		if err := rt.WriteEtcFile(c.ID, f, etc[f]); err != nil {
			return err
		}
	}
	return e.publishDNS(true)
}
