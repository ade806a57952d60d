package dns

import (
	"fmt"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ctnet/ctnet/internal/namespace"
)

// inNS runs fn on a throwaway thread inside the network namespace at path;
// sockets fn creates stay in that namespace for their whole life. An empty
// path runs fn where the process already is.
func inNS(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	target, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer target.Close()
	if err := namespace.In(target, fn); err != nil {
		return fmt.Errorf("netns %s: %w", path, err)
	}
	return nil
}

// inNSChecked is inNS for a namespace that must still be id: a path like
// /proc/PID/ns/net may lead elsewhere once PID is reused.
func inNSChecked(path string, id nsID, fn func() error) error {
	target, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer target.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(target), &st); err != nil {
		return fmt.Errorf("netns %s: %w", path, err)
	}
	if (nsID{dev: st.Dev, ino: st.Ino}) != id {
		return fmt.Errorf("netns %s is no longer the namespace served", path)
	}
	if err := netx.InNetNS(target, fn); err != nil {
		return fmt.Errorf("netns %s: %w", path, err)
	}
	return nil
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
