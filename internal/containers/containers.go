// Package containers runs ctnet's own containers on an OCI runtime: run,
// stop, kill, rm, exec, their /etc files and the names they have in the
// embedded resolver. Their networks come from the network service, through
// its exported API only; the records live in the service's store.
package containers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ctnet/ctnet/internal/crash"
	"github.com/ctnet/ctnet/internal/errdefs"
	"github.com/ctnet/ctnet/internal/image"
	"github.com/ctnet/ctnet/internal/namespace"
	"github.com/ctnet/ctnet/internal/network"
	"github.com/ctnet/ctnet/internal/ocirt"
	"github.com/ctnet/ctnet/internal/portspec"
	"github.com/ctnet/ctnet/internal/store"
)

// Config says where containers live and how their monitors call back.
type Config struct {
	Root    string // persistent: images
	RunRoot string // runtime: bundles, namespace pins
	// OnExit is the command a detached container's monitor runs once the
	// container has ended (`ctnet system container-exited ID` with the
	// front end's global options).
	OnExit func(id string) []string
}

// Manager is one host's containers.
type Manager struct {
	cfg Config
	net *network.Service
	st  store.Store
}

// New manages containers over a host's network service.
func New(cfg Config, net *network.Service) *Manager {
	return &Manager{cfg: cfg, net: net, st: net.Store()}
}

// Container is a container as stored (runtime fact: containers, like their
// attachments, do not survive a reboot).
type Container struct {
	ID          string
	Name        string
	Image       string // as the user named it
	ImageID     string
	Args        []string
	Env         []string `json:",omitempty"`
	Created     time.Time
	Hostname    string
	NetworkMode string // bridge, host, none, container:<id>, or a network name
	// Mode is --network as given: "default" when not (inspect's
	// HostConfig.NetworkMode, as Docker's).
	Mode       string            `json:",omitempty"`
	NetNS      string            // namespace the container runs in; "" = the host's
	OwnNS      bool              // NetNS is this container's own pin, dropped with it
	IPC        string            `json:",omitempty"`
	Volumes    []string          `json:",omitempty"`
	DNS        []string          `json:",omitempty"`
	AddHosts   []string          `json:",omitempty"`
	DNSSearch  []string          `json:",omitempty"`
	DNSOptions []string          `json:",omitempty"`
	Labels     map[string]string `json:",omitempty"`
	Entrypoint []string          `json:",omitempty"` // the command's entrypoint part (image's or --entrypoint)
	WorkDir    string            `json:",omitempty"`
	User       string            `json:",omitempty"`
	ReadOnly   bool              `json:",omitempty"`
	AutoRemove bool
	Tty        bool
	Runtime    string
	Ports      []portspec.Mapping `json:",omitempty"` // published, host ports chosen
	// PortBindings are the -p flags as asked (inspect's HostConfig).
	PortBindings []portspec.Mapping `json:",omitempty"`
	// CreatorPID is the ctnet process still setting the container up;
	// reconcile leaves such a container alone while that process lives.
	CreatorPID int `json:",omitempty"`
}

// NetworkModeAsked is --network as the user gave it, "default" without.
func (c *Container) NetworkModeAsked() string {
	if c.Mode == "" {
		return "default"
	}
	return c.Mode
}

// Cmd is the command part of Args (after the entrypoint).
func (c *Container) Cmd() []string {
	if len(c.Entrypoint) <= len(c.Args) {
		return c.Args[len(c.Entrypoint):]
	}
	return c.Args
}

// EtcPaths are where the container's /etc/resolv.conf, /etc/hostname and
// /etc/hosts are kept on the host ("" if the runtime is not found).
func (m *Manager) EtcPaths(id string) (resolvConf, hostname, hosts string) {
	rt, err := m.runtimeFor("")
	if err != nil {
		return "", "", ""
	}
	return rt.EtcFile(id, "/etc/resolv.conf"), rt.EtcFile(id, "/etc/hostname"), rt.EtcFile(id, "/etc/hosts")
}

// Status is how a container is, as its runtime says.
type Status struct {
	Status     string // "created", "running", "exited"
	Running    bool
	Pid        int
	ExitCode   int
	StartedAt  time.Time
	FinishedAt time.Time
}

// Info is a container with its status and attachments.
type Info struct {
	Container
	Status      Status
	Attachments []network.Attachment
}

// Images opens the image store under the persistent root.
func (m *Manager) Images() (*image.Store, error) {
	return image.Open(filepath.Join(m.cfg.Root, "images"))
}

