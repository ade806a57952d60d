package ocirt

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// checkMounts refuses volumes Docker refuses, before anything is made.
func checkMounts(ms []Mount) error {
	seen := map[string]bool{}
	for _, m := range ms {
		fail := func(format string, a ...any) error {
			return fmt.Errorf("volume %s:%s: %s", m.Source, m.Destination, fmt.Sprintf(format, a...))
		}
		if !filepath.IsAbs(m.Source) || !filepath.IsAbs(m.Destination) {
			return fail("both paths must be absolute")
		}
		dst := filepath.Clean(m.Destination)
		switch {
		case dst == "/":
			return fail("cannot mount over the container's /")
		case dst == "/proc" || strings.HasPrefix(dst, "/proc/"):
			return fail("cannot mount on /proc or inside it; the container's procfs is there")
		case seen[dst]:
			return fail("%s is the destination of another volume too", dst)
		}
		seen[dst] = true
	}
	return nil
}

// mountRootfs makes the container's root at p.rootfs(): an overlay over
// the image's layers with its writable layer under the data directory, or
// for the host image an overlay over the host's / whose upper layer is a
// small tmpfs (only mount points go there; it is made read-only by
// sealRootfs once they exist), so the host's files are never written to.
func mountRootfs(p *paths, s Spec) error {
	if err := os.Mkdir(p.rootfs(), 0o755); err != nil {
		return err
	}
	if s.Image.HostRoot {
		oerr := mountHostOverlay(p)
		if oerr == nil {
			return nil
		}
		// an overlay over / may be impossible on some root filesystems; the
		// host's / bound read-only still works, with the mount points it has
		unmount(p.rootfs())
		unmount(p.stubs())
		if err := bindHostRoot(p); err != nil {
			return fmt.Errorf("%w (and an overlay over it: %v)", err, oerr)
		}
		return nil
	}
	if len(s.Image.Layers) == 0 {
		return errors.New("image has no layers")
	}
	for _, d := range []string{p.upper(), p.work()} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	return mountOverlay(p.rootfs(), strings.Join(s.Image.Layers, ":"), p.upper(), p.work())
}

func mountOverlay(target, lower, upper, work string) error {
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work)
	if len(opts) >= os.Getpagesize() {
		return fmt.Errorf("overlay options for %d layers exceed a page (%d bytes); use a shorter state path", strings.Count(lower, ":")+1, len(opts))
	}
	if err := unix.Mount("overlay", target, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount overlay root: %w", err)
	}
	if err := unix.Mount("", target, "", unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("overlay root: make private: %w", err)
	}
	return nil
}

func mountHostOverlay(p *paths) error {
	if err := os.Mkdir(p.stubs(), 0o700); err != nil {
		return err
	}
	if err := unix.Mount("ctnet-stubs", p.stubs(), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=1m,mode=0700"); err != nil {
		return fmt.Errorf("mount tmpfs for the host image's mount points: %w", err)
	}
	upper, work := filepath.Join(p.stubs(), "upper"), filepath.Join(p.stubs(), "work")
	var root unix.Stat_t
	if err := unix.Stat("/", &root); err != nil {
		return err
	}
	for _, d := range []string{upper, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	// the upper layer's root is the container's /: give it the host's
	if err := os.Chmod(upper, os.FileMode(root.Mode&0o7777)); err != nil {
		return err
	}
	if err := os.Lchown(upper, int(root.Uid), int(root.Gid)); err != nil {
		return err
	}
	return mountOverlay(p.rootfs(), "/", upper, work)
}

func bindHostRoot(p *paths) error {
	// not recursive: the host's other mounts (/run, other containers'
	// roots, ...) stay out of sight
	if err := unix.Mount("/", p.rootfs(), "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind host root: %w", err)
	}
	if err := unix.Mount("", p.rootfs(), "", unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("host root: make private: %w", err)
	}
	return sealRootfs(p)
}

// sealRootfs makes the root read-only (the host image's).
func sealRootfs(p *paths) error {
	if err := unix.Mount("", p.rootfs(), "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("host root: make read-only: %w", err)
	}
	return nil
}

// makeMountPoints creates in the container's root the destinations of its
// mounts that the image lacks, as Docker does: a directory, or an empty
// file for a bind mount of anything but a directory. Destinations inside
// another of the container's mounts (/dev, the host image's /tmp, another
// volume) are left to the runtime, which makes them in that mount.
func makeMountPoints(rootfs string, mounts []specs.Mount) error {
	root, err := openInRoot(rootfs)
	if err != nil {
		return err
	}
	defer root.Close()
	for _, m := range mounts {
		dst := filepath.Clean(m.Destination)
		if coveredByOther(dst, mounts) {
			continue
		}
		wantDir := true
		if m.Type == "bind" {
			// a missing source will be made a directory (Create, as Docker)
			fi, err := os.Stat(m.Source)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("mount %s:%s: %w", m.Source, dst, err)
			}
			wantDir = err != nil || fi.IsDir()
		}
		fail := func(err error) error {
			if errors.Is(err, unix.EROFS) {
				return fmt.Errorf("mount point %s: the image is read-only and has none", dst)
			}
			return fmt.Errorf("mount point %s: %w", dst, err)
		}
		st, err := root.stat(dst)
		switch {
		case err == nil:
			isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
			if isDir != wantDir {
				what := "a directory"
				if !wantDir {
					what = "not a directory"
				}
				return fmt.Errorf("mount %s:%s: %s is %s in the image but %s is %s", m.Source, dst, dst, fileType(st.Mode), m.Source, what)
			}
		case isNotExist(err):
			if wantDir {
				var fd int
				if fd, err = root.mkdirAll(dst); err == nil {
					unix.Close(fd)
				}
			} else {
				err = root.createFile(dst)
			}
			if err != nil {
				return fail(err)
			}
		default:
			return fail(err)
		}
	}
	return nil
}

func coveredByOther(dst string, mounts []specs.Mount) bool {
	for _, o := range mounts {
		od := filepath.Clean(o.Destination)
		if od != dst && (od == "/" || strings.HasPrefix(dst, od+"/")) {
			return true
		}
	}
	return false
}
