package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ctnet/ctnet/internal/loopback"
)

// Cgroup is a cgroup2 directory made for one sandbox (a test's, the
// benchmark's): processes started through Into are born in it, so ctnet can
// be told to attach its [::1] programs there instead of the machine's root.
type Cgroup struct {
	Dir     string
	f       *os.File
	mounted string // a hierarchy mounted for it when the machine had none mounted
}

// ErrNoCgroup2 says that no cgroup2 hierarchy could be had here.
var ErrNoCgroup2 = errors.New("no cgroup2 hierarchy")

var cgroupSeq atomic.Int64

// NewCgroup makes a child of the cgroup2 root named prefix-PID-N. With no
// cgroup2 mounted (the hierarchy exists all the same), it first mounts one at
// scratch, an empty directory of the caller's.
func NewCgroup(prefix, scratch string) (*Cgroup, error) {
	c := &Cgroup{}
	root, err := loopback.DefaultCgroup()
	if err != nil {
		os.Mkdir(scratch, 0o700)
		if err := syscall.Mount("none", scratch, "cgroup2", 0, ""); err != nil {
			return nil, fmt.Errorf("%w, and mounting one failed: %v", ErrNoCgroup2, err)
		}
		root, c.mounted = scratch, scratch
	}
	c.Dir = filepath.Join(root, fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), cgroupSeq.Add(1)))
	if err = os.Mkdir(c.Dir, 0o755); err == nil {
		if c.f, err = os.Open(c.Dir); err != nil {
			os.Remove(c.Dir)
		}
	}
	if err != nil {
		c.unmount()
		return nil, fmt.Errorf("sandbox cgroup: %w", err)
	}
	return c, nil
}

// Into makes cmd's process start in the cgroup (nothing if c is nil).
func (c *Cgroup) Into(cmd *exec.Cmd) *exec.Cmd {
	if c != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(c.f.Fd())}
	}
	return cmd
}

// Remove deletes the cgroup and whatever runtimes made below it, waiting up
// to 10 s for killed processes to leave it (they do once reaped).
func (c *Cgroup) Remove() error {
	c.f.Close()
	defer c.unmount()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		err := removeTree(c.Dir)
		if err == nil || time.Now().After(deadline) {
			return err
		}
	}
}

func (c *Cgroup) unmount() {
	if c.mounted != "" {
		syscall.Unmount(c.mounted, syscall.MNT_DETACH)
	}
}

// removeTree removes a cgroup directory and its children, deepest first.
func removeTree(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	for _, e := range ents {
		if e.IsDir() {
			if err := removeTree(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return os.Remove(dir)
}
