package namespace

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
)

func TestOpen(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes namespaces")
	}
	cur, err := Current()
	if err != nil {
		t.Fatal(err)
	}
	defer cur.Close()
	fresh, err := Fresh()
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	pin := filepath.Join(t.TempDir(), "pin")
	if err := Pin(pin); err != nil {
		t.Fatal(err)
	}
	defer Unpin(pin)
	ns, err := Open(pin)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if ns.Key == "" || ns.Key != KeyOf(pin) || ns.Key == cur.Key {
		t.Errorf("keys: pin %q, KeyOf %q, current %q", ns.Key, KeyOf(pin), cur.Key)
	}
	var inside string
	if err := InPath(pin, func() error {
		h, err := netns.Get()
		if err != nil {
			return err
		}
		defer h.Close()
		inside = h.UniqueId()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if inside != ns.Handle.UniqueId() {
		t.Errorf("InPath ran in %s, want %s", inside, ns.Handle.UniqueId())
	}
	if now, _ := netns.Get(); !now.Equal(cur.Handle) {
		t.Error("InPath moved the calling thread")
	}
	if fresh.Equal(cur.Handle) {
		t.Error("Fresh returned the current namespace")
	}

	plain := filepath.Join(t.TempDir(), "plain")
	os.WriteFile(plain, nil, 0o644)
	for _, bad := range []struct{ path, want string }{
		{"", "no namespace"},
		{"  ", "no namespace"},
		{filepath.Join(t.TempDir(), "missing"), "does not exist"},
		{plain, "not a network namespace"},
		{"/proc/self/ns/uts", "not a network namespace"},
	} {
		if _, err := Open(bad.path); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("Open(%q) = %v, want %q", bad.path, err, bad.want)
		}
		if KeyOf(bad.path) != "" && bad.want != "not a network namespace" {
			t.Errorf("KeyOf(%q) = %q", bad.path, KeyOf(bad.path))
		}
	}
}
