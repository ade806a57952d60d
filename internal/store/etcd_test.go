package store

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ctnet/ctnet/internal/store/etcdtest"
)

var prefixSeq atomic.Int64

// openEtcd opens a client of c under a prefix of its own, so tests can share
// a cluster without seeing each other's keys.
func openEtcd(t testing.TB, c *etcdtest.Cluster, change ...func(*EtcdConfig)) *Etcd {
	t.Helper()
	cfg := EtcdConfig{
		Endpoints:   c.Endpoints(),
		Prefix:      fmt.Sprintf("/test%d/", prefixSeq.Add(1)),
		DialContext: c.Dial,
		Timeout:     5 * time.Second,
	}
	for _, f := range change {
		f(&cfg)
	}
	e, err := OpenEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func TestEtcd(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Members: 1})
	Suite(t, func(t *testing.T) Store { return openEtcd(t, c) })
}
