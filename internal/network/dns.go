package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/ctnet/ctnet/internal/dns"
	"github.com/ctnet/ctnet/internal/portspec"
	"github.com/ctnet/ctnet/internal/resolvconf"
	"github.com/ctnet/ctnet/internal/store"
)

// The embedded resolver: one process per host (started with the front end's
// Resolver command), answering on 127.0.0.11:53 inside each namespace that
// asks for it (never on a host address) from a snapshot file that every
// change of a user network's attachments rewrites. It exits by itself when no
// namespace needs it. The default network keeps Docker's behaviour: no names,
// the host's resolvers.

// usesDNS reports whether an attachment's network has names.
func (s *Service) usesDNS(a *Attachment) bool { return s.d.DNS != "" && a.Network != DefaultNetwork }

// dnsSnapshot builds the resolver's view from the store: the names of the
// networks this host sees (of every host's attachments on a global network),
// served in this host's namespaces.
func (s *Service) dnsSnapshot(tx store.Tx) (dns.Snapshot, error) {
	snap := dns.Snapshot{Upstreams: resolvconf.Host().Nameservers()}
	nets, err := s.networks(tx, false)
	if err != nil {
		return snap, err
	}
	seen := map[string]bool{}
	for _, n := range nets {
		seen[n.ID] = true
		if n.Internal && n.Pending == "" {
			snap.Networks = append(snap.Networks, dns.Network{Name: n.Name, Internal: true, DNSForward: n.dnsForward()})
		}
	}
	atts, _, err := store.ListJSONLenient[Attachment](tx, store.Endpoints, "") // reconcile reports bad ones
	if err != nil {
		return snap, err
	}
	nsNets := map[string][]string{}
	nsUp := map[string][]string{}
	named := map[string]bool{} // the namespace is on a network with names
	var paths []string
	for _, a := range atts {
		if a.Pending == pendingAttach || !seen[a.NetworkID] {
			continue
		}
		if a.Network != DefaultNetwork && len(a.DNSNames) > 0 {
			r := dns.Record{Network: a.Network, Name: a.DNSNames[0], Aliases: a.DNSNames[1:]}
			for _, p := range a.Addrs() {
				r.Addrs = append(r.Addrs, p.Addr())
			}
			snap.Records = append(snap.Records, r)
		}
		if a.Resolver != nil && s.mine(&a) {
			if _, ok := nsNets[a.NetNS]; !ok {
				paths = append(paths, a.NetNS)
			}
			// Every network the namespace is on, the default one too:
			// whether it may forward depends on all of them.
			nsNets[a.NetNS] = append(nsNets[a.NetNS], a.Network)
			nsUp[a.NetNS] = a.Resolver.Upstreams
			named[a.NetNS] = named[a.NetNS] || a.Network != DefaultNetwork
		}
	}
	for _, p := range paths {
		if named[p] {
			snap.Namespaces = append(snap.Namespaces, dns.Namespace{Path: p, Networks: nsNets[p], Upstreams: nsUp[p]})
		}
	}
	return snap, nil
}

// publishDNS rewrites the resolver's snapshot and, when a namespace is about
// to be used, waits until the resolver serves it, so its first lookup works.
func (s *Service) publishDNS(wait bool) error {
	if s.d.DNS == "" {
		return nil
	}
	var snap dns.Snapshot
	if err := s.d.Store.View(func(tx store.Tx) error {
		var err error
		snap, err = s.dnsSnapshot(tx)
		return err
	}); err != nil {
		return err
	}
	if len(snap.Namespaces) == 0 && len(snap.Records) == 0 {
		if _, err := os.Stat(s.d.DNS); os.IsNotExist(err) {
			return nil // nothing to tell a resolver that never ran
		}
	}
	gen, err := dns.Publish(s.d.DNS, snap, s.startDNS)
	if err != nil {
		return fmt.Errorf("embedded DNS: %w", err)
	}
	if !wait || len(snap.Namespaces) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := dns.WaitApplied(ctx, s.d.DNS, gen)
	if err != nil {
		return fmt.Errorf("embedded DNS did not take the new containers in time (see %s.log): %w", s.d.DNS, err)
	}
	for ns, msg := range st.Errors {
		return fmt.Errorf("embedded DNS in %s: %s", ns, msg)
	}
	return nil
}

