package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// unpackLayer extracts one layer tar into root (which must exist and be empty)
// in the form overlayfs wants for a lowerdir: whiteouts become 0/0 character
// devices and opaque markers become the trusted.overlay.opaque xattr.
// It returns the sum of the regular files' sizes.
func unpackLayer(root string, r io.Reader) (int64, error) {
	tr := tar.NewReader(r)
	var size int64
	type dirTime struct {
		path  string
		mtime time.Time
	}
	var dirs []dirTime
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("read layer tar: %w", err)
		}
		rel, err := cleanEntryName(hdr.Name)
		if err != nil {
			return 0, err
		}
		if rel == "" {
			continue // the layer's root directory itself
		}
		dir, base := path.Split(rel)
		if err := mkdirNoSymlinks(root, dir); err != nil {
			return 0, fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
		parent := filepath.Join(root, dir)
		if base == whiteoutOpaque {
			if err := unix.Lsetxattr(parent, "trusted.overlay.opaque", []byte("y"), 0); err != nil {
				return 0, fmt.Errorf("entry %q: set opaque xattr: %w", hdr.Name, err)
			}
			continue
		}
		if strings.HasPrefix(base, whiteoutPrefix) {
			target := filepath.Join(parent, strings.TrimPrefix(base, whiteoutPrefix))
			if err := os.RemoveAll(target); err != nil {
				return 0, fmt.Errorf("entry %q: %w", hdr.Name, err)
			}
			if err := unix.Mknod(target, unix.S_IFCHR, 0); err != nil {
				return 0, fmt.Errorf("entry %q: make whiteout: %w", hdr.Name, err)
			}
			continue
		}
		target := filepath.Join(root, rel)
		if fi, err := os.Lstat(target); err == nil && !(fi.IsDir() && hdr.Typeflag == tar.TypeDir) {
			if err := os.RemoveAll(target); err != nil {
				return 0, fmt.Errorf("entry %q: replace: %w", hdr.Name, err)
			}
		}
		mode := uint32(hdr.Mode & 07777)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.Mkdir(target, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return 0, fmt.Errorf("entry %q: %w", hdr.Name, err)
			}
			dirs = append(dirs, dirTime{target, hdr.ModTime})
		case tar.TypeReg, tar.TypeRegA:
			f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return 0, fmt.Errorf("entry %q: %w", hdr.Name, err)
			}
			n, err := io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return 0, fmt.Errorf("entry %q: write: %w", hdr.Name, err)
			}
			size += n
		case tar.TypeSymlink:
			if err := os.Symlink(hdr.Linkname, target); err != nil {
				return 0, fmt.Errorf("entry %q: %w", hdr.Name, err)
			}
		case tar.TypeLink:
			srcRel, err := cleanEntryName(hdr.Linkname)
			if err != nil || srcRel == "" {
				return 0, fmt.Errorf("entry %q: bad hard link target %q", hdr.Name, hdr.Linkname)
			}
			srcDir, _ := path.Split(srcRel)
			if err := checkNoSymlinks(root, srcDir); err != nil {
				return 0, fmt.Errorf("entry %q: link target: %w", hdr.Name, err)
			}
			if err := os.Link(filepath.Join(root, srcRel), target); err != nil {
				return 0, fmt.Errorf("entry %q: %w", hdr.Name, err)
			}
			continue // a hard link shares the target's inode: owner and mode are already right
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			typ := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[hdr.Typeflag]
			dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
			if err := unix.Mknod(target, typ|mode, int(dev)); err != nil {
				return 0, fmt.Errorf("entry %q: mknod: %w", hdr.Name, err)
			}
		default:
			continue // pax global headers, sparse files of old GNU tars and the like
		}
		if err := os.Lchown(target, hdr.Uid, hdr.Gid); err != nil {
			return 0, fmt.Errorf("entry %q: chown: %w", hdr.Name, err)
		}
		for k, v := range hdr.PAXRecords {
			if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				if err := unix.Lsetxattr(target, name, []byte(v), 0); err != nil && !errors.Is(err, unix.ENOTSUP) {
					return 0, fmt.Errorf("entry %q: xattr %s: %w", hdr.Name, name, err)
				}
			}
		}
		if hdr.Typeflag != tar.TypeSymlink {
			// after chown, which clears set-id bits
			if err := unix.Chmod(target, mode); err != nil {
				return 0, fmt.Errorf("entry %q: chmod: %w", hdr.Name, err)
			}
		}
		if hdr.Typeflag != tar.TypeDir {
			if err := setMtime(target, hdr.ModTime); err != nil {
				return 0, fmt.Errorf("entry %q: %w", hdr.Name, err)
			}
		}
	}
	// directory times last: creating their entries changed them
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := setMtime(dirs[i].path, dirs[i].mtime); err != nil {
			return 0, err
		}
	}
	return size, nil
}

func setMtime(p string, t time.Time) error {
	ts := unix.NsecToTimespec(t.UnixNano())
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set mtime of %s: %w", p, err)
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

// mkdirNoSymlinks creates the directories of rel under root and refuses to go
// through a symlink, so no entry is ever written outside root.
func mkdirNoSymlinks(root, rel string) error {
	cur := root
	for _, c := range strings.Split(rel, "/") {
		if c == "" {
			continue
		}
		cur = filepath.Join(cur, c)
		fi, err := os.Lstat(cur)
		switch {
		case errors.Is(err, os.ErrNotExist):
			if err := os.Mkdir(cur, 0o755); err != nil {
				return err
			}
		case err != nil:
			return err
		case fi.Mode()&os.ModeSymlink != 0:
			return fmt.Errorf("parent %q is a symlink: refused", strings.TrimPrefix(cur, root))
		case !fi.IsDir():
			return fmt.Errorf("parent %q is not a directory", strings.TrimPrefix(cur, root))
		}
	}
	return nil
}

func checkNoSymlinks(root, rel string) error {
	cur := root
	for _, c := range strings.Split(rel, "/") {
		if c == "" {
			continue
		}
		cur = filepath.Join(cur, c)
		fi, err := os.Lstat(cur)
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("parent %q is not a directory", strings.TrimPrefix(cur, root))
		}
	}
	return nil
}
