package ocirt

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

const (
	testPasswd = "root:x:0:0:root:/root:/bin/sh\n# a comment\n\napp:x:1000:1000::/home/app:/bin/sh\nweb:x:33:33::/var/www:/bin/false\nbad:x:notanumber:1::/:/bin/sh\n"
	testGroup  = "root:x:0:\napp:x:1000:\nweb:x:33:\nadmins:x:1500:app,other\nwheel:x:10:other, app\ndocker:x:999:someone\n"
)

// imageRoot makes a container root with etc/passwd and etc/group, and a
// file outside it with what an escape would reveal.
func imageRoot(t *testing.T) (root, outside string) {
	t.Helper()
	base := t.TempDir()
	root = filepath.Join(base, "rootfs")
	for _, d := range []string{"etc", "dev", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	outside = filepath.Join(base, "host-secret")
	if err := os.WriteFile(outside, []byte("victim:x:4242:4242::/:/bin/sh\nroot:x:4242:4242::/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root, outside
}

func write(t *testing.T, root, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(root, name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// resolveSoon fails the test instead of hanging it when a lookup blocks.
func resolveSoon(t *testing.T, root, user string) (specs.User, error) {
	t.Helper()
	type result struct {
		u   specs.User
		err error
	}
	done := make(chan result, 1)
	go func() {
		u, err := resolveUser(root, user)
		done <- result{u, err}
	}()
	select {
	case r := <-done:
		return r.u, r.err
	case <-time.After(30 * time.Second):
		t.Fatalf("resolving %q in %s hangs", user, root)
		return specs.User{}, nil
	}
}

func TestResolveUser(t *testing.T) {
	root, _ := imageRoot(t)
	write(t, root, "etc/passwd", testPasswd)
	write(t, root, "etc/group", testGroup)
	for _, tc := range []struct {
		user string
		want specs.User
		err  string
	}{
		{user: "", want: specs.User{}},
		{user: "root", want: specs.User{}},
		{user: "app", want: specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1500, 10}}},
		{user: "1000", want: specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1500, 10}}},
		{user: "app:web", want: specs.User{UID: 1000, GID: 33}},
		{user: "app:1234", want: specs.User{UID: 1000, GID: 1234}},
		{user: "web:0", want: specs.User{UID: 33, GID: 0}},
		{user: "4321", want: specs.User{UID: 4321}},
		{user: "4321:4321", want: specs.User{UID: 4321, GID: 4321}},
		{user: "4321:admins", want: specs.User{UID: 4321, GID: 1500}},
		{user: "nosuch", err: `user "nosuch": no user "nosuch" in the image's /etc/passwd`},
		{user: "app:nosuch", err: `user "app:nosuch": no group "nosuch" in the image's /etc/group`},
		{user: "bad", err: `/etc/passwd: bad has uid "notanumber"`},
		{user: ":1", err: `want NAME|UID[:GROUP|GID]`},
		{user: "app:", err: `want NAME|UID[:GROUP|GID]`},
		{user: "-1", err: `no user "-1"`},
		{user: "4294967296", err: `no user "4294967296"`},
		{user: "../etc/shadow", err: `no user "../etc/shadow"`},
	} {
		got, err := resolveSoon(t, root, tc.user)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "\n") {
				t.Errorf("%q: %+v, %v; want one line with %q", tc.user, got, err, tc.err)
			}
			continue
		}
		if err != nil || got.UID != tc.want.UID || got.GID != tc.want.GID || !slices.Equal(got.AdditionalGids, tc.want.AdditionalGids) {
			t.Errorf("%q: %+v, %v; want %+v", tc.user, got, err, tc.want)
		}
	}
}

