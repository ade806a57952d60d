package ocirt

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ctnet/ctnet/internal/image"
)

// Spec describes a container to create.
type Spec struct {
	ID       string // [A-Za-z0-9_.-]+, unique in the Runtime
	Name     string // for people; recorded in the config's annotations
	Hostname string // default: the image's, else the first 12 characters of ID
	Image    image.Image
	// Args is the final command line; see ResolveArgs for Docker's
	// entrypoint+cmd rule.
	Args []string
	// Env is added to the image's environment, replacing variables of the
	// same name.
	Env              []string
	Tty, Interactive bool
	// NetNSPath is the network namespace to join; "" shares the caller's
	// (host mode).
	NetNSPath string
	// IPC is "" or "private" (own namespace), "shareable" (own namespace,
	// pinned so others can join; see Runtime.IPCNSPath), "host", or
	// "container:<id>" (an id in this Runtime) / "container:/path/to/ns".
	IPC string
	// Mounts are -v SRC:DST[:ro] bind mounts.
	Mounts []Mount
	// EtcFiles maps "/etc/hosts", "/etc/hostname", "/etc/resolv.conf" (or
	// any absolute path) to content; each is kept in the container's state
	// directory and bind-mounted, so WriteEtcFile can change it later.
	EtcFiles map[string][]byte
	// OnExit, when set, is a command the monitor of a detached container
	// runs once the container has ended and its exit is recorded (ctnet
	// uses it to release the container's network, or remove it with --rm).
	OnExit []string
	// Watch is handed to the watch function of MaybeRunMonitor in the
	// monitor of a detached container, while the container runs.
	Watch json.RawMessage
	// WorkDir and User override the image's ("uid[:gid]" or names from the
	// image's /etc/passwd and /etc/group).
	WorkDir, User string
	// Security is --privileged, --cap-add/--cap-drop and --security-opt.
	Security Security
	// Sysctls are --sysctl K=V, on top of Docker's defaults for a container
	// with its own network namespace (unprivileged ports from 0, ping for
	// every group). Only namespaced sysctls are accepted.
	Sysctls map[string]string
	// ReadOnlyRoot is --read-only: the root filesystem cannot be written
	// (mounts and the /etc files can, as in Docker).
	ReadOnlyRoot bool
}

// Mount is a bind mount from the host into the container. As with Docker,
// a missing source is created on the host as a directory, and a missing
// destination in the container as a directory, or an empty file when the
// source is not a directory (in the writable layer; for the read-only host
// image in a layer of its own, never on the host).
type Mount struct {
	Source, Destination string
	ReadOnly            bool
}

// ResolveArgs applies Docker's rule: the image's entrypoint followed by cmd
// when given, else by the image's Cmd.
func ResolveArgs(cfg image.Config, cmd []string) []string {
	args := append([]string{}, cfg.Entrypoint...)
	if len(cmd) > 0 {
		return append(args, cmd...)
	}
	return append(args, cfg.Cmd...)
}

var maskedPaths = []string{
	"/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
	"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
	"/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
}

var readonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}

