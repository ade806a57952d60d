package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// scripts/deps.sh waits for another apt to finish instead of failing at once
// on its lock ("Could not get lock /var/lib/dpkg/lock-frontend"). Run with
// stand-ins for dpkg-query, apt-get and go, so nothing is installed.
func TestDepsWaitsForAptLock(t *testing.T) {
	t.Parallel()
	bin := t.TempDir()
	count := filepath.Join(bin, "count")
	for name, script := range map[string]string{
		// every package is missing
		"dpkg-query": "#!/bin/sh\nexit 1\n",
		// apt-get update fails on the lock twice, then works; install works
		"apt-get": `#!/bin/sh
case "$*" in *update*)
	n=$(cat ` + count + ` 2>/dev/null || echo 0); n=$((n+1)); echo $n >` + count + `
	if [ $n -le 2 ]; then echo "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 1 (apt-get)" >&2; exit 100; fi ;;
esac
case "$*" in *"DPkg::Lock::Timeout="*) ;; *) echo "no lock timeout given: $*" >&2; exit 3 ;; esac
exit 0
`,
		"go": "#!/bin/sh\nexit 0\n",
	} {
		if err := os.WriteFile(filepath.Join(bin, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("sh", "../scripts/deps.sh")
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "CTNET_APT_RETRY_SECONDS=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("deps.sh with apt's lock held twice: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "waiting for another apt to finish") {
		t.Errorf("deps.sh did not say it waits:\n%s", out)
	}
	if b, _ := os.ReadFile(count); strings.TrimSpace(string(b)) != "3" {
		t.Errorf("apt-get update ran %s times, want 3", b)
	}
}
