package etcd

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Session is a lease kept alive in the background: the records put under
// it vanish about TTL after the process holding it stops renewing it (it
// died, or lost the cluster), or at once on Close.
type Session struct {
	e *Store
	s *concurrency.Session
}

// NewSession grants a lease of ttl (rounded up to whole seconds; etcd may
// grant more) and keeps it alive until Close or Done.
func (e *Store) NewSession(ttl time.Duration) (*Session, error) {
	ctx, cancel := e.call()
	defer cancel()
	secs := max(1, int(math.Ceil(ttl.Seconds())))
	var resp *clientv3.LeaseGrantResponse
	err := e.retry(ctx, func(ctx context.Context) (err error) {
		resp, err = e.cli.Grant(ctx, int64(secs))
		return err
	})
	if err != nil {
		return nil, e.explain(err)
	}
	s, err := concurrency.NewSession(e.cli, concurrency.WithLease(resp.ID), concurrency.WithTTL(secs))
	if err != nil {
		return nil, e.explain(err)
	}
	return &Session{e: e, s: s}, nil
}

// Put writes a record that lives as long as the session, outside any
// transaction. Transactions see it like any key, but its expiry, unlike a
// Delete, does not conflict with transactions that scanned its bucket: keep
// such records in buckets of their own (a host's presence), and let the
// state they stand for be removed by transactions.
func (s *Session) Put(bucket, key string, value []byte) error {
	if err := checkBucket(bucket); err != nil {
		return err
	}
	if key == "" {
		return fmt.Errorf("put %s/: empty key", bucket)
	}
	ctx, cancel := s.e.call()
	defer cancel()
	err := s.e.retry(ctx, func(ctx context.Context) error {
		_, err := s.e.cli.Put(ctx, s.e.bucketKey(bucket)+key, string(value), clientv3.WithLease(s.s.Lease()))
		return err
	})
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("etcd at %s: put %s/%s: the session has expired (the cluster was out of reach longer than its TTL); make a new session",
			s.e.eps, bucket, key)
	}
	if err != nil {
		return s.e.explain(err)
	}
	return nil
}

// Done is closed when the session ends: Close, or the lease lost (expired
// while the cluster was out of reach). Its records are then gone, or about
// to be; a host that wants to go on makes a new session and puts them again.
func (s *Session) Done() <-chan struct{} { return s.s.Done() }

// Close ends the session and deletes its records.
func (s *Session) Close() error {
	s.s.Orphan()
	ctx, cancel := s.e.call()
	defer cancel()
	err := s.e.retry(ctx, func(ctx context.Context) error {
		_, err := s.e.cli.Revoke(ctx, s.s.Lease())
		return err
	})
	if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return s.e.explain(err)
	}
	return nil
}

// Event is one change seen by Watch.
type Event struct {
	Key     string // within the bucket
	Value   []byte // the new value; nil when Deleted
	Deleted bool
	// Synced follows the listing: every key that existed has been reported
	// and changes follow. Reset comes when the history needed to go on was
	// compacted away: forget every key; a new listing, then Synced, follows.
	Synced, Reset bool
}

// Watch reports the keys of bucket that start with prefix, then every put
// and delete after that, in order, until ctx ends (the channel is then
// closed). The first listing happens before Watch returns, so an
// unreachable cluster is an error here; later the watch rides out member
// failures by itself, resuming where it stopped.
func (e *Store) Watch(ctx context.Context, bucket, prefix string) (<-chan Event, error) {
	if err := checkBucket(bucket); err != nil {
		return nil, err
	}
	bk := e.bucketKey(bucket)
	w := &watch{e: e, ctx: ctx, bk: bk, start: bk + prefix, out: make(chan Event, 64)}
	w.end = clientv3.GetPrefixRangeEnd(w.start)
	cctx, cancel := e.call()
	var first []Event
	err := e.retry(cctx, func(ctx context.Context) (err error) {
		first, err = w.list(ctx)
		return err
	})
	cancel()
	if err != nil {
		return nil, e.explain(err)
	}
	go w.run(first)
	return w.out, nil
}

type watch struct {
	e              *Store
	ctx            context.Context
	bk, start, end string
	out            chan Event
	rev            int64 // last revision reported
}

// list reads the range at one revision.
func (w *watch) list(ctx context.Context) ([]Event, error) {
	var evs []Event
	from, rev := w.start, int64(0)
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(w.end), clientv3.WithLimit(w.e.pageSize)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := w.e.cli.Get(ctx, from, opts...)
		if err != nil {
			return nil, err
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			evs = append(evs, Event{Key: strings.TrimPrefix(string(kv.Key), w.bk), Value: value(kv.Value)})
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	w.rev = rev
	return append(evs, Event{Synced: true}), nil
}

func (w *watch) send(evs ...Event) bool {
	for _, ev := range evs {
		select {
		case w.out <- ev:
		case <-w.ctx.Done():
			return false
		}
	}
	return true
}

func (w *watch) run(first []Event) {
	defer close(w.out)
	if !w.send(first...) {
		return
	}
	for attempt := 1; w.ctx.Err() == nil; attempt++ {
		// Without a leader a member's watch would stall silently; required,
		// it ends and is made again on a member that has one.
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(w.ctx))
		wch := w.e.cli.Watch(wctx, w.start, clientv3.WithRange(w.end), clientv3.WithRev(w.rev+1))
		for resp := range wch {
			if resp.CompactRevision != 0 {
				cancel()
				for attempt := 1; ; attempt++ {
					lctx, lcancel := context.WithTimeout(w.ctx, w.e.cfg.Timeout)
					evs, err := w.list(lctx)
					lcancel()
					if err == nil {
						if !w.send(append([]Event{{Reset: true}}, evs...)...) {
							return
						}
						break
					}
					if backoff(w.ctx, min(attempt, 10)) != nil {
						return
					}
				}
				break
			}
			if resp.Err() != nil {
				break
			}
			attempt = 1
			for _, ev := range resp.Events {
				e := Event{Key: strings.TrimPrefix(string(ev.Kv.Key), w.bk)}
				if ev.Type == clientv3.EventTypeDelete {
					e.Deleted = true
				} else {
					e.Value = value(ev.Kv.Value)
				}
				if !w.send(e) {
					cancel()
					return
				}
				w.rev = ev.Kv.ModRevision
			}
		}
		cancel()
		if backoff(w.ctx, min(attempt, 10)) != nil {
			return
		}
	}
}
