// Package dns is ctnet's embedded resolver. It answers on 127.0.0.11:53 (UDP
// and TCP) inside each container's network namespace: names of containers on
// the asking container's networks are answered locally (A, AAAA, PTR), every
// other query is forwarded to upstream resolvers from the namespace ctnet runs
// in (the host), so forwarding works even from a container with no route out.
//
// The listening sockets are created inside the container's namespace (setns
// on a locked thread), so nothing is ever bound on the host: a DNS server on
// the host's port 53 cannot collide with it. One Server holds listeners in
// any number of namespaces.
//
// One container cannot starve the others: each namespace has its own limits
// on TCP connections and on queries being forwarded, drawn from a shared
// pool only beyond a small guaranteed share, and what exceeds them is
// refused at once (REFUSED, as Docker's resolver answers when it is
// overloaded) without ever stalling another namespace's listener.
//
// A namespace whose networks are all internal is not forwarded from the host
// (CVE-2024-29018): as Docker does since that fix, only its own --dns
// servers are asked, from inside its namespace, where they answer only if
// they are on one of its networks; a network may opt in to forwarding.
//
// ctnet has no daemon, so the resolver runs as one process per run root
// (`ctnet dns serve`, calling ServeFromFile): the engine describes every
// network's containers and every namespace to serve in one JSON snapshot
// file, replaces it with Publish (which starts the process when none runs),
// and may WaitApplied before starting the container's program. The process
// follows the file through inotify and exits once no namespace is listed.
package dns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Addr is where the resolver listens inside every container, as Docker's.
var Addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 11}), 53)

// Record is one container's endpoint on one network.
type Record struct {
	Network string       `json:"network"`
	Name    string       `json:"name"`              // container name; PTR answers Name.Network
	Aliases []string     `json:"aliases,omitempty"` // --network-alias values, hostname, short id
	Addrs   []netip.Addr `json:"addrs"`
}

// Namespace is one container network namespace to serve.
type Namespace struct {
	Path string `json:"path"` // e.g. a netns pin or /proc/PID/ns/net
	// Networks are the networks whose names it may resolve. List every
	// network the namespace is on, the default one included (it simply has
	// no records): whether it may forward depends on all of them.
	Networks  []string `json:"networks"`
	Upstreams []string `json:"upstreams,omitempty"`  // its --dns; empty: the server's
	NoForward bool     `json:"no_forward,omitempty"` // never forward, whatever its networks
}

// Network is what the resolver must know of a network beyond its records.
// A network not described forwards as usual.
type Network struct {
	Name string `json:"name"`
	// Internal is --internal: the network has no way out, so the resolver
	// must not be one either. A namespace whose networks are all internal
	// gets local names, and other names only from its own --dns servers
	// asked from inside its namespace; never through the host.
	Internal bool `json:"internal,omitempty"`
	// DNSForward (ctnet.internal.dns_forward=true) lets an internal network
	// forward through the host anyway.
	DNSForward bool `json:"dns_forward,omitempty"`
}

// Config configures a Server.
type Config struct {
	// Upstreams are the resolvers for names not answered locally ("IP" or
	// "IP:port"), normally the host's resolv.conf nameservers.
	Upstreams []string
	// ForwardNS is the network namespace upstream sockets are made in. Empty
	// means where the process runs, which is what production wants; tests
	// point it at their sandbox host.
	ForwardNS string
	// Logf, when set, receives one line per listener problem, and at most
	// one line per kind of forwarding problem or refusal every few seconds.
	Logf func(format string, args ...any)

	// Limits; zero means the default given. A namespace always gets up to
	// its guaranteed share (8 queries, 4 connections), beyond it draws from
	// the pool shared by all namespaces, up to its own limit, so one
	// namespace at its limit leaves the pool to the others.

	// MaxQueriesPerNS bounds the queries one namespace has being forwarded
	// at a time (128). What exceeds it is answered REFUSED.
	MaxQueriesPerNS int
	// MaxQueries is the pool of queries being forwarded for all namespaces
	// beyond their guaranteed shares (1024, Docker's limit).
	MaxQueries int
	// MaxTCPPerNS bounds the TCP connections open from one namespace (32);
	// more are reset as soon as accepted.
	MaxTCPPerNS int
	// MaxTCP is the pool of TCP connections beyond the guaranteed shares
	// (1024).
	MaxTCP int
	// TCPIdleTimeout closes a TCP connection that has not sent a whole
	// query for this long (10s); it bounds a slow sender too, since the
	// query must be complete in time, not just started.
	TCPIdleTimeout time.Duration
	// TCPMaxQueries closes a TCP connection after this many queries (100)
	// and TCPMaxLife after this long (2m): clients reconnect, and a
	// connection never holds its slot forever.
	TCPMaxQueries int
	TCPMaxLife    time.Duration
}

