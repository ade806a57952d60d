package network

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/ctnet/ctnet/internal/crash"
	"github.com/ctnet/ctnet/internal/driver"
	"github.com/ctnet/ctnet/internal/errdefs"
	"github.com/ctnet/ctnet/internal/netx"
	"github.com/ctnet/ctnet/internal/store"
	"github.com/ctnet/ctnet/internal/store/etcd"
)

// A cluster is hosts that share one etcd store, as Docker's hosts did with
// --cluster-store before Swarm, and flannel's do: no orchestrator, no
// daemon of ctnet's own besides one small agent per host while the host has
// endpoints on global networks. The agent keeps the host's record alive
// under a lease (so a host that disappears is noticed), programs what this
// host's kernel must know of the other hosts' endpoints, from watches of the
// store, and frees what hosts that disappeared held.

// hostsBucket holds one record per live host, under its agent's lease.
const hostsBucket = "hosts"

// HostRecord is what the cluster knows of a live host.
type HostRecord struct {
	ID   string
	Name string     // for people: its hostname
	Addr netip.Addr // where the other hosts reach it (its VTEP)
}

// Live is what a store shared by hosts offers besides transactions (the
// etcd backend): records that vanish with their writer, and watches.
type Live interface {
	NewSession(ttl time.Duration) (*etcd.Session, error)
	Watch(ctx context.Context, bucket, prefix string) (<-chan etcd.Event, error)
}

// Cluster is how this host takes part in a cluster.
type Cluster struct {
	Name string     // for people (default: the hostname)
	Addr netip.Addr // where the other hosts reach this one
	// TTL is how long the host's record outlives an agent that stopped
	// renewing it (killed, or cut off from the store).
	TTL time.Duration
	// Agent starts the overlay agent (`ctnet system overlay-agent` with the
	// front end's global options).
	Agent Command
	// RunRoot is where the agent's lock and log live.
	RunRoot string
	Live    Live
}

// ClusterOptions are what a front end says about this host in a cluster.
type ClusterOptions struct {
	// Advertise is the address, or the interface whose address, other
	// hosts reach this one at; "" is the source address of this host's
	// route to the first etcd endpoint.
	Advertise string
	HostName  string        // default: the hostname
	HostTTL   time.Duration // default DefaultHostTTL
	Agent     Command
}

// DefaultHostTTL is how long a host that stopped answering keeps its
// endpoints before the others free them.
const DefaultHostTTL = 20 * time.Second

// openStore opens the store cfg names: bolt for one host, or etcd with this
// host's id (kept in <root>/host-id) and cluster facts.
func openStore(cfg Config, k *hostKernel) (store.Store, string, *Cluster, error) {
	if cfg.Etcd == nil {
		st, err := store.OpenBolt(cfg.Root, cfg.RunRoot)
		return st, "", nil, err
	}
	id, err := hostID(cfg.Root)
	if err != nil {
		return nil, "", nil, err
	}
	addr, err := advertise(k.host, cfg.Advertise, cfg.Etcd.Endpoints)
	if err != nil {
		return nil, "", nil, err
	}
	st, err := etcd.Open(*cfg.Etcd)
	if err != nil {
		return nil, "", nil, err
	}
	if err := os.MkdirAll(cfg.RunRoot, 0o700); err != nil {
		st.Close()
		return nil, "", nil, fmt.Errorf("state directory %s: %w", cfg.RunRoot, err)
	}
	cl := &Cluster{Name: cfg.HostName, Addr: addr, TTL: cfg.HostTTL, Agent: cfg.Agent, RunRoot: cfg.RunRoot, Live: st}
	if cl.Name == "" {
		cl.Name, _ = os.Hostname()
	}
	if cl.TTL <= 0 {
		cl.TTL = DefaultHostTTL
	}
	return st, id, cl, nil
}

