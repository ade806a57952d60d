package etcd

import (
	"github.com/ctnet/ctnet/internal/store"

	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// Errors of the etcd backend, for errors.Is; their messages say more.
var (
	// ErrUnavailable: the cluster did not answer in time (no quorum, no
	// member reachable). Nothing was changed unless ErrOutcomeUnknown is
	// also reported.
	ErrUnavailable = errors.New("store unavailable")
	// ErrOutcomeUnknown: a commit was sent and its answer lost, and the
	// cluster could not be asked in time whether it was applied.
	ErrOutcomeUnknown = errors.New("commit outcome unknown")
	// ErrConflict: other writers kept changing what Update read, through
	// every attempt.
	ErrConflict = errors.New("transaction conflict")
)

// Store is a Store over an etcd cluster shared by several hosts. Keys are
// <prefix><bucket>/<key>. Update is an optimistic, serialisable
// transaction: it records what its function read (keys with their
// revisions, absent keys, the ranges ForEach scanned), buffers the writes and
// commits them in one etcd Txn that compares everything read; on conflict it
// runs the function again on a fresh snapshot. The function may therefore
// run several times and must only compute and call store.Tx (no kernel changes, no
// channel sends); values it sets outside are those of its last run.
type Store struct {
	cfg      Config
	cli      *clientv3.Client
	cc       clientv3.Config
	eps      string // endpoints, for messages
	id       string // this client, in the names of its commit markers
	seq      atomic.Uint64
	pageSize int64

	mu       sync.Mutex
	lease    clientv3.LeaseID // under which commit markers live
	leaseUse time.Time        // use it for new markers until then
}

// Reserved keys live under <prefix>~, which no bucket name may start with.
const reserved = "~"

// maxCompares keeps a commit under etcd's default --max-txn-ops (128), with
// room for the commit marker.
const maxCompares = 120

// Open prepares a client; it connects on first use.
func Open(cfg Config) (*Store, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, fmt.Errorf("etcd: no endpoint; want %s", etcdURLForm)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultEtcdPrefix
	}
	if err := checkPrefix(cfg.Prefix); err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 50
	}
	if (cfg.Username == "") != (cfg.Password == "") {
		return nil, fmt.Errorf("etcd: --user and --password go together")
	}
	tc, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	cc := clientv3.Config{
		Endpoints:   cfg.Endpoints,
		TLS:         tc,
		Username:    cfg.Username,
		Password:    cfg.Password,
		DialTimeout: cfg.Timeout,
		// A member that vanishes without closing its connections (a cut
		// link) is noticed by keepalives; 10s is gRPC's floor.
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		Logger:               zap.NewNop(),
	}
	if cfg.DialContext != nil {
		cc.DialOptions = append(cc.DialOptions, grpc.WithContextDialer(cfg.DialContext))
	}
	e := &Store{cfg: cfg, cc: cc, eps: strings.Join(cfg.Endpoints, ","), pageSize: 500}
	cli, err := clientv3.New(cc)
	if err != nil {
		// Only a login talks to the cluster here.
		if definite(err) {
			return nil, e.explain(err)
		}
		return nil, &unavailable{fmt.Sprintf("etcd at %s: login of user %q got no answer within %s (%s); check that etcd runs there and the endpoints and TLS options are right",
			e.eps, cfg.Username, cfg.Timeout, shortError(err)), err}
	}
	e.cli = cli
	var id [8]byte
	rand.Read(id[:])
	e.id = hex.EncodeToString(id[:])
	return e, nil
}

// Close ends the client. Sessions made from it end too.
func (e *Store) Close() error { return e.cli.Close() }

// Endpoints are the members this client talks to.
func (e *Store) Endpoints() []string { return slices.Clone(e.cfg.Endpoints) }

// call gives one call its deadline, keeping back enough time to find out
// what went wrong if the cluster does not answer.
func (e *Store) call() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.Timeout-2*e.probeTime())
	return clientv3.WithRequireLeader(ctx), cancel
}

func (e *Store) probeTime() time.Duration { return min(500*time.Millisecond, e.cfg.Timeout/10) }

// rpc bounds one request of a call: one stuck on a member that has lost its
// leader, or sent to a member that died, is abandoned (and its outcome
// learnt) while the call still has time to try again.
func (e *Store) rpc(call context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(call, max(e.cfg.Timeout/4, 500*time.Millisecond))
}