const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// ociSpec builds config.json. rootfs is the mounted root (for user lookup);
// shmSource is a directory to bind at /dev/shm ("" for a private tmpfs);
// ipcPath is the IPC namespace to join ("" for a new one, "-" for the host's).
func ociSpec(s Spec, c *paths, rootfs, ipcPath, shmSource string) (*specs.Spec, error) {
	cfg := s.Image.Config
	user, err := resolveUser(rootfs, firstNonEmpty(s.User, cfg.User))
	if err != nil {
		return nil, err
	}
	caps, err := capabilities(s.Security)
	if err != nil {
		return nil, err
	}
	sysctl, err := sysctls(s)
	if err != nil {
		return nil, err
	}
	hostname := firstNonEmpty(s.Hostname, cfg.Hostname)
	if hostname == "" {
		hostname = s.ID
		if len(hostname) > 12 {
			hostname = hostname[:12]
		}
	}
	env := mergeEnv(cfg.Env, s.Env)
	if !hasEnv(env, "PATH") {
		env = append([]string{defaultPath}, env...)
	}
	env = mergeEnv(env, []string{"HOSTNAME=" + hostname})
	if s.Tty && !hasEnv(env, "TERM") {
		env = append(env, "TERM=xterm")
	}
	proc := &specs.Process{
		Terminal:        s.Tty,
		User:            user,
		Args:            s.Args,
		Env:             env,
		Cwd:             firstNonEmpty(s.WorkDir, cfg.WorkingDir, "/"),
		NoNewPrivileges: s.Security.NoNewPrivileges,
		// as Docker: a user other than root starts with the capabilities
		// in its bounding set only, as execve of a non-root user would
		Capabilities: &specs.LinuxCapabilities{Bounding: caps},
	}
	if user.UID == 0 {
		proc.Capabilities.Effective, proc.Capabilities.Permitted = caps, caps
	}
	sysOpts, cgroupOpts := []string{"nosuid", "noexec", "nodev", "ro"}, []string{"ro", "nosuid", "noexec", "nodev"}
	if s.Security.Privileged {
		sysOpts, cgroupOpts = sysOpts[:3], cgroupOpts[1:]
	}

	mounts := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: sysOpts},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: cgroupOpts},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
	}
	if shmSource != "" {
		mounts = append(mounts, specs.Mount{Destination: "/dev/shm", Type: "bind", Source: shmSource, Options: []string{"rbind", "nosuid", "noexec", "nodev"}})
	} else {
		mounts = append(mounts, specs.Mount{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}})
	}
	if s.Image.HostRoot {
		mounts = append(mounts, specs.Mount{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777"}})
	}
	for _, dst := range slices.Sorted(maps.Keys(s.EtcFiles)) {
		mounts = append(mounts, specs.Mount{Destination: dst, Type: "bind", Source: c.etcFile(dst), Options: []string{"rbind", "rprivate"}})
	}
	for _, m := range s.Mounts {
		opts := []string{"rbind", "rprivate"}
		if m.ReadOnly {
			opts = append(opts, "ro")
		}
		mounts = append(mounts, specs.Mount{Destination: m.Destination, Type: "bind", Source: m.Source, Options: opts})
	}

	ns := []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.UTSNamespace}, {Type: specs.MountNamespace}}
	if ipcPath != "-" {
		ns = append(ns, specs.LinuxNamespace{Type: specs.IPCNamespace, Path: ipcPath})
	}
	if s.NetNSPath != "" {
		ns = append(ns, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: s.NetNSPath})
	}
	spec := &specs.Spec{
		Version:     "1.0.2",
		Process:     proc,
		Root:        &specs.Root{Path: rootfs, Readonly: s.Image.HostRoot || s.ReadOnlyRoot},
		Hostname:    hostname,
		Mounts:      mounts,
		Annotations: map[string]string{"io.ctnet.name": s.Name},
		Linux: &specs.Linux{
			Namespaces:  ns,
			CgroupsPath: c.group + "/" + s.ID,
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
			},
			MaskedPaths:   maskedPaths,
			ReadonlyPaths: readonlyPaths,
			Sysctl:        sysctl,
		},
	}
	if s.Security.Privileged {
		l := spec.Linux
		l.MaskedPaths, l.ReadonlyPaths = nil, nil
		l.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
		if l.Devices, err = hostDevices(); err != nil {
			return nil, err
		}
	}
	if spec.Linux.Seccomp, err = seccompProfile(s.Security, spec); err != nil {
		return nil, err
	}
	return spec, nil
}

func mergeEnv(base, over []string) []string {
	out := append([]string{}, base...)
	for _, kv := range over {
		k, _, _ := strings.Cut(kv, "=")
		replaced := false
		for i, o := range out {
			if ok, _, _ := strings.Cut(o, "="); ok == k {
				out[i], replaced = kv, true
			}
		}
		if !replaced {
			out = append(out, kv)
		}
	}
	return out
}

func hasEnv(env []string, key string) bool {
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k == key {
			return true
		}
	}
	return false
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}
