package store

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
)

// Memory is a store held in memory, for tests of the layers above: one
// process, no files, the same transaction semantics as the real backends.
type Memory struct {
	mu      sync.RWMutex
	buckets map[string]map[string][]byte
	// Replay makes every Update run its function twice, discarding the
	// first run, as a store that retries a transaction on conflict (etcd)
	// does. Code that changes anything but the store inside a transaction
	// does it twice.
	Replay bool
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory { return &Memory{buckets: map[string]map[string][]byte{}} }

func (m *Memory) Close() error { return nil }

func (m *Memory) View(fn func(Tx) error) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return fn(&memTx{m: m})
}

func (m *Memory) Update(fn func(Tx) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Replay {
		if err := fn(&memTx{m: m, write: true, changes: map[string]map[string][]byte{}}); err != nil {
			return err
		}
	}
	t := &memTx{m: m, write: true, changes: map[string]map[string][]byte{}}
	if err := fn(t); err != nil {
		return err
	}
	for b, kvs := range t.changes {
		if m.buckets[b] == nil {
			m.buckets[b] = map[string][]byte{}
		}
		for k, v := range kvs {
			if v == nil {
				delete(m.buckets[b], k)
			} else {
				m.buckets[b][k] = v
			}
		}
	}
	return nil
}

// Dump is every key and value, for tests that compare whole states.
func (m *Memory) Dump() map[string]string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := map[string]string{}
	for b, kvs := range m.buckets {
		for k, v := range kvs {
			out[b+"/"+k] = string(v)
		}
	}
	return out
}

// memTx sees the committed state with its own changes over it (a nil value
// is a deletion).
type memTx struct {
	m       *Memory
	write   bool
	changes map[string]map[string][]byte
}

func (t *memTx) Get(bucket, key string) []byte {
	if v, ok := t.changes[bucket][key]; ok {
		return bytes.Clone(v)
	}
	return bytes.Clone(t.m.buckets[bucket][key])
}

func (t *memTx) set(bucket, key string, value []byte) error {
	if !t.write {
		return fmt.Errorf("change %s/%s: read-only transaction", bucket, key)
	}
	if t.changes[bucket] == nil {
		t.changes[bucket] = map[string][]byte{}
	}
	t.changes[bucket][key] = value
	return nil
}

func (t *memTx) Put(bucket, key string, value []byte) error {
	if value == nil {
		value = []byte{}
	}
	return t.set(bucket, key, bytes.Clone(value))
}

func (t *memTx) Delete(bucket, key string) error { return t.set(bucket, key, nil) }

func (t *memTx) ForEach(bucket, prefix string, fn func(string, []byte) error) error {
	keys := map[string]bool{}
	for k := range t.m.buckets[bucket] {
		keys[k] = true
	}
	for k := range t.changes[bucket] {
		keys[k] = true
	}
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		if v := t.Get(bucket, k); v != nil {
			if err := fn(k, v); err != nil {
				return err
			}
		}
	}
	return nil
}
