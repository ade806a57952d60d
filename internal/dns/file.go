package dns

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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
// namespaces to serve and no resolver process holds path+".lock", calls start
// to launch one (which must end up calling ServeFromFile on path). It returns
// the generation written; WaitApplied tells when the process has applied it.
//
// Publish and a resolver deciding to exit both hold path+".ctl", so a
// process never exits after a snapshot that needs it was published.
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
	run, err := lockFile(path+".lock", false)
	if errors.Is(err, unix.EWOULDBLOCK) {
		return snap.Generation, nil // a resolver runs and will pick the file up
	}
	if err != nil {
		return 0, fmt.Errorf("dns snapshot %s: probe resolver: %w", path, err)
	}
	run.Close()
	if err := start(); err != nil {
		return 0, fmt.Errorf("dns snapshot %s: start resolver: %w", path, err)
	}
	return snap.Generation, nil
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
	ctl, err := lockFile(path+".ctl", true)
	if err != nil {
		return fmt.Errorf("dns snapshot %s: lock: %w", path, err)
	}
	run, err := lockFile(path+".lock", false)
	ctl.Close()
	if errors.Is(err, unix.EWOULDBLOCK) {
		return ErrServing
	}
	if err != nil {
		return fmt.Errorf("dns snapshot %s: lock: %w", path, err)
	}
	defer run.Close()

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
				if len(snap.Namespaces) == 0 && exitIfStillEmpty(path, run) {
					return nil
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
		}
	}
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
func exitIfStillEmpty(path string, run *os.File) bool {
	ctl, err := lockFile(path+".ctl", true)
	if err != nil {
		return false
	}
	defer ctl.Close()
	snap, err := ReadSnapshot(path)
	if err != nil || len(snap.Namespaces) > 0 {
		return false
	}
	run.Close()
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
