package ocirt

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Each container's processes live in the cgroup /ctnet/<instance>/<id> of
// every hierarchy, the instance named after the data directory: the marker
// by which a runtime finds its containers when their state in the run
// directory is gone (deleted by hand, say), without touching another
// instance's.
func instanceGroup(dataDir string) string {
	sum := sha256.Sum256([]byte(dataDir))
	return "/ctnet/" + hex.EncodeToString(sum[:6])
}

// hierarchies are the mount points of the cgroup file systems.
func hierarchies() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if fs := strings.Fields(pre); ok && len(fs) >= 5 && (strings.HasPrefix(post, "cgroup ") || strings.HasPrefix(post, "cgroup2 ")) {
			out = append(out, strings.ReplaceAll(fs[4], `\040`, " "))
		}
	}
	return out
}

// groups lists the ids that have a cgroup of this runtime's instance.
func (r *Runtime) groups() []string {
	seen := map[string]bool{}
	var ids []string
	for _, h := range hierarchies() {
		ents, _ := os.ReadDir(filepath.Join(h, r.group))
		for _, e := range ents {
			if e.IsDir() && validID(e.Name()) && !seen[e.Name()] {
				seen[e.Name()] = true
				ids = append(ids, e.Name())
			}
		}
	}
	return ids
}

// killGroup kills every process in the container's cgroups and removes them.
func (r *Runtime) killGroup(id string) error {
	var dirs []string
	for _, h := range hierarchies() {
		if d := filepath.Join(h, r.group, id); isDir(d) {
			dirs = append(dirs, d)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		alive := false
		for _, d := range dirs {
			b, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
					syscall.Kill(pid, syscall.SIGKILL)
					alive = true
				}
			}
		}
		if !alive || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	var errs []error
	for _, d := range dirs {
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("container %s: remove cgroup %s: %w", id, d, err))
		}
	}
	return errors.Join(errs...)
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// dropEmptyGroup removes the instance's cgroup parent where no container is
// left under it (rmdir refuses a cgroup that has children).
func (r *Runtime) dropEmptyGroup() {
	for _, h := range hierarchies() {
		os.Remove(filepath.Join(h, r.group))
	}
}
