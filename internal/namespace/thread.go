package namespace

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// OnThrowawayThread runs fn on a locked OS thread that ends with it, so fn
// may unshare or enter namespaces freely: no other goroutine ever runs on
// that thread again. It is never the main thread, which Go keeps when its
// goroutine exits locked (and which /proc/self describes).
func OnThrowawayThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// While this goroutine holds the main thread, the next one gets another.
			errc <- OnThrowawayThread(fn)
			runtime.UnlockOSThread()
			return
		}
		errc <- fn() // exits locked: the thread ends with the goroutine
	}()
	return <-errc
}

// In runs fn on a throwaway thread inside the network namespace ns. Sockets
// fn makes stay in ns for their whole life; /proc/sys/net opened by fn is
// ns's.
func In(ns netns.NsHandle, fn func() error) error {
	return OnThrowawayThread(func() error {
		if err := netns.Set(ns); err != nil {
			return fmt.Errorf("enter network namespace: %w", err)
		}
		return fn()
	})
}

// InPath is In for the namespace at path; an empty path runs fn where the
// process already is.
func InPath(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	ns, err := Open(path)
	if err != nil {
		return err
	}
	defer ns.Close()
	if err := In(ns.Handle, fn); err != nil {
		return fmt.Errorf("netns %s: %w", path, err)
	}
	return nil
}

// Fresh makes a new, empty network namespace without moving the caller's
// thread and returns a handle to it; it lives while the handle is open.
func Fresh() (netns.NsHandle, error) {
	ns := netns.None()
	err := OnThrowawayThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare: %w", err)
		}
		h, err := netns.Get()
		if err != nil {
			return err
		}
		ns = h
		return nil
	})
	return ns, err
}