// hostID is this host's id in a cluster, made once and kept under the
// persistent root (as Docker's engine-id): a hostname may be shared.
func hostID(root string) (string, error) {
	path := filepath.Join(root, "host-id")
	if b, err := os.ReadFile(path); err == nil {
		id := strings.TrimSpace(string(b))
		if len(id) == 16 && strings.Trim(id, "0123456789abcdef") == "" {
			return id, nil
		}
		return "", fmt.Errorf("host id in %s is %q, not 16 hex digits; remove the file to get a new id (the host's endpoints in the store are then another host's)", path, id)
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("host id: %w", err)
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return "", fmt.Errorf("state directory %s: %w", root, err)
	}
	b := make([]byte, 8)
	rand.Read(b)
	id := hex.EncodeToString(b)
	// Two first commands at once must agree: the first link wins.
	tmp := fmt.Sprintf("%s.%d", path, os.Getpid())
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("host id: %w", err)
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("host id: %w", err)
	}
	return hostID(root)
}

// advertise finds the address other hosts reach this one at.
func advertise(h *netx.Handle, want string, endpoints []string) (netip.Addr, error) {
	local := func(a netip.Addr) (bool, error) {
		addrs, err := netx.Addrs(h, nil)
		if err != nil {
			return false, err
		}
		for _, x := range addrs {
			if ip, ok := netip.AddrFromSlice(x.IP); ok && ip.Unmap() == a {
				return true, nil
			}
		}
		return false, nil
	}
	if want != "" {
		if a, err := netip.ParseAddr(want); err == nil {
			if ok, err := local(a); err != nil || ok {
				return a, err
			}
			return netip.Addr{}, errdefs.Field("advertise-addr", fmt.Sprintf("%s %s is not an address of this host; give one of its addresses or interfaces", errdefs.FieldToken, want))
		}
		l, err := netx.LinkOrNil(h, want)
		if err != nil {
			return netip.Addr{}, err
		}
		if l == nil {
			return netip.Addr{}, errdefs.Field("advertise-addr", fmt.Sprintf("%s %s is neither an address nor an interface of this host", errdefs.FieldToken, want))
		}
		addrs, err := netx.Addrs(h, l)
		if err != nil {
			return netip.Addr{}, err
		}
		var v6 netip.Addr
		for _, x := range addrs {
			ip, _ := netip.AddrFromSlice(x.IP)
			switch ip = ip.Unmap(); {
			case ip.Is4() && x.Scope == int(netlink.SCOPE_UNIVERSE):
				return ip, nil
			case ip.Is6() && !ip.IsLinkLocalUnicast() && !v6.IsValid():
				v6 = ip
			}
		}
		if v6.IsValid() {
			return v6, nil
		}
		return netip.Addr{}, errdefs.Field("advertise-addr", fmt.Sprintf("%s %s: the interface has no address other hosts could reach", errdefs.FieldToken, want))
	}
	host, _, err := net.SplitHostPort(endpoints[0])
	if err != nil {
		host = endpoints[0]
	}
	ip := net.ParseIP(host)
	if ip == nil {
		ips, err := net.LookupIP(host)
		if err != nil || len(ips) == 0 {
			return netip.Addr{}, errdefs.Field("advertise-addr", fmt.Sprintf("cannot tell which address other hosts reach this one at (etcd endpoint %s does not resolve: %v); give it with %s", host, err, errdefs.FieldToken))
		}
		ip = ips[0]
	}
	routes, err := h.RouteGet(ip)
	if err != nil || len(routes) == 0 || routes[0].Src == nil {
		return netip.Addr{}, errdefs.Field("advertise-addr", fmt.Sprintf("cannot tell which address other hosts reach this one at (no route to etcd endpoint %s: %v); give it with %s", host, err, errdefs.FieldToken))
	}
	a, _ := netip.AddrFromSlice(routes[0].Src)
	a = a.Unmap()
	if a.IsLoopback() {
		return netip.Addr{}, errdefs.Field("advertise-addr", fmt.Sprintf("etcd at %s is on this host's loopback: other hosts cannot reach this one there; give the address they can with %s", host, errdefs.FieldToken))
	}
	return a, nil
}

