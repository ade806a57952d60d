package ocirt_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ctnet/ctnet/internal/image"
	"github.com/ctnet/ctnet/internal/ocirt"
)

// probeScript tries what the isolation must refuse and prints one
// "name=value" line per fact.
const probeScript = `
try() { l=$1; shift; if "$@" >/dev/null 2>&1; then echo "$l=ok"; else echo "$l=denied"; fi; }
try userns busybox unshare -U true
try netns busybox unshare -n true
try userns+netns busybox unshare -Urn ip link set lo mtu 1280
try netadmin ip link set lo mtu 1280
try mkdir mkdir /tmp/rt-dir
try touch touch /tmp/rt-file
try kmsg test -c /dev/kmsg
try sysrw sh -c 'grep -q "^sysfs /sys sysfs rw" /proc/mounts'
for f in NoNewPrivs CapEff CapBnd Seccomp; do echo "$f=$(grep "^$f:" /proc/self/status | cut -f2)"; done
`

func facts(out string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return m
}

// capMask is the /proc/PID/status form of a capability set.
func capMask(bits ...int) string {
	var m uint64
	for _, b := range bits {
		m |= 1 << b
	}
	return fmt.Sprintf("%016x", m)
}

// Docker's default set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID
// SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP.
var dockerCaps = []int{0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31}

// allCapBits is the test process's bounding set: what "all capabilities"
// can be here (some machines withhold one).
func allCapBits(t *testing.T) []int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(b), "CapBnd:\t")
	m, err := strconv.ParseUint(strings.TrimSpace(strings.SplitN(rest, "\n", 2)[0]), 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	var bits []int
	for i := 0; i < 64; i++ {
		if m&(1<<i) != 0 {
			bits = append(bits, i)
		}
	}
	return bits
}

func without(bits []int, drop ...int) []int {
	var out []int
	for _, b := range bits {
		keep := true
		for _, d := range drop {
			keep = keep && b != d
		}
		if keep {
			out = append(out, b)
		}
	}
	return out
}

func writeProfile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "profile.json")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSecurity(t *testing.T) {
	e := newEnv(t, "runc")
	all := allCapBits(t)
	denyMkdir := writeProfile(t, `{"defaultAction": "SCMP_ACT_ALLOW",
		"syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}`)
	for _, tc := range []struct {
		name string
		user string
		sec  ocirt.Security
		want map[string]string
	}{
		{name: "default root", want: map[string]string{
			"userns": "denied", "netns": "denied", "userns+netns": "denied", "netadmin": "denied",
			"mkdir": "ok", "kmsg": "denied", "sysrw": "denied",
			"NoNewPrivs": "0", "CapEff": capMask(dockerCaps...), "CapBnd": capMask(dockerCaps...), "Seccomp": "2",
		}},
		// the attack of issue 18: an unprivileged user makes a user and a
		// network namespace and drives the kernel's network code from them
		{name: "default user", user: "65534", want: map[string]string{
			"userns": "denied", "netns": "denied", "userns+netns": "denied", "netadmin": "denied",
			"CapEff": capMask(), "CapBnd": capMask(dockerCaps...), "Seccomp": "2",
		}},
		{name: "unconfined user", user: "65534", sec: ocirt.Security{Seccomp: "unconfined"}, want: map[string]string{
			"userns": "ok", "userns+netns": "ok", "netadmin": "denied", "Seccomp": "0",
		}},
		{name: "unconfined root", sec: ocirt.Security{Seccomp: "unconfined"}, want: map[string]string{
			"userns": "ok", "netns": "denied", "netadmin": "denied", "Seccomp": "0",
		}},
		{name: "privileged", sec: ocirt.Security{Privileged: true, CapDrop: []string{"ALL"}, Seccomp: denyMkdir}, want: map[string]string{
			"userns": "ok", "netns": "ok", "netadmin": "ok", "mkdir": "ok", "kmsg": "ok", "sysrw": "ok",
			"CapEff": capMask(all...), "Seccomp": "0",
		}},
		{name: "no-new-privileges", sec: ocirt.Security{NoNewPrivileges: true}, want: map[string]string{
			"NoNewPrivs": "1", "userns": "denied", "Seccomp": "2",
		}},
		{name: "cap-add net_admin", sec: ocirt.Security{CapAdd: []string{"net_admin"}}, want: map[string]string{
			"netadmin": "ok", "netns": "denied", "CapEff": capMask(append(dockerCaps, 12)...),
		}},
		// the default profile follows the capabilities: CAP_SYS_ADMIN
		// allows unshare and namespace flags of clone
		{name: "cap-add SYS_ADMIN", sec: ocirt.Security{CapAdd: []string{"SYS_ADMIN"}}, want: map[string]string{
			"netns": "ok", "userns": "ok", "netadmin": "denied", "Seccomp": "2",
		}},
		{name: "cap-drop ALL cap-add chown", sec: ocirt.Security{CapDrop: []string{"ALL"}, CapAdd: []string{"CAP_CHOWN"}}, want: map[string]string{
			"CapEff": capMask(0), "CapBnd": capMask(0),
		}},
		{name: "cap-add ALL cap-drop sys_admin", sec: ocirt.Security{CapAdd: []string{"all"}, CapDrop: []string{"sys_admin"}}, want: map[string]string{
			"CapEff": capMask(without(all, 21)...), "netadmin": "ok", "netns": "denied",
		}},
		{name: "cap-drop net_raw mknod kill cap-add kill", sec: ocirt.Security{CapDrop: []string{"NET_RAW", "mknod", "kill"}, CapAdd: []string{"KILL"}}, want: map[string]string{
			"CapEff": capMask(without(dockerCaps, 13, 27)...),
		}},
		{name: "custom profile", sec: ocirt.Security{Seccomp: denyMkdir}, want: map[string]string{
			"mkdir": "denied", "touch": "ok", "userns": "ok", "Seccomp": "2",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := e.spec(t, "sh", "-c", probeScript)
			s.User, s.Security = tc.user, tc.sec
			out, errOut, code := e.run(t, s)
			got := facts(out)
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
			if t.Failed() || code != 0 {
				t.Logf("code %d, output:\n%s%s", code, out, errOut)
			}
		})
	}
}

