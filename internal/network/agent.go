package network

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ctnet/ctnet/internal/driver"
	"github.com/ctnet/ctnet/internal/store"
	"github.com/ctnet/ctnet/internal/store/etcd"
)

// The overlay agent: one process per host (`ctnet system overlay-agent`,
// started by the first attachment to a global network, as the resolver is by
// the first container with names), gone some seconds after the host's last
// such attachment. It
//   - keeps the host's record (hostsBucket) alive under a lease of TTL;
//   - programs, from watches of the store, what the drivers need of the other
//     hosts' endpoints (FDB and neighbour entries: driver.Peered), and the
//     resolver's records of them;
//   - frees the endpoints, addresses and ports of hosts whose record expired
//     (they are kept aside under Meta "reaped/", so that a host that was only
//     cut off takes back what nobody took meanwhile);
//   - tidies the kernel (a reconcile) when the host's endpoints on a global
//     network go or a global network is removed.
// It runs under a POSIX record lock on <run-root>/overlay.lock, which a
// prober sees without taking (F_GETLK), and which dies with the process.

const (
	reapedPrefix = "reaped/"
	// agentIdle is how long the agent stays without endpoints to serve, so
	// that a burst of `run --rm` does not start one per container.
	agentIdle = 2 * time.Second
	// agentResync is how often the agent programs the kernel again whatever
	// happened (an entry deleted behind its back).
	agentResync = 30 * time.Second
	agentStart  = 15 * time.Second
	reapBatch   = 16 // endpoints per transaction: within etcd's --max-txn-ops
)

// AgentReadyEnv names the descriptor a starting agent reports on ("ready",
// "busy" or its error, one line).
const AgentReadyEnv = "CTNET_AGENT_READY"

func (c *Cluster) lockPath() string  { return filepath.Join(c.RunRoot, "overlay.lock") }
func (c *Cluster) startPath() string { return filepath.Join(c.RunRoot, "overlay.start") }

// LogPath is the agent's log.
func (c *Cluster) LogPath() string { return filepath.Join(c.RunRoot, "overlay.log") }

// agentHere is set in the agent process itself, which must never open its
// own lock file (closing any descriptor of it drops a POSIX lock).
var agentHere struct {
	sync.Mutex
	on bool
}

func isAgent() bool {
	agentHere.Lock()
	defer agentHere.Unlock()
	return agentHere.on
}

// agentAlive reports whether a process holds the agent lock.
func (c *Cluster) agentAlive() (bool, error) {
	if isAgent() {
		return true, nil
	}
	f, err := os.OpenFile(c.lockPath(), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return false, fmt.Errorf("overlay agent lock: %w", err)
	}
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart}
	if err := unix.FcntlFlock(f.Fd(), unix.F_GETLK, &lk); err != nil {
		return false, fmt.Errorf("overlay agent lock: %w", err)
	}
	return lk.Type != unix.F_UNLCK, nil
}

// ensureAgent starts this host's agent unless it runs with the host's
// record in the store, and returns once both hold.
func (s *Service) ensureAgent(ctx context.Context) error {
	cl := s.d.Cluster
	if isAgent() {
		return nil
	}
	start, err := os.OpenFile(cl.startPath(), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("overlay agent: %w", err)
	}
	defer start.Close()
	if err := flockWait(start); err != nil {
		return fmt.Errorf("overlay agent: %w", err)
	}
	deadline := time.Now().Add(agentStart)
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		alive, err := cl.agentAlive()
		if err != nil {
			return err
		}
		if !alive {
			if err := s.startAgent(); err != nil {
				return err
			}
			continue
		}
		var registered bool
		if err := s.d.Store.View(func(tx store.Tx) error {
			registered = tx.Get(hostsBucket, s.d.Host) != nil
			return nil
		}); err != nil {
			return err
		}
		if registered {
			return nil
		}
		// Running, not registered: it is leaving, or has lost its lease.
		if time.Now().After(deadline) {
			return fmt.Errorf("this host's overlay agent runs but is not registered in the store after %s; see %s", agentStart, cl.LogPath())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

func flockWait(f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			return err
		}
	}
}

