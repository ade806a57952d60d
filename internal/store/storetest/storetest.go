// Package storetest is the behaviour every store backend must share, as
// one test suite each backend's tests run.
package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/ctnet/ctnet/internal/store"
)

// Suite checks the behaviour every backend must share.
func Suite(t *testing.T, open func(t *testing.T) store.Store) {
	t.Run("PutGetDelete", func(t *testing.T) {
		s := open(t)
		if err := s.Update(func(tx store.Tx) error {
			if err := tx.Put(store.Networks, "web", []byte("1")); err != nil {
				return err
			}
			return tx.Put(store.Endpoints, "e1", []byte("2"))
		}); err != nil {
			t.Fatal(err)
		}
		s.View(func(tx store.Tx) error {
			if got := string(tx.Get(store.Networks, "web")); got != "1" {
				t.Errorf("networks/web = %q", got)
			}
			if got := tx.Get(store.Endpoints, "missing"); got != nil {
				t.Errorf("missing key = %q", got)
			}
			return nil
		})
		s.Update(func(tx store.Tx) error { return tx.Delete(store.Networks, "web") })
		s.View(func(tx store.Tx) error {
			if tx.Get(store.Networks, "web") != nil {
				t.Error("deleted key still there")
			}
			return nil
		})
	})
	t.Run("ErrorRollsBack", func(t *testing.T) {
		s := open(t)
		boom := errors.New("boom")
		err := s.Update(func(tx store.Tx) error {
			tx.Put(store.Networks, "a", []byte("x"))
			tx.Put(store.Leases, "a", []byte("x"))
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("err = %v", err)
		}
		s.View(func(tx store.Tx) error {
			if tx.Get(store.Networks, "a") != nil || tx.Get(store.Leases, "a") != nil {
				t.Error("rolled back writes are visible")
			}
			return nil
		})
	})
	t.Run("ForEachPrefix", func(t *testing.T) {
		s := open(t)
		s.Update(func(tx store.Tx) error {
			for _, k := range []string{"n1/10.0.0.2", "n1/10.0.0.3", "n2/10.0.0.2", "n10/x"} {
				tx.Put(store.Leases, k, []byte(k))
			}
			return nil
		})
		var got []string
		s.View(func(tx store.Tx) error {
			return tx.ForEach(store.Leases, "n1/", func(k string, v []byte) error {
				got = append(got, k)
				return nil
			})
		})
		if len(got) != 2 || got[0] != "n1/10.0.0.2" || got[1] != "n1/10.0.0.3" {
			t.Errorf("ForEach n1/ = %v", got)
		}
	})
	t.Run("ByteOrder", func(t *testing.T) {
		s := open(t)
		keys := []string{"b", "a/b", "10.0.0.9", "a", "A", "10.0.0.10", "a0", "a.", "~", "\xff", "a\x00", "10.0.0.1"}
		// Half in one transaction, the rest one by one, in no order.
		MustUpdate(t, s, func(tx store.Tx) error {
			for _, k := range keys[:6] {
				if err := tx.Put(store.Meta, k, []byte(k)); err != nil {
					return err
				}
			}
			return nil
		})
		for _, k := range keys[6:] {
			MustUpdate(t, s, func(tx store.Tx) error { return tx.Put(store.Meta, k, []byte(k)) })
		}
		want := slices.Clone(keys)
		slices.Sort(want)
		if got := Collect(t, s, store.Meta, ""); !slices.Equal(got, want) {
			t.Errorf("ForEach order = %q\nwant %q", got, want)
		}
		if got := Collect(t, s, store.Meta, "a"); !slices.Equal(got, []string{"a", "a\x00", "a.", "a/b", "a0"}) {
			t.Errorf("ForEach a = %q", got)
		}
	})
	t.Run("EmptyValues", func(t *testing.T) {
		s := open(t)
		MustUpdate(t, s, func(tx store.Tx) error {
			if err := tx.Put(store.Meta, "empty", []byte{}); err != nil {
				return err
			}
			if err := tx.Put(store.Meta, "nil", nil); err != nil {
				return err
			}
			if v := tx.Get(store.Meta, "empty"); v == nil || len(v) != 0 {
				t.Errorf("empty value inside the transaction = %#v, want empty and not nil", v)
			}
			return nil
		})
		s.View(func(tx store.Tx) error {
			for _, k := range []string{"empty", "nil"} {
				if v := tx.Get(store.Meta, k); v == nil || len(v) != 0 {
					t.Errorf("%s = %#v, want empty and not nil (nil means missing)", k, v)
				}
			}
			n := 0
			tx.ForEach(store.Meta, "", func(k string, v []byte) error {
				if v == nil || len(v) != 0 {
					t.Errorf("ForEach %s = %#v, want empty and not nil", k, v)
				}
				n++
				return nil
			})
			if n != 2 {
				t.Errorf("ForEach visited %d empty values, want 2", n)
			}
			return nil
		})
	})
	t.Run("DeleteMissing", func(t *testing.T) {
		s := open(t)
		MustUpdate(t, s, func(tx store.Tx) error { return tx.Put(store.Endpoints, "kept", []byte("1")) })
		MustUpdate(t, s, func(tx store.Tx) error {
			for _, b := range []string{store.Endpoints, store.Containers} {
				if err := tx.Delete(b, "never-there"); err != nil {
					return err
				}
			}
			return nil
		})
		if got := Collect(t, s, store.Endpoints, ""); !slices.Equal(got, []string{"kept"}) {
			t.Errorf("after deleting a missing key: %q", got)
		}
		if got := Collect(t, s, store.Containers, ""); len(got) != 0 {
			t.Errorf("deleting a missing key made %q", got)
		}
	})
	t.Run("ReadYourWrites", func(t *testing.T) {
		s := open(t)
		MustUpdate(t, s, func(tx store.Tx) error { return tx.Put(store.Meta, "k", []byte("old")) })
		MustUpdate(t, s, func(tx store.Tx) error {
			check := func(when, want string, missing bool) {
				v := tx.Get(store.Meta, "k")
				if missing != (v == nil) || string(v) != want {
					t.Errorf("%s: Get = %q (nil %v)", when, v, v == nil)
				}
			}
			check("before", "old", false)
			tx.Put(store.Meta, "k", []byte("new"))
			check("after put", "new", false)
			tx.Delete(store.Meta, "k")
			check("after delete", "", true)
			tx.Put(store.Meta, "k", []byte("again"))
			check("after put again", "again", false)
			return nil
		})
		if got := Get(t, s, store.Meta, "k"); got != "again" {
			t.Errorf("committed %q", got)
		}
	})
	t.Run("ForEachSeesOwnWrites", func(t *testing.T) {
		s := open(t)
		MustUpdate(t, s, func(tx store.Tx) error {
			for _, k := range []string{"n/1", "n/3", "n/5", "o/1"} {
				tx.Put(store.Leases, k, []byte("stored"))
			}
			return nil
		})
		MustUpdate(t, s, func(tx store.Tx) error {
			tx.Put(store.Leases, "n/0", []byte("mine"))   // before every stored key
			tx.Put(store.Leases, "n/3", []byte("mine"))   // over a stored key
			tx.Delete(store.Leases, "n/5")                // a stored key gone
			tx.Put(store.Leases, "n/4", []byte("mine"))   // between stored keys
			tx.Put(store.Leases, "n/9", []byte("mine"))   // after every stored key
			tx.Put(store.Leases, "n/8", []byte("gone"))   // made and deleted
			tx.Delete(store.Leases, "n/8")                //
			tx.Put(store.Leases, "nx", []byte("outside")) // beside the prefix
			var got []string
			err := tx.ForEach(store.Leases, "n/", func(k string, v []byte) error {
				got = append(got, k+"="+string(v))
				return nil
			})
			want := []string{"n/0=mine", "n/1=stored", "n/3=mine", "n/4=mine", "n/9=mine"}
			if !slices.Equal(got, want) {
				t.Errorf("ForEach inside the transaction = %q\nwant %q", got, want)
			}
			return err
		})
		want := []string{"n/0", "n/1", "n/3", "n/4", "n/9"}
		if got := Collect(t, s, store.Leases, "n/"); !slices.Equal(got, want) {
			t.Errorf("committed %q, want %q", got, want)
		}
	})
	t.Run("LargeBucket", func(t *testing.T) {
		s := open(t)
		const n = 1234
		// In batches: etcd caps the changes of one transaction (128 by default).
		for i := 0; i < n; i += 100 {
			MustUpdate(t, s, func(tx store.Tx) error {
				for j := i; j < min(n, i+100); j++ {
					if err := tx.Put(store.Leases, fmt.Sprintf("net/%05d", j), []byte(strconv.Itoa(j))); err != nil {
						return err
					}
				}
				return nil
			})
		}
		got := Collect(t, s, store.Leases, "net/")
		if len(got) != n {
			t.Fatalf("ForEach visited %d keys, want %d", len(got), n)
		}
		for i, k := range got {
			if k != fmt.Sprintf("net/%05d", i) {
				t.Fatalf("key %d = %s", i, k)
			}
		}
		// Stopping early returns the callback's error and visits no more.
		stop := errors.New("enough")
		visited := 0
		err := s.View(func(tx store.Tx) error {
			return tx.ForEach(store.Leases, "net/", func(string, []byte) error {
				if visited++; visited == 700 {
					return stop
				}
				return nil
			})
		})
		if !errors.Is(err, stop) || visited != 700 {
			t.Errorf("stopped ForEach: err %v after %d keys", err, visited)
		}
	})
	t.Run("ValuesAreCopies", func(t *testing.T) {
		s := open(t)
		MustUpdate(t, s, func(tx store.Tx) error {
			tx.Put(store.Meta, "k", []byte("abc"))
			got := tx.Get(store.Meta, "k")
			got[1] = 'Y'
			return nil
		})
		s.View(func(tx store.Tx) error {
			got := tx.Get(store.Meta, "k")
			got[2] = 'Z'
			return nil
		})
		if got := Get(t, s, store.Meta, "k"); got != "abc" {
			t.Errorf("stored value changed through a slice: %q", got)
		}
	})
	t.Run("ViewIsReadOnly", func(t *testing.T) {
		s := open(t)
		s.View(func(tx store.Tx) error {
			if tx.Put(store.Meta, "k", []byte("1")) == nil {
				t.Error("Put in View succeeded")
			}
			if tx.Delete(store.Meta, "k") == nil {
				t.Error("Delete in View succeeded")
			}
			return nil
		})
		if Get(t, s, store.Meta, "k") != "" {
			t.Error("View wrote")
		}
	})
	t.Run("ConcurrentWriters", func(t *testing.T) {
		s := open(t)
		var wg sync.WaitGroup
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := s.Update(func(tx store.Tx) error {
					n, _ := strconv.Atoi(string(tx.Get(store.Meta, "n")))
					return tx.Put(store.Meta, "n", []byte(strconv.Itoa(n+1)))
				})
				if err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		s.View(func(tx store.Tx) error {
			if got := string(tx.Get(store.Meta, "n")); got != "20" {
				t.Errorf("counter = %s, want 20 (lost update)", got)
			}
			return nil
		})
	})
}

// MustUpdate runs an Update, failing the test on error.
func MustUpdate(t *testing.T, s store.Store, fn func(store.Tx) error) {
	t.Helper()
	if err := s.Update(fn); err != nil {
		t.Fatal(err)
	}
}

// collect is the keys ForEach visits.
// Collect lists the keys under prefix, failing the test on error.
func Collect(t *testing.T, s store.Store, bucket, prefix string) []string {
	t.Helper()
	var keys []string
	err := s.View(func(tx store.Tx) error {
		return tx.ForEach(bucket, prefix, func(k string, _ []byte) error {
			keys = append(keys, k)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// Get reads one value in a View, failing the test on error.
func Get(t *testing.T, s store.Store, bucket, key string) string {
	t.Helper()
	var v []byte
	if err := s.View(func(tx store.Tx) error { v = tx.Get(bucket, key); return nil }); err != nil {
		t.Fatal(err)
	}
	return string(v)
}
