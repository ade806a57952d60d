package image_test

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ctnet/ctnet/internal/image"
	"github.com/ctnet/ctnet/internal/image/imagetest"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: unpacking layers sets owners, device nodes and trusted.* xattrs")
	}
}

func openStore(t *testing.T) *image.Store {
	t.Helper()
	s, err := image.Open(filepath.Join(t.TempDir(), "images"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNormalizeName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"busybox", "busybox:latest"},
		{"busybox:1.36", "busybox:1.36"},
		{"docker.io/library/busybox:1", "busybox:1"},
		{"docker.io/me/app", "me/app:latest"},
		{"localhost:5000/app", "localhost:5000/app:latest"},
		{"localhost:5000/app:v2", "localhost:5000/app:v2"},
	} {
		got, err := image.NormalizeName(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("NormalizeName(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "busybox@sha256:00", "a b", "busybox:"} {
		if _, err := image.NormalizeName(bad); err == nil {
			t.Errorf("NormalizeName(%q): no error", bad)
		}
	}
}

func TestImport(t *testing.T) {
	needRoot(t)
	s := openStore(t)
	img, err := s.Import(bytes.NewReader(imagetest.BusyboxRootfsTar(t)), "bb")
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Layers) != 1 || img.Size == 0 || !strings.HasPrefix(img.ID, "sha256:") {
		t.Fatalf("imported image = %+v", img)
	}
	root := img.Layers[0]
	out, err := exec.Command("chroot", root, "/bin/sh", "-c", "echo hi").CombinedOutput()
	if err != nil || string(out) != "hi\n" {
		t.Fatalf("busybox in the layer: %q, %v", out, err)
	}
	if l, err := os.Readlink(filepath.Join(root, "bin/sh")); err != nil || l != "busybox" {
		t.Errorf("bin/sh symlink = %q, %v", l, err)
	}
	var a, b unix.Stat_t
	if err := unix.Stat(filepath.Join(root, "bin/busybox"), &a); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(filepath.Join(root, "bin/hardlinked-busybox"), &b); err != nil {
		t.Fatal(err)
	}
	if a.Ino != b.Ino || a.Mode&0o777 != 0o755 {
		t.Errorf("hard link: inodes %d/%d, mode %o", a.Ino, b.Ino, a.Mode)
	}
	if fi, err := os.Stat(filepath.Join(root, "tmp")); err != nil || fi.Mode()&os.ModeSticky == 0 {
		t.Errorf("tmp lost its sticky bit: %v %v", fi.Mode(), err)
	}

	for _, ref := range []string{"bb", "bb:latest", img.ShortID(), img.ID} {
		got, err := s.Get(ref)
		if err != nil || got.ID != img.ID {
			t.Errorf("Get(%q) = %s, %v", ref, got.ID, err)
		}
	}
	_, err = s.Get("nope")
	if !errors.Is(err, image.ErrNotFound) || !strings.Contains(err.Error(), `No such image: nope:latest; load it with`) {
		t.Errorf("Get(nope) error = %v", err)
	}
	list, err := s.List()
	if err != nil || len(list) != 2 || !list[0].HostRoot || list[1].ID != img.ID {
		t.Errorf("List = %+v, %v", list, err)
	}
}

func TestLoad(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		name    string
		archive func(testing.TB, string) []byte
	}{
		{"docker-save", imagetest.BusyboxDockerArchive},
		{"oci-layout", imagetest.BusyboxOCIArchive},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t)
			var progress bytes.Buffer
			names, err := s.Load(bytes.NewReader(tc.archive(t, "busybox")), &progress)
			if err != nil {
				t.Fatal(err)
			}
			if len(names) != 1 || names[0].Line() != "Loaded image: busybox:latest" {
				t.Fatalf("loaded = %q", names)
			}
			if !strings.Contains(progress.String(), "Loading layer") || strings.Contains(progress.String(), "Loaded image") {
				t.Errorf("progress = %q", progress.String())
			}
			img, err := s.Get("docker.io/library/busybox:latest")
			if err != nil {
				t.Fatal(err)
			}
			if len(img.Layers) != 2 || strings.Join(img.Config.Cmd, " ") != "sh" ||
				strings.Join(img.Config.ExposedPorts, ",") != "80/tcp" || len(img.Config.Env) != 1 {
				t.Fatalf("image = %+v", img)
			}
			top := img.Layers[0]
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(top, "etc/gone"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
				t.Errorf("whiteout etc/gone: mode %o rdev %d, %v", st.Mode, st.Rdev, err)
			}
			buf := make([]byte, 8)
			n, err := unix.Lgetxattr(filepath.Join(top, "data"), "trusted.overlay.opaque", buf)
			if err != nil || string(buf[:n]) != "y" {
				t.Errorf("opaque xattr on data: %q, %v", buf[:n], err)
			}
			if _, err := os.Stat(filepath.Join(img.Layers[1], "bin/busybox")); err != nil {
				t.Errorf("bottom layer: %v", err)
			}
			checkMerged(t, img.Layers)
		})
	}
}