// dnsStale reports whether the resolver's snapshot differs from what the
// store says now (records or namespaces of attachments that are gone).
func (s *Service) dnsStale() (bool, error) {
	if s.d.DNS == "" {
		return false, nil
	}
	if _, err := os.Stat(s.d.DNS); errors.Is(err, os.ErrNotExist) {
		return false, nil // no resolver ever ran
	}
	old, err := dns.ReadSnapshot(s.d.DNS)
	if err != nil {
		return true, nil // unreadable: write it again
	}
	var now dns.Snapshot
	if err := s.d.Store.View(func(tx store.Tx) error {
		var err error
		now, err = s.dnsSnapshot(tx)
		return err
	}); err != nil {
		return false, err
	}
	return !sameRecords(old, now), nil
}

func sameRecords(a, b dns.Snapshot) bool {
	key := func(s dns.Snapshot) string {
		recs := make([]string, 0, len(s.Records)+len(s.Namespaces)+len(s.Networks))
		for _, r := range s.Records {
			b, _ := json.Marshal(r)
			recs = append(recs, string(b))
		}
		for _, n := range s.Namespaces {
			b, _ := json.Marshal(n)
			recs = append(recs, string(b))
		}
		for _, n := range s.Networks {
			b, _ := json.Marshal(n)
			recs = append(recs, string(b))
		}
		slices.Sort(recs)
		return strings.Join(recs, "\n")
	}
	return key(a) == key(b)
}

// ensureDNS starts the resolver again if it should run and does not (it was
// killed, say).
func (s *Service) ensureDNS() (bool, error) {
	if s.d.DNS == "" {
		return false, nil
	}
	if _, err := os.Stat(s.d.DNS); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return dns.Ensure(s.d.DNS, s.startDNS)
}

// startDNS launches the resolver process detached from this one.
func (s *Service) startDNS() error { return startResolver(s.d.DNS, s.d.Resolver) }

func startResolver(path string, c Command) error {
	if c.Path == "" {
		return errors.New("no command to start the embedded DNS with")
	}
	logf, err := os.OpenFile(path+".log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(c.Path, c.Args...)
	cmd.Args[0] = "ctnet-dns"
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the embedded DNS: %w", err)
	}
	go cmd.Process.Release()
	return nil
}

// monitorWatch is the work a container's monitor takes on while the
// container runs: keeping the resolver alive (its snapshot and how to start
// it) and holding the container's published host ports (HoldPorts).
type monitorWatch struct {
	DNS      string             `json:",omitempty"`
	Resolver Command            `json:",omitzero"`
	Hold     []portspec.Mapping `json:",omitempty"`
}

// MonitorWatch is what a container's monitor does while the container runs
// (see Watch): restart the resolver if dns and it dies, hold ports.
func (s *Service) MonitorWatch(dns bool, ports []portspec.Mapping) json.RawMessage {
	w := monitorWatch{Hold: ports}
	if dns && s.d.DNS != "" {
		w.DNS, w.Resolver = s.d.DNS, s.d.Resolver
	}
	if w.DNS == "" && len(w.Hold) == 0 {
		return nil
	}
	b, _ := json.Marshal(w)
	return b
}

// Watch does a monitor's work (MonitorWatch) until ctx ends: a killed
// resolver is back at once, not at the next reconcile, and no host process
// can take a published port from under the container.
func Watch(ctx context.Context, spec json.RawMessage) {
	var w monitorWatch
	if json.Unmarshal(spec, &w) != nil {
		return
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "monitor: "+format+"\n", args...)
	}
	release, err := HoldPorts(w.Hold)
	if err != nil {
		logf("%v", err)
	}
	defer release()
	if w.DNS == "" {
		<-ctx.Done()
		return
	}
	dns.Watch(ctx, w.DNS, func() error { return startResolver(w.DNS, w.Resolver) }, func(format string, args ...any) {
		logf("embedded DNS: "+format, args...)
	})
}

// ServeDNS runs the resolver until no namespace needs it.
func (s *Service) ServeDNS(ctx context.Context) error {
	err := dns.ServeFromFile(ctx, s.d.DNS, dns.Config{
		Upstreams: resolvconf.Host().Nameservers(),
		Logf:      func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) },
	})
	if err == dns.ErrServing {
		return nil // another resolver process has it
	}
	return err
}
