package ocirt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// foreground runs the OCI runtime's run or exec (sub, with args after its
// own flags) attached to the caller's stdio and returns the process's exit
// code. A process that never started is a *StartError.
//
// Without a terminal the runtime hands its own stdio to the process, so its
// stderr is the process's too — and when it fails it prints its reason
// there as well as in its log. So stderr goes through a gate: held back
// until the runtime has written the pid file (from then on the process
// runs, and everything is the process's), dropped if the runtime ends
// without one (it was only the runtime's reason, taken from the log).
func (r *Runtime) foreground(ctx context.Context, id, dir, sub string, args []string, withStdin bool, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	logf, err := os.CreateTemp(dir, sub+"-*.log")
	if err != nil {
		return -1, fmt.Errorf("container %s: %w", id, err)
	}
	logPath := logf.Name()
	logf.Close()
	defer os.Remove(logPath)
	pidFile := logPath + ".pid"
	defer os.Remove(pidFile)

	cmd := exec.Command(r.Binary, append([]string{"--root", r.ociRoot(), "--log", logPath, "--log-format", "json", sub, "--pid-file", pidFile}, args...)...)
	if withStdin {
		cmd.Stdin = stdin
	}
	gate, w, err := newOutputGate(stderr, pidFile)
	if err != nil {
		return -1, fmt.Errorf("container %s: %w", id, err)
	}
	cmd.Stdout, cmd.Stderr = stdout, w
	err = cmd.Start()
	w.Close() // the runtime has it now
	if err != nil {
		gate.finish(false)
		return -1, fmt.Errorf("container %s: %s %s: %w", id, filepath.Base(r.Binary), sub, err)
	}
	// the OCI runtime forwards signals it gets to the process
	stop := context.AfterFunc(ctx, func() { cmd.Process.Signal(syscall.SIGTERM) })
	defer stop()
	err = cmd.Wait()
	_, perr := os.Stat(pidFile)
	started := perr == nil
	gate.finish(started)

	code := 0
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = exitCode(ee.ProcessState.Sys().(syscall.WaitStatus))
	default:
		return -1, fmt.Errorf("container %s: %w", id, err)
	}
	if !started && err != nil {
		msg := runtimeLogMessage(logPath)
		if msg == "" {
			msg = fmt.Sprintf("%s %s ended (%v) before the process started", filepath.Base(r.Binary), sub, err)
		}
		se := startError(id, msg)
		return se.Code, se
	}
	return code, nil
}

// outputGate copies a pipe's data to out, holding it back until pidFile
// exists (see foreground).
type outputGate struct {
	rfd, done int
	out       io.Writer
	pidFile   string
	held      []byte
	open      bool
	started   atomic.Bool
	finished  chan struct{}
}

// newOutputGate returns the gate and the pipe's write end for the runtime.
func newOutputGate(out io.Writer, pidFile string) (*outputGate, *os.File, error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return nil, nil, fmt.Errorf("stderr pipe: %w", err)
	}
	// only our end is non-blocking: the process writes as to any pipe
	if err := unix.SetNonblock(p[0], true); err != nil {
		unix.Close(p[0])
		unix.Close(p[1])
		return nil, nil, err
	}
	done, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(p[0])
		unix.Close(p[1])
		return nil, nil, err
	}
	if out == nil {
		out = io.Discard
	}
	g := &outputGate{rfd: p[0], done: done, out: out, pidFile: pidFile, finished: make(chan struct{})}
	go g.loop()
	return g, os.NewFile(uintptr(p[1]), "stderr"), nil
}

// finish tells the gate the runtime has exited and waits until what is
// left in the pipe is passed on (started) or dropped.
func (g *outputGate) finish(started bool) {
	g.started.Store(started)
	unix.Write(g.done, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	<-g.finished
}

func (g *outputGate) loop() {
	defer close(g.finished)
	defer unix.Close(g.rfd)
	defer unix.Close(g.done)
	buf := make([]byte, 32<<10)
	fds := []unix.PollFd{{Fd: int32(g.rfd), Events: unix.POLLIN}, {Fd: int32(g.done), Events: unix.POLLIN}}
	for {
		timeout := -1
		if !g.open && len(g.held) > 0 {
			timeout = 10 // the process may write and then wait: look for the pid file
		}
		_, err := unix.Poll(fds, timeout)
		if err != nil && err != unix.EINTR {
			return
		}
		if !g.open && len(g.held) > 0 {
			if _, err := os.Stat(g.pidFile); err == nil {
				g.pass()
			}
		}
		if fds[0].Revents != 0 && !g.read(buf) {
			fds[0].Fd = -1 // end of file: wait for finish
		}
		if fds[1].Revents != 0 {
			for g.read(buf) {
			}
			if g.started.Load() {
				g.pass()
			}
			return
		}
	}
}

// read moves what the pipe has now through the gate; false at EOF or when
// nothing is left.
func (g *outputGate) read(buf []byte) bool {
	n, err := unix.Read(g.rfd, buf)
	if n <= 0 || err != nil {
		return err == unix.EINTR
	}
	if g.open {
		g.out.Write(buf[:n])
	} else {
		g.held = append(g.held, buf[:n]...)
	}
	return true
}

// pass opens the gate, passing on what it held.
func (g *outputGate) pass() {
	if !g.open {
		g.open = true
		if len(g.held) > 0 {
			g.out.Write(g.held)
		}
		g.held = nil
	}
}
