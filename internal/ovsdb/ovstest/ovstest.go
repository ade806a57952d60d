// Package ovstest runs a private Open vSwitch — ovsdb-server and, when
// asked, ovs-vswitchd — inside a test's sandbox host namespace, with its own
// database, sockets, logs and pidfiles in a temp dir. It never touches
// /run/openvswitch or the machine's database, and stops exactly the
// processes it started, by PID.
//
// ovs-vswitchd needs no special flag without the openvswitch kernel module:
// it logs that the "ovs_datapath" netlink family is missing and serves
// bridges of datapath_type "netdev" in userspace (bridges of the system
// datapath fail to come up). Its taps are made in the sandbox's namespace.
package ovstest

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ctnet/ctnet/internal/sandbox"
)

// Schema is the Open_vSwitch schema Debian's openvswitch-common installs.
const Schema = "/usr/share/openvswitch/vswitch.ovsschema"

// OVS is one private Open vSwitch.
type OVS struct {
	t      testing.TB
	NS     *sandbox.NS // the namespace the daemons run in
	Dir    string      // run, log and database directory (OVS_RUNDIR)
	Socket string      // the database's UNIX socket
	DB     string      // the database file

	server, switchd *proc
}

// proc is a daemon this package started and waits for.
type proc struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
}

// Require skips the test when Open vSwitch is not installed.
func Require(t testing.TB) {
	t.Helper()
	for _, b := range []string{"ovsdb-server", "ovsdb-tool", "ovsdb-client", "ovs-vswitchd", "ovs-vsctl", "ovs-appctl"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("needs Open vSwitch (%s not found): run scripts/deps.sh", b)
		}
	}
	if _, err := os.Stat(Schema); err != nil {
		t.Skipf("needs Open vSwitch's schema %s: run scripts/deps.sh", Schema)
	}
}

// StartDB starts ovsdb-server inside ns on a fresh database holding the
// root Open_vSwitch row with the versions filled in, as ovs-ctl leaves it.
func StartDB(t testing.TB, ns *sandbox.NS) *OVS {
	t.Helper()
	Require(t)
	// A UNIX socket path holds at most 107 bytes, and ovs-vswitchd puts one
	// per bridge (NAME.mgmt) in the run directory: keep it short rather than
	// under the test's long TempDir.
	dir, err := os.MkdirTemp("", "ovs")
	if err != nil {
		t.Fatal(err)
	}
	o := &OVS{t: t, NS: ns, Dir: dir, Socket: filepath.Join(dir, "db.sock"), DB: filepath.Join(dir, "conf.db")}
	t.Cleanup(func() {
		o.switchd.stop(syscall.SIGTERM)
		o.server.stop(syscall.SIGTERM)
		if t.Failed() {
			o.dumpLogs()
		}
		os.RemoveAll(dir)
	})
	o.createDB()
	o.startServer()
	return o
}

// Start is StartDB followed by StartSwitch.
func Start(t testing.TB, ns *sandbox.NS) *OVS {
	t.Helper()
	o := StartDB(t, ns)
	o.StartSwitch()
	return o
}

// Env is the environment that points Open vSwitch's tools (and ctnet) at
// this instance.
func (o *OVS) Env() []string {
	return append(os.Environ(), "OVS_RUNDIR="+o.Dir, "OVS_LOGDIR="+o.Dir, "OVS_DBDIR="+o.Dir,
		"OVS_SYSCONFDIR="+o.Dir)
}

func (o *OVS) command(name string, args ...string) *exec.Cmd {
	cmd := o.NS.Command(name, args...)
	cmd.Env = o.Env()
	return cmd
}

