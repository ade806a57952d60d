// Package store keeps ctnet's desired state: network definitions that persist
// across reboots, and runtime facts (endpoints, leases, containers) that die
// with one. Callers see one transactional key/value space split into buckets;
// the backend decides where each bucket lives.
package store

import "errors"

// Buckets. Networks persist (under --root); everything else is a runtime fact
// (under --run-root, a tmpfs that a reboot empties).
const (
	Networks   = "networks"   // network name -> engine.Network
	Endpoints  = "endpoints"  // endpoint id -> engine.Endpoint
	Leases     = "leases"     // "<network>/<addr>" -> endpoint id
	Containers = "containers" // container id -> engine.Container
	Meta       = "meta"       // runtime bookkeeping (boot marker, last allocated address)
	Ports      = "ports"      // "<proto>/<host port>/<host ip>" -> container id of a published port
)

// Persistent reports whether a bucket survives a reboot.
func Persistent(bucket string) bool { return bucket == Networks }

// ErrLocked is returned when another ctnet process holds the state too long.
var ErrLocked = errors.New("state is locked by another ctnet process")

// Store is one ctnet instance's state. Implementations serialise writers
// across processes.
type Store interface {
	// Update runs fn in a read-write transaction; fn's error rolls it back.
	Update(fn func(Tx) error) error
	// View runs fn in a read-only transaction.
	View(fn func(Tx) error) error
	Close() error
}

// Tx is one transaction. Keys within a bucket are iterated in byte order.
type Tx interface {
	Get(bucket, key string) []byte
	Put(bucket, key string, value []byte) error
	Delete(bucket, key string) error
	// ForEach visits keys that start with prefix ("" = all) in order.
	ForEach(bucket, prefix string, fn func(key string, value []byte) error) error
}