// startAgent launches the agent detached from this process and waits for
// its first line.
func (s *Service) startAgent() error {
	cl := s.d.Cluster
	if cl.Agent.Path == "" {
		return errors.New("no command to start the overlay agent with")
	}
	logf, err := os.OpenFile(cl.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("overlay agent: %w", err)
	}
	defer logf.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("overlay agent: %w", err)
	}
	defer r.Close()
	cmd := exec.Command(cl.Agent.Path, cl.Agent.Args...)
	cmd.Args[0] = "ctnet-overlay"
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{w}
	// A crash injected into this command is not the agent's.
	cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "CTNET_CRASH_AT=") }), AgentReadyEnv+"=3")
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return fmt.Errorf("start the overlay agent: %w", err)
	}
	go cmd.Process.Release()
	r.SetReadDeadline(time.Now().Add(agentStart))
	line, err := bufio.NewReader(r).ReadString('\n')
	switch line = strings.TrimSpace(line); {
	case line == "ready" || line == "busy":
		return nil
	case line != "":
		return errors.New(line) // the agent's own one-line error
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("the overlay agent did not start within %s; see %s", agentStart, cl.LogPath())
	default:
		return fmt.Errorf("the overlay agent exited at once; see %s", cl.LogPath())
	}
}

// agentRunning is reconcile's part: a host with endpoints on global
// networks has a running agent (one killed is started again).
func (s *Service) agentRunning(ctx context.Context, logf driver.Logf) error {
	cl := s.d.Cluster
	if cl == nil || isAgent() {
		return nil
	}
	var need bool
	if err := s.d.Store.View(func(tx store.Tx) error {
		var err error
		need, err = s.needsAgent(tx)
		return err
	}); err != nil || !need {
		return err
	}
	alive, err := cl.agentAlive()
	if err != nil || alive {
		return err
	}
	if err := s.ensureAgent(ctx); err != nil {
		return fmt.Errorf("overlay agent: %w", err)
	}
	logf("overlay agent: started it again (it was not running)")
	return nil
}

// needsAgent reports whether this host has attachments on global networks
// (being made or removed too), or some set aside while it was away.
func (s *Service) needsAgent(tx store.Tx) (bool, error) {
	n, err := s.ownGlobal(tx)
	if err != nil || n > 0 {
		return n > 0, err
	}
	any := false
	err = tx.ForEach(store.Meta, reapedPrefix+s.own(""), func(string, []byte) error { any = true; return nil })
	return any, err
}

// ownGlobal counts this host's attachments on global networks.
func (s *Service) ownGlobal(tx store.Tx) (int, error) {
	globals, err := s.globalIDs(tx)
	if err != nil {
		return 0, err
	}
	atts, err := s.ownAttachments(tx, "")
	n := 0
	for _, a := range atts {
		if globals[a.NetworkID] {
			n++
		}
	}
	return n, err
}

func (s *Service) globalIDs(tx store.Tx) (map[string]bool, error) {
	ids := map[string]bool{}
	nets, err := s.networks(tx, false)
	for _, n := range nets {
		if s.global(&n) {
			ids[n.ID] = true
		}
	}
	return ids, err
}

// agent is the state of the agent process.
type agent struct {
	s    *Service
	cl   *Cluster
	sess *etcd.Session
	logf func(string, ...any)

	lastOwn  int
	lastNets map[string]bool
	idle     time.Time // since when the host has had nothing to serve
	// addrs are the hosts' addresses last seen: a host whose record is
	// missing a moment (it is registering again) keeps its entries until
	// its endpoints are freed.
	addrs map[string]netip.Addr
}

// ServeOverlay runs this host's overlay agent until the host has had no
// attachment on a global network for a while, or ctx ends.
func (s *Service) ServeOverlay(ctx context.Context) error {
	cl := s.d.Cluster
	if cl == nil {
		return errors.New("the overlay agent needs a cluster store: run it with --store etcd://…")
	}
	ready := readyFile()
	tell := func(msg string) {
		if ready != nil {
			fmt.Fprintln(ready, msg)
			ready.Close()
			ready = nil
		}
	}
	defer tell("the overlay agent ended before it was ready")
	lock, err := takeAgentLock(cl.lockPath())
	if errors.Is(err, errBusy) {
		tell("busy")
		return nil
	}
	if err != nil {
		tell(oneLine(err))
		return err
	}
	defer releaseAgentLock(lock)
	a := &agent{s: s, cl: cl, lastNets: map[string]bool{}, addrs: map[string]netip.Addr{},
		logf: func(format string, args ...any) {
			fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().UTC().Format(time.RFC3339Nano), fmt.Sprintf(format, args...))
		}}
	a.logf("overlay agent of host %s (%s, %s) starting", s.d.Host, cl.Name, cl.Addr)
	if err := a.register(); err != nil {
		tell(oneLine(err))
		return err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var changes []<-chan etcd.Event
	for _, b := range []string{hostsBucket, store.Endpoints, store.Networks} {
		ch, err := cl.Live.Watch(wctx, b, "")
		if err != nil {
			a.sess.Close()
			tell(oneLine(err))
			return err
		}
		changes = append(changes, ch)
	}
	links := a.watchLinks(wctx)
	tell("ready")
	a.idle = time.Now()
	a.sync(ctx)
	return a.loop(ctx, changes, links)
}

