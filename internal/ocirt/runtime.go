// Package ocirt runs containers with an OCI runtime (runc or crun) and no
// daemon: a bundle per container under a state directory, an overlayfs root
// over the image's layers (or the host's / read-only for the host image), and
// for detached containers a small monitor process that records the exit code.
package ocirt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNotRunning is wrapped when an operation needs a running container.
var ErrNotRunning = errors.New("container is not running")

// ErrNotFound is wrapped when no container has the id.
var ErrNotFound = errors.New("no such container")

// Runtime runs containers with one OCI runtime binary. What a container
// writes (its root's writable layer, its log) lives on disk under dataDir;
// runtime facts that die with a reboot live under runDir (a tmpfs such as
// /run), so one container filling its / fills neither /run nor the others:
//
//	<runDir>/runc/          the OCI runtime's own --root
//	<runDir>/<id>/          bundle: config.json, rootfs/ (mount point),
//	                        etc/ (hosts, hostname, resolv.conf), status.json,
//	                        ipcns + shm/ when shareable, stubs/ (a small tmpfs
//	                        with the mount points the host image lacks)
//	<dataDir>/<id>/         upper/, work/ (the overlay's writable layer) and
//	                        container.log
type Runtime struct {
	Binary  string // path of runc or crun
	runDir  string
	dataDir string
	group   string // cgroup parent of its containers (instanceGroup)
}

// New finds binary ("runc", "crun" or a path) and prepares its two
// directories: runDir for runtime state (tmpfs is best) and dataDir, on
// disk, for what containers write.
func New(binary, runDir, dataDir string) (*Runtime, error) {
	if binary == "" {
		binary = "runc"
	}
	path, err := exec.LookPath(binary)
	if err != nil {
		return nil, fmt.Errorf("runtime %q not found in PATH; install it (apt-get install %s) or pass --runtime", binary, filepath.Base(binary))
	}
	if runDir == "" || dataDir == "" {
		return nil, errors.New("runtime: both a run directory and a data directory are needed")
	}
	r := &Runtime{Binary: path}
	for _, d := range []struct {
		dst  *string
		path string
	}{{&r.runDir, runDir}, {&r.dataDir, dataDir}} {
		abs, err := filepath.Abs(d.path)
		if err == nil {
			err = os.MkdirAll(abs, 0o700)
		}
		if err != nil {
			return nil, fmt.Errorf("runtime state dir %s: %w", d.path, err)
		}
		*d.dst = abs
	}
	if r.runDir == r.dataDir {
		return nil, fmt.Errorf("runtime: the run directory and the data directory are both %s; give two", r.runDir)
	}
	if err := os.MkdirAll(filepath.Join(r.runDir, "runc"), 0o700); err != nil {
		return nil, fmt.Errorf("runtime state dir %s: %w", runDir, err)
	}
	r.group = instanceGroup(r.dataDir)
	return r, nil
}

type paths struct{ dir, data, group string }

func (r *Runtime) paths(id string) *paths {
	return &paths{filepath.Join(r.runDir, id), filepath.Join(r.dataDir, id), r.group}
}

func (p *paths) rootfs() string { return filepath.Join(p.dir, "rootfs") }
func (p *paths) stubs() string  { return filepath.Join(p.dir, "stubs") }
func (p *paths) upper() string  { return filepath.Join(p.data, "upper") }
func (p *paths) work() string   { return filepath.Join(p.data, "work") }
func (p *paths) status() string { return filepath.Join(p.dir, "status.json") }
func (p *paths) meta() string   { return filepath.Join(p.dir, "container.json") }
func (p *paths) log() string    { return filepath.Join(p.data, "container.log") }
func (p *paths) ipcns() string  { return filepath.Join(p.dir, "ipcns") }
func (p *paths) shm() string    { return filepath.Join(p.dir, "shm") }
func (p *paths) etcFile(dst string) string {
	return filepath.Join(p.dir, "etc", strings.ReplaceAll(strings.TrimPrefix(filepath.Clean(dst), "/"), "/", "_"))
}

