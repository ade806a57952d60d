package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	ctsandbox "github.com/ctnet/ctnet/internal/sandbox"
)

// sandbox is a worker process that holds its own network and mount
// namespace; every tool under test runs inside one, never in the machine's
// own network namespace.
type sandbox struct {
	name string
	dir  string // on disk, outside the sandbox's tmpfs: persistent state
	run  string // tmpfs inside the sandbox's mount namespace
	// where the worker and all it starts are born: ctnet attaches its [::1]
	// programs there, not to the machine's cgroup2 root (nil if none).
	cgroup *ctsandbox.Cgroup
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Scanner
}

// The holder carries the cgroup tree over a fresh sysfs (dockerd and runc need
// it; a fresh sysfs shows the sandbox's links) and puts the run root on tmpfs.
const sandboxScript = `set -e
mount --rbind /sys/fs/cgroup "$1"
mount -t sysfs sysfs /sys
mount --move "$1" /sys/fs/cgroup
mount -t tmpfs -o mode=0700 tmpfs "$2"
if [ "$5" = 1 ]; then mount -t tmpfs -o mode=0755 tmpfs /run; fi
exec "$3" worker "$4"`

func startSandbox(base, name string, privateRun bool) (*sandbox, error) {
	s := &sandbox{name: name, dir: filepath.Join(base, name)}
	s.run = filepath.Join(s.dir, "run")
	cg := filepath.Join(s.dir, "cgroup")
	for _, d := range []string{s.run, cg} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("sandbox %s: %w", name, err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	pr := "0"
	if privateRun {
		pr = "1"
	}
	s.cmd = exec.Command("unshare", "--net", "--mount", "--propagation", "private", "--",
		"sh", "-c", sandboxScript, "sh", cg, s.run, self, s.run, pr)
	s.cmd.Stderr = os.Stderr
	s.cgroup, err = ctsandbox.NewCgroup("bnbench-"+name, filepath.Join(s.dir, "cgroup2"))
	if err != nil && !errors.Is(err, ctsandbox.ErrNoCgroup2) {
		return nil, fmt.Errorf("sandbox %s: %w", name, err)
	}
	s.cgroup.Into(s.cmd)
	if s.in, err = s.cmd.StdinPipe(); err != nil {
		s.removeCgroup()
		return nil, err
	}
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		s.removeCgroup()
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		s.removeCgroup()
		return nil, fmt.Errorf("sandbox %s: start: %w", name, err)
	}
	s.out = bufio.NewScanner(stdout)
	s.out.Buffer(make([]byte, 1<<20), 64<<20)
	if r := s.call(request{Op: "exec", Argv: []string{"true"}}); r.Err != "" {
		s.close()
		return nil, fmt.Errorf("sandbox %s: %s", name, r.Err)
	}
	return s, nil
}

func (s *sandbox) call(r request) response {
	b, _ := json.Marshal(r)
	if _, err := s.in.Write(append(b, '\n')); err != nil {
		return response{Err: fmt.Sprintf("sandbox %s: %v", s.name, err)}
	}
	if !s.out.Scan() {
		return response{Err: fmt.Sprintf("sandbox %s: worker gone: %v", s.name, s.out.Err())}
	}
	var res response
	if err := json.Unmarshal(s.out.Bytes(), &res); err != nil {
		return response{Err: fmt.Sprintf("sandbox %s: %v", s.name, err)}
	}
	return res
}

// must is call that aborts the current section on error.
func (s *sandbox) must(r request) response {
	res := s.call(r)
	if res.Err != "" {
		out := strings.TrimSpace(res.Out)
		if len(out) > 2000 {
			out = out[:2000]
		}
		panic(fmt.Errorf("[%s] %s\n%s", s.name, res.Err, out))
	}
	return res
}

func (s *sandbox) exec(argv ...string) response { return s.must(request{Op: "exec", Argv: argv}) }

func (s *sandbox) mkns(name string) string { return s.must(request{Op: "mkns", Name: name}).Path }

func (s *sandbox) rmns(name string) time.Duration {
	return time.Duration(s.must(request{Op: "rmns", Name: name}).Ns)
}

// close ends the worker: it stops what it started and its namespaces go.
func (s *sandbox) close() {
	if s.cmd == nil || s.cmd.Process == nil {
		s.removeCgroup()
		return
	}
	s.in.Close()
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
	s.cmd = nil
	s.removeCgroup()
}

func (s *sandbox) removeCgroup() {
	if s.cgroup == nil {
		return
	}
	if err := s.cgroup.Remove(); err != nil {
		logf("sandbox %s: %v", s.name, err)
	}
	s.cgroup = nil
}
