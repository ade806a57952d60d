package network

import (
	"strings"

	"github.com/ctnet/ctnet/internal/driver"
	"github.com/ctnet/ctnet/internal/store"
)

// Hosts sharing one store. Each host has an id (Deps.Host); "" is the
// single-host default, under which every key is what it always was. What is
// a host's own lives under keys that start with "<host id>/": its
// attachments (Endpoints), its published host ports (Ports), its boot marker
// and reclaim marks (Meta), its containers (Containers), and its local-scope
// networks (Network.Host: a bridge network, the default network "bridge").
// Shared by all: global networks (overlay), address leases (keyed by network
// id, so local networks' leases never meet) and the allocation hints.
//
// Network names are unique among what one host sees (its own local networks
// and the global ones), and a global network's name among every host's.

// hostKey is key within host's part of a bucket.
func hostKey(host, key string) string {
	if host == "" {
		return key
	}
	return host + "/" + key
}

// heldBy reports whether a lease's holder (an attachment's key) is an owner
// of the kind, on whichever host.
func heldBy(holder string, kind OwnerKind) bool {
	if i := strings.IndexByte(holder, '/'); i >= 0 && !strings.Contains(holder[:i], ":") {
		holder = holder[i+1:] // "<host>/"
	}
	return strings.HasPrefix(holder, strings.TrimSuffix(Owner{Kind: kind}.prefix(), "/"))
}

// own is key within this host's part of a bucket.
func (s *Service) own(key string) string { return hostKey(s.d.Host, key) }

// clustered reports whether the service shares its store with other hosts.
func (s *Service) clustered() bool { return s.d.Host != "" }

// key is where a network lives in the store.
func (n *Network) key() string { return hostKey(n.Host, n.Name) }

// global reports whether a network is on every host of the cluster.
func (s *Service) global(n *Network) bool { return s.clustered() && n.Host == "" }

// scope is the network's scope as `network ls` shows it.
func (s *Service) scope(n *Network) string {
	if s.global(n) {
		return driver.ScopeGlobal
	}
	return driver.ScopeLocal
}

// visible reports whether this host sees a network: its own local networks
// and the global ones.
func (s *Service) visible(n *Network) bool { return n.Host == "" || n.Host == s.d.Host }

// networks lists the networks this host sees (all: every host's).
func (s *Service) networks(tx store.Tx, all bool) ([]Network, error) {
	nets, err := store.ListJSON[Network](tx, store.Networks, "")
	if err != nil || all {
		return nets, err
	}
	out := nets[:0]
	for _, n := range nets {
		if s.visible(&n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// mine reports whether an attachment is this host's.
func (s *Service) mine(a *Attachment) bool { return a.Host == s.d.Host }

// ownAttachments lists this host's attachments under an owner prefix
// ("" = every owner); host ids have no "/", so the prefix is exact.
func (s *Service) ownAttachments(tx store.Tx, prefix string) ([]Attachment, error) {
	return store.ListJSON[Attachment](tx, store.Endpoints, s.own(prefix))
}

// ownAttachmentsLenient is ownAttachments past records that do not decode.
func (s *Service) ownAttachmentsLenient(tx store.Tx, prefix string) ([]Attachment, []store.Corrupt, error) {
	return store.ListJSONLenient[Attachment](tx, store.Endpoints, s.own(prefix))
}

// hostScoped is a store whose Containers bucket is one host's: the
// container manager keeps its records through it, unaware of other hosts.
type hostScoped struct {
	store.Store
	prefix string
}

func scopeContainers(st store.Store, host string) store.Store {
	if host == "" {
		return st
	}
	return hostScoped{st, host + "/"}
}

func (h hostScoped) Update(fn func(store.Tx) error) error {
	return h.Store.Update(func(tx store.Tx) error { return fn(scopedTx{tx, h.prefix}) })
}

func (h hostScoped) View(fn func(store.Tx) error) error {
	return h.Store.View(func(tx store.Tx) error { return fn(scopedTx{tx, h.prefix}) })
}

type scopedTx struct {
	store.Tx
	prefix string
}

func (t scopedTx) key(bucket, key string) string {
	if bucket == store.Containers {
		return t.prefix + key
	}
	return key
}

func (t scopedTx) Get(bucket, key string) []byte { return t.Tx.Get(bucket, t.key(bucket, key)) }
func (t scopedTx) Put(bucket, key string, v []byte) error {
	return t.Tx.Put(bucket, t.key(bucket, key), v)
}
func (t scopedTx) Delete(bucket, key string) error { return t.Tx.Delete(bucket, t.key(bucket, key)) }

func (t scopedTx) ForEach(bucket, prefix string, fn func(string, []byte) error) error {
	if bucket != store.Containers {
		return t.Tx.ForEach(bucket, prefix, fn)
	}
	return t.Tx.ForEach(bucket, t.prefix+prefix, func(k string, v []byte) error {
		return fn(strings.TrimPrefix(k, t.prefix), v)
	})
}