// tellDrivers tells the drivers that want to know which host they run on.
func (s *Service) tellDrivers() {
	if s.d.Cluster == nil {
		return
	}
	for _, name := range s.d.Drivers.Names() {
		d, _ := s.d.Drivers.Get(name)
		if h, ok := d.(driver.HostAware); ok {
			h.SetHost(driver.Host{ID: s.d.Host, Addr: s.d.Cluster.Addr})
		}
	}
}

// rivals are the networks a new network must not clash with (in name,
// subnet, device, claims): what this host sees, and for a global network
// every host's.
func (s *Service) rivals(tx store.Tx, n *Network) ([]Network, error) {
	return s.networks(tx, s.global(n))
}

// exists is the error for a name taken, saying by which host's network when
// it is another host's.
func (s *Service) exists(what string, n *Network) error {
	if n.Host == "" || n.Host == s.d.Host {
		return exists(what, n)
	}
	return &errdefs.Error{Kind: errdefs.Conflict, Field: "name", Msg: fmt.Sprintf("%s: the name is taken by a local network of host %s (id %s) and a global network would hide it there; pick another name",
		what, n.Host, ShortID(n.ID))}
}

// claimed refuses a claim of d's (a VNI) that network o holds already.
func claimed(what string, d driver.Driver, dn driver.Network, o *Network) error {
	c, ok := d.(driver.Claimer)
	if !ok || o.Driver != d.Name() {
		return nil
	}
	theirs := map[string]bool{}
	for _, x := range c.Claims(o.driverNet()) {
		theirs[x] = true
	}
	for _, x := range c.Claims(dn) {
		if theirs[x] {
			return &errdefs.Error{Kind: errdefs.Conflict, Msg: fmt.Sprintf("%s: %s is already used by network %q; pick another or retry", what, x, o.Name)}
		}
	}
	return nil
}

// userOf names an attachment for a "network in use" message.
func (s *Service) userOf(tx store.Tx, a *Attachment) string {
	if s.mine(a) {
		return a.Name
	}
	who := a.Host
	if r, _ := store.GetJSON[HostRecord](tx, hostsBucket, a.Host); r != nil {
		who = fmt.Sprintf("%s (%s)", r.Name, r.Addr)
	}
	return fmt.Sprintf("%s on host %s", a.Name, who)
}

// addHosts fills in the hosts of a global network's attachments: those
// known alive, and by id alone those whose record is gone.
func (s *Service) addHosts(tx store.Tx, info *NetworkInfo) error {
	if !s.global(&info.Network) {
		return nil
	}
	info.Hosts = map[string]HostRecord{}
	for _, a := range info.Attachments {
		if _, ok := info.Hosts[a.Host]; ok {
			continue
		}
		r, err := store.GetJSON[HostRecord](tx, hostsBucket, a.Host)
		if err != nil {
			return err
		}
		if r == nil {
			r = &HostRecord{ID: a.Host}
		}
		info.Hosts[a.Host] = *r
	}
	return nil
}

// outcomeUnknown reports whether a commit may or may not have been made:
// the operation is then left for reconcile, never undone on a guess.
func outcomeUnknown(err error) bool { return errors.Is(err, etcd.ErrOutcomeUnknown) }

// errAgentGone says this host's record vanished between the agent check and
// the transaction (its agent was leaving the cluster): try again.
var errAgentGone = errors.New("this host's overlay agent left the cluster meanwhile")

// joinCluster makes sure, before an attachment to a global network is
// planned, that this host's agent runs and its record is in the store.
func (s *Service) joinCluster(ctx context.Context, n *Network) error {
	if !s.global(n) {
		return nil
	}
	if s.d.Cluster == nil {
		// Tests give hosts without agents; their records are put by hand.
		return nil
	}
	if err := s.ensureAgent(ctx); err != nil {
		return err
	}
	crash.Point("overlay-agent")
	return nil
}

// inCluster refuses, inside the transaction that plans an attachment to a
// global network, when this host's record is missing: every endpoint on a
// global network is made while its host's record lives, so an endpoint
// without one is a host that disappeared, whose addresses others may free.
func (s *Service) inCluster(tx store.Tx, n *Network) error {
	if !s.global(n) || tx.Get(hostsBucket, s.d.Host) != nil {
		return nil
	}
	return errAgentGone
}