// TestNFTablesNeedsNetAdmin drives nf_tables with the host's nft, in the
// test's own network namespace.
func TestNFTablesNeedsNetAdmin(t *testing.T) {
	e := newEnv(t, "runc")
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft not on the host (apt-get install nftables)")
	}
	for _, tc := range []struct {
		sec  ocirt.Security
		user string
		ok   bool
	}{
		{ok: false},
		{user: "65534", sec: ocirt.Security{Seccomp: "unconfined"}, ok: false},
		{sec: ocirt.Security{CapAdd: []string{"NET_ADMIN"}}, ok: true},
		{sec: ocirt.Security{Privileged: true}, ok: true},
	} {
		s := e.spec(t, "nft", "add", "table", "inet", "rt-probe")
		s.Image, s.Security, s.User = image.HostImage(), tc.sec, tc.user
		_, errOut, code := e.run(t, s)
		if (code == 0) != tc.ok {
			t.Errorf("%+v user %q: nft add table exited %d (%q), want success %v", tc.sec, tc.user, code, errOut, tc.ok)
		}
		if !tc.ok && !strings.Contains(errOut, "Operation not permitted") {
			t.Errorf("%+v: nft failed otherwise: %q", tc.sec, errOut)
		}
	}
}

func TestExecInheritsSecurity(t *testing.T) {
	e := newEnv(t, "runc")
	s := e.spec(t, "sleep", "1000")
	s.Security = ocirt.Security{NoNewPrivileges: true, CapDrop: []string{"ALL"}}
	e.start(t, s)
	out, code := e.exec(t, s.ID, "sh", "-c", probeScript)
	got := facts(out)
	if code != 0 || got["NoNewPrivs"] != "1" || got["CapEff"] != capMask() || got["Seccomp"] != "2" || got["userns"] != "denied" {
		t.Errorf("exec: code %d, %q", code, out)
	}
}

