package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ctnet/ctnet/internal/crittest"
	"github.com/ctnet/ctnet/internal/sandbox"
)

// TestCNIContainerd is a Kubernetes node's call path without the kubelet:
// containerd's CRI plugin calls ctnet through CNI for `crictl runp`. Each pod
// gets eth0 from ctnet, two pods ping, a hostPort answers the upstream,
// inspect shows the pods by name, and `crictl stopp && crictl rmp` leaves
// nothing.
func TestCNIContainerd(t *testing.T) {
	crictl := cniTool(t, "crictl")
	s := sandbox.New(t)
	privateCNICache(t, s)
	bin := cniPlugins(t, s)
	// The CRI plugin brings each pod's lo up through the reference loopback.
	if err := os.Symlink(filepath.Join(cniPluginDir, "loopback"), filepath.Join(bin, "loopback")); err != nil {
		t.Fatal(err)
	}
	confDir := t.TempDir()
	conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"k8s-pods","plugins":[{"type":"ctnet","network":"k8s",
		"subnet":"10.98.0.0/24","bridge":"ctk8s0","root":%q,"runRoot":%q,"capabilities":{"portMappings":true}}]}`, s.Root, s.RunRoot)
	if err := os.WriteFile(filepath.Join(confDir, "10-ctnet.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	var env []string
	if s.Cgroup != "" {
		env = append(env, "CTNET_CGROUP="+s.Cgroup)
	}
	c := crittest.Start(t, s, crictl, bin, confDir, env...)

	runp := func(name string, hostPort int) (id, ip, netns string) {
		t.Helper()
		pod := map[string]any{
			"metadata":      map[string]any{"name": name, "namespace": "shop", "uid": "uid-" + name, "attempt": 0},
			"log_directory": filepath.Join(c.Dir, "logs", name),
			"linux":         map[string]any{"cgroup_parent": c.CgroupParent},
		}
		if hostPort != 0 {
			pod["port_mappings"] = []map[string]any{{"protocol": 0, "container_port": 80, "host_port": hostPort}}
		}
		b, _ := json.Marshal(pod)
		file := filepath.Join(c.Dir, name+".json")
		if err := os.WriteFile(file, b, 0o644); err != nil {
			t.Fatal(err)
		}
		id = strings.TrimSpace(c.MustCrictl("runp", file))
		var st struct {
			Status struct {
				Network struct{ IP string }
			}
			Info struct {
				RuntimeSpec struct {
					Linux struct {
						Namespaces []struct{ Type, Path string }
					}
				}
			}
		}
		if err := json.Unmarshal([]byte(c.MustCrictl("inspectp", id)), &st); err != nil {
			t.Fatalf("crictl inspectp: %v", err)
		}
		for _, ns := range st.Info.RuntimeSpec.Linux.Namespaces {
			if ns.Type == "network" {
				netns = ns.Path
			}
		}
		return id, st.Status.Network.IP, netns
	}
	inPod := func(netns string, argv ...string) (string, error) {
		return s.Host.Run("nsenter", append([]string{"--net=" + netns, "--"}, argv...)...)
	}

	id1, ip1, ns1 := runp("web", 8083)
	id2, ip2, ns2 := runp("client", 0)
	for _, p := range []struct{ ip, netns string }{{ip1, ns1}, {ip2, ns2}} {
		if !strings.HasPrefix(p.ip, "10.98.0.") {
			t.Errorf("pod address %q is not from ctnet's 10.98.0.0/24", p.ip)
		}
		if out, _ := inPod(p.netns, "ip", "-o", "-4", "addr", "show", "eth0"); !strings.Contains(out, p.ip+"/24") {
			t.Errorf("eth0 of %s: %s", p.netns, out)
		}
	}
	if out, err := inPod(ns2, "ping", "-c1", "-W2", ip1); err != nil {
		t.Errorf("pod client cannot ping pod web: %v\n%s", err, out)
	}
	if out, err := inPod(ns1, "ping", "-c1", "-W2", ip2); err != nil {
		t.Errorf("pod web cannot ping pod client: %v\n%s", err, out)
	}
	web := s.Host.Command("nsenter", "--net="+ns1, "--", "socat", "TCP-LISTEN:80,fork,reuseaddr", "SYSTEM:echo hello from a pod")
	if err := web.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { web.Process.Kill(); web.Wait() }()
	waitFor(t, func() bool {
		return strings.Contains(httpGet(s.Upstream, sandbox.HostAddr, "8083"), "hello from a pod")
	}, "hostPort 8083 to answer the upstream")

	var names []string
	for _, ctr := range inspectNetworks(t, s, "k8s")[0].Containers {
		names = append(names, ctr.Name)
	}
	for _, want := range []string{"shop/web " + id1 + "/eth0", "shop/client " + id2 + "/eth0"} {
		if !strings.Contains(strings.Join(names, "\n"), want) {
			t.Errorf("ctnet network inspect k8s: %q missing from %q", want, names)
		}
	}

	for _, id := range []string{id1, id2} {
		c.MustCrictl("stopp", id)
		c.MustCrictl("rmp", id)
	}
	nothingLeft(t, s, "k8s", "ctk8s0")
	if out := httpGet(s.Upstream, sandbox.HostAddr, "8083"); strings.Contains(out, "hello") {
		t.Errorf("hostPort 8083 still answers after rmp")
	}
}