// TestResolveUserHostileImage covers issue 18 #8: an image's /etc/passwd
// or /etc/group must not leak host files into the ids, hang, or spin.
func TestResolveUserHostileImage(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, root, outside string)
		user  string
		want  specs.User // when err is ""
		err   string
	}{
		{name: "absolute symlink to a host file", user: "victim", err: "the image has no /etc/passwd",
			setup: func(t *testing.T, root, outside string) { symlink(t, outside, root, "etc/passwd") }},
		{name: "absolute symlink to /etc/shadow", user: "root", err: "the image has no /etc/passwd",
			setup: func(t *testing.T, root, outside string) { symlink(t, "/etc/shadow", root, "etc/passwd") }},
		{name: "absolute symlink resolves inside the image", user: "app", want: specs.User{UID: 1000, GID: 1000},
			setup: func(t *testing.T, root, outside string) {
				os.MkdirAll(filepath.Join(root, "usr/share/base"), 0o755)
				write(t, root, "usr/share/base/passwd", testPasswd)
				symlink(t, "/usr/share/base/passwd", root, "etc/passwd")
			}},
		{name: "relative symlink escaping with ..", user: "victim", err: "the image has no /etc/passwd",
			setup: func(t *testing.T, root, outside string) {
				symlink(t, strings.Repeat("../", 30)+strings.TrimPrefix(outside, "/"), root, "etc/passwd")
			}},
		{name: "relative symlink one level up", user: "victim", err: "the image has no /etc/passwd",
			setup: func(t *testing.T, root, outside string) {
				symlink(t, "../../"+filepath.Base(outside), root, "etc/passwd")
			}},
		{name: "/etc a symlink to a host directory", user: "victim", err: "the image has no /etc/passwd",
			setup: func(t *testing.T, root, outside string) {
				os.RemoveAll(filepath.Join(root, "etc"))
				symlink(t, filepath.Dir(outside), root, "etc")
				os.Rename(outside, filepath.Join(filepath.Dir(outside), "passwd"))
			}},
		{name: "symlink through /proc/self/root", user: "victim", err: "the image has no /etc/passwd",
			setup: func(t *testing.T, root, outside string) { symlink(t, "/proc/self/root"+outside, root, "etc/passwd") }},
		{name: "symlink loop", user: "app", err: "cannot be read",
			setup: func(t *testing.T, root, outside string) {
				symlink(t, "passwd2", root, "etc/passwd")
				symlink(t, "passwd", root, "etc/passwd2")
			}},
		{name: "FIFO", user: "app", err: "not a regular file (a FIFO)",
			setup: func(t *testing.T, root, outside string) { mkfifo(t, root, "etc/passwd") }},
		{name: "FIFO as numeric uid", user: "1000", err: "not a regular file (a FIFO)",
			setup: func(t *testing.T, root, outside string) { mkfifo(t, root, "etc/passwd") }},
		{name: "FIFO group file", user: "app:web", err: "/etc/group cannot be read: not a regular file (a FIFO)",
			setup: func(t *testing.T, root, outside string) {
				write(t, root, "etc/passwd", testPasswd)
				mkfifo(t, root, "etc/group")
			}},
		{name: "symlink to /dev/urandom", user: "app", err: "the image has no /etc/passwd",
			setup: func(t *testing.T, root, outside string) { symlink(t, "/dev/urandom", root, "etc/passwd") }},
		{name: "symlink to the image's own urandom device", user: "app", err: "not a regular file (a character device)",
			setup: func(t *testing.T, root, outside string) {
				mknod(t, root, "dev/urandom", unix.S_IFCHR, unix.Mkdev(1, 9))
				symlink(t, "/dev/urandom", root, "etc/passwd")
			}},
		{name: "a urandom device node", user: "app", err: "not a regular file (a character device)",
			setup: func(t *testing.T, root, outside string) { mknod(t, root, "etc/passwd", unix.S_IFCHR, unix.Mkdev(1, 9)) }},
		{name: "a directory", user: "app", err: "not a regular file (a directory)",
			setup: func(t *testing.T, root, outside string) { os.Mkdir(filepath.Join(root, "etc/passwd"), 0o755) }},
		{name: "a socket", user: "app", err: "not a regular file (a socket)",
			setup: func(t *testing.T, root, outside string) { mknod(t, root, "etc/passwd", unix.S_IFSOCK, 0) }},
		{name: "huge sparse file", user: "app", err: "larger than 4 MiB",
			setup: func(t *testing.T, root, outside string) {
				write(t, root, "etc/passwd", testPasswd)
				if err := os.Truncate(filepath.Join(root, "etc/passwd"), 1<<40); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "just over the limit", user: "app", err: "larger than 4 MiB",
			setup: func(t *testing.T, root, outside string) {
				write(t, root, "etc/passwd", testPasswd+strings.Repeat("x", maxUserDB))
			}},
		{name: "long but within the limit", user: "app", want: specs.User{UID: 1000, GID: 1000},
			setup: func(t *testing.T, root, outside string) {
				write(t, root, "etc/passwd", strings.Repeat("#"+strings.Repeat("x", 1000)+"\n", 3000)+testPasswd)
			}},
		{name: "missing files, numeric uid", user: "1234", want: specs.User{UID: 1234}},
		{name: "missing files, numeric uid and gid", user: "1234:99", want: specs.User{UID: 1234, GID: 99}},
		{name: "missing files, name", user: "app", err: "the image has no /etc/passwd to look the name up in; give a numeric uid"},
		{name: "missing group file, group name", user: "1234:web", err: "the image has no /etc/group to look the group up in; give a numeric gid"},
		{name: "/etc is a file", user: "1234", want: specs.User{UID: 1234},
			setup: func(t *testing.T, root, outside string) {
				os.RemoveAll(filepath.Join(root, "etc"))
				write(t, root, "etc", "not a directory")
			}},
		{name: "name not found", user: "nobody", err: `no user "nobody" in the image's /etc/passwd`,
			setup: func(t *testing.T, root, outside string) { write(t, root, "etc/passwd", testPasswd) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, outside := imageRoot(t)
			if tc.setup != nil {
				tc.setup(t, root, outside)
			}
			got, err := resolveSoon(t, root, tc.user)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "\n") {
					t.Errorf("%+v, %v; want one line with %q", got, err, tc.err)
				}
				if testing.Verbose() {
					t.Log(err)
				}
				if got.UID == 4242 || got.GID == 4242 {
					t.Errorf("ids from a host file leaked: %+v", got)
				}
				return
			}
			if err != nil || got.UID != tc.want.UID || got.GID != tc.want.GID {
				t.Errorf("%+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func symlink(t *testing.T, target, root, name string) {
	t.Helper()
	if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
		t.Fatal(err)
	}
}

func mkfifo(t *testing.T, root, name string) {
	t.Helper()
	if err := syscall.Mkfifo(filepath.Join(root, name), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mknod(t *testing.T, root, name string, typ uint32, dev uint64) {
	t.Helper()
	if typ == unix.S_IFCHR && os.Geteuid() != 0 {
		t.Skip("making a device node needs root")
	}
	if err := unix.Mknod(filepath.Join(root, name), typ|0o644, int(dev)); err != nil {
		t.Fatal(err)
	}
}