func (m *Manager) runtimeFor(name string) (*ocirt.Runtime, error) {
	if name == "" {
		name = "runc"
	}
	// Bundles and runtime state in the run root (tmpfs); what grows with a
	// container's writes, on disk under the root.
	return ocirt.New(name, filepath.Join(m.cfg.RunRoot, "containers"), filepath.Join(m.cfg.Root, "containers"))
}

func (m *Manager) pinPath(id string) string { return filepath.Join(m.cfg.RunRoot, "netns", id) }

func (c *Container) what() string { return fmt.Sprintf("container %q", c.Name) }

// Container finds a container by name, full id or unique id prefix.
func (m *Manager) Container(ref string) (*Container, error) {
	var c *Container
	err := m.st.View(func(tx store.Tx) error {
		var err error
		c, err = findContainer(tx, ref)
		return err
	})
	return c, err
}

func findContainer(tx store.Tx, ref string) (*Container, error) {
	if c, err := store.GetJSON[Container](tx, store.Containers, ref); c != nil || err != nil {
		return c, err
	}
	all, err := store.ListJSON[Container](tx, store.Containers, "")
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
				return nil, errdefs.New(errdefs.Invalid, fmt.Sprintf("container id prefix %q is ambiguous; give more characters", ref))
			}
			found = &all[i]
		}
	}
	if found == nil {
		return nil, errdefs.New(errdefs.NotFound, fmt.Sprintf("No such container: %s; list containers with `ctnet ps -a`", ref))
	}
	return found, nil
}

// Containers lists every container with its status.
func (m *Manager) Containers() ([]Info, error) {
	var cs []Container
	if err := m.st.View(func(tx store.Tx) error {
		var err error
		cs, err = store.ListJSON[Container](tx, store.Containers, "")
		return err
	}); err != nil {
		return nil, err
	}
	atts, err := m.net.Attachments()
	if err != nil {
		return nil, err
	}
	byOwner := map[network.Owner][]network.Attachment{}
	for _, a := range atts {
		byOwner[a.Owner] = append(byOwner[a.Owner], a)
	}
	out := make([]Info, 0, len(cs))
	for _, c := range cs {
		out = append(out, Info{Container: c, Status: m.status(&c), Attachments: byOwner[network.Container(c.ID)]})
	}
	return out, nil
}

// Inspect returns one container with its status and attachments.
func (m *Manager) Inspect(ref string) (*Info, error) {
	c, err := m.Container(ref)
	if err != nil {
		return nil, err
	}
	atts, err := m.net.Attachments(network.Container(c.ID))
	if err != nil {
		return nil, err
	}
	return &Info{Container: *c, Status: m.status(c), Attachments: atts}, nil
}

// status asks the OCI runtime how the container is; one never started is
// "created".
func (m *Manager) status(c *Container) Status {
	var st ocirt.Status
	if rt, err := m.runtimeFor(c.Runtime); err == nil {
		st, _ = rt.State(c.ID)
	}
	if st.Status == "" {
		st.Status = "created"
	}
	return Status{Status: st.Status, Running: st.Running, Pid: st.Pid, ExitCode: st.ExitCode, StartedAt: st.StartedAt, FinishedAt: st.FinishedAt}
}

// Running reports whether the container's main process still runs.
func (m *Manager) Running(c *Container) bool { return m.status(c).Running }

// ExecSpec is what `exec` asks for.
type ExecSpec struct {
	Args             []string
	Env              []string
	Tty, Interactive bool
	WorkDir, User    string
}

// Exec runs a command in a running container.
func (m *Manager) Exec(ctx context.Context, ref string, x ExecSpec, stdio Stdio) (int, error) {
	c, rt, err := m.containerRuntime(ref)
	if err != nil {
		return -1, err
	}
	spec := ocirt.ExecSpec{Args: x.Args, Env: x.Env, Tty: x.Tty, Interactive: x.Interactive, WorkDir: x.WorkDir, User: x.User}
	code, err := rt.Exec(ctx, c.ID, spec, stdio.In, stdio.Out, stdio.Err)
	if errors.Is(err, ocirt.ErrNotRunning) {
		return code, errdefs.New(errdefs.Conflict, fmt.Sprintf("Container %s is not running (start it, or run a new one)", c.ID))
	}
	return code, startError(c, err)
}

