package dns

import (
	"fmt"
	"sync"
	"time"
)

// kind is a resource a namespace holds: a query being forwarded (a socket
// and a goroutine until the upstream answers or times out) or an open TCP
// connection (a socket and a goroutine until it closes).
type kind int

const (
	queries kind = iota
	conns
)

func (k kind) String() string {
	if k == conns {
		return "TCP connections"
	}
	return "queries being forwarded"
}

// usage is what one namespace holds of each kind.
type usage [2]int

// pool is one kind's limits: a namespace always gets up to floor, beyond it
// draws from shared (held by all namespaces together), up to perNS.
type pool struct {
	perNS, floor, shared int
	fromShared           int // units above the floors, over all namespaces
}

// limits decides, in O(1) under one mutex, whether a namespace may take one
// more unit. A refusal never waits, so a namespace at its limit delays no
// one: its queries are refused while the others' are served.
type limits struct {
	mu    sync.Mutex
	pools [2]pool
	// open bounds every unit of every namespace together, whatever the
	// floors add up to, to half the process's file descriptors: the other
	// half stays for listeners (so a new container can always be served),
	// the snapshot and the runtime.
	open, maxOpen int
}

func (l *limits) init(cfg Config, nofile int) {
	l.maxOpen = max(nofile/2, 16)
	l.pools[queries] = pool{perNS: cfg.MaxQueriesPerNS, floor: min(minQueriesPerNS, cfg.MaxQueriesPerNS), shared: cfg.MaxQueries}
	l.pools[conns] = pool{perNS: cfg.MaxTCPPerNS, floor: min(minTCPPerNS, cfg.MaxTCPPerNS), shared: cfg.MaxTCP}
}

// take gives one unit of k to the namespace whose usage is u, or reports
// that it is over a limit.
func (l *limits) take(u *usage, k kind) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := &l.pools[k]
	held := u[k]
	switch {
	case held >= p.perNS, l.open >= l.maxOpen:
		return false
	case held >= p.floor:
		if p.fromShared >= p.shared {
			return false
		}
		p.fromShared++
	}
	u[k]++
	l.open++
	return true
}

// give returns one unit of k taken by take.
func (l *limits) give(u *usage, k kind) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := &l.pools[k]
	u[k]--
	l.open--
	if u[k] >= p.floor {
		p.fromShared--
	}
}

// rareLog writes at most one line per key every rareEvery, followed by how
// many it left out: a flood of slow names must not turn into a flood of log
// lines filling the run root's tmpfs.
type rareLog struct {
	mu   sync.Mutex
	last map[string]time.Time
	left map[string]int
}

const rareEvery = 10 * time.Second

// logRare logs one line about key (a fixed set of kinds, so the maps stay
// small) unless one was logged less than rareEvery ago.
func (s *Server) logRare(key, format string, args ...any) {
	if s.cfg.Logf == nil {
		return
	}
	r := &s.rare
	r.mu.Lock()
	if r.last == nil {
		r.last, r.left = map[string]time.Time{}, map[string]int{}
	}
	now := time.Now()
	if now.Sub(r.last[key]) < rareEvery {
		r.left[key]++
		r.mu.Unlock()
		return
	}
	left := r.left[key]
	r.last[key], r.left[key] = now, 0
	r.mu.Unlock()
	msg := fmt.Sprintf(format, args...)
	if left > 0 {
		msg += fmt.Sprintf(" (and %d more like it in the last %s)", left, rareEvery)
	}
	s.cfg.Logf("%s", msg)
}