// mounts are what Create may have mounted, in the order to take them off.
func (p *paths) mounts() []string { return []string{p.rootfs(), p.stubs(), p.shm(), p.ipcns()} }

// LogPath is the file a detached container's stdout and stderr go to.
func (r *Runtime) LogPath(id string) string { return r.paths(id).log() }

// IPCNSPath is where the IPC namespace of a container created with IPC
// "shareable" is pinned (a bind-mounted nsfs file, kept until Delete).
func (r *Runtime) IPCNSPath(id string) string { return r.paths(id).ipcns() }

// WriteEtcFile replaces the content of one of the container's EtcFiles in
// place (the bind mount pins the inode, so the file is truncated, not renamed).
// EtcFile is where the container's copy of dst (/etc/hosts, …) lives on
// the host, as inspect's HostsPath shows it.
func (r *Runtime) EtcFile(id, dst string) string { return r.paths(id).etcFile(dst) }

func (r *Runtime) WriteEtcFile(id, dst string, content []byte) error {
	p := r.paths(id).etcFile(dst)
	if _, err := os.Stat(p); err != nil {
		return fmt.Errorf("container %s: %s is not one of its etc files: %w", id, dst, err)
	}
	if err := os.WriteFile(p, content, 0o644); err != nil {
		return fmt.Errorf("container %s: write %s: %w", id, dst, err)
	}
	return nil
}

// Status is what State reports.
type Status struct {
	Status     string // "created", "running", "exited"
	Running    bool
	Pid        int
	ExitCode   int
	StartedAt  time.Time
	FinishedAt time.Time
}

// statusFile is status.json: written by whoever starts the container and by
// whoever sees it exit (Run or the monitor).
type statusFile struct {
	Pid        int
	MonitorPid int `json:",omitempty"`
	ExitCode   int
	StartedAt  time.Time
	FinishedAt time.Time
}

func readStatus(p *paths) (statusFile, error) {
	var st statusFile
	b, err := os.ReadFile(p.status())
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

func writeStatus(p *paths, st statusFile) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := p.status() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write status: %w", err)
	}
	return os.Rename(tmp, p.status())
}

// ociState is the part of `runc state` we read.
type ociState struct {
	Status string `json:"status"`
	Pid    int    `json:"pid"`
}

func (r *Runtime) ociState(id string) (ociState, error) {
	var st ociState
	out, err := r.command(context.Background(), "state", id).Output()
	if err != nil {
		return st, fmt.Errorf("%s state %s: %w", filepath.Base(r.Binary), id, runErr(err))
	}
	return st, json.Unmarshal(out, &st)
}

// State reports whether the container runs and, once it has exited, how.
func (r *Runtime) State(id string) (Status, error) {
	p := r.paths(id)
	if _, err := os.Stat(p.dir); err != nil {
		return Status{}, fmt.Errorf("container %s: %w", id, ErrNotFound)
	}
	st, err := readStatus(p)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return Status{}, fmt.Errorf("container %s: %w", id, err)
	}
	out := Status{Status: "created", Pid: st.Pid, ExitCode: st.ExitCode, StartedAt: st.StartedAt, FinishedAt: st.FinishedAt}
	switch {
	case !st.FinishedAt.IsZero():
		out.Status, out.Pid = "exited", 0
	case st.StartedAt.IsZero():
	default:
		oci, err := r.ociState(id)
		if err == nil && (oci.Status == "running" || oci.Status == "paused") {
			out.Status, out.Running, out.Pid = "running", true, oci.Pid
		} else {
			// started, but whoever watched it died before recording the exit
			out.Status, out.Pid, out.ExitCode = "exited", 0, -1
		}
	}
	return out, nil
}

// List returns the ids of all containers with a bundle in the run
// directory.
func (r *Runtime) List() ([]string, error) { return listIDs(r.runDir) }

