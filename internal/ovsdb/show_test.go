package ovsdb

import (
	"strings"
	"testing"
)

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"br0": "br0", "vh1": "vh1", "_x": "_x", "a-b.c_d": "a-b.c_d",
		"": `""`, "3.1.0": `"3.1.0"`, "true": `"true"`, "false": `"false"`, "a b": `"a b"`,
		"a:b": `"a:b"`, "-x": `"-x"`, "é": `"é"`, `q"\`: `"q\"\\"`, "tab\t": `"tab\t"`,
		"2c1d8597-c8b9-47be-b02a-6f7a8c39f640": `"2c1d8597-c8b9-47be-b02a-6f7a8c39f640"`,
		"punix:/run/x.sock":                    `"punix:/run/x.sock"`,
	} {
		if got := quote(in); got != want {
			t.Errorf("quote(%q) = %s, want %s", in, got, want)
		}
	}
}

// showOf renders WriteShow for the named bridges.
func showOf(t *testing.T, e *env, bridges ...string) string {
	t.Helper()
	sw, err := e.c.Switch(ctx(t), bridges...)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := WriteShow(&b, sw); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// onlyBridges keeps, of `ovs-vsctl show` output, the blocks of the named
// bridges (and everything that is not a bridge).
func onlyBridges(show string, names ...string) string {
	var out []string
	keep := true
	for _, l := range strings.SplitAfter(show, "\n") {
		if strings.HasPrefix(l, "    ") && !strings.HasPrefix(l, "        ") {
			keep = !strings.HasPrefix(l, "    Bridge ")
			for _, n := range names {
				keep = keep || l == "    Bridge "+quote(n)+"\n"
			}
		}
		if keep {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}

// TestShowMatchesVsctl builds, with ovs-vsctl, a database holding every
// kind of thing `ovs-vsctl show` prints, and compares.
func TestShowMatchesVsctl(t *testing.T) {
	e := newEnv(t, false)
	o := e.ovs
	o.MustVsctl("--no-wait",
		"--", "add-br", "br0",
		"--", "set", "bridge", "br0", "datapath_type=netdev", "fail_mode=secure",
		"--", "add-port", "br0", "vh1", "tag=10",
		"--", "add-port", "br0", "trunk0", "trunks=30,20,100",
		"--", "add-port", "br0", "gw", "--", "set", "interface", "gw", "type=internal",
		"--", "add-bond", "br0", "bond0", "eth-a", "eth-b",
		"--", "add-port", "br0", "9lives",
		"--", "set", "interface", "9lives", `error="could not open network device 9lives (No such device)"`,
		"--", "add-port", "br0", "patch-a", "--", "set", "interface", "patch-a", "type=patch", "options:peer=patch-b",
		"--", "add-br", "br1",
		"--", "add-port", "br1", "patch-b", "--", "set", "interface", "patch-b", "type=patch", "options:peer=patch-a",
		"--", "add-port", "br1", "vx0", "--", "set", "interface", "vx0", "type=vxlan",
		`options:remote_ip=192.0.2.9`, `options:key=flow`, "bfd:enable=true",
		"--", "set-controller", "br1", "tcp:127.0.0.1:6653",
		"--", "set-manager", "punix:"+o.Dir+"/manager.sock",
		"--", "add-br", "empty.br-x",
	)
	o.MustVsctl("--no-wait", "set", "interface", "vx0", "bfd_status:state=down", "bfd_status:diagnostic=\"No Diagnostic\"")
	want := o.MustVsctl("show")
	if got := showOf(t, e); got != want {
		t.Errorf("WriteShow:\n%s\novs-vsctl show:\n%s", got, want)
	}
	for _, names := range [][]string{{"br1"}, {"br0", "empty.br-x"}} {
		if got, want := showOf(t, e, names...), onlyBridges(want, names...); got != want {
			t.Errorf("WriteShow of %v:\n%s\nwant:\n%s", names, got, want)
		}
	}
	if _, err := e.c.Switch(ctx(t), "br0", "nosuch"); err == nil || !strings.Contains(err.Error(), `"nosuch"`) {
		t.Errorf("show of a missing bridge: %v", err)
	}
	t.Logf("\n%s", want)
}