// start runs a daemon in the foreground (no --detach: this process is its
// parent and knows its PID), its console output to DIR/NAME.out.
func (o *OVS) start(name string, args ...string) *proc {
	o.t.Helper()
	out, err := os.OpenFile(filepath.Join(o.Dir, name+".out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		o.t.Fatal(err)
	}
	defer out.Close()
	args = append(args,
		"--pidfile="+filepath.Join(o.Dir, name+".pid"),
		"--unixctl="+filepath.Join(o.Dir, name+".ctl"),
		"--log-file="+filepath.Join(o.Dir, name+".log"),
		"--no-chdir", "-vconsole:off")
	cmd := o.command(name, args...)
	cmd.Stdout, cmd.Stderr = out, out
	// nsenter execs the daemon in place, so the PID is the daemon's.
	if err := cmd.Start(); err != nil {
		o.t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(p.exited) }()
	return p
}

// PID is the process id of the daemon, or 0 when it is not running.
func (p *proc) pid() int {
	if p == nil || p.gone() {
		return 0
	}
	return p.cmd.Process.Pid
}

func (p *proc) gone() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// stop sends sig to the daemon and waits for it, killing it after 10 s.
func (p *proc) stop(sig syscall.Signal) {
	if p == nil || p.gone() {
		return
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

func (o *OVS) createDB() {
	o.t.Helper()
	os.Remove(o.DB)
	if out, err := o.command("ovsdb-tool", "create", o.DB, Schema).CombinedOutput(); err != nil {
		o.t.Fatalf("ovsdb-tool create %s: %v\n%s", o.DB, err, out)
	}
}

func (o *OVS) startServer() {
	o.t.Helper()
	os.Remove(o.Socket)
	// The second remote serves the Manager rows a test may add (to set an
	// inactivity probe, for instance).
	o.server = o.start("ovsdb-server", o.DB, "--remote=punix:"+o.Socket,
		"--remote=db:Open_vSwitch,Open_vSwitch,manager_options")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.Dial("unix", o.Socket); err == nil {
			c.Close()
			break
		}
		if o.server.gone() || time.Now().After(deadline) {
			o.t.Fatalf("ovsdb-server did not come up on %s:\n%s", o.Socket, o.log("ovsdb-server"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	o.MustVsctl("--no-wait", "--", "init", "--", "set", "Open_vSwitch", ".",
		"ovs_version="+strings.TrimSpace(o.tool("ovs-vswitchd --version", `s/.* //;q`)),
		"db_version="+strings.TrimSpace(o.tool("ovsdb-tool schema-version "+Schema, "")))
}

// tool runs a shell pipeline of version queries (sed script optional).
func (o *OVS) tool(cmdline, sed string) string {
	o.t.Helper()
	if sed != "" {
		cmdline += " | sed '" + sed + "'"
	}
	out, err := exec.Command("sh", "-c", cmdline).Output()
	if err != nil {
		o.t.Fatalf("%s: %v", cmdline, err)
	}
	return string(out)
}

// StartSwitch starts ovs-vswitchd on the database and waits until it has
// applied the configuration.
func (o *OVS) StartSwitch() {
	o.t.Helper()
	if o.switchd.pid() != 0 {
		o.t.Fatal("ovs-vswitchd is already running")
	}
	o.switchd = o.start("ovs-vswitchd", "unix:"+o.Socket)
	o.Sync()
}

// Sync waits until ovs-vswitchd has applied the database as it is now: it
// bumps next_cfg, as every ovs-vsctl change does, and waits for cur_cfg.
func (o *OVS) Sync() {
	o.t.Helper()
	const bump = `["Open_vSwitch",` +
		`{"op":"mutate","table":"Open_vSwitch","where":[],"mutations":[["next_cfg","+=",1]]},` +
		`{"op":"select","table":"Open_vSwitch","where":[],"columns":["next_cfg"]}]`
	out, err := o.command("ovsdb-client", "transact", "unix:"+o.Socket, bump).CombinedOutput()
	var res []struct {
		Rows []struct {
			NextCfg int `json:"next_cfg"`
		} `json:"rows"`
	}
	if err != nil || json.Unmarshal(out, &res) != nil || len(res) != 2 || len(res[1].Rows) != 1 {
		o.t.Fatalf("bump next_cfg: %v\n%s", err, out)
	}
	next := strconv.Itoa(res[1].Rows[0].NextCfg)
	if out, err := o.Vsctl("--timeout=60", "wait-until", "Open_vSwitch", ".", "cur_cfg>="+next); err != nil {
		o.t.Fatalf("ovs-vswitchd did not apply next_cfg %s: %v\n%s\n%s", next, err, out, o.log("ovs-vswitchd"))
	}
}

// KillSwitch kills ovs-vswitchd (SIGKILL, as a crash would), leaving its
// kernel devices behind.
func (o *OVS) KillSwitch() {
	o.switchd.stop(syscall.SIGKILL)
}

// RestartDB stops ovsdb-server and starts it again on a new database: the
// root row only, as after a reinstall. A running ovs-vswitchd reconnects
// by itself (after up to 8 s of backoff) and removes what the database no
// longer names.
func (o *OVS) RestartDB() {
	o.t.Helper()
	o.server.stop(syscall.SIGTERM)
	o.createDB()
	o.startServer()
}

// ServerPID and SwitchPID are the daemons' process ids (0 when stopped).
func (o *OVS) ServerPID() int { return o.server.pid() }
func (o *OVS) SwitchPID() int { return o.switchd.pid() }

// Vsctl runs ovs-vsctl on this database inside the namespace.
func (o *OVS) Vsctl(args ...string) (string, error) {
	a := append([]string{"--db=unix:" + o.Socket}, args...)
	if !strings.HasPrefix(strings.Join(args, " "), "--timeout") {
		a = append([]string{"--timeout=30"}, a...)
	}
	out, err := o.command("ovs-vsctl", a...).CombinedOutput()
	return string(out), err
}

// MustVsctl is Vsctl that fails the test on error.
func (o *OVS) MustVsctl(args ...string) string {
	o.t.Helper()
	out, err := o.Vsctl(args...)
	if err != nil {
		o.t.Fatalf("ovs-vsctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// Appctl runs ovs-appctl against ovs-vswitchd.
func (o *OVS) Appctl(args ...string) (string, error) {
	a := append([]string{"-t", filepath.Join(o.Dir, "ovs-vswitchd.ctl")}, args...)
	out, err := o.command("ovs-appctl", a...).CombinedOutput()
	return string(out), err
}

func (o *OVS) log(name string) string {
	b, _ := os.ReadFile(filepath.Join(o.Dir, name+".log"))
	c, _ := os.ReadFile(filepath.Join(o.Dir, name+".out"))
	s := string(b) + string(c)
	if lines := strings.Split(s, "\n"); len(lines) > 40 {
		s = strings.Join(lines[len(lines)-40:], "\n")
	}
	return s
}

func (o *OVS) dumpLogs() {
	for _, n := range []string{"ovsdb-server", "ovs-vswitchd"} {
		o.t.Logf("--- %s log (tail):\n%s", n, o.log(n))
	}
}

// String names the instance in failure messages.
func (o *OVS) String() string {
	return fmt.Sprintf("ovs(%s, ovsdb-server %d, ovs-vswitchd %d)", o.Dir, o.ServerPID(), o.SwitchPID())
}