func listIDs(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("runtime state dir %s: %w", dir, err)
	}
	var ids []string
	for _, e := range ents {
		if e.IsDir() && e.Name() != "runc" && validID(e.Name()) {
			ids = append(ids, e.Name())
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// Leftovers returns the ids that have a bundle in the run directory, a
// writable layer in the data directory or a cgroup with processes of this
// runtime, and that live rejects. After a reboot the run directory is empty
// but the layers on disk remain; after the run directory was deleted under
// running containers their processes remain: the caller's reconcile passes
// the containers it still knows.
func (r *Runtime) Leftovers(live func(id string) bool) ([]string, error) {
	seen := map[string]bool{}
	for _, id := range r.groups() {
		if !live(id) {
			seen[id] = true
		}
	}
	for _, dir := range []string{r.runDir, r.dataDir} {
		ids, err := listIDs(dir)
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			if !live(id) {
				seen[id] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for id := range seen {
		out = append(out, id)
	}
	sort.Strings(out)
	return out, nil
}

// Prune deletes every leftover (see Leftovers), killing any that still
// runs, and returns the ids it removed. It goes on past a failure and
// reports all of them.
func (r *Runtime) Prune(live func(id string) bool) ([]string, error) {
	ids, err := r.Leftovers(live)
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, id := range ids {
		// What the runtime's own state no longer knows is killed by cgroup.
		err := errors.Join(r.killGroup(id), r.Delete(id, true))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, id)
	}
	return removed, errors.Join(errs...)
}

// Kill sends sig to the container's init process.
func (r *Runtime) Kill(id string, sig syscall.Signal) error {
	st, err := r.State(id)
	if err != nil {
		return err
	}
	if !st.Running {
		return fmt.Errorf("container %s: %w", id, ErrNotRunning)
	}
	if out, err := r.command(context.Background(), "kill", id, fmt.Sprint(int(sig))).CombinedOutput(); err != nil {
		if bytes.Contains(out, []byte("not running")) {
			return fmt.Errorf("container %s: %w", id, ErrNotRunning) // it ended meanwhile
		}
		return fmt.Errorf("container %s: kill %v: %s: %w", id, sig, runtimeMessage(out), err)
	}
	return nil
}

// Stop sends SIGTERM, then SIGKILL after timeout, and returns once the exit
// is recorded. Stopping a stopped container is not an error.
func (r *Runtime) Stop(ctx context.Context, id string, timeout time.Duration) error {
	st, err := r.State(id)
	if err != nil {
		return err
	}
	if !st.Running {
		return nil
	}
	pidfd, err := unix.PidfdOpen(st.Pid, 0)
	if err != nil {
		return fmt.Errorf("container %s: watch pid %d: %w", id, st.Pid, err)
	}
	defer unix.Close(pidfd)
	if err := r.Kill(id, syscall.SIGTERM); err != nil && !errors.Is(err, ErrNotRunning) {
		return err
	}
	if exited, err := waitFD(ctx, pidfd, timeout); err != nil {
		return fmt.Errorf("container %s: %w", id, err)
	} else if !exited {
		if err := r.Kill(id, syscall.SIGKILL); err != nil && !errors.Is(err, ErrNotRunning) {
			return err
		}
		if _, err := waitFD(ctx, pidfd, -1); err != nil {
			return fmt.Errorf("container %s: %w", id, err)
		}
	}
	return r.waitRecorded(ctx, id)
}

// waitRecorded waits for the monitor (if any) to write the exit code.
func (r *Runtime) waitRecorded(ctx context.Context, id string) error {
	st, err := readStatus(r.paths(id))
	if err != nil || st.MonitorPid == 0 || !st.FinishedAt.IsZero() {
		return nil
	}
	fd, err := unix.PidfdOpen(st.MonitorPid, 0)
	if err != nil {
		return nil // already gone
	}
	defer unix.Close(fd)
	_, err = waitFD(ctx, fd, -1)
	return err
}

// waitFD waits until a pidfd is readable (the process exited); timeout < 0
// waits for ever. It reports whether the process exited.
func waitFD(ctx context.Context, fd int, timeout time.Duration) (bool, error) {
	deadline := time.Now().Add(timeout)
	for {
		// short polls so ctx cancellation is noticed
		ms := 200
		if timeout >= 0 {
			left := time.Until(deadline)
			if left <= 0 {
				return false, nil
			}
			ms = min(ms, int(left.Milliseconds())+1)
		}
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, ms)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return false, fmt.Errorf("wait for exit: %w", err)
		}
		if n > 0 {
			return true, nil
		}
		if err := ctx.Err(); err != nil {
			return false, err
		}
	}
}

// Delete removes the container: its OCI runtime state, mounts and bundle.
// A running container is refused unless force, which kills it first.
// Deleting a missing container is not an error.
func (r *Runtime) Delete(id string, force bool) error {
	if !validID(id) {
		return fmt.Errorf("container id %q: invalid", id)
	}
	p := r.paths(id)
	if st, err := r.State(id); err == nil && st.Running {
		if !force {
			return fmt.Errorf("container %s is running; stop it first or force the removal", id)
		}
		if err := r.Stop(context.Background(), id, 0); err != nil {
			return err
		}
	}
	// A container run in the foreground is gone from the OCI runtime once
	// it exits (`run` deletes it): no second runtime process to ask again.
	if _, err := os.Lstat(filepath.Join(r.ociRoot(), id)); !errors.Is(err, os.ErrNotExist) {
		if out, err := r.command(context.Background(), "delete", "--force", id).CombinedOutput(); err != nil && !notExist(out) {
			return fmt.Errorf("container %s: %s delete: %s: %w", id, filepath.Base(r.Binary), runtimeMessage(out), err)
		}
	}
	for _, m := range p.mounts() {
		if err := unmount(m); err != nil {
			return fmt.Errorf("container %s: %w", id, err)
		}
	}
	if err := os.RemoveAll(p.dir); err != nil {
		return fmt.Errorf("container %s: remove bundle: %w", id, err)
	}
	if err := os.RemoveAll(p.data); err != nil {
		return fmt.Errorf("container %s: remove writable layer: %w", id, err)
	}
	r.dropEmptyGroup()
	return nil
}

func unmount(p string) error {
	for {
		err := unix.Unmount(p, unix.MNT_DETACH)
		switch {
		case err == nil:
			continue // stacked mounts: take them all off
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			return nil
		default:
			return fmt.Errorf("unmount %s: %w", p, err)
		}
	}
}

func notExist(out []byte) bool {
	s := string(out)
	return strings.Contains(s, "does not exist") || strings.Contains(s, "not found") || strings.Contains(s, "No such file")
}

// validIDChars is validID's rule: a letter or digit, then letters,
// digits, _ . - (as runc's). Compiled on first use: a package-level
// regexp costs every ctnet command at start.
var validIDChars = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`) })

func validID(id string) bool { return validIDChars().MatchString(id) }

func (r *Runtime) ociRoot() string { return filepath.Join(r.runDir, "runc") }

// command runs the OCI runtime with its log in JSON, so that its messages
// can be told from other output and quoted without their log formatting.
func (r *Runtime) command(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, r.Binary, append([]string{"--root", r.ociRoot(), "--log-format", "json"}, args...)...)
}

func runErr(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return fmt.Errorf("%s: %w", runtimeMessage(ee.Stderr), err)
	}
	return err
}

// Wait blocks until the container has exited and its exit code is recorded,
// and returns that code.
func (r *Runtime) Wait(ctx context.Context, id string) (int, error) {
	st, err := r.State(id)
	if err != nil {
		return -1, err
	}
	if st.Running {
		fd, err := unix.PidfdOpen(st.Pid, 0)
		if err == nil {
			_, err = waitFD(ctx, fd, -1)
			unix.Close(fd)
			if err != nil {
				return -1, fmt.Errorf("container %s: %w", id, err)
			}
		}
	}
	if err := r.waitRecorded(ctx, id); err != nil {
		return -1, fmt.Errorf("container %s: %w", id, err)
	}
	if st, err = r.State(id); err != nil {
		return -1, err
	}
	if st.Status != "exited" {
		return -1, fmt.Errorf("container %s: %w", id, ErrNotRunning)
	}
	return st.ExitCode, nil
}
