package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/ctnet/ctnet/internal/sandbox"
)

// cniTool finds a client program scripts/deps.sh installs (in PATH or Go's
// bin directory); outside CI a test without it is skipped.
func cniTool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		if p := filepath.Join(strings.TrimSpace(string(out)), "bin", name); fileExists(p) {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is missing: scripts/deps.sh installs it", name)
	}
	t.Skipf("%s is missing: run scripts/deps.sh", name)
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// privateCNICache gives the sandbox host its own /var/lib/cni, where libcni
// (in cnitool, containerd, Podman) caches results.
func privateCNICache(t *testing.T, s *sandbox.Sandbox) {
	t.Helper()
	s.Host.MustRun("sh", "-c", "mkdir -p /var/lib/cni && mount -t tmpfs tmpfs /var/lib/cni")
}

// cniPlugins is a plugin directory with this build of ctnet installed by
// `ctnet cni install`.
func cniPlugins(t *testing.T, s *sandbox.Sandbox) string {
	t.Helper()
	dir := t.TempDir()
	if out := strings.TrimSpace(s.MustCtnet("cni", "install", "--dir", dir)); out != filepath.Join(dir, "ctnet") {
		t.Fatalf("cni install printed %q", out)
	}
	return dir
}

// TestCNITool drives ctnet with cnitool (CNI's own client, v1.3.1): the
// add/check/status/gc/del cycle, two namespaces that ping each other, a port
// mapping answering the upstream; state through $CTNET_ROOT, shared with the
// command line.
func TestCNITool(t *testing.T) {
	tool := cniTool(t, "cnitool")
	s := sandbox.New(t)
	privateCNICache(t, s)
	bin := cniPlugins(t, s)
	confDir := t.TempDir()
	conf := `{"cniVersion":"1.1.0","name":"pods","plugins":[{"type":"ctnet","subnet":"10.89.0.0/24","bridge":"ctpods0",
		"capabilities":{"portMappings":true}}]}`
	if err := os.WriteFile(filepath.Join(confDir, "pods.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(env []string, args ...string) (string, error) {
		cmd := s.Host.Command(tool, args...)
		cmd.Env = append(s.Env(), "CNI_PATH="+bin+":"+cniPluginDir, "NETCONFPATH="+confDir)
		cmd.Env = append(cmd.Env, env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	must := func(env []string, args ...string) string {
		t.Helper()
		out, err := run(env, args...)
		if err != nil {
			t.Fatalf("cnitool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	ns1, ns2 := s.Netns(), s.Netns()
	ports := []string{`CAP_ARGS={"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}`}
	var r1, r2 types100.Result
	if err := json.Unmarshal([]byte(must(ports, "add", "pods", ns1.NetPath())), &r1); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(must(nil, "add", "pods", ns2.NetPath())), &r2); err != nil {
		t.Fatal(err)
	}
	a1, a2 := r1.IPs[0].Address.IP.String(), r2.IPs[0].Address.IP.String()
	if got := addrOf(t, ns1, "eth0"); got != a1 {
		t.Errorf("ns1 has %s, cnitool printed %s", got, a1)
	}
	if err := ns1.Ping(a2); err != nil {
		t.Error(err)
	}
	if err := ns2.Ping(a1); err != nil {
		t.Error(err)
	}
	web := ns1.Command("socat", "TCP-LISTEN:80,fork,reuseaddr", "SYSTEM:echo hello from ns1")
	if err := web.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { web.Process.Kill(); web.Wait() }()
	waitFor(t, func() bool {
		return strings.Contains(httpGet(s.Upstream, sandbox.HostAddr, "8080"), "hello from ns1")
	}, "port 8080 of the sandbox host to answer the upstream")

	n := inspectNetworks(t, s, "pods")[0]
	if len(n.Containers) != 2 {
		t.Errorf("ctnet network inspect pods shows %d attachments, want 2: %v", len(n.Containers), n.Containers)
	}
	must(nil, "check", "pods", ns1.NetPath())
	must(nil, "check", "pods", ns2.NetPath())
	must(nil, "status", "pods", ns1.NetPath())

	// cnitool's GC has no valid attachments: everything of the network goes.
	must(nil, "gc", "pods", ns1.NetPath())
	if out, err := run(nil, "check", "pods", ns1.NetPath()); err == nil || !strings.Contains(out, "not attached") {
		t.Errorf("check after gc: %v\n%s", err, out)
	}
	if out := httpGet(s.Upstream, sandbox.HostAddr, "8080"); strings.Contains(out, "hello") {
		t.Errorf("port 8080 still answers after gc: %s", out)
	}
	must(nil, "del", "pods", ns1.NetPath())
	must(nil, "del", "pods", ns2.NetPath())
	must(nil, "del", "pods", ns2.NetPath())
	nothingLeft(t, s, "pods", "ctpods0")
}
