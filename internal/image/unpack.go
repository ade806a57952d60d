package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// duplicateError is a layer naming one path twice. Docker refuses such
// layers (its tar-split metadata cannot describe them), and so does ctnet:
// the second entry would silently replace the first, a symlink by a
// directory for instance.
type duplicateError struct{ name string }

func (e *duplicateError) Error() string {
	return fmt.Sprintf("entry %q: the layer names this path twice; refused (Docker refuses such layers too)", e.name)
}

// unpackLayer extracts one layer tar into dir (which must exist and be empty)
// in the form overlayfs wants for a lowerdir: whiteouts become 0/0 character
// devices and opaque markers become the trusted.overlay.opaque xattr.
// It returns the sum of the regular files' sizes.
//
// Every file operation goes through an os.Root of dir, or through a
// directory descriptor it opened plus a single name, so no entry can reach
// outside dir: not by "..", not through a symlink (absolute ones and those
// leading out are refused), not by a hard link.
func unpackLayer(dir string, r io.Reader) (int64, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return 0, err
	}
	defer root.Close()
	tr := tar.NewReader(r)
	var size int64
	type dirTime struct {
		rel   string
		mtime time.Time
	}
	var dirs []dirTime
	seen := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var dup *duplicateError
			if errors.As(err, &dup) {
				return 0, dup
			}
			return 0, fmt.Errorf("read layer tar: %w", err)
		}
		rel, err := cleanEntryName(hdr.Name)
		if err != nil {
			return 0, err
		}
		if seen[rel] {
			return 0, &duplicateError{hdr.Name}
		}
		seen[rel] = true
		if rel == "" {
			continue // the layer's root directory itself
		}
		n, err := unpackEntry(root, rel, hdr, tr)
		if err != nil {
			return 0, fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
		size += n
		if hdr.Typeflag == tar.TypeDir {
			dirs = append(dirs, dirTime{rel, hdr.ModTime})
		}
	}
	// directory times last: creating their entries changed them
	for i := len(dirs) - 1; i >= 0; i-- {
		err := at(root, dirs[i].rel, func(dirfd int, base string) error {
			return setMtime(dirfd, base, dirs[i].mtime)
		})
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return 0, fmt.Errorf("entry %q: %w", dirs[i].rel, err)
		}
	}
	return size, nil
}

// unpackEntry creates one entry (rel is clean and not the root) and returns
// the bytes it wrote.
func unpackEntry(root *os.Root, rel string, hdr *tar.Header, content io.Reader) (int64, error) {
	dir, base := path.Split(rel)
	for _, c := range strings.Split(rel, "/") {
		if strings.HasPrefix(c, whiteoutMeta) && c != whiteoutOpaque {
			return 0, nil // AUFS metadata (.wh..wh.plnk and the like), as Docker skips it
		}
	}
	if dir != "" {
		if err := root.MkdirAll(dirOrDot(dir), 0o755); err != nil {
			return 0, err
		}
	}
	if base == whiteoutOpaque {
		d, err := root.Open(dirOrDot(dir))
		if err != nil {
			return 0, err
		}
		defer d.Close()
		if err := unix.Fsetxattr(int(d.Fd()), "trusted.overlay.opaque", []byte("y"), 0); err != nil {
			return 0, fmt.Errorf("set opaque xattr: %w", err)
		}
		return 0, nil
	}
	if hidden, ok := strings.CutPrefix(base, whiteoutPrefix); ok {
		if hidden == "" || hidden == "." || hidden == ".." {
			return 0, fmt.Errorf("whiteout of %q: refused", hidden)
		}
		target := path.Join(dir, hidden)
		if err := root.RemoveAll(target); err != nil {
			return 0, err
		}
		return 0, at(root, target, func(dirfd int, name string) error {
			if err := unix.Mknodat(dirfd, name, unix.S_IFCHR, 0); err != nil {
				return fmt.Errorf("make whiteout: %w", err)
			}
			if err := unix.Fchownat(dirfd, name, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return fmt.Errorf("chown whiteout: %w", err)
			}
			return setMtime(dirfd, name, hdr.ModTime)
		})
	}
	if fi, err := root.Lstat(rel); err == nil && !(fi.IsDir() && hdr.Typeflag == tar.TypeDir) {
		// a directory made implicitly for an earlier entry: replaced, as Docker does
		if err := root.RemoveAll(rel); err != nil {
			return 0, fmt.Errorf("replace: %w", err)
		}
	}
	if hdr.Typeflag == tar.TypeLink {
		src, err := cleanEntryName(hdr.Linkname)
		if err != nil || src == "" {
			return 0, fmt.Errorf("bad hard link target %q", hdr.Linkname)
		}
		// a hard link shares the target's inode: owner and mode are already right
		return 0, root.Link(src, rel)
	}
	var written int64
	err := at(root, rel, func(dirfd int, name string) error {
		mode := uint32(hdr.Mode & 0o7777)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := unix.Mkdirat(dirfd, name, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
				return err
			}
		case tar.TypeReg:
			fd, err := unix.Openat(dirfd, name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
			if err != nil {
				return err
			}
			f := os.NewFile(uintptr(fd), rel)
			written, err = io.Copy(f, content)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("write: %w", err)
			}
		case tar.TypeSymlink:
			if err := unix.Symlinkat(hdr.Linkname, dirfd, name); err != nil {
				return err
			}
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			typ := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[hdr.Typeflag]
			dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
			if err := unix.Mknodat(dirfd, name, typ|mode, int(dev)); err != nil {
				return fmt.Errorf("mknod: %w", err)
			}
		default:
			return errSkip // pax global headers, sparse files of old GNU tars and the like
		}
		if err := unix.Fchownat(dirfd, name, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
		for k, v := range hdr.PAXRecords {
			if xattr, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				// the descriptor's /proc link names the directory; name is never followed
				p := fmt.Sprintf("/proc/self/fd/%d/%s", dirfd, name)
				if err := unix.Lsetxattr(p, xattr, []byte(v), 0); err != nil && !errors.Is(err, unix.ENOTSUP) {
					return fmt.Errorf("xattr %s: %w", xattr, err)
				}
			}
		}
		if hdr.Typeflag != tar.TypeSymlink {
			// after chown, which clears set-id bits
			if err := unix.Fchmodat(dirfd, name, mode, 0); err != nil {
				return fmt.Errorf("chmod: %w", err)
			}
		}
		if hdr.Typeflag != tar.TypeDir {
			return setMtime(dirfd, name, hdr.ModTime)
		}
		return nil
	})
	if errors.Is(err, errSkip) {
		err = nil
	}
	return written, err
}

