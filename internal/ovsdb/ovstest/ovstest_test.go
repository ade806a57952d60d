package ovstest

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/ctnet/ctnet/internal/sandbox"
)

func hasLink(t *testing.T, ns *sandbox.NS, name string) bool {
	t.Helper()
	_, err := ns.Run("ip", "link", "show", name)
	return err == nil
}

func alive(pid int) bool {
	if pid == 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	if err != nil {
		return false
	}
	// a zombie is not alive
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

func TestHarness(t *testing.T) {
	Require(t)
	var server, switchd int
	var dir string
	t.Run("run", func(t *testing.T) {
		s := sandbox.New(t)
		o := Start(t, s.Host)
		server, switchd, dir = o.ServerPID(), o.SwitchPID(), o.Dir
		hostNet, _ := os.Readlink(s.Host.NetPath())
		for name, pid := range map[string]int{"ovsdb-server": server, "ovs-vswitchd": switchd} {
			comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
			if strings.TrimSpace(string(comm)) != name {
				t.Errorf("pid %d is %q, want %s", pid, comm, name)
			}
			if n, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/net"); n != hostNet {
				t.Errorf("%s runs in %s, not the sandbox's %s", name, n, hostNet)
			}
		}
		if !strings.HasPrefix(o.Socket, o.Dir+"/") || strings.HasPrefix(o.Socket, "/run/openvswitch") {
			t.Errorf("socket %s", o.Socket)
		}
		if v := o.MustVsctl("get", "Open_vSwitch", ".", "ovs_version"); !strings.Contains(v, ".") {
			t.Errorf("ovs_version %q", v)
		}
		o.MustVsctl("add-br", "hbr0", "--", "set", "bridge", "hbr0", "datapath_type=netdev")
		if !hasLink(t, s.Host, "hbr0") {
			t.Fatal("no hbr0 device after add-br")
		}
		// The bridge's management socket lives in the private run dir.
		if _, err := os.Stat(o.Dir + "/hbr0.mgmt"); err != nil {
			t.Errorf("management socket: %v", err)
		}

		o.KillSwitch()
		if alive(switchd) || o.SwitchPID() != 0 {
			t.Fatalf("ovs-vswitchd %d survived KillSwitch", switchd)
		}
		if !hasLink(t, s.Host, "hbr0") {
			t.Error("a killed ovs-vswitchd took its tap along (they are persistent)")
		}
		o.StartSwitch()
		if out := o.MustVsctl("list-br"); out != "hbr0\n" {
			t.Errorf("list-br after restarting ovs-vswitchd: %q", out)
		}
		switchd = o.SwitchPID()

		o.RestartDB()
		if o.ServerPID() == server || alive(server) {
			t.Errorf("ovsdb-server %d was not restarted", server)
		}
		server = o.ServerPID()
		if out := o.MustVsctl("list-br"); out != "" {
			t.Errorf("list-br on the new database: %q", out)
		}
		o.Sync() // the running ovs-vswitchd reconnects and applies the empty database
		if hasLink(t, s.Host, "hbr0") {
			t.Error("hbr0 left after ovs-vswitchd applied an empty database")
		}
	})
	if alive(server) || alive(switchd) {
		t.Errorf("daemons outlived their test: ovsdb-server %v, ovs-vswitchd %v", alive(server), alive(switchd))
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s left behind: %v", dir, err)
	}
}
