// Package engine is ctnet's one API: networks, endpoints and (later)
// containers, each operation a transaction over the store whose kernel side
// is undone if any step fails. Front ends translate to these calls and
// nothing else.
package engine

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ctnet/ctnet/internal/driver/bridge"
	"github.com/ctnet/ctnet/internal/firewall"
	"github.com/ctnet/ctnet/internal/loopback"
	"github.com/ctnet/ctnet/internal/store"
)

// Config says where an instance keeps its state.
type Config struct {
	Root    string // persistent: network definitions
	RunRoot string // runtime: endpoints, leases, namespace pins
	// Cgroup is the cgroup2 directory where the programs serving ports on
	// [::1] are attached; "" means the root of the cgroup2 hierarchy.
	Cgroup string
}

// Engine is one ctnet instance acting in the network namespace it was
// created in (the "host").
type Engine struct {
	cfg    Config
	store  store.Store
	hostNS netns.NsHandle
	host   *netlink.Handle
	fw     *firewall.Firewall
	lo     *loopback.Table
	bridge *bridge.Driver
	// Log receives one line per repair or notable step (reconcile output).
	Log func(format string, args ...any)
}

// New opens an instance. It does no kernel work until asked to.
func New(cfg Config) (*Engine, error) {
	st, err := store.OpenBolt(cfg.Root, cfg.RunRoot)
	if err != nil {
		return nil, err
	}
	hostNS, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("open host network namespace: %w", err)
	}
	h, err := netlink.NewHandleAt(hostNS, unix.NETLINK_ROUTE)
	if err != nil {
		hostNS.Close()
		return nil, fmt.Errorf("netlink: %w", err)
	}
	e := &Engine{cfg: cfg, store: st, hostNS: hostNS, host: h, Log: func(string, ...any) {}}
	e.bridge = bridge.New(h, func() (bridge.Firewall, error) { return e.firewall() })
	return e, nil
}

func (e *Engine) Close() error {
	if e.fw != nil {
		e.fw.Close()
	}
	e.host.Close()
	e.hostNS.Close()
	return e.store.Close()
}

func (e *Engine) firewall() (*firewall.Firewall, error) {
	if e.fw == nil {
		fw, err := firewall.New()
		if err != nil {
			return nil, fmt.Errorf("nftables: %w", err)
		}
		e.fw = fw
	}
	return e.fw, nil
}

// loopback returns the [::1] ports of this host namespace, or an error
// saying why ports cannot be served on [::1] here.
func (e *Engine) loopback() (*loopback.Table, error) {
	if e.lo == nil {
		dir := e.cfg.Cgroup
		if dir == "" {
			var err error
			if dir, err = loopback.DefaultCgroup(); err != nil {
				return nil, err
			}
		}
		cookie, err := loopback.Cookie()
		if err != nil {
			return nil, err
		}
		e.lo = loopback.New(dir, cookie)
	}
	return e.lo, nil
}

// RequireRoot is the check every mutating command makes before changing anything.
func RequireRoot() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("ctnet must run as root to change networks (it needs CAP_NET_ADMIN); try: sudo ctnet %s", strings.Join(os.Args[1:], " "))
	}
	return nil
}

func newID() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func getJSON[T any](tx store.Tx, bucket, key string) (*T, error) {
	b := tx.Get(bucket, key)
	if b == nil {
		return nil, nil
	}
	v := new(T)
	if err := json.Unmarshal(b, v); err != nil {
		return nil, fmt.Errorf("state %s/%s is corrupt: %w", bucket, key, err)
	}
	return v, nil
}

func putJSON(tx store.Tx, bucket, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Put(bucket, key, b)
}

func listJSON[T any](tx store.Tx, bucket, prefix string) ([]T, error) {
	var out []T
	err := tx.ForEach(bucket, prefix, func(k string, b []byte) error {
		var v T
		if err := json.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("state %s/%s is corrupt: %w", bucket, k, err)
		}
		out = append(out, v)
		return nil
	})
	return out, err
}