// checkMerged mounts the layers with overlayfs in a private mount namespace
// of a locked thread (which dies with it) and checks the merged view.
func checkMerged(t *testing.T, layers []string) {
	t.Helper()
	mnt := t.TempDir()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with its mount namespace
		errc <- func() error {
			if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
				return err
			}
			if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
				return err
			}
			if err := unix.Mount("overlay", mnt, "overlay", unix.MS_RDONLY, "lowerdir="+strings.Join(layers, ":")); err != nil {
				return err
			}
			if _, err := os.Lstat(filepath.Join(mnt, "etc/gone")); !errors.Is(err, os.ErrNotExist) {
				return errors.New("etc/gone visible through the whiteout")
			}
			ents, err := os.ReadDir(filepath.Join(mnt, "data"))
			if err != nil || len(ents) != 1 || ents[0].Name() != "new" {
				return errors.New("data is not opaque: old entries show")
			}
			b, err := os.ReadFile(filepath.Join(mnt, "etc/motd"))
			if err != nil || string(b) != "ctnet test image\n" {
				return errors.New("etc/motd missing")
			}
			_, err = os.Stat(filepath.Join(mnt, "bin/busybox"))
			return err
		}()
	}()
	if err := <-errc; err != nil {
		t.Errorf("merged overlay view: %v", err)
	}
}

func TestSharedLayersAndRemove(t *testing.T) {
	needRoot(t)
	s := openStore(t)
	if _, err := s.Load(bytes.NewReader(imagetest.BusyboxDockerArchive(t, "busybox:1")), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(bytes.NewReader(imagetest.BusyboxOCIArchive(t, "other/bb:2")), nil); err != nil {
		t.Fatal(err)
	}
	imp, err := s.Import(bytes.NewReader(imagetest.BusyboxRootfsTar(t)), "flat")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := s.Get("busybox:1")
	b, _ := s.Get("other/bb:2")
	if a.ID != b.ID || len(a.Names) != 2 {
		t.Fatalf("same image from two archives: %+v / %+v", a, b)
	}
	if imp.Layers[0] != a.Layers[1] {
		t.Errorf("imported rootfs and the loaded bottom layer should share one dir: %s vs %s", imp.Layers[0], a.Layers[1])
	}
	layerDirs := func() int {
		ents, _ := filepath.Glob(filepath.Join(filepath.Dir(a.Layers[0]), "*.json"))
		return len(ents)
	}
	if n := layerDirs(); n != 2 {
		t.Fatalf("%d layers stored, want 2", n)
	}
	if err := s.Remove("busybox:1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("other/bb:2"); err != nil {
		t.Fatalf("untagging one name removed the image: %v", err)
	}
	if err := s.Remove("other/bb:2"); err != nil {
		t.Fatal(err)
	}
	if n := layerDirs(); n != 1 {
		t.Errorf("%d layers left, want 1 (the one the imported image uses)", n)
	}
	if _, err := os.Stat(a.Layers[0]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unused top layer still there: %v", err)
	}
	if err := s.Remove(imp.ShortID()); err != nil {
		t.Fatal(err)
	}
	if list, _ := s.List(); len(list) != 1 {
		t.Errorf("after removing all: %+v", list)
	}
	if err := s.Remove("host"); err == nil {
		t.Error("removed the host image")
	}
	if err := s.Remove("flat"); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("remove missing image: %v", err)
	}
}

func TestHostImage(t *testing.T) {
	s := openStore(t)
	img, err := s.Get("host")
	if err != nil || !img.HostRoot || len(img.Layers) != 0 {
		t.Fatalf("Get(host) = %+v, %v", img, err)
	}
}

func TestUnsafeArchives(t *testing.T) {
	needRoot(t)
	hdr := func(name string, typ byte, link string) *tar.Header {
		return &tar.Header{Name: name, Typeflag: typ, Linkname: link, Mode: 0o644}
	}
	for _, tc := range []struct {
		name    string
		entries []*tar.Header
	}{
		{"dotdot", []*tar.Header{hdr("../escape", tar.TypeReg, "")}},
		{"inner-dotdot", []*tar.Header{hdr("a/../../escape", tar.TypeReg, "")}},
		{"through-absolute-symlink", []*tar.Header{hdr("evil", tar.TypeSymlink, "/"), hdr("evil/escape", tar.TypeReg, "")}},
		{"through-relative-symlink", []*tar.Header{hdr("evil", tar.TypeSymlink, "../.."), hdr("evil/escape", tar.TypeReg, "")}},
		{"hardlink-out", []*tar.Header{hdr("l", tar.TypeLink, "../../etc/passwd")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			for _, h := range tc.entries {
				if err := tw.WriteHeader(h); err != nil {
					t.Fatal(err)
				}
			}
			tw.Close()
			s := openStore(t)
			if _, err := s.Import(&buf, "evil"); err == nil {
				t.Fatal("unsafe archive imported")
			}
			if _, err := os.Stat("/escape"); err == nil {
				t.Fatal("/escape written")
			}
			if tmp, _ := filepath.Glob(filepath.Join(filepath.Dir(filepath.Dir(s.Dir())), "*", "escape")); len(tmp) > 0 {
				t.Fatalf("written outside the layer: %v", tmp)
			}
			if list, _ := s.List(); len(list) != 1 {
				t.Errorf("failed import left an image: %+v", list)
			}
		})
	}
}