func (e *Store) bucketKey(bucket string) string { return e.cfg.Prefix + bucket + "/" }
func (e *Store) deleted(bucket string) string   { return e.cfg.Prefix + reserved + "del/" + bucket }

func checkBucket(bucket string) error {
	if bucket == "" || strings.Contains(bucket, "/") || strings.HasPrefix(bucket, reserved) {
		return fmt.Errorf("bucket %q: a bucket name is not empty, has no / and does not start with %s", bucket, reserved)
	}
	return nil
}

// View runs fn once, on one snapshot. A read that fails is tried again
// within Timeout; a snapshot compacted away under a long View is an error.
func (e *Store) View(fn func(store.Tx) error) error {
	ctx, cancel := e.call()
	defer cancel()
	t := e.newTx(ctx, false)
	err := fn(t)
	if t.err != nil {
		return e.explain(t.err)
	}
	return err
}

// Update runs fn on a snapshot and commits its writes if nothing fn read
// has changed since; otherwise it runs fn again on a new snapshot, up to
// MaxAttempts times (then ErrConflict). Requests refused without effect (no
// leader during an election) or cut short (a member died) are tried again,
// and a commit whose answer was lost is resolved, all within Timeout (then
// ErrUnavailable). fn's own error ends Update at once with nothing written.
func (e *Store) Update(fn func(store.Tx) error) error {
	ctx, cancel := e.call()
	defer cancel()
	var transient error // the last refusal, if the last attempt ended in one
	for conflicts, attempt := 0, 1; ; attempt++ {
		t := e.newTx(ctx, true)
		err := fn(t)
		switch {
		case t.err != nil:
			// The function saw a failed read as a missing key: whatever it
			// decided from that is void. Only a snapshot compacted away is
			// worth another run; other reads were retried already.
			if !compacted(t.err) {
				return e.explain(t.err)
			}
			transient = t.err
		case err != nil:
			return err
		default:
			done, err := t.commit()
			switch {
			case err == nil && done:
				return nil
			case err == nil:
				if conflicts++; conflicts >= e.cfg.MaxAttempts {
					return fmt.Errorf("etcd at %s: %w: other writers changed what the transaction read, %d times; retry",
						e.eps, ErrConflict, conflicts)
				}
				transient = nil
			case retryable(ctx, err):
				transient = err
			default:
				return e.txnError(err, t.ncmps, t.nops)
			}
		}
		if err := backoff(ctx, min(attempt, 10)); err != nil {
			if transient == nil {
				return fmt.Errorf("etcd at %s: %w: other writers changed what the transaction read, %d times in %s; retry",
					e.eps, ErrConflict, conflicts, e.cfg.Timeout)
			}
			return e.explain(transient)
		}
	}
}

