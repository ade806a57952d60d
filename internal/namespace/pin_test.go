package namespace

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The test re-executes itself in a private mount namespace, so pins never
// appear in the machine's mount table.
func TestMain(m *testing.M) {
	if os.Getenv("NAMESPACE_TEST_CHILD") == "" && os.Geteuid() == 0 {
		cmd := exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "--"}, os.Args...)...)
		cmd.Env = append(os.Environ(), "NAMESPACE_TEST_CHILD=1")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			if ee, ok := err.(*exec.ExitError); ok {
				os.Exit(ee.ExitCode())
			}
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestPinAndRemove(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes namespaces and mounts")
	}
	pin := filepath.Join(t.TempDir(), "netns", "c1")
	if err := Pin(pin); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("nsenter", "--net="+pin, "ip", "-o", "link").CombinedOutput()
	if err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if strings.Count(string(out), "\n") != 1 || !strings.Contains(string(out), "lo: <LOOPBACK,UP") {
		t.Errorf("pinned namespace links:\n%s", out)
	}
	if err := Pin(pin); err == nil {
		t.Error("pinning twice at one path succeeded")
	}
	if err := Unpin(pin); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pin); !os.IsNotExist(err) {
		t.Errorf("pin still there: %v", err)
	}
	if err := Unpin(pin); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}
