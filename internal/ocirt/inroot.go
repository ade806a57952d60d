package ocirt

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// inRoot resolves names inside a container's root as if it were "/":
// symlinks, absolute or relative, and ".." never leave it. This is openat2's
// RESOLVE_IN_ROOT, the kernel's own chroot semantics, which is how runc
// (securejoin) and Docker resolve paths in an image. os.Root is no
// substitute: it refuses absolute symlinks, which images have (/var/run ->
// /run, /etc/resolv.conf -> /run/...).
type inRoot struct {
	fd  int
	dir string // for messages only
}

func openInRoot(dir string) (*inRoot, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open container root %s: %w", dir, err)
	}
	return &inRoot{fd: fd, dir: dir}, nil
}

func (r *inRoot) Close() { unix.Close(r.fd) }

// open resolves name (absolute or not, always inside the root) and opens it.
func (r *inRoot) open(name string, flags int) (int, error) {
	how := &unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	for range 16 {
		fd, err := unix.Openat2(r.fd, name, how)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue // EAGAIN: a rename or mount raced the lookup; the kernel asks to retry
		}
		if err == unix.ENOSYS {
			return -1, errors.New("openat2 is missing: Linux 5.6 or later is needed")
		}
		return fd, err
	}
	return -1, unix.EAGAIN
}

func (r *inRoot) stat(name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	fd, err := r.open(name, unix.O_PATH)
	if err != nil {
		return st, err
	}
	defer unix.Close(fd)
	return st, unix.Fstat(fd, &st)
}

// errTooLarge is wrapped by readFile for a file over its limit.
var errTooLarge = errors.New("file too large")

// readFile reads a regular file of at most max bytes. Anything else — a
// FIFO that would block, a device that never ends — is refused without
// being opened for reading.
func (r *inRoot) readFile(name string, max int64) ([]byte, error) {
	fd, err := r.open(name, unix.O_PATH)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("not a regular file (%s)", fileType(st.Mode))
	}
	if st.Size > max {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", errTooLarge, st.Size, max)
	}
	// reopen the very inode the O_PATH descriptor holds, for reading
	rfd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", fd), unix.O_RDONLY|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(rfd), name)
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err == nil && int64(len(b)) > max {
		err = fmt.Errorf("%w: more than %d bytes", errTooLarge, max)
	}
	return b, err
}

func fileType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFCHR:
		return "a character device"
	case unix.S_IFBLK:
		return "a block device"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFLNK:
		return "a symlink"
	case unix.S_IFREG:
		return "a file"
	}
	return "an unknown file type"
}

// mkdirAll makes name and its missing parents (mode 0755), following
// symlinks the way the container will, and returns an O_PATH descriptor of
// the directory.
func (r *inRoot) mkdirAll(name string) (int, error) { return r.mkdirAllDepth(name, 0) }

func (r *inRoot) mkdirAllDepth(name string, depth int) (int, error) {
	if depth > 40 {
		return -1, unix.ELOOP
	}
	cur := "/"
	fd, err := r.open(cur, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return -1, err
	}
	for _, comp := range strings.Split(strings.Trim(path.Clean("/"+name), "/"), "/") {
		if comp == "" {
			continue
		}
		next := path.Join(cur, comp)
		nfd, err := r.open(next, unix.O_PATH|unix.O_DIRECTORY)
		if errors.Is(err, unix.ENOENT) {
			err = unix.Mkdirat(fd, comp, 0o755)
			if errors.Is(err, unix.EEXIST) {
				// a dangling symlink: make what it points to
				var target string
				if target, err = readlinkat(fd, comp); err == nil {
					if !path.IsAbs(target) {
						target = path.Join(cur, target)
					}
					var tfd int
					if tfd, err = r.mkdirAllDepth(target, depth+1); err == nil {
						unix.Close(tfd)
					}
				}
			}
			if err == nil {
				nfd, err = r.open(next, unix.O_PATH|unix.O_DIRECTORY)
			}
		}
		unix.Close(fd)
		if err != nil {
			if errors.Is(err, unix.ENOTDIR) {
				return -1, fmt.Errorf("%s is not a directory", next)
			}
			return -1, fmt.Errorf("%s: %w", next, err)
		}
		fd, cur = nfd, next
	}
	return fd, nil
}

// createFile makes an empty file at name (and its parents) unless
// something is there already.
func (r *inRoot) createFile(name string) error { return r.createFileDepth(name, 0) }

func (r *inRoot) createFileDepth(name string, depth int) error {
	if depth > 40 {
		return unix.ELOOP
	}
	name = path.Clean("/" + name)
	if fd, err := r.open(name, unix.O_PATH); err == nil {
		unix.Close(fd)
		return nil
	}
	dir, base := path.Split(name)
	dfd, err := r.mkdirAll(dir)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	fd, err := unix.Openat(dfd, base, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if errors.Is(err, unix.EEXIST) {
		target, lerr := readlinkat(dfd, base)
		if lerr != nil {
			return nil // created meanwhile
		}
		if !path.IsAbs(target) {
			target = path.Join(dir, target)
		}
		return r.createFileDepth(target, depth+1)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return unix.Close(fd)
}

func readlinkat(dirfd int, name string) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(dirfd, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}