// Guaranteed shares: what a namespace gets even when the shared pool is
// taken; they bound the process's sockets by the number of namespaces.
const (
	minQueriesPerNS = 8
	minTCPPerNS     = 4
)

func (c Config) withDefaults() Config {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.MaxQueriesPerNS, 128)
	def(&c.MaxQueries, 1024)
	def(&c.MaxTCPPerNS, 32)
	def(&c.MaxTCP, 1024)
	def(&c.TCPMaxQueries, 100)
	if c.TCPIdleTimeout <= 0 {
		c.TCPIdleTimeout = 10 * time.Second
	}
	if c.TCPMaxLife <= 0 {
		c.TCPMaxLife = 2 * time.Minute
	}
	return c
}

// Server is the resolver. Its zero value is not usable; call New.
type Server struct {
	cfg      Config
	ctx      context.Context
	stop     context.CancelFunc
	index    atomic.Pointer[index]
	networks atomic.Pointer[map[string]Network]

	// exchange sends one query upstream, from the namespace from (nil: the
	// forwarding namespace), and returns a reply the caller owns; the fuzz
	// target replaces it.
	exchange func(ctx context.Context, from *origin, upstreams []string, query []byte, tcp bool) ([]byte, error)

	// fwdID is the forwarding namespace; servesFwd counts listeners in it,
	// where 127.0.0.11 is this resolver and must never be an upstream.
	fwdID     nsID
	servesFwd atomic.Int32

	lim       limits
	rare      rareLog
	mu        sync.Mutex
	upstreams []string
	nss       map[string]*listener
}

// New returns a Server with no records and no listeners.
func New(cfg Config) *Server {
	cfg = cfg.withDefaults()
	ctx, stop := context.WithCancel(context.Background())
	s := &Server{cfg: cfg, ctx: ctx, stop: stop, nss: map[string]*listener{}}
	s.exchange = s.forward
	s.upstreams = slices.Clone(cfg.Upstreams)
	s.index.Store(buildIndex(nil))
	s.SetNetworks(nil)
	fwd := cfg.ForwardNS
	if fwd == "" {
		fwd = "/proc/self/ns/net"
	}
	s.fwdID, _ = statNS(fwd)
	s.lim.init(cfg, openFileLimit())
	return s
}

// openFileLimit is the process's limit on open files (Go raises the soft
// limit to the hard one at start).
func openFileLimit() int {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil || r.Cur > 1<<30 {
		return 1 << 20
	}
	return int(r.Cur)
}

func (s *Server) logf(format string, args ...any) {
	if s.cfg.Logf != nil {
		s.cfg.Logf(format, args...)
	}
}

// Update replaces every record at once; queries in flight see either the old
// or the new set.
func (s *Server) Update(records []Record) {
	s.index.Store(buildIndex(records))
}

// SetNetworks replaces what the server knows of networks beyond their
// records: which are internal, and which of those forward anyway.
func (s *Server) SetNetworks(networks []Network) {
	m := map[string]Network{}
	for _, n := range networks {
		m[n.Name] = n
	}
	s.networks.Store(&m)
}

// internalOnly reports whether every network of ns is internal without
// having opted in to forwarding. A namespace with no network is not.
func (s *Server) internalOnly(ns *Namespace) bool {
	if len(ns.Networks) == 0 {
		return false
	}
	nets := *s.networks.Load()
	for _, name := range ns.Networks {
		if n, ok := nets[name]; !ok || !n.Internal || n.DNSForward {
			return false
		}
	}
	return true
}

func (s *Server) defaultUpstreams() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.upstreams
}

// served is one namespace's configuration as a query sees it.
type served struct {
	Namespace
	id nsID
}

// listener is the resolver's presence in one namespace.
type listener struct {
	id     nsID
	conf   atomic.Pointer[served]
	use    usage // guarded by Server.lim.mu
	udp    *net.UDPConn
	tcp    *net.TCPListener
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	closed bool
	tcps   map[net.Conn]struct{}
}