// Stop sends SIGTERM, then SIGKILL after timeout, and releases the network.
func (m *Manager) Stop(ctx context.Context, ref string, timeout time.Duration) (*Container, error) {
	c, rt, err := m.containerRuntime(ref)
	if err != nil {
		return nil, err
	}
	if err := rt.Stop(ctx, c.ID, timeout); err != nil {
		return nil, err
	}
	return c, m.Exited(ctx, c.ID)
}

// Kill sends a signal to the container's main process.
func (m *Manager) Kill(ref string, sig syscall.Signal) (*Container, error) {
	c, rt, err := m.containerRuntime(ref)
	if err != nil {
		return nil, err
	}
	if st, _ := rt.State(c.ID); !st.Running {
		return nil, errdefs.New(errdefs.Conflict, fmt.Sprintf("Cannot kill container: %s: Container %s is not running", ref, c.ID))
	}
	return c, rt.Kill(c.ID, sig)
}

// Remove deletes a container; a running one only with force.
func (m *Manager) Remove(ctx context.Context, ref string, force bool) (*Container, error) {
	c, rt, err := m.containerRuntime(ref)
	if err != nil {
		return nil, err
	}
	if st, _ := rt.State(c.ID); st.Running && !force {
		return nil, errdefs.New(errdefs.Conflict, fmt.Sprintf("You cannot remove a running container %s. Stop the container before attempting removal or force remove (ctnet stop %s, or ctnet rm -f %s)", c.ID, c.Name, c.Name))
	}
	return c, m.remove(ctx, rt, c)
}

// LogPath is where a detached container's output goes.
func (m *Manager) LogPath(ref string) (string, *Container, error) {
	c, rt, err := m.containerRuntime(ref)
	if err != nil {
		return "", nil, err
	}
	return rt.LogPath(c.ID), c, nil
}

func (m *Manager) containerRuntime(ref string) (*Container, *ocirt.Runtime, error) {
	c, err := m.Container(ref)
	if err != nil {
		return nil, nil, err
	}
	rt, err := m.runtimeFor(c.Runtime)
	if err != nil {
		return nil, nil, err
	}
	return c, rt, nil
}

// Exited releases what a stopped container no longer needs: its network
// (attachments, leases, namespace pin), or everything with --rm.
// Idempotent; the monitor of a detached container has it called when the
// container ends.
func (m *Manager) Exited(ctx context.Context, id string) error {
	c, rt, err := m.containerRuntime(id)
	if err != nil {
		return err
	}
	if st, err := rt.State(c.ID); err == nil && st.Running {
		return nil
	}
	if c.AutoRemove {
		return m.remove(ctx, rt, c)
	}
	return m.releaseNetwork(ctx, c)
}

// releaseNetwork removes the container's attachments and drops its namespace
// pin; the kernel then reclaims the veths in the background, which costs
// ctnet nothing (deleting a veth synchronously costs ~30 ms).
func (m *Manager) releaseNetwork(ctx context.Context, c *Container) error {
	err := m.net.Detach(ctx, network.DetachSpec{Owner: network.Container(c.ID), NamespaceGoing: c.OwnNS, What: c.what()})
	if err != nil {
		return err
	}
	if c.OwnNS {
		return namespace.Unpin(c.NetNS)
	}
	return nil
}

// remove deletes everything of a container; missing pieces are fine.
func (m *Manager) remove(ctx context.Context, rt *ocirt.Runtime, c *Container) error {
	var errs []error
	if rt != nil {
		errs = append(errs, rt.Delete(c.ID, true))
	}
	errs = append(errs, m.releaseNetwork(ctx, c))
	crash.Point("rm")
	errs = append(errs, m.st.Update(func(tx store.Tx) error { return tx.Delete(store.Containers, c.ID) }))
	return errors.Join(errs...)
}

// Stdio is a container process's standard streams.
type Stdio struct {
	In       io.Reader
	Out, Err io.Writer
}

// ExitStatus is the status Docker's run and exec exit with when they fail
// with err: 127 for a command not found, 126 for one that cannot be run,
// 125 for a failure of ctnet itself.
func ExitStatus(err error) int { return ocirt.ExitCode(err) }

// startError words the runtime's failure to start a container's command
// with the container's name, keeping its exit status.
func startError(c *Container, err error) error {
	var se *ocirt.StartError
	if errors.As(err, &se) {
		return &commandError{what: c.what(), code: se.Code, msg: se.Msg}
	}
	return err
}

type commandError struct {
	what, msg string
	code      int
}

func (e *commandError) Error() string { return e.what + ": " + e.msg }
func (e *commandError) ExitCode() int { return e.code }
