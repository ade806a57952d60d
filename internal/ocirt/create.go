package ocirt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ctnet/ctnet/internal/namespace"
)

// Container is a created container, ready to Run or Start once.
type Container struct {
	ID   string
	r    *Runtime
	p    *paths
	meta meta
}

// meta is container.json: what Run/Start need besides the bundle.
type meta struct {
	Tty, Interactive bool
	OnExit           []string        `json:",omitempty"`
	Watch            json.RawMessage `json:",omitempty"`
}

// Create prepares the bundle: overlay root (or the host's / read-only), etc
// files, IPC namespace and config.json. On failure nothing is left behind.
func (r *Runtime) Create(ctx context.Context, s Spec) (_ *Container, err error) {
	if !validID(s.ID) {
		return nil, fmt.Errorf("container id %q: want letters, digits, '_', '.', '-'", s.ID)
	}
	if len(s.Args) == 0 {
		return nil, fmt.Errorf("container %s: no command given and the image has none", s.ID)
	}
	wrap := func(err error) error { return fmt.Errorf("container %s: %w", s.ID, err) }
	// what needs no container is checked before anything is made
	if err := checkMounts(s.Mounts); err != nil {
		return nil, wrap(err)
	}
	if _, err := capabilities(s.Security); err != nil {
		return nil, wrap(err)
	}
	if _, err := sysctls(s); err != nil {
		return nil, wrap(err)
	}
	p := r.paths(s.ID)
	if err := os.Mkdir(p.dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("container %s already exists", s.ID)
		}
		return nil, wrap(err)
	}
	defer func() {
		if err != nil {
			for _, m := range p.mounts() {
				unmount(m)
			}
			os.RemoveAll(p.dir)
			os.RemoveAll(p.data)
		}
	}()
	if err := os.Mkdir(p.data, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			// a layer left behind (a reboot emptied the run directory)
			err = fmt.Errorf("a writable layer %s is left from an earlier container with this id; remove it (Prune)", p.data)
			p.data = "" // not ours to remove
		}
		return nil, wrap(err)
	}

	if err := mountRootfs(p, s); err != nil {
		return nil, wrap(err)
	}
	if err := writeEtcFiles(p, s.EtcFiles); err != nil {
		return nil, wrap(err)
	}
	ipcPath, shm, err := r.setupIPC(p, s.IPC)
	if err != nil {
		return nil, wrap(err)
	}
	spec, err := ociSpec(s, p, p.rootfs(), ipcPath, shm)
	if err != nil {
		return nil, wrap(err)
	}
	if err := makeMountPoints(p.rootfs(), spec.Mounts); err != nil {
		return nil, wrap(err)
	}
	for _, m := range s.Mounts {
		// like Docker, a missing host directory is created
		if err := os.MkdirAll(m.Source, 0o755); err != nil && !errors.Is(err, unix.ENOTDIR) {
			return nil, wrap(fmt.Errorf("volume %s: %w", m.Source, err))
		}
	}
	if s.Image.HostRoot && isMountpoint(p.stubs()) {
		if err := sealRootfs(p); err != nil {
			return nil, wrap(err)
		}
	}
	if err := writeJSON(filepath.Join(p.dir, "config.json"), spec); err != nil {
		return nil, wrap(err)
	}
	m := meta{Tty: s.Tty, Interactive: s.Interactive, OnExit: s.OnExit, Watch: s.Watch}
	if err := writeJSON(p.meta(), m); err != nil {
		return nil, wrap(err)
	}
	return &Container{ID: s.ID, r: r, p: p, meta: m}, nil
}

func writeEtcFiles(p *paths, files map[string][]byte) error {
	if len(files) == 0 {
		return nil
	}
	if err := os.Mkdir(filepath.Join(p.dir, "etc"), 0o755); err != nil {
		return err
	}
	for _, dst := range slices.Sorted(maps.Keys(files)) {
		if !filepath.IsAbs(dst) {
			return fmt.Errorf("etc file %q: not an absolute path", dst)
		}
		if err := os.WriteFile(p.etcFile(dst), files[dst], 0o644); err != nil {
			return fmt.Errorf("etc file %s: %w", dst, err)
		}
	}
	return nil
}

// setupIPC returns the IPC namespace path for config.json ("" new, "-" host)
// and the directory to bind at /dev/shm ("" for a private tmpfs).
func (r *Runtime) setupIPC(p *paths, mode string) (string, string, error) {
	switch {
	case mode == "" || mode == "private":
		return "", "", nil
	case mode == "host":
		return "-", "/dev/shm", nil
	case mode == "shareable":
		if err := pinNewIPCNS(p.ipcns()); err != nil {
			return "", "", err
		}
		if err := os.Mkdir(p.shm(), 0o1777); err != nil {
			return "", "", err
		}
		if err := unix.Mount("shm", p.shm(), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=1777,size=65536k"); err != nil {
			return "", "", fmt.Errorf("mount shm: %w", err)
		}
		return p.ipcns(), p.shm(), nil
	case strings.HasPrefix(mode, "container:"):
		target := strings.TrimPrefix(mode, "container:")
		if filepath.IsAbs(target) {
			return target, "", nil
		}
		other := r.paths(target)
		if !validID(target) || !isMountpoint(other.ipcns()) {
			return "", "", fmt.Errorf("ipc %s: container %q has no shareable IPC namespace (create it with IPC \"shareable\")", mode, target)
		}
		return other.ipcns(), other.shm(), nil
	default:
		return "", "", fmt.Errorf("ipc mode %q: want private, shareable, host or container:ID", mode)
	}
}

// pinNewIPCNS creates an IPC namespace on a throw-away thread and bind-mounts
// it at pin, so it outlives any process and others can join it by path.
func pinNewIPCNS(pin string) error {
	if err := os.WriteFile(pin, nil, 0o600); err != nil {
		return fmt.Errorf("ipc namespace pin: %w", err)
	}
	return namespace.OnThrowawayThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWIPC); err != nil {
			return fmt.Errorf("new ipc namespace: %w", err)
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/ipc", unix.Gettid())
		if err := unix.Mount(src, pin, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("pin ipc namespace at %s: %w", pin, err)
		}
		return nil
	})
}

func isMountpoint(p string) bool {
	var st, parent unix.Stat_t
	if unix.Lstat(p, &st) != nil || unix.Lstat(filepath.Dir(p), &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}

func writeJSON(p string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(p), err)
	}
	return nil
}
