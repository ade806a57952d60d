package e2e

import (
	"bytes"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ctnet/ctnet/internal/sandbox"
)

// ovsCrashCases are the crash points of the OVS driver's steps and the
// service's steps as an OVS network goes through them (TestCrashAtEveryStep
// covers the service's on a Linux bridge).
var ovsCrashCases = []struct {
	step, name string
	op, next   []string
}{
	{step: "network-create", name: "network-create",
		op: []string{"network", "create", "-d", "ovs", "-o", "ovs.bridge=ctnet-ovs9", "--subnet", "10.62.0.0/24", "o2"}, next: []string{"network", "rm", "o2"}},
	{step: "ovs-bridge", name: "network-create-new-bridge",
		op: []string{"network", "create", "-d", "ovs", "-o", "ovs.bridge=ctnet-ovs9", "--subnet", "10.62.0.0/24", "o2"}, next: []string{"network", "rm", "o2"}},
	{step: "ovs-bridge", name: "network-create-joined-bridge",
		op: []string{"network", "create", "-d", "ovs", "-o", "ovs.vlan=12", "--subnet", "10.62.0.0/24", "o2"}, next: []string{"network", "rm", "o2"}},
	{step: "network-rm", name: "network-rm",
		op: []string{"network", "rm", "ospare"}, next: []string{"network", "create", "-d", "ovs", "-o", "ovs.vlan=11", "--subnet", "10.61.0.0/24", "ospare"}},
	{step: "attach-planned", name: "network-connect",
		op: []string{"network", "connect", "osw", "--netns", "{b}"}, next: []string{"network", "disconnect", "osw", "--netns", "{b}"}},
	{step: "ovs-port", name: "network-connect",
		op: []string{"network", "connect", "osw", "--netns", "{b}"}, next: []string{"network", "disconnect", "osw", "--netns", "{b}"}},
	{step: "attach", name: "network-connect",
		op: []string{"network", "connect", "osw", "--netns", "{b}"}, next: []string{"network", "disconnect", "osw", "--netns", "{b}"}},
	{step: "detach", name: "network-disconnect",
		op: []string{"network", "disconnect", "osw", "--netns", "{a}"}, next: []string{"network", "connect", "osw", "--netns", "{a}"}},
}

// ovsCrashEnv: an OVS network on VLAN 10 with a namespace on it, a spare
// namespace, and an OVS network nobody uses, on the same bridge.
func ovsCrashEnv(t *testing.T) (*ovsEnv, *crashEnv) {
	e := newOVSEnv(t)
	c := &crashEnv{s: e.Sandbox, ns: map[string]*sandbox.NS{}}
	e.must("network", "create", "-d", "ovs", "-o", "ovs.vlan=10", "--subnet", "10.60.0.0/24", "osw")
	c.ns["a"], c.ns["b"] = e.Netns(), e.Netns()
	e.must("network", "connect", "osw", "--netns", c.ns["a"].NetPath())
	e.must("network", "create", "-d", "ovs", "-o", "ovs.vlan=11", "--subnet", "10.61.0.0/24", "ospare")
	return e, c
}

var ovsVolatile = regexp.MustCompile(`\bovs-[0-9a-f]{11}\b`)

// ovsState is hostState with what the database holds: bridges, ports with
// their tags and marks, interfaces with whether ovs-vswitchd opened them.
func ovsState(t *testing.T, e *ovsEnv, c *crashEnv) string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(hostState(t, c)), "\n")
	for _, q := range [][]string{
		{"bridge", "name,datapath_type,external_ids"},
		{"port", "name,tag,external_ids"},
		{"interface", "name,type,ofport"},
	} {
		out := e.ovs.MustVsctl("--format=csv", "--no-headings", "--columns="+q[1], "list", q[0])
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if l != "" {
				// OVSDB quotes a string only when it could be read as
				// something else (an id made of digits): quotes differ by id.
				lines = append(lines, "ovs "+q[0]+" "+strings.ReplaceAll(l, `"`, ""))
			}
		}
	}
	out := strings.Join(lines, "\n")
	for name, ns := range c.ns {
		out = strings.ReplaceAll(out, ns.NetPath(), "<ns "+name+">")
	}
	lines = strings.Split(ovsVolatile.ReplaceAllString(normalizeIDs(out), "ovs-<id11>"), "\n")
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}

func TestOVSCrashAtEveryStep(t *testing.T) {
	t.Parallel()
	sandbox.RequireRoot(t)
	steps := crashPoints(t)
	for _, s := range []string{"ovs-bridge", "ovs-port"} {
		if !steps[s] {
			t.Errorf("no crash point %q in the source", s)
		}
	}
	for _, tc := range ovsCrashCases {
		t.Run(tc.step+"/"+tc.name, func(t *testing.T) {
			t.Parallel()
			twin, tw := ovsCrashEnv(t)
			twin.must(tw.args(tc.op)...)
			after := ovsState(t, twin, tw)

			e, c := ovsCrashEnv(t)
			before := ovsState(t, e, c)
			cmd := e.Host.Command(sandbox.Binary(t), c.args(tc.op)...)
			cmd.Env = append(e.Env(), "OVS_RUNDIR="+e.ovs.Dir, "CTNET_CRASH_AT="+tc.step)
			var o, er bytes.Buffer
			cmd.Stdout, cmd.Stderr = &o, &er
			cmd.WaitDelay = 10 * time.Second
			err := cmd.Run()
			if ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
				t.Fatalf("CTNET_CRASH_AT=%s: want death by SIGKILL, got %v\n%s%s", tc.step, err, o.String(), er.String())
			}
			out := e.must("system", "reconcile")
			t.Logf("reconcile after the crash:\n%s", out)
			var got string
			which := -1
			for i := 0; i < 40 && which < 0; i++ {
				if got = ovsState(t, e, c); got == before {
					which = 0
				} else if got == after {
					which = 1
				} else {
					time.Sleep(100 * time.Millisecond)
				}
			}
			switch which {
			case 0:
				t.Logf("state after reconcile: as before the operation")
			case 1:
				t.Logf("state after reconcile: as after the operation")
			default:
				want, name := after, "after"
				if diffCount(before, got) < diffCount(after, got) {
					want, name = before, "before"
				}
				t.Fatalf("after the crash and reconcile the host is neither as before nor as after; closest is %q:\n%s", name, lineDiff(want, got))
			}
			if out := e.must("system", "reconcile"); out != "" {
				t.Errorf("second reconcile printed:\n%s", out)
			}
			if which == 0 {
				e.must(c.args(tc.op)...)
			}
			e.must(c.args(tc.next)...)
			if out := e.must("system", "reconcile"); out != "" {
				t.Errorf("reconcile after the next operation printed:\n%s", out)
			}
		})
	}
}
