package dns

import (
	"fmt"

	"github.com/ctnet/ctnet/internal/namespace"
)

// inNS runs fn on a throwaway thread inside the network namespace at path;
// sockets fn creates stay in that namespace for their whole life. An empty
// path runs fn where the process already is.
func inNS(path string, fn func() error) error { return namespace.InPath(path, fn) }

// inNSChecked is inNS for a namespace that must still be id: a path like
// /proc/PID/ns/net may lead elsewhere once PID is reused.
func inNSChecked(path string, id nsID, fn func() error) error {
	ns, err := namespace.Open(path)
	if err != nil {
		return err
	}
	defer ns.Close()
	if nsID(ns.Key) != id {
		return fmt.Errorf("netns %s is no longer the namespace served", path)
	}
	if err := namespace.In(ns.Handle, fn); err != nil {
		return fmt.Errorf("netns %s: %w", path, err)
	}
	return nil
}

// nsID names a namespace independently of the path used to reach it, so a
// reused PID in /proc/PID/ns/net is not mistaken for the old namespace.
type nsID string

func statNS(path string) (nsID, error) {
	k, err := namespace.Stat(path)
	return nsID(k), err
}
