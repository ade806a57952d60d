package engine

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/ctnet/ctnet/internal/dns"
	"github.com/ctnet/ctnet/internal/store"
)

// The embedded resolver: one `ctnet system dns-serve` process per instance,
// started on demand, answering on 127.0.0.11:53 inside each container's own
// namespace (never on a host address) from a snapshot file that every
// change of a user network's containers rewrites. It exits by itself when no
// container needs it. The default network keeps Docker's behaviour: no names,
// the host's resolvers.

func (e *Engine) dnsPath() string { return filepath.Join(e.cfg.RunRoot, "dns.json") }

// usesDNS reports whether containers on n get the embedded resolver.
func usesDNS(n *Network) bool { return n.Name != DefaultNetwork }

// dnsSnapshot builds the resolver's view from the store.
func dnsSnapshot(tx store.Tx) (dns.Snapshot, error) {
	snap := dns.Snapshot{Upstreams: hostResolvers()}
	nets, err := listJSON[Network](tx, store.Networks, "")
	if err != nil {
		return snap, err
	}
	byID := map[string]*Network{}
	for i := range nets {
		byID[nets[i].ID] = &nets[i]
	}
	eps, err := listJSON[Endpoint](tx, store.Endpoints, "")
	if err != nil {
		return snap, err
	}
	cs, err := listJSON[Container](tx, store.Containers, "")
	if err != nil {
		return snap, err
	}
	ctrs := map[string]*Container{}
	for i := range cs {
		ctrs[cs[i].ID] = &cs[i]
	}
	nsNets := map[string][]string{}
	nsCtr := map[string]*Container{}
	for _, ep := range eps {
		n := byID[ep.NetworkID]
		if n == nil || !usesDNS(n) {
			continue
		}
		r := dns.Record{Network: n.Name, Aliases: ep.Aliases}
		for _, a := range []string{ep.IPv4, ep.IPv6} {
			if p, err := netip.ParsePrefix(a); err == nil {
				r.Addrs = append(r.Addrs, p.Addr())
			}
		}
		if c := ctrs[ep.Container]; c != nil {
			r.Name = c.Name
			r.Aliases = append(append([]string{}, r.Aliases...), ShortID(c.ID))
			if c.Hostname != c.Name && c.Hostname != ShortID(c.ID) {
				r.Aliases = append(r.Aliases, c.Hostname)
			}
			nsNets[c.NetNS] = append(nsNets[c.NetNS], n.Name)
			nsCtr[c.NetNS] = c
		} else if len(ep.Aliases) > 0 {
			r.Name, r.Aliases = ep.Aliases[0], ep.Aliases[1:] // a bare namespace is known by its aliases
		} else {
			continue
		}
		snap.Records = append(snap.Records, r)
	}
	for path, networks := range nsNets {
		snap.Namespaces = append(snap.Namespaces, dns.Namespace{Path: path, Networks: networks, Upstreams: nsCtr[path].DNS})
	}
	return snap, nil
}

// publishDNS rewrites the resolver's snapshot and, when a container is about
// to start, waits until the resolver serves it, so its first lookup works.
func (e *Engine) publishDNS(wait bool) error {
	var snap dns.Snapshot
	if err := e.store.View(func(tx store.Tx) error {
		var err error
		snap, err = dnsSnapshot(tx)
		return err
	}); err != nil {
		return err
	}
	if len(snap.Namespaces) == 0 && len(snap.Records) == 0 {
		if _, err := os.Stat(e.dnsPath()); os.IsNotExist(err) {
			return nil // nothing to tell a resolver that never ran
		}
	}
	gen, err := dns.Publish(e.dnsPath(), snap, e.startDNS)
	if err != nil {
		return fmt.Errorf("embedded DNS: %w", err)
	}
	if !wait || len(snap.Namespaces) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := dns.WaitApplied(ctx, e.dnsPath(), gen)
	if err != nil {
		return fmt.Errorf("embedded DNS did not take the new containers in time (see %s.log): %w", e.dnsPath(), err)
	}
	for ns, msg := range st.Errors {
		return fmt.Errorf("embedded DNS in %s: %s", ns, msg)
	}
	return nil
}

// dnsStale reports whether the resolver's snapshot differs from what the
// store says now (records or namespaces of endpoints that are gone).
func (e *Engine) dnsStale() (bool, error) {
	old, err := dns.ReadSnapshot(e.dnsPath())
	if os.IsNotExist(err) || errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return true, nil // unreadable: write it again
	}
	var now dns.Snapshot
	if err := e.store.View(func(tx store.Tx) error {
		var err error
		now, err = dnsSnapshot(tx)
		return err
	}); err != nil {
		return false, err
	}
	return !sameRecords(old, now), nil
}

func sameRecords(a, b dns.Snapshot) bool {
	key := func(s dns.Snapshot) string {
		recs := make([]string, 0, len(s.Records)+len(s.Namespaces))
		for _, r := range s.Records {
			b, _ := json.Marshal(r)
			recs = append(recs, string(b))
		}
		for _, n := range s.Namespaces {
			b, _ := json.Marshal(n)
			recs = append(recs, string(b))
		}
		sort.Strings(recs)
		return strings.Join(recs, "\n")
	}
	return key(a) == key(b)
}

// startDNS launches the resolver process detached from this command.
func (e *Engine) startDNS() error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(e.dnsPath()+".log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(self, "--root", e.cfg.Root, "--run-root", e.cfg.RunRoot, "system", "dns-serve")
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

// ServeDNS runs the resolver until no container needs it.
func (e *Engine) ServeDNS(ctx context.Context) error {
	err := dns.ServeFromFile(ctx, e.dnsPath(), dns.Config{
		Upstreams: hostResolvers(),
		Logf:      func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) },
	})
	if err == dns.ErrServing {
		return nil // another resolver process has it
	}
	return err
}

// hostResolvers are the host's nameservers, loopback ones included: the
// resolver forwards from the host's namespace, where they work.
func hostResolvers() []string {
	b, _ := os.ReadFile("/etc/resolv.conf")
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "nameserver" {
			out = append(out, f[1])
		}
	}
	return out
}
