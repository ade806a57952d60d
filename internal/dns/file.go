package dns

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Snapshot is everything a resolver process needs: the engine writes it as
// one JSON file (Publish) and the process follows the file (ServeFromFile).
type Snapshot struct {
	Generation uint64      `json:"generation"`          // set by Publish
	Upstreams  []string    `json:"upstreams,omitempty"` // the host's resolvers
	Records    []Record    `json:"records"`
	Namespaces []Namespace `json:"namespaces"`
	Networks   []Network   `json:"networks,omitempty"` // internal networks, and whether they forward
}

// Status is what a resolver process reports after applying a snapshot, in
// the file path+".status".
type Status struct {
	Generation uint64            `json:"generation"`
	PID        int               `json:"pid"`
	Errors     map[string]string `json:"errors,omitempty"` // namespace path → why it is not served
}

// ErrServing is returned by ServeFromFile when another process already
// serves the snapshot; the caller should just exit.
var ErrServing = errors.New("dns: another process already serves this snapshot")

// ReadSnapshot reads a snapshot file; a missing file is an empty snapshot.
func ReadSnapshot(path string) (Snapshot, error) {
	var snap Snapshot
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return snap, nil
	}
	if err != nil {
		return snap, fmt.Errorf("dns snapshot %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &snap); err != nil {
		return snap, fmt.Errorf("dns snapshot %s: %w", path, err)
	}
	return snap, nil
}

// writeFileAtomic replaces path with data so readers see the old or the new
// file, never a part.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	success := false
	defer func() {
		if !success {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	success = true
	return nil
}

// lockFile takes an flock on path (created if needed). With wait false it
// fails with unix.EWOULDBLOCK when someone else holds it.
func lockFile(path string, wait bool) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	how := unix.LOCK_EX
	if !wait {
		how |= unix.LOCK_NB
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Publish writes snap to path as its next generation and, when snap has
// namespaces to serve and no resolver process serves path, calls start to
// launch one (which must end up calling ServeFromFile on path) and waits
// until it holds path+".lock". It returns the generation written;
// WaitApplied tells when the process has applied it.
//
// Publish, Ensure and a resolver deciding to exit all hold path+".ctl", so a
// process never exits after a snapshot that needs it was published, and
// two callers never both start one.
func Publish(path string, snap Snapshot, start func() error) (uint64, error) {
	ctl, err := lockFile(path+".ctl", true)
	if err != nil {
		return 0, fmt.Errorf("dns snapshot %s: lock: %w", path, err)
	}
	defer ctl.Close()
	prev, err := ReadSnapshot(path)
	if err != nil {
		prev = Snapshot{} // a corrupt file is simply replaced
	}
	snap.Generation = prev.Generation + 1
	b, err := json.MarshalIndent(snap, "", "  ")
	if err != nil {
		return 0, fmt.Errorf("dns snapshot %s: %w", path, err)
	}
	if err := writeFileAtomic(path, b); err != nil {
		return 0, fmt.Errorf("dns snapshot %s: write: %w", path, err)
	}
	if len(snap.Namespaces) == 0 {
		return snap.Generation, nil
	}
	if _, err := ensureLocked(path, start, 0); err != nil {
		return 0, err
	}
	return snap.Generation, nil
}

// Alive reports whether a live resolver process serves the snapshot at
// path. It asks the kernel who holds path+".lock", which a process holds
// for as long as it serves and loses when it dies, however it dies: a
// stale status file or a reused PID cannot fool it.
func Alive(path string) (bool, error) {
	_, held, err := lockHolder(path + ".lock")
	if err != nil {
		return false, fmt.Errorf("dns snapshot %s: %w", path, err)
	}
	return held, nil
}

// Ensure starts a resolver for the snapshot at path, as Publish would,
// when the snapshot lists namespaces and no live process serves it (after
// the resolver was killed, say); it reports whether it started one, and if
// so returns once that process serves the snapshot (its status names it).
// Calls racing each other, or Publish, start one process between them.
func Ensure(path string, start func() error) (bool, error) {
	ctl, err := lockFile(path+".ctl", true)
	if err != nil {
		return false, fmt.Errorf("dns snapshot %s: lock: %w", path, err)
	}
	defer ctl.Close()
	snap, err := ReadSnapshot(path)
	if err != nil {
		return false, err
	}
	if len(snap.Namespaces) == 0 {
		return false, nil
	}
	return ensureLocked(path, start, max(snap.Generation, 1))
}

// startWait is how long a started resolver has to take its lock.
const startWait = 10 * time.Second

// ensureLocked starts a resolver unless one serves path, and waits until it
// holds the run lock, so that whoever takes path+".ctl" next sees it, and,
// if gen > 0, until it reports generation gen applied. The caller holds
// path+".ctl".
func ensureLocked(path string, start func() error, gen uint64) (bool, error) {
	if _, held, err := lockHolder(path + ".lock"); err != nil {
		return false, fmt.Errorf("dns snapshot %s: probe resolver: %w", path, err)
	} else if held {
		return false, nil
	}
	if err := start(); err != nil {
		return false, fmt.Errorf("dns snapshot %s: start resolver: %w", path, err)
	}
	deadline := time.Now().Add(startWait)
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		if pid, held, err := lockHolder(path + ".lock"); err == nil && held {
			if gen == 0 {
				return true, nil
			}
			// The status of the process that died is still there, with
			// the same generation: only the new process's own counts.
			if st, err := ReadStatus(path); err == nil && st.Generation >= gen && (pid == 0 || st.PID == pid) {
				return true, nil
			}
		}
		if time.Now().After(deadline) {
			return true, fmt.Errorf("dns snapshot %s: the resolver started does not serve it after %s; see its log", path, startWait)
		}
		time.Sleep(wait)
	}
}

// The run lock is a POSIX record lock (fcntl), not an flock: F_GETLK tells
// whether it is held, and by which process, without taking it, so probing
// never makes a starting resolver believe another one runs. Its catch, that
// closing any descriptor of the file drops the process's lock, is why this
// process never opens a lock file it holds (servingHere).
var (
	hereMu      sync.Mutex
	servingHere = map[string]bool{} // run lock paths this process holds
)

// takeRunLock takes the run lock at lockPath without waiting; it fails with
// ErrServing when another process holds it.
func takeRunLock(lockPath string) (*os.File, error) {
	hereMu.Lock()
	defer hereMu.Unlock()
	if servingHere[lockPath] {
		return nil, ErrServing
	}
	f, err := os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart}
	if err := unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk); err != nil {
		f.Close()
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
			return nil, ErrServing
		}
		return nil, err
	}
	servingHere[lockPath] = true
	return f, nil
}

