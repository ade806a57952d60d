package ocirt

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Security is what Docker's --privileged, --cap-add, --cap-drop and
// --security-opt set; the zero value is Docker's default.
type Security struct {
	// Privileged gives every capability, no seccomp filter, the host's
	// devices, and /sys and /proc without masked or read-only paths.
	Privileged bool
	// CapAdd and CapDrop change Docker's default set: names in any case,
	// with or without "CAP_", or "ALL". An add beats a drop of the same
	// capability; drop ALL keeps only the adds.
	CapAdd, CapDrop []string
	// NoNewPrivileges sets no_new_privs: setuid binaries and file
	// capabilities grant nothing.
	NoNewPrivileges bool
	// Seccomp is "" for Docker's default profile (built for the container's
	// capabilities), "unconfined" for none, or the path of a profile in
	// Docker's JSON format. Ignored with Privileged, as by Docker.
	Seccomp string
}

// SeccompUnconfined is the Seccomp value that turns the filter off.
const SeccompUnconfined = "unconfined"

// ParseSecurityOpt applies one --security-opt value the way Docker reads
// it: seccomp=unconfined|builtin|FILE, no-new-privileges[=true|false] (also
// with ':'), and apparmor=unconfined / label=disable, which ask for nothing
// ctnet applies anyway.
func ParseSecurityOpt(sec *Security, opt string) error {
	k, v, hasValue := strings.Cut(opt, "=")
	if !hasValue {
		k, v, hasValue = strings.Cut(opt, ":")
	}
	switch k {
	case "no-new-privileges":
		if !hasValue {
			sec.NoNewPrivileges = true
			return nil
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("security option %q: want no-new-privileges=true or false", opt)
		}
		sec.NoNewPrivileges = b
	case "seccomp":
		switch v {
		case "":
			return fmt.Errorf("security option %q: want seccomp=unconfined, builtin or the path of a profile", opt)
		case "builtin":
			sec.Seccomp = ""
		default:
			sec.Seccomp = v
		}
	case "apparmor":
		if v != "unconfined" {
			return fmt.Errorf("security option %q: ctnet applies no AppArmor profile; only apparmor=unconfined is accepted", opt)
		}
	case "label":
		if v != "disable" {
			return fmt.Errorf("security option %q: ctnet applies no SELinux labels; only label=disable is accepted", opt)
		}
	default:
		return fmt.Errorf("security option %q: want seccomp=…, no-new-privileges, apparmor=unconfined or label=disable", opt)
	}
	return nil
}

// capNames are the capabilities by number (capability.h).
var capNames = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
	"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
	"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
	"CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
	"CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
	"CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
	"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}

// Docker's default capability set.
var defaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// allCaps are the capabilities a privileged container or --cap-add ALL
// gets: all the kernel knows that this process may still pass on (a
// capability missing from its bounding set cannot be granted; the runtime
// would fail to apply it).
func allCaps() []string {
	last := len(capNames) - 1
	if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n < last {
			last = n
		}
	}
	var out []string
	for i, c := range capNames[:last+1] {
		if in, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(i), 0, 0, 0); err != nil || in == 1 {
			out = append(out, c)
		}
	}
	return out
}

func normalizeCaps(flag string, caps []string) ([]string, error) {
	var out []string
	for _, c := range caps {
		n := strings.ToUpper(strings.TrimSpace(c))
		if n != "ALL" && !strings.HasPrefix(n, "CAP_") {
			n = "CAP_" + n
		}
		if n != "ALL" && !slices.Contains(capNames, n) {
			return nil, fmt.Errorf("%s %q: unknown capability; names are those of capabilities(7), with or without CAP_, or ALL", flag, c)
		}
		out = append(out, n)
	}
	return out, nil
}

// capabilities is Docker's TweakCapabilities.
func capabilities(sec Security) ([]string, error) {
	if sec.Privileged {
		return allCaps(), nil
	}
	add, err := normalizeCaps("--cap-add", sec.CapAdd)
	if err != nil {
		return nil, err
	}
	drop, err := normalizeCaps("--cap-drop", sec.CapDrop)
	if err != nil {
		return nil, err
	}
	var caps []string
	switch {
	case slices.Contains(add, "ALL"):
		for _, c := range allCaps() {
			if !slices.Contains(drop, c) {
				caps = append(caps, c)
			}
		}
	case slices.Contains(drop, "ALL"):
		caps = add
	default:
		for _, c := range defaultCaps {
			if !slices.Contains(drop, c) {
				caps = append(caps, c)
			}
		}
		caps = append(caps, add...)
	}
	var out []string
	for _, c := range caps {
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out, nil
}

// seccompProfile builds linux.seccomp for spec (whose capabilities decide
// which of the profile's conditional rules apply); nil means no filter.
func seccompProfile(sec Security, spec *specs.Spec) (*specs.LinuxSeccomp, error) {
	if sec.Privileged || sec.Seccomp == SeccompUnconfined {
		return nil, nil
	}
	if sec.Seccomp == "" {
		return seccomp.GetDefaultProfile(spec)
	}
	return loadSeccompFile(sec.Seccomp, spec)
}

// maxProfile bounds a profile file (Docker's default is about 20 KiB).
const maxProfile = 1 << 20

func loadSeccompFile(file string, spec *specs.Spec) (*specs.LinuxSeccomp, error) {
	fail := func(format string, a ...any) error {
		return fmt.Errorf("seccomp profile %s: %s", file, fmt.Sprintf(format, a...))
	}
	fi, err := os.Stat(file)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fail("no such file; give the path of a JSON profile, or seccomp=unconfined")
	case err != nil:
		return nil, fail("%v", err)
	case !fi.Mode().IsRegular():
		return nil, fail("not a regular file")
	case fi.Size() > maxProfile:
		return nil, fail("%d bytes, more than the %d a profile may have", fi.Size(), maxProfile)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fail("%v", err)
	}
	var probe seccomp.Seccomp
	if err := json.Unmarshal(b, &probe); err != nil {
		return nil, fail("not a profile in Docker's JSON format: %s", jsonErr(b, err))
	}
	out, err := seccomp.LoadProfile(string(b), spec)
	if err != nil {
		return nil, fail("%v", err)
	}
	if out == nil {
		return nil, fail("no defaultAction and no syscalls; use seccomp=unconfined to run without a filter")
	}
	if err := checkSeccomp(out); err != nil {
		return nil, fail("%v", err)
	}
	return out, nil
}

