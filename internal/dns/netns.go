package dns

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// inNS runs fn on an OS thread that has entered the network namespace at
// path. Sockets fn creates stay in that namespace for their whole life. fn
// runs on a goroutine of its own: if the thread cannot be put back, the
// goroutine ends still locked and Go discards the thread rather than reuse it
// in the wrong namespace. An empty path runs fn where the process already is.
func inNS(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns of current thread: %w", err)
			return
		}
		defer orig.Close()
		target, err := netns.GetFromPath(path)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open netns %s: %w", path, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter netns %s: %w", path, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("leave netns %s: %w", path, err) // thread stays locked and dies with us
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// nsID names a namespace independently of the path used to reach it, so a
// reused PID in /proc/PID/ns/net is not mistaken for the old namespace.
type nsID struct{ dev, ino uint64 }

func statNS(path string) (nsID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nsID{}, fmt.Errorf("netns %s: %w", path, err)
	}
	return nsID{dev: st.Dev, ino: st.Ino}, nil
}