// releaseRunLock gives up a lock taken by takeRunLock.
func releaseRunLock(lockPath string, f *os.File) {
	hereMu.Lock()
	defer hereMu.Unlock()
	f.Close()
	delete(servingHere, lockPath)
}

// lockHolder reports whether a process holds the run lock at lockPath, and
// its PID (0 if in a PID namespace this one cannot see).
func lockHolder(lockPath string) (int, bool, error) {
	hereMu.Lock()
	defer hereMu.Unlock()
	if servingHere[lockPath] {
		return os.Getpid(), true, nil
	}
	f, err := os.Open(lockPath)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart}
	if err := unix.FcntlFlock(f.Fd(), unix.F_GETLK, &lk); err != nil {
		return 0, false, err
	}
	if lk.Type == unix.F_UNLCK {
		return 0, false, nil
	}
	return int(lk.Pid), true, nil
}

// sameFile reports whether path still names the open file f.
func sameFile(path string, f *os.File) bool {
	a, err1 := os.Stat(path)
	b, err2 := f.Stat()
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}

// ReadStatus reads what the resolver process last reported.
func ReadStatus(path string) (Status, error) {
	var st Status
	b, err := os.ReadFile(path + ".status")
	if err != nil {
		return st, fmt.Errorf("dns status %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("dns status %s: %w", path, err)
	}
	return st, nil
}

// WaitApplied waits until the resolver process has applied generation gen
// of the snapshot at path (or a later one) and returns its status.
func WaitApplied(ctx context.Context, path string, gen uint64) (Status, error) {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		st, err := ReadStatus(path)
		if err == nil && st.Generation >= gen {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("dns snapshot %s: generation %d not applied: %w", path, gen, ctx.Err())
		case <-t.C:
		}
	}
}