// backoff waits a random time that grows with the attempt, so that
// contenders spread out instead of colliding again.
func backoff(ctx context.Context, attempt int) error {
	d := time.Duration(min(200, math.Pow(2, float64(attempt)))) * time.Millisecond
	select {
	case <-time.After(time.Duration(mrand.Int64N(int64(d)) + 1)):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func compacted(err error) bool { return errors.Is(err, rpctypes.ErrCompacted) }

// etcdTx reads at one revision (the first read's), so a function sees one
// consistent snapshot, and remembers what it read for the commit's compares.
type etcdTx struct {
	e     *Store
	ctx   context.Context
	write bool
	rev   int64
	reads map[string]map[string]int64 // bucket -> key -> mod revision (0: absent)
	cache map[string][]byte           // key -> value read (nil: absent)
	spans map[string][]span           // bucket -> ranges ForEach read
	// writes are full keys; a nil value deletes.
	writes  map[string][]byte
	deletes map[string]bool // buckets with deletes
	err     error           // first failed read: the transaction is void

	ncmps, nops int // of a refused commit
}

type span struct{ from, to string }

func (e *Store) newTx(ctx context.Context, write bool) *etcdTx {
	return &etcdTx{e: e, ctx: ctx, write: write, reads: map[string]map[string]int64{},
		cache: map[string][]byte{}, spans: map[string][]span{}, writes: map[string][]byte{}, deletes: map[string]bool{}}
}

func (t *etcdTx) get(key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	if t.rev != 0 {
		opts = append(opts, clientv3.WithRev(t.rev))
	}
	// A read at a fixed revision is repeatable: a failed one is tried again
	// (during an election, say) without running the function again.
	var resp *clientv3.GetResponse
	err := t.e.retry(t.ctx, func(ctx context.Context) (err error) {
		resp, err = t.e.cli.Get(ctx, key, opts...)
		return err
	})
	if err != nil {
		t.err = err
		return nil, err
	}
	if t.rev == 0 {
		t.rev = resp.Header.Revision
	}
	return resp, nil
}

func value(v []byte) []byte {
	if v == nil {
		return []byte{}
	}
	return bytes.Clone(v)
}

func (t *etcdTx) Get(bucket, key string) []byte {
	if t.err != nil || checkBucket(bucket) != nil {
		return nil
	}
	k := t.e.bucketKey(bucket) + key
	if v, ok := t.writes[k]; ok {
		return bytes.Clone(v)
	}
	if v, ok := t.cache[k]; ok {
		return bytes.Clone(v)
	}
	resp, err := t.get(k)
	if err != nil {
		return nil
	}
	var rev int64
	var v []byte
	if len(resp.Kvs) > 0 {
		rev, v = resp.Kvs[0].ModRevision, value(resp.Kvs[0].Value)
	}
	if t.reads[bucket] == nil {
		t.reads[bucket] = map[string]int64{}
	}
	t.reads[bucket][k], t.cache[k] = rev, v
	return bytes.Clone(v)
}

func (t *etcdTx) change(op, bucket, key string, v []byte) error {
	if t.err != nil {
		return fmt.Errorf("%s %s/%s: %w", op, bucket, key, t.err)
	}
	if !t.write {
		return fmt.Errorf("%s %s/%s: read-only transaction", op, bucket, key)
	}
	if err := checkBucket(bucket); err != nil {
		return fmt.Errorf("%s %s/%s: %w", op, bucket, key, err)
	}
	if key == "" {
		return fmt.Errorf("%s %s/: empty key", op, bucket)
	}
	t.writes[t.e.bucketKey(bucket)+key] = v
	return nil
}

func (t *etcdTx) Put(bucket, key string, v []byte) error {
	return t.change("put", bucket, key, value(v))
}

func (t *etcdTx) Delete(bucket, key string) error {
	err := t.change("delete", bucket, key, nil)
	if err == nil {
		t.deletes[bucket] = true
	}
	return err
}

// ForEach pages through the range at the snapshot's revision and merges the
// transaction's own writes into it.
func (t *etcdTx) ForEach(bucket, prefix string, fn func(string, []byte) error) error {
	if t.err != nil {
		return t.err
	}
	if err := checkBucket(bucket); err != nil {
		return err
	}
	bk := t.e.bucketKey(bucket)
	start := bk + prefix
	end := clientv3.GetPrefixRangeEnd(start)
	var mine []string
	for k := range t.writes {
		if k >= start && k < end {
			mine = append(mine, k)
		}
	}
	slices.Sort(mine)
	covered := end
	defer func() { t.spans[bucket] = append(t.spans[bucket], span{start, covered}) }()
	visit := func(k string, stored []byte) error {
		v, own := t.writes[k]
		if !own {
			v = stored
		}
		if v == nil {
			return nil
		}
		if err := fn(strings.TrimPrefix(k, bk), bytes.Clone(v)); err != nil {
			covered = k + "\x00" // the caller stopped here: it read no further
			return err
		}
		return nil
	}
	from := start
	for {
		resp, err := t.get(from, clientv3.WithRange(end), clientv3.WithLimit(t.e.pageSize))
		if err != nil {
			return err
		}
		for _, kv := range resp.Kvs {
			k := string(kv.Key)
			for len(mine) > 0 && mine[0] < k {
				if err := visit(mine[0], nil); err != nil {
					return err
				}
				mine = mine[1:]
			}
			if len(mine) > 0 && mine[0] == k {
				mine = mine[1:]
			}
			if err := visit(k, value(kv.Value)); err != nil {
				return err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	for _, k := range mine {
		if err := visit(k, nil); err != nil {
			return err
		}
	}
	return nil
}

// compares says "nothing this transaction read has changed since its
// snapshot". A key read is compared to its mod revision (0: still absent); a
// range scanned has no key modified after the snapshot, and its bucket's
// delete marker has not moved (deleted keys leave no revision behind). When
// that is too many compares for one Txn, each bucket's reads are widened to
// one range from its first to its last key read: more conflicts, never
// fewer.
func (t *etcdTx) compares() []clientv3.Cmp {
	var exact, wide []clientv3.Cmp
	next := t.rev + 1
	for _, b := range slices.Sorted(mapsKeys(t.reads, t.spans)) {
		lo, hi := "", ""
		widen := func(from, to string) {
			if lo == "" || from < lo {
				lo = from
			}
			if to > hi {
				hi = to
			}
		}
		for k, rev := range t.reads[b] {
			exact = append(exact, clientv3.Compare(clientv3.ModRevision(k), "=", rev))
			widen(k, k+"\x00")
		}
		for _, s := range t.spans[b] {
			exact = append(exact, clientv3.Compare(clientv3.ModRevision(s.from), "<", next).WithRange(s.to))
			widen(s.from, s.to)
		}
		marker := clientv3.Compare(clientv3.ModRevision(t.e.deleted(b)), "<", next)
		if len(t.spans[b]) > 0 {
			exact = append(exact, marker)
		}
		wide = append(wide, clientv3.Compare(clientv3.ModRevision(lo), "<", next).WithRange(hi), marker)
	}
	if len(exact) <= maxCompares {
		return exact
	}
	return wide
}

func mapsKeys[A, B any](a map[string]A, b map[string]B) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range a {
			if !yield(k) {
				return
			}
		}
		for k := range b {
			if _, dup := a[k]; !dup && !yield(k) {
				return
			}
		}
	}
}

// commit applies the writes if nothing read has changed; false means a
// conflict (run the function again). Every commit also creates a marker key
// of its own, so that when its answer is lost the outcome can be learnt
// instead of guessed: the marker exists iff the commit was applied.
func (t *etcdTx) commit() (bool, error) {
	if len(t.writes) == 0 {
		return true, nil // a snapshot read needs no commit
	}
	lease, err := t.e.markerLease(t.ctx)
	if err != nil {
		return false, err
	}
	marker := fmt.Sprintf("%s%stxn/%s/%d", t.e.cfg.Prefix, reserved, t.e.id, t.e.seq.Add(1))
	cmps := append(t.compares(), clientv3.Compare(clientv3.CreateRevision(marker), "=", 0))
	var ops []clientv3.Op
	for _, k := range slices.Sorted(mapKeys(t.writes)) {
		if v := t.writes[k]; v == nil {
			ops = append(ops, clientv3.OpDelete(k))
		} else {
			ops = append(ops, clientv3.OpPut(k, string(v)))
		}
	}
	for _, b := range slices.Sorted(mapKeys(t.deletes)) {
		ops = append(ops, clientv3.OpPut(t.e.deleted(b), ""))
	}
	ops = append(ops, clientv3.OpPut(marker, "", clientv3.WithLease(lease)))
	ctx, cancel := t.e.rpc(t.ctx)
	defer cancel()
	resp, err := t.e.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
	switch {
	case err == nil:
		return resp.Succeeded, nil
	case errors.Is(err, rpctypes.ErrLeaseNotFound):
		t.e.dropLease(lease)
		return false, nil
	case definite(err):
		t.ncmps, t.nops = len(cmps), len(ops)
		return false, err
	}
	// The search for the outcome may use the time kept back after the
	// call's deadline, which may be what cut the commit short.
	deadline, _ := t.ctx.Deadline()
	octx, ocancel := context.WithDeadline(context.Background(), deadline.Add(t.e.probeTime()))
	defer ocancel()
	return t.e.outcome(clientv3.WithRequireLeader(octx), marker, lease, err)
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

// retryable errors may pass if the request is tried again: no leader, a
// member gone, a request that ran out of its own time (not the call's).
// A commit among them has been resolved as not applied first.
func retryable(call context.Context, err error) bool {
	switch {
	case call.Err() != nil || errors.Is(err, ErrOutcomeUnknown) || errors.Is(err, context.Canceled):
		return false
	case errors.Is(err, context.DeadlineExceeded):
		return true
	}
	return errors.Is(err, rpctypes.ErrNoLeader) || !definite(err)
}

// retry runs one idempotent request until it succeeds, fails for good or the
// call's time is up.
func (e *Store) retry(call context.Context, op func(ctx context.Context) error) error {
	for attempt := 1; ; attempt++ {
		ctx, cancel := e.rpc(call)
		err := op(ctx)
		cancel()
		if err == nil || !retryable(call, err) || backoff(call, min(attempt, 10)) != nil {
			return err
		}
	}
}

func code(err error) codes.Code {
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return ee.Code()
	}
	return status.Code(err)
}

// definite errors are refusals: the request was not applied. Without a
// leader a member refuses every request that requires one (all of ours) up
// front.
func definite(err error) bool {
	if errors.Is(err, rpctypes.ErrNoLeader) {
		return true
	}
	switch code(err) {
	case codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated,
		codes.NotFound, codes.FailedPrecondition, codes.OutOfRange, codes.ResourceExhausted:
		return true
	}
	return false
}

// outcome finds out whether a commit whose answer was lost was applied, by
// racing it for its marker: creating the marker first voids the commit for
// good (its compare then fails), finding it there means it was applied.
func (e *Store) outcome(ctx context.Context, marker string, lease clientv3.LeaseID, lost error) (bool, error) {
	for attempt := 1; ; attempt++ {
		rctx, cancel := e.rpc(ctx)
		resp, err := e.cli.Txn(rctx).
			If(clientv3.Compare(clientv3.CreateRevision(marker), "=", 0)).
			Then(clientv3.OpPut(marker, "void", clientv3.WithLease(lease))).
			Else(clientv3.OpGet(marker)).Commit()
		cancel()
		if err == nil {
			if resp.Succeeded {
				return false, lost // voided: tried again like any refusal
			}
			// Our commit's marker is empty; "void" is an earlier search's.
			if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 && len(kvs[0].Value) == 0 {
				return true, nil
			}
			return false, lost
		}
		if definite(err) && !errors.Is(err, rpctypes.ErrNoLeader) || backoff(ctx, min(attempt, 10)) != nil {
			break
		}
	}
	return false, &outcomeUnknown{lost}
}

type outcomeUnknown struct{ lost error }

func (o *outcomeUnknown) Error() string        { return "commit outcome unknown: " + o.lost.Error() }
func (o *outcomeUnknown) Unwrap() error        { return o.lost }
func (o *outcomeUnknown) Is(target error) bool { return target == ErrOutcomeUnknown }

// markerLease is the lease commit markers live under: long enough for any
// call to learn its outcome, short enough that markers do not pile up.
func (e *Store) markerLease(ctx context.Context) (clientv3.LeaseID, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.lease != 0 && time.Now().Before(e.leaseUse) {
		return e.lease, nil
	}
	ttl := 3 * e.cfg.Timeout
	began := time.Now()
	rctx, cancel := e.rpc(ctx)
	defer cancel()
	resp, err := e.cli.Grant(rctx, int64(math.Ceil(ttl.Seconds())))
	if err != nil {
		return 0, err
	}
	// A marker made before leaseUse outlives its call by one Timeout.
	e.lease, e.leaseUse = resp.ID, began.Add(ttl-2*e.cfg.Timeout)
	return e.lease, nil
}

func (e *Store) dropLease(id clientv3.LeaseID) {
	e.mu.Lock()
	if e.lease == id {
		e.lease = 0
	}
	e.mu.Unlock()
}

func (e *Store) txnError(err error, cmps, ops int) error {
	switch {
	case errors.Is(err, rpctypes.ErrTooManyOps):
		return fmt.Errorf("etcd at %s: a transaction of %d compares and %d changes is more than the cluster's --max-txn-ops allows; change fewer keys at once",
			e.eps, cmps, ops)
	case errors.Is(err, rpctypes.ErrRequestTooLarge):
		return fmt.Errorf("etcd at %s: a transaction of %d changes is larger than the cluster's --max-request-bytes allows; change fewer keys at once",
			e.eps, ops)
	}
	return e.explain(err)
}

// explain turns a client error into one line that names the cluster and
// says what to do. For an unanswered call it asks every endpoint how it is,
// within the time call kept back for that.
func (e *Store) explain(err error) error {
	if err == nil {
		return nil
	}
	switch {
	case code(err) == codes.PermissionDenied:
		return fmt.Errorf("etcd at %s: permission denied to user %q under %s; grant the user's role readwrite on that prefix: %w",
			e.eps, e.cfg.Username, e.cfg.Prefix, err)
	case errors.Is(err, rpctypes.ErrAuthFailed), errors.Is(err, rpctypes.ErrInvalidAuthToken), errors.Is(err, rpctypes.ErrUserEmpty):
		return fmt.Errorf("etcd at %s: authentication of user %q failed; check --user and --password: %w", e.eps, e.cfg.Username, err)
	case definite(err) && !errors.Is(err, rpctypes.ErrNoLeader):
		return fmt.Errorf("etcd at %s: %w", e.eps, err)
	}
	reachable, leaderless, why := e.probe()
	n := len(e.cfg.Endpoints)
	var state, hint string
	switch {
	case reachable == 0:
		state = fmt.Sprintf("no member answers (%s)", why)
		hint = "check that etcd runs there and that the endpoints and --cacert, --cert, --key are right"
	case reachable <= n/2 || leaderless:
		state = fmt.Sprintf("no quorum (%d of %d members unreachable", n-reachable, n)
		if leaderless {
			state += ", no leader"
		}
		state += ")"
		hint = "retry when the cluster is healthy"
	default:
		state, hint = "the cluster is slow or electing a leader", "retry"
	}
	cause := shortError(err)
	if errors.Is(err, context.DeadlineExceeded) {
		cause = fmt.Sprintf("no answer within %s", e.cfg.Timeout)
	}
	var ou *outcomeUnknown
	if errors.As(err, &ou) {
		// The engine must look before it undoes anything.
		state += "; the last change may or may not have been made (its answer was lost)"
		cause = shortError(ou.lost)
	}
	return &unavailable{fmt.Sprintf("etcd at %s: %s; %s: %s", e.eps, state, hint, cause), err}
}

type unavailable struct {
	msg   string
	cause error
}

func (u *unavailable) Error() string        { return u.msg }
func (u *unavailable) Unwrap() error        { return u.cause }
func (u *unavailable) Is(target error) bool { return target == ErrUnavailable }

// probe asks each endpoint for its status at once.
func (e *Store) probe() (reachable int, leaderless bool, why string) {
	ctx, cancel := context.WithTimeout(context.Background(), e.probeTime())
	defer cancel()
	type answer struct {
		leader uint64
		err    error
	}
	// etcd's client waits for a connection until the deadline and then
	// reports only that; a plain gRPC request fails at once with the reason
	// a member refused (a TLS handshake, a closed port).
	creds := insecure.NewCredentials()
	if e.cc.TLS != nil {
		creds = credentials.NewTLS(e.cc.TLS)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if e.cfg.DialContext != nil {
		opts = append(opts, grpc.WithContextDialer(e.cfg.DialContext))
	}
	answers := make(chan answer, len(e.cfg.Endpoints))
	for _, ep := range e.cfg.Endpoints {
		go func() {
			conn, err := grpc.NewClient("passthrough:///"+ep, opts...)
			if err != nil {
				answers <- answer{err: err}
				return
			}
			defer conn.Close()
			resp, err := pb.NewMaintenanceClient(conn).Status(ctx, &pb.StatusRequest{})
			if err != nil {
				answers <- answer{err: err}
				return
			}
			answers <- answer{leader: resp.Leader}
		}()
	}
	for range e.cfg.Endpoints {
		a := <-answers
		if a.err != nil {
			if why == "" {
				why = shortError(a.err)
			}
			continue
		}
		reachable++
		if a.leader == 0 {
			leaderless = true
		}
	}
	return reachable, leaderless, why
}

// shortError keeps the part of a gRPC error a person can act on.
func shortError(err error) string {
	if s, ok := status.FromError(err); ok {
		msg := s.Message()
		if i := strings.LastIndex(msg, "desc = "); i >= 0 {
			msg = msg[i+len("desc = "):]
		}
		return strings.Trim(strings.TrimSpace(msg), `"`)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "no answer"
	}
	return err.Error()
}
