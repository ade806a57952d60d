package store_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ctnet/ctnet/internal/store"
	"github.com/ctnet/ctnet/internal/store/storetest"
)

func TestBolt(t *testing.T) {
	storetest.Suite(t, func(t *testing.T) store.Store {
		dir := t.TempDir()
		s, err := store.OpenBolt(filepath.Join(dir, "root"), filepath.Join(dir, "run"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestBoltSplitsPersistentAndRuntime(t *testing.T) {
	dir := t.TempDir()
	root, run := filepath.Join(dir, "root"), filepath.Join(dir, "run")
	s, _ := store.OpenBolt(root, run)
	s.Update(func(tx store.Tx) error {
		tx.Put(store.Networks, "web", []byte("net"))
		return tx.Put(store.Endpoints, "e", []byte("ep"))
	})
	// A reboot empties the run directory; networks must survive it.
	os.RemoveAll(run)
	s, _ = store.OpenBolt(root, run)
	s.View(func(tx store.Tx) error {
		if tx.Get(store.Networks, "web") == nil {
			t.Error("network lost with the run directory")
		}
		if tx.Get(store.Endpoints, "e") != nil {
			t.Error("endpoint survived the run directory")
		}
		return nil
	})
}

func TestViewOfEmptyState(t *testing.T) {
	dir := t.TempDir()
	s, _ := store.OpenBolt(filepath.Join(dir, "root"), filepath.Join(dir, "run"))
	err := s.View(func(tx store.Tx) error {
		if tx.Get(store.Networks, "x") != nil {
			t.Error("value in empty store")
		}
		return tx.ForEach(store.Endpoints, "", func(string, []byte) error { return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestMemory(t *testing.T) {
	storetest.Suite(t, func(t *testing.T) store.Store { return store.NewMemory() })
	storetest.Suite(t, func(t *testing.T) store.Store { m := store.NewMemory(); m.Replay = true; return m })
}
