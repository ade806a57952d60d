package store

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

// Suite checks the behaviour every backend must share.
func Suite(t *testing.T, open func(t *testing.T) Store) {
	t.Run("PutGetDelete", func(t *testing.T) {
		s := open(t)
		if err := s.Update(func(tx Tx) error {
			if err := tx.Put(Networks, "web", []byte("1")); err != nil {
				return err
			}
			return tx.Put(Endpoints, "e1", []byte("2"))
		}); err != nil {
			t.Fatal(err)
		}
		s.View(func(tx Tx) error {
			if got := string(tx.Get(Networks, "web")); got != "1" {
				t.Errorf("networks/web = %q", got)
			}
			if got := tx.Get(Endpoints, "missing"); got != nil {
				t.Errorf("missing key = %q", got)
			}
			return nil
		})
		s.Update(func(tx Tx) error { return tx.Delete(Networks, "web") })
		s.View(func(tx Tx) error {
			if tx.Get(Networks, "web") != nil {
				t.Error("deleted key still there")
			}
			return nil
		})
	})
	t.Run("ErrorRollsBack", func(t *testing.T) {
		s := open(t)
		boom := errors.New("boom")
		err := s.Update(func(tx Tx) error {
			tx.Put(Networks, "a", []byte("x"))
			tx.Put(Leases, "a", []byte("x"))
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("err = %v", err)
		}
		s.View(func(tx Tx) error {
			if tx.Get(Networks, "a") != nil || tx.Get(Leases, "a") != nil {
				t.Error("rolled back writes are visible")
			}
			return nil
		})
	})
	t.Run("ForEachPrefix", func(t *testing.T) {
		s := open(t)
		s.Update(func(tx Tx) error {
			for _, k := range []string{"n1/10.0.0.2", "n1/10.0.0.3", "n2/10.0.0.2", "n10/x"} {
				tx.Put(Leases, k, []byte(k))
			}
			return nil
		})
		var got []string
		s.View(func(tx Tx) error {
			return tx.ForEach(Leases, "n1/", func(k string, v []byte) error {
				got = append(got, k)
				return nil
			})
		})
		if len(got) != 2 || got[0] != "n1/10.0.0.2" || got[1] != "n1/10.0.0.3" {
			t.Errorf("ForEach n1/ = %v", got)
		}
	})
	t.Run("ConcurrentWriters", func(t *testing.T) {
		s := open(t)
		var wg sync.WaitGroup
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := s.Update(func(tx Tx) error {
					n, _ := strconv.Atoi(string(tx.Get(Meta, "n")))
					return tx.Put(Meta, "n", []byte(strconv.Itoa(n+1)))
				})
				if err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		s.View(func(tx Tx) error {
			if got := string(tx.Get(Meta, "n")); got != "20" {
				t.Errorf("counter = %s, want 20 (lost update)", got)
			}
			return nil
		})
	})
}

func TestBolt(t *testing.T) {
	Suite(t, func(t *testing.T) Store {
		dir := t.TempDir()
		s, err := OpenBolt(filepath.Join(dir, "root"), filepath.Join(dir, "run"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestBoltSplitsPersistentAndRuntime(t *testing.T) {
	dir := t.TempDir()
	root, run := filepath.Join(dir, "root"), filepath.Join(dir, "run")
	s, _ := OpenBolt(root, run)
	s.Update(func(tx Tx) error {
		tx.Put(Networks, "web", []byte("net"))
		return tx.Put(Endpoints, "e", []byte("ep"))
	})
	// A reboot empties the run directory; networks must survive it.
	os.RemoveAll(run)
	s, _ = OpenBolt(root, run)
	s.View(func(tx Tx) error {
		if tx.Get(Networks, "web") == nil {
			t.Error("network lost with the run directory")
		}
		if tx.Get(Endpoints, "e") != nil {
			t.Error("endpoint survived the run directory")
		}
		return nil
	})
}

func TestViewOfEmptyState(t *testing.T) {
	dir := t.TempDir()
	s, _ := OpenBolt(filepath.Join(dir, "root"), filepath.Join(dir, "run"))
	err := s.View(func(tx Tx) error {
		if tx.Get(Networks, "x") != nil {
			t.Error("value in empty store")
		}
		return tx.ForEach(Endpoints, "", func(string, []byte) error { return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestMemory(t *testing.T) {
	Suite(t, func(t *testing.T) Store { return NewMemory() })
	Suite(t, func(t *testing.T) Store { m := NewMemory(); m.Replay = true; return m })
}
