package dns

import (
	"context"
	"errors"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Watch keeps a resolver serving the snapshot at path until ctx ends: it
// calls Ensure, then sleeps until the resolver process exits (a pidfd, so
// waiting costs nothing and a kill is noticed at once) and calls Ensure
// again. Meant for a process that lives as long as the containers needing
// DNS do (a container's monitor): when the resolver is killed, every
// watcher wakes, and the control lock lets the first start one while the
// others find it running. A resolver that exits because nothing needs it
// is not restarted (Ensure sees an empty snapshot). Failures to start are
// retried with a growing delay and passed to logf (which may be nil).
func Watch(ctx context.Context, path string, start func() error, logf func(format string, args ...any)) {
	var backoff time.Duration
	for ctx.Err() == nil {
		if _, err := Ensure(path, start); err != nil {
			backoff = min(max(2*backoff, 100*time.Millisecond), 30*time.Second)
			if logf != nil {
				logf("%v; trying again in %s", err, backoff)
			}
			sleep(ctx, backoff)
			continue
		}
		backoff = 0
		pid, held, err := lockHolder(path + ".lock")
		if err != nil || !held || pid <= 0 || !waitExit(ctx, path, pid) {
			// Nothing to watch (no resolver needed, or one started but not
			// visible), or no pidfd: look again later.
			sleep(ctx, watchPoll)
		}
	}
}

// watchPoll is how often Watch looks when it has no process to wait on.
const watchPoll = 5 * time.Second

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// waitExit waits until process pid, the holder of path's run lock, exits
// or ctx ends; false means it could not wait (no pidfd support, or pid was
// no longer the holder).
func waitExit(ctx context.Context, path string, pid int) bool {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if errors.Is(err, unix.ESRCH) {
		return true // already gone
	}
	if err != nil {
		return false
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	// pid may have died and been reused between lockHolder and PidfdOpen;
	// the process the pidfd pins is the one to watch only if it still
	// holds the lock.
	if p, held, err := lockHolder(path + ".lock"); err != nil || !held || p != pid {
		return true
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	stop := context.AfterFunc(ctx, func() { f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	// A pidfd becomes readable when its process exits; the runtime's poller
	// waits for that.
	first := true
	err = rc.Read(func(uintptr) bool {
		if first {
			first = false
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, _ := unix.Poll(fds, 0)
			return n > 0
		}
		return true
	})
	return err == nil || ctx.Err() != nil
}