var errSkip = errors.New("skipped")

// at opens the directory holding rel inside root and calls fn with its
// descriptor and rel's last component, which fn must not follow.
func at(root *os.Root, rel string, fn func(dirfd int, name string) error) error {
	dir, name := path.Split(rel)
	d, err := root.Open(dirOrDot(dir))
	if err != nil {
		return err
	}
	defer d.Close()
	return fn(int(d.Fd()), name)
}

func dirOrDot(dir string) string {
	if dir = strings.TrimSuffix(dir, "/"); dir == "" {
		return "."
	}
	return dir
}

func setMtime(dirfd int, name string, t time.Time) error {
	ts := unix.NsecToTimespec(t.UnixNano())
	if err := unix.UtimesNanoAt(dirfd, name, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set mtime: %w", &os.PathError{Op: "utimensat", Path: name, Err: err})
	}
	return nil
}

// cleanEntryName turns a tar entry name into a relative slash path, refusing
// any ".." component rather than silently clamping it.
func cleanEntryName(name string) (string, error) {
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return "", fmt.Errorf("tar entry %q: path traversal refused", name)
		}
	}
	return strings.TrimPrefix(path.Clean("/"+name), "/"), nil
}

// extractArchive unpacks an image archive (docker save or OCI layout) into
// dir: directories, regular files, symlinks and hard links, with no owner or
// mode of their own and nothing outside dir. A later entry replaces an
// earlier one of the same name, as tar does. It reports whether the archive
// held symlinks.
func extractArchive(r io.Reader, dir string) (symlinks bool, err error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return false, err
	}
	defer root.Close()
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return symlinks, nil
		}
		if err != nil {
			return false, fmt.Errorf("read archive: %w", err)
		}
		rel, err := cleanEntryName(hdr.Name)
		if err != nil {
			return false, err
		}
		if rel == "" {
			continue
		}
		if err := extractEntry(root, rel, hdr, tr); err != nil {
			return false, fmt.Errorf("archive entry %q: %w", hdr.Name, err)
		}
		symlinks = symlinks || hdr.Typeflag == tar.TypeSymlink
	}
}

func extractEntry(root *os.Root, rel string, hdr *tar.Header, content io.Reader) error {
	// Some tar writers list only files: their folders are made on the way.
	if dir := path.Dir(rel); dir != "." {
		if err := root.MkdirAll(dir, 0o700); err != nil {
			return err
		}
	}
	if fi, err := root.Lstat(rel); err == nil && !(fi.IsDir() && hdr.Typeflag == tar.TypeDir) {
		if err := root.RemoveAll(rel); err != nil {
			return err
		}
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := root.Mkdir(rel, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	case tar.TypeReg:
		f, err := root.OpenFile(rel, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, content)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	case tar.TypeSymlink:
		return root.Symlink(hdr.Linkname, rel)
	case tar.TypeLink:
		src, err := cleanEntryName(hdr.Linkname)
		if err != nil || src == "" {
			return fmt.Errorf("bad hard link target %q", hdr.Linkname)
		}
		return root.Link(src, rel)
	default:
		return fmt.Errorf("unexpected type %q in an image archive", hdr.Typeflag)
	}
	return nil
}
