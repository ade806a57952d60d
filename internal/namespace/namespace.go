// Package namespace is ctnet's one place for network namespaces as objects:
// opening one by path with the identity it has while it lives, pinning a new
// one to a file so it outlives its maker, and running code inside one on a
// thread that is thrown away afterwards.
package namespace

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NS is an open network namespace.
type NS struct {
	Path   string
	Handle netns.NsHandle
	// Key names the namespace ("dev:inode") for as long as it lives,
	// whatever path reaches it, so a reused /proc/PID is not mistaken for it.
	Key string
}

// ErrNoPath says no namespace was named.
var ErrNoPath = errors.New("no namespace given")

// Open opens the network namespace at path (/proc/PID/ns/net, a pin such as
// /run/netns/NAME, or a bind mount of one).
func Open(path string) (*NS, error) {
	if strings.TrimSpace(path) == "" {
		return nil, ErrNoPath
	}
	h, err := netns.GetFromPath(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("namespace %s does not exist", path)
		}
		return nil, fmt.Errorf("namespace %s: %w", path, err)
	}
	ns, err := fromHandle(path, h)
	if err != nil {
		h.Close()
		return nil, err
	}
	return ns, nil
}

// Current opens the network namespace of the calling thread.
func Current() (*NS, error) {
	h, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("open the current network namespace: %w", err)
	}
	ns, err := fromHandle("", h)
	if err != nil {
		h.Close()
		return nil, err
	}
	return ns, nil
}

func fromHandle(path string, h netns.NsHandle) (*NS, error) {
	t, err := unix.IoctlRetInt(int(h), unix.NS_GET_NSTYPE)
	if err != nil || t != unix.CLONE_NEWNET {
		return nil, fmt.Errorf("%s is not a network namespace (want /proc/PID/ns/net, /run/netns/NAME or a bind mount of one)", path)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(h), &st); err != nil {
		return nil, fmt.Errorf("namespace %s: %w", path, err)
	}
	return &NS{Path: path, Handle: h, Key: key(st)}, nil
}

// Close releases the handle; the namespace lives on while anything holds it.
func (n *NS) Close() error { return n.Handle.Close() }

func key(st unix.Stat_t) string { return fmt.Sprintf("%d:%d", st.Dev, st.Ino) }

// KeyOf returns the key of the namespace at path now, or "" if there is none.
func KeyOf(path string) string {
	k, _ := Stat(path)
	return k
}

// Stat returns the key of the namespace at path now.
func Stat(path string) (string, error) {
	var st unix.Stat_t
	if strings.TrimSpace(path) == "" {
		return "", ErrNoPath
	}
	if err := unix.Stat(path, &st); err != nil {
		return "", fmt.Errorf("netns %s: %w", path, err)
	}
	return key(st), nil
}