// Listen starts answering in the namespace ns.Path. Listening again on a
// path already served only updates its networks and upstreams, unless the
// path now leads to another namespace (a reused PID), which is then served
// afresh.
func (s *Server) Listen(ns Namespace) error {
	if ns.Path == "" {
		return errors.New("dns: namespace path is empty")
	}
	if err := s.ctx.Err(); err != nil {
		return fmt.Errorf("dns: listen in %s: server closed", ns.Path)
	}
	id, err := statNS(ns.Path)
	if err != nil {
		return fmt.Errorf("dns: listen: %w", err)
	}
	ns = cleanNamespace(ns)

	s.mu.Lock()
	old := s.nss[ns.Path]
	if old != nil && old.id == id {
		old.conf.Store(&served{Namespace: ns, id: id})
		s.mu.Unlock()
		return nil
	}
	delete(s.nss, ns.Path)
	s.mu.Unlock()
	if old != nil {
		s.closeListener(old)
	}

	l := &listener{id: id, tcps: map[net.Conn]struct{}{}}
	l.ctx, l.cancel = context.WithCancel(s.ctx)
	l.conf.Store(&served{Namespace: ns, id: id})
	err = inNS(ns.Path, func() error {
		var err error
		if l.udp, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(Addr)); err != nil {
			return err
		}
		if l.tcp, err = net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(Addr)); err != nil {
			l.udp.Close()
			return err
		}
		return nil
	})
	if err != nil {
		l.cancel()
		return fmt.Errorf("dns: listen on %s in netns %s: %w", Addr, ns.Path, err)
	}
	// The namespace may have been replaced while we entered it.
	if now, err := statNS(ns.Path); err != nil || now != id {
		l.close()
		return fmt.Errorf("dns: netns %s changed while listening", ns.Path)
	}

	s.mu.Lock()
	if s.ctx.Err() != nil || s.nss[ns.Path] != nil {
		s.mu.Unlock()
		l.close()
		if s.ctx.Err() != nil {
			return fmt.Errorf("dns: listen in %s: server closed", ns.Path)
		}
		return fmt.Errorf("dns: listen in %s: raced with another Listen", ns.Path)
	}
	s.nss[ns.Path] = l
	if id == s.fwdID {
		s.servesFwd.Add(1)
	}
	s.mu.Unlock()

	l.wg.Add(2)
	go func() { defer l.wg.Done(); s.serveUDP(l) }()
	go func() { defer l.wg.Done(); s.serveTCP(l) }()
	return nil
}

// Forget stops answering in the namespace at path and releases its sockets
// (which otherwise keep a dead container's namespace alive). Forgetting a
// path that is not served is not an error.
func (s *Server) Forget(path string) error {
	s.mu.Lock()
	l := s.nss[path]
	delete(s.nss, path)
	s.mu.Unlock()
	if l != nil {
		s.closeListener(l)
	}
	return nil
}

// Namespaces lists the paths served, sorted.
func (s *Server) Namespaces() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.nss))
	for p := range s.nss {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// Prune forgets every namespace whose path is gone or now leads to another
// namespace, and returns their paths.
func (s *Server) Prune() []string {
	s.mu.Lock()
	var gone []string
	for p, l := range s.nss {
		if id, err := statNS(p); err != nil || id != l.id {
			gone = append(gone, p)
		}
	}
	s.mu.Unlock()
	sort.Strings(gone)
	for _, p := range gone {
		s.Forget(p)
	}
	return gone
}

// apply makes the server match snap: its records, its default upstreams and
// exactly its namespaces. It tries every namespace and returns the errors of
// those it could not serve; the others are served regardless. Snapshot
// upstreams, when given, replace the ones of Config.
func (s *Server) apply(snap Snapshot) map[string]error {
	s.Update(snap.Records)
	s.SetNetworks(snap.Networks)
	s.mu.Lock()
	s.upstreams = s.cfg.Upstreams
	if len(snap.Upstreams) > 0 {
		s.upstreams = slices.Clone(snap.Upstreams)
	}
	s.mu.Unlock()
	want := map[string]bool{}
	errs := map[string]error{}
	for _, ns := range snap.Namespaces {
		want[ns.Path] = true
		if err := s.Listen(ns); err != nil {
			errs[ns.Path] = err
		}
	}
	for _, p := range s.Namespaces() {
		if !want[p] {
			s.Forget(p)
		}
	}
	return errs
}

// Close stops every listener and waits for their goroutines.
func (s *Server) Close() error {
	s.stop()
	s.mu.Lock()
	ls := s.nss
	s.nss = map[string]*listener{}
	s.mu.Unlock()
	for _, l := range ls {
		s.closeListener(l)
	}
	return nil
}

// closeListener closes a listener that was registered in s.nss.
func (s *Server) closeListener(l *listener) {
	if l.id == s.fwdID {
		s.servesFwd.Add(-1)
	}
	l.close()
}

func (l *listener) close() {
	l.cancel()
	l.udp.Close()
	l.tcp.Close()
	l.mu.Lock()
	l.closed = true
	for c := range l.tcps {
		c.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
}

// track records an accepted connection so close can end it; false means the
// listener is already closed.
func (l *listener) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.tcps[c] = struct{}{}
	return true
}

func (l *listener) untrack(c net.Conn) {
	l.mu.Lock()
	delete(l.tcps, c)
	l.mu.Unlock()
	c.Close()
}

func cleanNamespace(ns Namespace) Namespace {
	ns.Networks = slices.Clone(ns.Networks)
	ns.Upstreams = slices.Clone(ns.Upstreams)
	return ns
}
