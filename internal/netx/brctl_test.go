package netx

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

func TestWriteBrctl(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []BridgeInfo
		want string
	}{
		{"none", nil, ""},
		{"no ports", []BridgeInfo{{Name: "br0", ID: "8000.000000000000"}},
			"bridge name\tbridge id\t\tSTP enabled\tinterfaces\nbr0\t\t8000.000000000000\tno\t\t\n"},
		{"ports", []BridgeInfo{{Name: "docker0", ID: "8000.0242ac110001", STP: true, Ports: []string{"veth1", "veth2"}}},
			"bridge name\tbridge id\t\tSTP enabled\tinterfaces\ndocker0\t\t8000.0242ac110001\tyes\t\tveth1\n\t\t\t\t\t\t\tveth2\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := WriteBrctl(&b, tc.in); err != nil {
				t.Fatal(err)
			}
			if b.String() != tc.want {
				t.Errorf("got %q\nwant %q", b.String(), tc.want)
			}
		})
	}
}

// brctl runs the real `brctl show args...` in ns. brctl reads sysfs, which
// shows the namespace of whoever mounted it, so it runs in a private mount
// namespace with a sysfs mounted from inside ns.
func brctl(t *testing.T, ns netns.NsHandle, args ...string) (stdout, stderr string) {
	t.Helper()
	if _, err := exec.LookPath("brctl"); err != nil {
		t.Skip("brctl (bridge-utils) not installed")
	}
	fd, err := unix.Dup(int(ns))
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "netns")
	defer f.Close()
	cmd := exec.Command("nsenter", append([]string{"--net=/proc/self/fd/3", "unshare", "--mount", "--propagation", "private",
		"sh", "-c", `mount -t sysfs sysfs /sys && exec brctl show "$@"`, "sh"}, args...)...)
	cmd.ExtraFiles = []*os.File{f}
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("brctl: %v", err)
	}
	return out.String(), errb.String()
}

// ipIn runs `ip args...` in ns, for settings netlink's types cannot express.
func ipIn(t *testing.T, ns netns.NsHandle, args ...string) {
	t.Helper()
	fd, err := unix.Dup(int(ns))
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "netns")
	defer f.Close()
	cmd := exec.Command("nsenter", append([]string{"--net=/proc/self/fd/3", "ip"}, args...)...)
	cmd.ExtraFiles = []*os.File{f}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func TestBrctlMatchesBridgeUtils(t *testing.T) {
	needRoot(t)
	type setup func(t *testing.T, ns netns.NsHandle, h *Handle)
	bridge := func(name string, ports ...string) setup {
		return func(t *testing.T, ns netns.NsHandle, h *Handle) {
			br, err := EnsureBridge(h, name, 1500, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range ports {
				ctr, _ := newNS(t)
				if err := AddVeth(h, VethSpec{HostName: p, PeerName: "eth0", PeerNS: ctr, MasterIndex: br.Attrs().Index}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	for _, tc := range []struct {
		name   string
		setups []setup
		args   []string
	}{
		{name: "no bridges"},
		{name: "no bridges but other links", setups: []setup{func(t *testing.T, ns netns.NsHandle, h *Handle) { addLink(t, h, "nxlink", 1500) }}},
		{name: "one bridge without ports", setups: []setup{bridge("nxbr0")}},
		{name: "three ports", setups: []setup{bridge("nxbr0", "nxvb", "nxva9", "nxva10")}},
		{name: "two bridges", setups: []setup{
			bridge("nxbr1", "nxv1"), bridge("nxbr0", "nxv0a", "nxv0b"),
			func(t *testing.T, ns netns.NsHandle, h *Handle) {
				// Another bridge id priority, STP on and a non-bridge link.
				ipIn(t, ns, "link", "set", "nxbr1", "type", "bridge", "stp_state", "1", "priority", "4096")
				addLink(t, h, "nxlink", 1500)
			}}},
		{name: "named bridge", setups: []setup{bridge("nxbr1", "nxv1"), bridge("nxbr0", "nxv0")}, args: []string{"nxbr1"}},
		{name: "named bridges in given order", setups: []setup{bridge("nxbr1"), bridge("nxbr0", "nxv0")}, args: []string{"nxbr1", "nxbr0"}},
		{name: "missing and not a bridge", setups: []setup{bridge("nxbr0", "nxv0"), func(t *testing.T, ns netns.NsHandle, h *Handle) { addLink(t, h, "nxlink", 1500) }},
			args: []string{"nxnope", "nxbr0", "nxlink"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns, h := newNS(t)
			for _, s := range tc.setups {
				s(t, ns, h)
			}
			wantOut, wantErr := brctl(t, ns, tc.args...)
			bs, err := Bridges(h, tc.args...)
			var b bytes.Buffer
			if werr := WriteBrctl(&b, bs); werr != nil {
				t.Fatal(werr)
			}
			if b.String() != wantOut {
				t.Errorf("stdout differs\n got: %q\nwant: %q", b.String(), wantOut)
			}
			gotErr := ""
			if err != nil {
				gotErr = err.Error() + "\n"
			}
			if gotErr != wantErr {
				t.Errorf("errors differ\n got: %q\nwant: %q", gotErr, wantErr)
			}
		})
	}
}
