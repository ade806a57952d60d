package store

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"golang.org/x/sys/unix"
)

// FileName is the database file inside each state directory.
const FileName = "ctnet.db"

// Bolt keeps persistent buckets in <root>/ctnet.db and runtime buckets in
// <runRoot>/ctnet.db. Each transaction opens the files it needs and closes
// them at the end, so the file lock (bbolt's flock: exclusive for writers,
// shared for readers) is held exactly as long as the transaction: a
// foreground `ctnet run` never blocks other ctnet processes while its
// container runs. Files are always locked in the same order, root first.
type Bolt struct {
	paths   [2]string // persistent, runtime
	lock    string
	Timeout time.Duration
}

// OpenBolt prepares a store over the two state directories, creating them.
func OpenBolt(root, runRoot string) (*Bolt, error) {
	for _, d := range []string{root, runRoot} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("state directory %s: %w", d, err)
		}
	}
	return &Bolt{
		paths:   [2]string{filepath.Join(root, FileName), filepath.Join(runRoot, FileName)},
		lock:    filepath.Join(runRoot, "lock"),
		Timeout: 60 * time.Second,
	}, nil
}

func (b *Bolt) Close() error { return nil }

func lockFile(path string, exclusive bool) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state lock %s: %w", path, err)
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	if err := unix.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, fmt.Errorf("state lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

func (b *Bolt) Update(fn func(Tx) error) error { return b.run(true, fn) }
func (b *Bolt) View(fn func(Tx) error) error   { return b.run(false, fn) }

func (b *Bolt) run(write bool, fn func(Tx) error) (err error) {
	// bbolt's own flock polls every 50 ms; a blocking flock on a lock file
	// hands the state over the moment the previous holder is done.
	unlock, err := lockFile(b.lock, write)
	if err != nil {
		return err
	}
	defer unlock()
	t := &boltTx{b: b, write: write}
	defer t.close()
	// A file cut short (a full disk, a crash of the file system) is mapped
	// beyond its end: reading it faults. That is an error about the file,
	// not a crash of ctnet.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			// A fault in a mapping has a high address; a nil pointer (a
			// bug) a low one and goes on as a panic.
			f, ok := r.(interface{ Addr() uintptr })
			if !ok || f.Addr() < 1<<16 {
				panic(r)
			}
			err = t.damaged(f.Addr())
		}
	}()
	// Each file is opened when a bucket of it is first used: most changes
	// touch only the runtime one. No two processes can each hold one file
	// and wait for the other: the lock file excludes writers from everyone.
	if err := fn(t); err != nil {
		return err
	}
	if t.err != nil {
		return t.err
	}
	return t.commit()
}

// damaged names the state file a fault at addr was met in, and what to do.
func (t *boltTx) damaged(addr uintptr) error {
	which := 1
	var best uintptr
	for i, db := range t.dbs {
		if db != nil {
			if d := db.Info().Data; d <= addr && d > best {
				which, best = i, d
			}
		}
	}
	what := "it holds runtime facts only: move it away and run `ctnet system reconcile`, which cleans what it held"
	if which == 0 {
		what = "it holds the network definitions: restore it from a backup, or move it away and create the networks again"
	}
	return fmt.Errorf("state file %s is damaged (cut short?) and cannot be read; %s", t.b.paths[which], what)
}

type boltTx struct {
	b      *Bolt
	write  bool
	opened [2]bool
	dbs    [2]*bolt.DB
	txs    [2]*bolt.Tx
	err    error // opening a file failed: the transaction fails
}

func which(bucket string) int {
	if Persistent(bucket) {
		return 0
	}
	return 1
}

func (t *boltTx) open(i int) error {
	path := t.b.paths[i]
	if !t.write {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil // nothing written yet: every bucket reads as empty
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: t.b.Timeout, ReadOnly: !t.write})
	if errors.Is(err, berrors.ErrTimeout) {
		return fmt.Errorf("%s: %w (waited %s)", path, ErrLocked, t.b.Timeout)
	}
	if err != nil {
		return fmt.Errorf("open state %s: %w", path, err)
	}
	t.dbs[i] = db
	return nil
}

// tx begins the bbolt transaction of one file on first use: a read-only one
// until the first change, so a command that only reads a file never writes
// (and fsyncs) it. Upgrading is safe because the lock file is held
// exclusively for the whole Update.
func (t *boltTx) tx(bucket string, write bool) (*bolt.Tx, error) {
	i := which(bucket)
	if !t.opened[i] {
		t.opened[i] = true
		if err := t.open(i); err != nil {
			t.err = err
			return nil, err
		}
	}
	if tx := t.txs[i]; tx != nil && (tx.Writable() || !write) {
		return tx, nil
	}
	if t.dbs[i] == nil {
		return nil, nil
	}
	if t.txs[i] != nil {
		t.txs[i].Rollback()
		t.txs[i] = nil
	}
	tx, err := t.dbs[i].Begin(write && t.write)
	if err != nil {
		return nil, fmt.Errorf("state %s: %w", t.b.paths[i], err)
	}
	t.txs[i] = tx
	return tx, nil
}

func (t *boltTx) bucket(name string, create bool) (*bolt.Bucket, error) {
	tx, err := t.tx(name, create)
	if err != nil || tx == nil {
		return nil, err
	}
	if create {
		return tx.CreateBucketIfNotExists([]byte(name))
	}
	return tx.Bucket([]byte(name)), nil
}

func (t *boltTx) Get(bucket, key string) []byte {
	bk, err := t.bucket(bucket, false)
	if err != nil || bk == nil {
		return nil
	}
	v := bk.Get([]byte(key))
	if v == nil {
		return nil
	}
	return bytes.Clone(v) // bbolt's slice dies with the transaction
}

func (t *boltTx) Put(bucket, key string, value []byte) error {
	if !t.write {
		return fmt.Errorf("put %s/%s: read-only transaction", bucket, key)
	}
	bk, err := t.bucket(bucket, true)
	if err != nil {
		return err
	}
	return bk.Put([]byte(key), value)
}

func (t *boltTx) Delete(bucket, key string) error {
	if !t.write {
		return fmt.Errorf("delete %s/%s: read-only transaction", bucket, key)
	}
	bk, err := t.bucket(bucket, true)
	if err != nil || bk == nil {
		return err
	}
	return bk.Delete([]byte(key))
}

func (t *boltTx) ForEach(bucket, prefix string, fn func(string, []byte) error) error {
	bk, err := t.bucket(bucket, false)
	if err != nil || bk == nil {
		return err
	}
	p := []byte(prefix)
	c := bk.Cursor()
	for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
		if err := fn(string(k), bytes.Clone(v)); err != nil {
			return err
		}
	}
	return nil
}

func (t *boltTx) commit() error {
	for i, tx := range t.txs {
		if tx == nil {
			continue
		}
		t.txs[i] = nil
		if !tx.Writable() {
			tx.Rollback()
			continue
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("commit state %s: %w", t.b.paths[i], err)
		}
	}
	return nil
}

func (t *boltTx) close() {
	for i := range t.txs {
		if t.txs[i] != nil {
			t.txs[i].Rollback()
		}
		if t.dbs[i] != nil {
			t.dbs[i].Close()
		}
	}
}