// AgentFailed tells the process starting the agent why it could not start
// (when the agent ends before it could serve at all).
func AgentFailed(err error) {
	if f := readyFile(); f != nil {
		fmt.Fprintln(f, oneLine(err))
		f.Close()
	}
}

func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }

func readyFile() *os.File {
	fd, err := strconv.Atoi(os.Getenv(AgentReadyEnv))
	os.Unsetenv(AgentReadyEnv) // not for the processes this one starts
	if err != nil || fd < 3 {
		return nil
	}
	return os.NewFile(uintptr(fd), "ready")
}

var errBusy = errors.New("another overlay agent runs")

func takeAgentLock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("overlay agent lock: %w", err)
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart}
	if err := unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk); err != nil {
		f.Close()
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
			return nil, errBusy
		}
		return nil, fmt.Errorf("overlay agent lock: %w", err)
	}
	agentHere.Lock()
	agentHere.on = true
	agentHere.Unlock()
	return f, nil
}

func releaseAgentLock(f *os.File) {
	agentHere.Lock()
	defer agentHere.Unlock()
	f.Close()
	agentHere.on = false
}

// register puts this host's record under a new lease, then takes back what
// was set aside while it was away.
func (a *agent) register() error {
	sess, err := a.cl.Live.NewSession(a.cl.TTL)
	if err != nil {
		return err
	}
	if err := a.putRecord(sess); err != nil {
		sess.Close()
		return err
	}
	a.sess = sess
	return a.s.restore(a.logf)
}

func (a *agent) putRecord(sess *etcd.Session) error {
	b, err := json.Marshal(HostRecord{ID: a.s.d.Host, Name: a.cl.Name, Addr: a.cl.Addr})
	if err != nil {
		return err
	}
	return sess.Put(hostsBucket, a.s.d.Host, b)
}