func TestSecurityRefused(t *testing.T) {
	e := newEnv(t, "runc")
	dir := t.TempDir()
	for _, tc := range []struct {
		sec  ocirt.Security
		want string
	}{
		{ocirt.Security{CapAdd: []string{"NOPE"}}, `--cap-add "NOPE": unknown capability`},
		{ocirt.Security{CapDrop: []string{"cap_bogus"}}, `--cap-drop "cap_bogus": unknown capability`},
		{ocirt.Security{CapAdd: []string{""}}, `--cap-add "": unknown capability`},
		{ocirt.Security{CapAdd: []string{"CAP_"}}, `unknown capability`},
		{ocirt.Security{Seccomp: filepath.Join(dir, "missing.json")}, "missing.json: no such file"},
		{ocirt.Security{Seccomp: dir}, "not a regular file"},
		{ocirt.Security{Seccomp: writeProfile(t, "this is not json")}, "not a profile in Docker's JSON format: line 1: invalid character"},
		{ocirt.Security{Seccomp: writeProfile(t, "{\n\"defaultAction\": 7\n}")}, "line 2"},
		{ocirt.Security{Seccomp: writeProfile(t, `{}`)}, "no defaultAction and no syscalls; use seccomp=unconfined"},
		{ocirt.Security{Seccomp: writeProfile(t, `{"defaultAction": "SCMP_ACT_BOGUS"}`)}, `defaultAction "SCMP_ACT_BOGUS": want one of`},
		{ocirt.Security{Seccomp: writeProfile(t, `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOPE"}]}`)}, `syscalls[0] [mkdir]: action "SCMP_ACT_NOPE"`},
		{ocirt.Security{Seccomp: writeProfile(t, `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]}`)}, `syscalls[0]: no names`},
		{ocirt.Security{Seccomp: writeProfile(t, `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}]}`)}, `operator "SCMP_CMP_ABOUT"`},
		{ocirt.Security{Seccomp: writeProfile(t, `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]}`)}, `argument index 9`},
		{ocirt.Security{Seccomp: writeProfile(t, `{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["x86_64"]}`)}, `architecture "x86_64"`},
		{ocirt.Security{Seccomp: writeProfile(t, `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"name": "kill", "names": ["kill"], "action": "SCMP_ACT_ERRNO"}]}`)}, `both 'name' and 'names'`},
		{ocirt.Security{Seccomp: writeProfile(t, `{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/x.sock"}`)}, `seccomp notification is not supported`},
	} {
		s := e.spec(t, "true")
		s.Security = tc.sec
		_, err := e.rt.Create(context.Background(), s)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%+v: error %v, want one line with %q", tc.sec, err, tc.want)
		}
		if ids, _ := e.rt.List(); len(ids) != 0 {
			t.Errorf("%+v: a refused create left %q", tc.sec, ids)
		}
	}
}

func TestParseSecurityOpt(t *testing.T) {
	for _, tc := range []struct {
		opts []string
		want ocirt.Security
		err  string
	}{
		{opts: []string{"no-new-privileges"}, want: ocirt.Security{NoNewPrivileges: true}},
		{opts: []string{"no-new-privileges:true"}, want: ocirt.Security{NoNewPrivileges: true}},
		{opts: []string{"no-new-privileges=true", "no-new-privileges=false"}, want: ocirt.Security{}},
		{opts: []string{"seccomp=unconfined"}, want: ocirt.Security{Seccomp: "unconfined"}},
		{opts: []string{"seccomp:unconfined"}, want: ocirt.Security{Seccomp: "unconfined"}},
		{opts: []string{"seccomp=/etc/p.json", "seccomp=builtin"}, want: ocirt.Security{}},
		{opts: []string{"seccomp=/etc/p.json"}, want: ocirt.Security{Seccomp: "/etc/p.json"}},
		{opts: []string{"apparmor=unconfined", "label=disable"}, want: ocirt.Security{}},
		{opts: []string{"seccomp="}, err: "want seccomp=unconfined, builtin or the path"},
		{opts: []string{"no-new-privileges=maybe"}, err: "want no-new-privileges=true or false"},
		{opts: []string{"apparmor=docker-default"}, err: "only apparmor=unconfined"},
		{opts: []string{"label=type:svirt"}, err: "only label=disable"},
		{opts: []string{"privileged"}, err: `security option "privileged": want`},
		{opts: []string{""}, err: `security option "": want`},
	} {
		var got ocirt.Security
		var err error
		for _, o := range tc.opts {
			if err = ocirt.ParseSecurityOpt(&got, o); err != nil {
				break
			}
		}
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: error %v, want %q", tc.opts, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.opts, err)
		case tc.err == "" && (got.NoNewPrivileges != tc.want.NoNewPrivileges || got.Seccomp != tc.want.Seccomp):
			t.Errorf("%q: %+v, want %+v", tc.opts, got, tc.want)
		}
	}
}
