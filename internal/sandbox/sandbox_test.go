package sandbox

import (
	"strings"
	"testing"
)

func TestSandboxTopology(t *testing.T) {
	s := New(t)
	if err := s.Host.Ping(UpstreamAddr); err != nil {
		t.Fatal(err)
	}
	if err := s.Host.Ping(Upstream6); err != nil {
		t.Fatal(err)
	}
	// The sandbox has its own sysfs: only its own links are listed there.
	out := s.Host.MustRun("ls", "/sys/class/net")
	if strings.Fields(out)[0] != "eth0" || !strings.Contains(out, "lo") || len(strings.Fields(out)) != 2 {
		t.Errorf("/sys/class/net in sandbox = %q", out)
	}
	c := s.Netns()
	if out := c.MustRun("ip", "-o", "link"); strings.Count(out, "\n") != 1 {
		t.Errorf("container netns not empty: %s", out)
	}
}
