package ocirt

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ctnet/ctnet/internal/namespace"
)

// ipcSysctls are the kernel.* sysctls of the IPC namespace (fs.mqueue.* too).
var ipcSysctls = []string{
	"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
	"kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced",
}

// sysctls returns what the container's linux.sysctl gets: Docker's defaults
// for a container with its own network namespace, then the caller's, each
// checked as runc and Docker check them (only sysctls of a namespace the
// container does not share with the host) and against the kernel.
func sysctls(s Spec) (map[string]string, error) {
	out := map[string]string{}
	ownNet := s.NetNSPath != ""
	if ownNet {
		// what Docker sets in every container not on the host's network
		out["net.ipv4.ip_unprivileged_port_start"] = "0"
		out["net.ipv4.ping_group_range"] = "0 2147483647"
	}
	for _, k := range slices.Sorted(maps.Keys(s.Sysctls)) {
		v := s.Sysctls[k]
		fail := func(format string, a ...any) error {
			return fmt.Errorf("sysctl %q: %s", k+"="+v, fmt.Sprintf(format, a...))
		}
		if k == "" || strings.ContainsAny(k, " \t\n=/") || strings.Contains(k, "..") || strings.HasPrefix(k, ".") || strings.HasSuffix(k, ".") {
			return nil, fail("not a sysctl name (want dotted names such as net.ipv4.ip_forward)")
		}
		if strings.ContainsAny(v, "\n") {
			return nil, fail("the value must be one line")
		}
		switch {
		case slices.Contains(ipcSysctls, k) || strings.HasPrefix(k, "fs.mqueue."):
			if s.IPC == "host" {
				return nil, fail("not allowed with the host's IPC namespace (--ipc host)")
			}
			if !sysctlExists("", k) {
				return nil, fail("no such sysctl in this kernel")
			}
		case strings.HasPrefix(k, "net."):
			if !ownNet {
				return nil, fail("not allowed in the host's network namespace (--network host)")
			}
			if !sysctlExists(s.NetNSPath, k) {
				return nil, fail("no such sysctl in the container's network namespace")
			}
		case k == "kernel.domainname":
		case k == "kernel.hostname":
			return nil, fail("set the hostname with --hostname instead")
		default:
			return nil, fail("not namespaced: it would change the host; only net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.* and kernel.domainname are allowed")
		}
		out[k] = v
	}
	return out, nil
}

// sysctlExists looks the key up under /proc/sys, from inside netns when
// given (network sysctls differ between namespaces: per-device keys).
func sysctlExists(netns, key string) bool {
	p := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
	if netns == "" {
		_, err := os.Stat(p)
		return err == nil
	}
	found := false
	err := namespace.OnThrowawayThread(func() error {
		fd, err := unix.Open(netns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			return err
		}
		// /proc/sys/net shows the namespace of the thread that looks
		_, err = os.Stat(p)
		found = err == nil
		return nil
	})
	return err != nil || found // a namespace we cannot enter: leave the check to the runtime
}