// jsonErr says where in b a decoding error is.
func jsonErr(b []byte, err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	off := int64(-1)
	switch {
	case errors.As(err, &se):
		off = se.Offset
	case errors.As(err, &te):
		off = te.Offset
	}
	if off < 0 || off > int64(len(b)) {
		return err.Error()
	}
	line := 1 + strings.Count(string(b[:off]), "\n")
	return fmt.Sprintf("line %d: %v", line, err)
}

var (
	seccompActions = []specs.LinuxSeccompAction{
		specs.ActKill, specs.ActKillProcess, specs.ActKillThread, specs.ActTrap, specs.ActErrno,
		specs.ActTrace, specs.ActAllow, specs.ActLog,
	}
	seccompOps = []specs.LinuxSeccompOperator{
		specs.OpNotEqual, specs.OpLessThan, specs.OpLessEqual, specs.OpEqualTo,
		specs.OpGreaterEqual, specs.OpGreaterThan, specs.OpMaskedEqual,
	}
	seccompFlags = []specs.LinuxSeccompFlag{
		specs.LinuxSeccompFlagLog, specs.LinuxSeccompFlagSpecAllow, "SECCOMP_FILTER_FLAG_TSYNC",
	}
)

// checkSeccomp refuses what the runtime would only refuse when the
// container starts.
func checkSeccomp(s *specs.LinuxSeccomp) error {
	if !slices.Contains(seccompActions, s.DefaultAction) {
		return fmt.Errorf("defaultAction %q: want one of %s", s.DefaultAction, actionList())
	}
	for _, a := range s.Architectures {
		if !strings.HasPrefix(string(a), "SCMP_ARCH_") {
			return fmt.Errorf("architecture %q: want SCMP_ARCH_…", a)
		}
	}
	for _, f := range s.Flags {
		if !slices.Contains(seccompFlags, f) {
			return fmt.Errorf("flag %q is not supported", f)
		}
	}
	if s.ListenerPath != "" {
		return errors.New("listenerPath: seccomp notification is not supported")
	}
	for i, sc := range s.Syscalls {
		what := fmt.Sprintf("syscalls[%d] %v", i, sc.Names)
		if len(sc.Names) == 0 {
			return fmt.Errorf("syscalls[%d]: no names", i)
		}
		if !slices.Contains(seccompActions, sc.Action) {
			return fmt.Errorf("%s: action %q: want one of %s", what, sc.Action, actionList())
		}
		for _, a := range sc.Args {
			if !slices.Contains(seccompOps, a.Op) {
				return fmt.Errorf("%s: argument %d: operator %q is not one of SCMP_CMP_*", what, a.Index, a.Op)
			}
			if a.Index > 5 {
				return fmt.Errorf("%s: argument index %d: syscalls have 6 arguments (0-5)", what, a.Index)
			}
		}
	}
	return nil
}

func actionList() string {
	var names []string
	for _, a := range seccompActions {
		names = append(names, string(a))
	}
	return strings.Join(names, ", ")
}

// hostDevices lists the host's device nodes for a privileged container, as
// Docker does (runc's HostDevices): /dev recursively, without the
// directories the runtime mounts itself.
func hostDevices() ([]specs.LinuxDevice, error) {
	var out []specs.LinuxDevice
	err := filepath.WalkDir("/dev", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case "pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev":
				return filepath.SkipDir
			}
			return nil
		}
		if d.Name() == "console" {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return nil // gone meanwhile
		}
		var typ string
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFCHR:
			typ = "c"
		case unix.S_IFBLK:
			typ = "b"
		default:
			return nil
		}
		mode := fs.FileMode(st.Mode & 0o777)
		uid, gid := st.Uid, st.Gid
		out = append(out, specs.LinuxDevice{
			Path: p, Type: typ, Major: int64(unix.Major(st.Rdev)), Minor: int64(unix.Minor(st.Rdev)),
			FileMode: &mode, UID: &uid, GID: &gid,
		})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list host devices: %w", err)
	}
	return out, nil
}
