package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ctnet/ctnet/internal/crittest"
	"github.com/ctnet/ctnet/internal/dockertest"
	"github.com/ctnet/ctnet/internal/image/imagetest"
	"github.com/ctnet/ctnet/internal/sandbox"
)

// TestCNIPodman runs Podman with network_backend = "cni" and a ctnet
// conflist: `podman run --network NAME` gets its address from ctnet, pings a
// `ctnet run` container on the same network, and `-p 8080:80` answers the
// upstream.
func TestCNIPodman(t *testing.T) {
	s := sandbox.New(t)
	withBusybox(t, s)
	privateCNICache(t, s)
	bin := cniPlugins(t, s)
	confDir := t.TempDir()
	conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"shared","plugins":[{"type":"ctnet","subnet":"10.99.0.0/24",
		"bridge":"ctshared0","root":%q,"runRoot":%q,"capabilities":{"portMappings":true,"aliases":true}}]}`, s.Root, s.RunRoot)
	if err := os.WriteFile(filepath.Join(confDir, "shared.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	var env []string
	if s.Cgroup != "" {
		env = append(env, "CTNET_CGROUP="+s.Cgroup)
	}
	p := crittest.NewPodman(t, s, bin, cniPluginDir, confDir, env...)
	rootfs, err := dockertest.LinkModes(imagetest.BusyboxRootfsTar(t))
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(p.Dir, "busybox.tar")
	if err := os.WriteFile(archive, rootfs, 0o644); err != nil {
		t.Fatal(err)
	}
	p.MustPodman("import", "--change", "ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin", archive, "ctnet.test/busybox:1")

	// The first ADD makes the network; a ctnet container joins it then.
	out := p.MustPodman("run", "--rm", "--network", "shared", "ctnet.test/busybox:1", "ip", "-o", "-4", "addr", "show", "eth0")
	if !strings.Contains(out, "inet 10.99.0.") {
		t.Fatalf("podman's container has no address from ctnet's 10.99.0.0/24: %s", out)
	}
	s.MustCtnet("run", "-d", "--name", "peer", "--network", "shared", "busybox", "sleep", "3600")
	var peer string
	for _, c := range inspectNetworks(t, s, "shared")[0].Containers {
		if c.Name == "peer" {
			peer = strings.Split(c.IPv4Address, "/")[0]
		}
	}
	if peer == "" {
		t.Fatalf("ctnet network inspect shared: no container peer")
	}
	if out, err := p.Podman("run", "--rm", "--network", "shared", "ctnet.test/busybox:1", "ping", "-c1", "-W2", peer); err != nil {
		t.Errorf("podman's container cannot ping ctnet's: %v\n%s", err, out)
	}
	p.MustPodman("run", "-d", "--name", "web", "--network", "shared", "--network-alias", "web", "-p", "8080:80", "ctnet.test/busybox:1",
		"sh", "-c", "mkdir -p /www && echo hello from podman > /www/index.html && exec httpd -f -p 80 -h /www")
	waitFor(t, func() bool {
		return strings.Contains(httpGet(s.Upstream, sandbox.HostAddr, "8080"), "hello from podman")
	}, "podman's -p 8080:80 to answer the upstream")
	if out := s.MustCtnet("exec", "peer", "wget", "-q", "-O-", "http://web/"); !strings.Contains(out, "hello from podman") {
		t.Errorf("ctnet's container does not reach podman's by its name: %s", out)
	}

	p.MustPodman("rm", "-f", "-t", "0", "web")
	var left []string
	for _, c := range inspectNetworks(t, s, "shared")[0].Containers {
		left = append(left, c.Name)
	}
	if strings.Join(left, ",") != "peer" {
		t.Errorf("after podman rm: %v on the network, want only peer", left)
	}
	s.MustCtnet("rm", "-f", "peer")
	nothingLeft(t, s, "shared", "ctshared0")
}