// watchLinks tells of new tunnel devices, which want their entries at once.
func (a *agent) watchLinks(ctx context.Context) <-chan struct{} {
	out := make(chan struct{}, 1)
	ns, err := netns.Get()
	if err != nil {
		a.logf("cannot watch links (entries are programmed on store changes and every %s): %v", agentResync, err)
		return out
	}
	updates := make(chan netlink.LinkUpdate, 64)
	err = netlink.LinkSubscribeWithOptions(updates, ctx.Done(), netlink.LinkSubscribeOptions{
		Namespace: &ns,
		ErrorCallback: func(error) {
			select {
			case out <- struct{}{}:
			default:
			}
		},
	})
	ns.Close()
	if err != nil {
		a.logf("cannot watch links (entries are programmed on store changes and every %s): %v", agentResync, err)
		return out
	}
	go func() {
		for u := range updates {
			if u.Header.Type == unix.RTM_NEWLINK && u.Link != nil && u.Link.Type() == "vxlan" {
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out
}

func (a *agent) loop(ctx context.Context, changes []<-chan etcd.Event, links <-chan struct{}) error {
	var due <-chan time.Time // a sync is pending
	soon := func() {
		if due == nil {
			due = time.After(5 * time.Millisecond) // gather a burst of changes
		}
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			a.sess.Close()
			return nil
		case _, ok := <-changes[0]:
			if !ok {
				return nil
			}
			soon()
		case _, ok := <-changes[1]:
			if !ok {
				return nil
			}
			soon()
		case _, ok := <-changes[2]:
			if !ok {
				return nil
			}
			soon()
		case <-links:
			soon()
		case <-a.sess.Done():
			a.logf("lost this host's lease (the store was out of reach for longer than %s?); registering again", a.cl.TTL)
			a.reregister(ctx)
			soon()
		case <-due:
			due = nil
			a.sync(ctx)
			last = time.Now()
		case <-tick.C:
			if time.Since(last) >= agentResync {
				soon()
			}
			if done, err := a.maybeLeave(ctx); err != nil {
				a.logf("%v", err)
			} else if done {
				return nil
			}
		}
	}
}

// reregister makes a new lease and puts the record again, until it works.
func (a *agent) reregister(ctx context.Context) {
	for attempt := 1; ; attempt++ {
		if err := a.register(); err == nil {
			a.logf("registered again")
			return
		} else {
			a.logf("register again: %v", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(min(attempt, 10)) * 100 * time.Millisecond):
		}
	}
}

// view is what one sync reads.
type view struct {
	nets  []Network
	atts  []Attachment
	hosts map[string]HostRecord
}

func (s *Service) readView() (view, error) {
	var v view
	err := s.d.Store.View(func(tx store.Tx) error {
		var err error
		if v.nets, err = s.networks(tx, false); err != nil {
			return err
		}
		if v.atts, err = store.ListJSON[Attachment](tx, store.Endpoints, ""); err != nil {
			return err
		}
		v.hosts = map[string]HostRecord{}
		return tx.ForEach(hostsBucket, "", func(k string, b []byte) error {
			var r HostRecord
			if json.Unmarshal(b, &r) == nil {
				v.hosts[k] = r
			}
			return nil
		})
	})
	return v, err
}

// sync programs the peers of every global network, frees what hosts that
// are gone held, and tidies when this host's part shrank. A store out of
// reach leaves the kernel as it is.
func (a *agent) sync(ctx context.Context) {
	s := a.s
	v, err := s.readView()
	if err != nil {
		a.logf("read the store: %v", err)
		return
	}
	if _, ok := v.hosts[s.d.Host]; !ok {
		// Deleted behind our back (the lease is alive): put it back.
		if err := a.putRecord(a.sess); err != nil {
			a.logf("put this host's record again: %v", err)
		}
	}
	for id, h := range v.hosts {
		a.addrs[id] = h.Addr
	}
	nets := map[string]bool{}
	own := 0
	dead := map[string]bool{}
	for i := range v.nets {
		n := &v.nets[i]
		if !s.global(n) || n.Pending == pendingCreate {
			continue
		}
		nets[n.ID] = true
		d, err := s.d.Drivers.Get(n.Driver)
		if err != nil {
			continue
		}
		var peers []driver.Peer
		for _, at := range v.atts {
			if at.NetworkID != n.ID {
				continue
			}
			if s.mine(&at) {
				own++
				continue
			}
			addr, ok := v.hosts[at.Host].Addr, true
			if !addr.IsValid() {
				dead[at.Host] = true
				if addr, ok = a.addrs[at.Host]; !ok {
					continue
				}
			}
			p := driver.Peer{MAC: net.HardwareAddr(at.MAC), Host: addr}
			for _, x := range at.Addrs() {
				p.Addrs = append(p.Addrs, x.Addr())
			}
			peers = append(peers, p)
		}
		if pd, ok := d.(driver.Peered); ok {
			if err := pd.SyncPeers(ctx, n.driverNet(), peers, a.logf); err != nil {
				a.logf("network %q: %v", n.Name, err)
			}
		}
	}
	for _, h := range slices.Sorted(mapKeys(dead)) {
		if err := s.reap(h, a.logf); err != nil {
			a.logf("free what host %s held: %v", h, err)
		}
	}
	gone := false
	for id := range a.lastNets {
		gone = gone || !nets[id]
	}
	if own < a.lastOwn || gone {
		// Endpoints left, or a network was removed: its kernel side may
		// stay behind (a dropped namespace's veth goes in the background).
		if _, err := s.reconcile(ctx, a.logf); err != nil {
			a.logf("reconcile: %v", err)
		}
	}
	a.lastOwn, a.lastNets = own, nets
	if own > 0 {
		a.idle = time.Time{}
	} else if a.idle.IsZero() {
		a.idle = time.Now()
	}
	if stale, err := s.dnsStale(); err == nil && stale {
		if err := s.publishDNS(false); err != nil {
			a.logf("%v", err)
		}
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// maybeLeave ends the agent when the host has had nothing to serve for
// agentIdle: in one transaction that finds no attachment of this host on a
// global network and deletes its record (an attachment being planned reads
// the record, so one of the two transactions fails and is tried again).
func (a *agent) maybeLeave(ctx context.Context) (bool, error) {
	if a.idle.IsZero() || time.Since(a.idle) < agentIdle {
		return false, nil
	}
	s := a.s
	left := false
	err := s.d.Store.Update(func(tx store.Tx) error {
		left = false
		need, err := s.needsAgent(tx)
		if err != nil || need {
			return err
		}
		left = true
		return tx.Delete(hostsBucket, s.d.Host)
	})
	if err != nil {
		return false, fmt.Errorf("leave the cluster: %w", err)
	}
	if !left {
		a.idle = time.Time{}
		return false, nil
	}
	if _, err := s.reconcile(ctx, a.logf); err != nil {
		a.logf("reconcile: %v", err)
	}
	a.sess.Close()
	a.logf("no endpoint on a global network left on this host: the agent ends")
	return true, nil
}

// reap frees what a host whose record expired held: its attachments to
// global networks with their addresses and host ports. Each is kept under
// Meta "reaped/<key>" for the host to take back if it returns.
func (s *Service) reap(host string, logf driver.Logf) error {
	for {
		var moved []Attachment
		err := s.d.Store.Update(func(tx store.Tx) error {
			moved = nil
			if tx.Get(hostsBucket, host) != nil {
				return nil // back already
			}
			globals, err := s.globalIDs(tx)
			if err != nil {
				return err
			}
			atts, err := store.ListJSON[Attachment](tx, store.Endpoints, hostKey(host, ""))
			if err != nil {
				return err
			}
			for _, at := range atts {
				if !globals[at.NetworkID] {
					continue // local to that host: its own reconcile's
				}
				if err := store.PutJSON(tx, store.Meta, reapedPrefix+at.key(), at); err != nil {
					return err
				}
				if err := forget(tx, &at); err != nil {
					return err
				}
				if moved = append(moved, at); len(moved) == reapBatch {
					break
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, at := range moved {
			logf("freed %s of %s on network %q: host %s is gone (its lease expired)", addrOf(&at), at.Name, at.Network, host)
		}
		if len(moved) < reapBatch {
			return nil
		}
	}
}

// restore takes back, after this host was away, the attachments the others
// set aside: each whose addresses and host ports nobody took meanwhile.
// Those that clash are forgotten (reconcile then removes their interfaces).
func (s *Service) restore(logf driver.Logf) error {
	var marks []string
	if err := s.d.Store.View(func(tx store.Tx) error {
		return tx.ForEach(store.Meta, reapedPrefix+s.own(""), func(k string, _ []byte) error {
			marks = append(marks, k)
			return nil
		})
	}); err != nil {
		return err
	}
	for _, mark := range marks {
		var line string
		err := s.d.Store.Update(func(tx store.Tx) error {
			line = ""
			at, err := store.GetJSON[Attachment](tx, store.Meta, mark)
			if err != nil || at == nil {
				return err
			}
			if err := tx.Delete(store.Meta, mark); err != nil {
				return err
			}
			if n, _ := s.findNetwork(tx, at.NetworkID); n == nil {
				line = fmt.Sprintf("forgot %s of %s: its network %q is gone", addrOf(at), at.Name, at.Network)
				return nil
			}
			if s.d.Kernel.NamespaceKey(at.NetNS) != at.NetNSKey {
				line = fmt.Sprintf("forgot %s of %s on network %q: its namespace is gone (a reboot?)", addrOf(at), at.Name, at.Network)
				return nil
			}
			for _, p := range at.Addrs() {
				if v := tx.Get(store.Leases, leaseKey(at.NetworkID, p.Addr())); v != nil && string(v) != at.key() {
					line = fmt.Sprintf("lost %s of %s on network %q: it was given to another endpoint while this host was away", p.Addr(), at.Name, at.Network)
					return nil
				}
			}
			for _, m := range at.Ports {
				if v := tx.Get(store.Ports, portKey(at.Host, m)); v != nil && string(v) != at.key() {
					line = fmt.Sprintf("lost %s of %s on network %q: its host port %s was published by another endpoint while this host was away", addrOf(at), at.Name, at.Network, m)
					return nil
				}
			}
			for _, p := range at.Addrs() {
				if err := tx.Put(store.Leases, leaseKey(at.NetworkID, p.Addr()), []byte(at.key())); err != nil {
					return err
				}
			}
			for _, m := range at.Ports {
				if err := tx.Put(store.Ports, portKey(at.Host, m), []byte(at.key())); err != nil {
					return err
				}
			}
			line = fmt.Sprintf("took back %s of %s on network %q: nobody took it while this host was away", addrOf(at), at.Name, at.Network)
			return store.PutJSON(tx, store.Endpoints, at.key(), at)
		})
		if err != nil {
			return err
		}
		if line != "" {
			logf("%s", line)
		}
	}
	return nil
}