// ServeFromFile is the body of the per-host resolver process: it serves the
// snapshot at path, follows every change to it, forgets namespaces that
// disappear, and returns nil once the snapshot lists no namespace (or ctx
// ends). If another process already serves path it returns ErrServing.
func ServeFromFile(ctx context.Context, path string, cfg Config) error {
	lockPath := path + ".lock"
	run, err := takeRunLock(lockPath)
	if err != nil {
		if errors.Is(err, ErrServing) {
			return err
		}
		return fmt.Errorf("dns snapshot %s: lock: %w", path, err)
	}
	released := false
	defer func() {
		if !released {
			releaseRunLock(lockPath, run)
		}
	}()

	changed, stopWatch, err := watchFile(path)
	if err != nil {
		return err
	}
	defer stopWatch()

	s := New(cfg)
	defer s.Close()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var applied []byte
	retry := false
	for {
		b, _ := os.ReadFile(path)
		if !bytes.Equal(b, applied) || retry {
			snap, err := ReadSnapshot(path)
			if err != nil {
				s.logf("%v", err)
			} else {
				if len(snap.Namespaces) == 0 {
					if exitIfStillEmpty(path, s, run) {
						released = true
						return nil
					}
					if now, _ := os.ReadFile(path); !bytes.Equal(now, b) {
						continue // published meanwhile: apply that instead
					}
				}
				retry = s.applyAndReport(path, snap)
				applied = b
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-tick.C:
			if gone := s.Prune(); len(gone) > 0 {
				s.logf("dns: forgot vanished namespaces %v", gone)
			}
			if !sameFile(lockPath, run) {
				// Someone removed or replaced the lock file: take the new
				// one, or leave to the resolver that has it.
				next, err := relock(lockPath, run)
				if err != nil {
					s.logf("dns snapshot %s: lock file replaced and %v; leaving", path, err)
					return nil
				}
				run = next
			}
		}
	}
}

// relock moves this process's run lock from the file it holds (no longer at
// lockPath) to the one at lockPath.
func relock(lockPath string, old *os.File) (*os.File, error) {
	hereMu.Lock()
	delete(servingHere, lockPath)
	hereMu.Unlock()
	next, err := takeRunLock(lockPath)
	if err != nil {
		hereMu.Lock()
		servingHere[lockPath] = true // still ours until the caller releases it
		hereMu.Unlock()
		return nil, fmt.Errorf("cannot take the new one: %w", err)
	}
	old.Close() // locks of the old inode only
	return next, nil
}

// applyAndReport applies snap, writes the status file and reports whether
// some namespace failed (worth another try later).
func (s *Server) applyAndReport(path string, snap Snapshot) bool {
	st := Status{Generation: snap.Generation, PID: os.Getpid(), Errors: map[string]string{}}
	for p, err := range s.apply(snap) {
		st.Errors[p] = err.Error()
		s.logf("%v", err)
	}
	if b, err := json.Marshal(st); err == nil {
		if err := writeFileAtomic(path+".status", b); err != nil {
			s.logf("dns status %s: %v", path, err)
		}
	}
	return len(st.Errors) > 0
}

// exitIfStillEmpty releases the run lock if, under the control lock, the
// snapshot still lists no namespace; Publish can then start a new process.
// Every listener is closed first, so that process never finds 127.0.0.11
// still taken by this one.
func exitIfStillEmpty(path string, s *Server, run *os.File) bool {
	ctl, err := lockFile(path+".ctl", true)
	if err != nil {
		return false
	}
	defer ctl.Close()
	snap, err := ReadSnapshot(path)
	if err != nil || len(snap.Namespaces) > 0 {
		return false
	}
	s.Close()
	releaseRunLock(path+".lock", run)
	return true
}

// watchFile signals on changed whenever the file at path may have been
// written or replaced (inotify on its directory, since Publish renames).
func watchFile(path string) (<-chan struct{}, func(), error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, nil, fmt.Errorf("dns snapshot %s: inotify: %w", path, err)
	}
	dir, base := filepath.Dir(path), filepath.Base(path)
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_MOVED_TO|unix.IN_CLOSE_WRITE|unix.IN_DELETE); err != nil {
		unix.Close(fd)
		return nil, nil, fmt.Errorf("dns snapshot %s: watch %s: %w", path, dir, err)
	}
	f := os.NewFile(uintptr(fd), "inotify")
	changed := make(chan struct{}, 1)
	go func() {
		buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
		for {
			n, err := f.Read(buf)
			if err != nil {
				return
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				l := int(binary.NativeEndian.Uint32(buf[off+12:])) // struct inotify_event.len
				name := buf[off+unix.SizeofInotifyEvent : min(n, off+unix.SizeofInotifyEvent+l)]
				off += unix.SizeofInotifyEvent + l
				if string(bytes.TrimRight(name, "\x00")) == base {
					select {
					case changed <- struct{}{}:
					default:
					}
				}
			}
		}
	}()
	return changed, func() { f.Close() }, nil
}
