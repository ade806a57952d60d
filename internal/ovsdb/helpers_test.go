package ovsdb

import (
	"context"
	"testing"
	"time"

	"github.com/ctnet/ctnet/internal/ovsdb/ovstest"
	"github.com/ctnet/ctnet/internal/sandbox"
)

// env is one test's sandbox with a private Open vSwitch and a client on it.
type env struct {
	s   *sandbox.Sandbox
	ovs *ovstest.OVS
	c   *Client
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

// newEnv starts ovsdb-server (and ovs-vswitchd when withSwitch) in a fresh
// sandbox and dials it.
func newEnv(t testing.TB, withSwitch bool) *env {
	t.Helper()
	ovstest.Require(t)
	s := sandbox.New(t)
	var o *ovstest.OVS
	if withSwitch {
		o = ovstest.Start(t, s.Host)
	} else {
		o = ovstest.StartDB(t, s.Host)
	}
	c, err := Dial(ctx(t), o.Socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &env{s: s, ovs: o, c: c}
}
