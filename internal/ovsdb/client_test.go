package ovsdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSocketPath(t *testing.T) {
	t.Setenv("OVS_RUNDIR", "")
	os.Unsetenv("OVS_RUNDIR")
	if got := SocketPath(""); got != "/run/openvswitch/db.sock" {
		t.Errorf("default: %s", got)
	}
	t.Setenv("OVS_RUNDIR", "/tmp/x")
	if got := SocketPath(""); got != "/tmp/x/db.sock" {
		t.Errorf("OVS_RUNDIR: %s", got)
	}
	for in, want := range map[string]string{"/a/b.sock": "/a/b.sock", "unix:/a/b.sock": "/a/b.sock"} {
		if got := SocketPath(in); got != want {
			t.Errorf("SocketPath(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestDialErrors(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "file")
	os.WriteFile(plain, nil, 0o644)
	// a socket nobody listens on any more
	stale := filepath.Join(dir, "stale.sock")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	for _, path := range []string{filepath.Join(dir, "missing.sock"), plain, stale, dir} {
		_, err := Dial(context.Background(), path)
		if err == nil {
			t.Errorf("Dial(%s) succeeded", path)
			continue
		}
		msg := err.Error()
		if strings.Contains(msg, "\n") || !strings.Contains(msg, path) || !strings.Contains(msg, "start Open vSwitch") {
			t.Errorf("Dial(%s): %q", path, msg)
		}
		t.Log(msg)
	}
	for _, path := range []string{"tcp:127.0.0.1:6640", "ssl:1.2.3.4:6640"} {
		if _, err := Dial(context.Background(), path); err == nil || !strings.Contains(err.Error(), "only unix") {
			t.Errorf("Dial(%s): %v", path, err)
		}
	}
	t.Setenv("OVS_RUNDIR", filepath.Join(dir, "rundir"))
	if _, err := Dial(context.Background(), ""); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "rundir", "db.sock")) {
		t.Errorf("Dial via OVS_RUNDIR: %v", err)
	}
}

// fakeServer accepts one connection and runs script on it.
func fakeServer(t *testing.T, script func(c net.Conn, dec *json.Decoder)) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fake.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		script(c, json.NewDecoder(c))
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return path
}

// TestFraming: the stream is concatenated JSON objects with no separator,
// cut anywhere by the transport; the server's echo gets its params back
// under its own id; notifications and replies to unknown ids are ignored.
func TestFraming(t *testing.T) {
	errs := make(chan error, 10)
	path := fakeServer(t, func(c net.Conn, dec *json.Decoder) {
		var req map[string]json.RawMessage
		if err := dec.Decode(&req); err != nil {
			errs <- err
			return
		}
		if string(req["method"]) != `"list_dbs"` || string(req["params"]) != `[]` {
			errs <- fmt.Errorf("request %v", req)
			return
		}
		stream := `{"id":"echo","method":"echo","params":["x",1]}{"method":"update","params":[null,{}],"id":null}` +
			`{"id":999,"result":[],"error":null}{"id":` + string(req["id"]) + `,"result":["A","B"],"error":null}`
		for i := 0; i < len(stream); i += 7 { // in pieces that split tokens
			c.Write([]byte(stream[i:min(i+7, len(stream))]))
			time.Sleep(time.Millisecond)
		}
		var rep map[string]json.RawMessage
		if err := dec.Decode(&rep); err != nil {
			errs <- err
			return
		}
		if string(rep["id"]) != `"echo"` || string(rep["result"]) != `["x",1]` || string(rep["error"]) != "null" {
			errs <- fmt.Errorf("echo reply %v", rep)
		}
		errs <- nil
	})
	c, err := Dial(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dbs, err := c.ListDBs(context.Background())
	if err != nil || fmt.Sprint(dbs) != "[A B]" {
		t.Fatalf("list_dbs = %v, %v", dbs, err)
	}
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	if c.echoes.Load() != 1 {
		t.Errorf("echoes answered: %d", c.echoes.Load())
	}
}

// TestConnectionLost: a server that goes away fails the pending call and
// every later one, naming the socket.
func TestConnectionLost(t *testing.T) {
	path := fakeServer(t, func(c net.Conn, dec *json.Decoder) {
		var req any
		dec.Decode(&req)
	})
	c, err := Dial(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < 2; i++ {
		_, err := c.ListDBs(context.Background())
		if err == nil || !strings.Contains(err.Error(), "connection to "+path+" lost") {
			t.Errorf("call %d: %v", i, err)
		}
	}
	c.Close()
	if _, err := c.ListDBs(context.Background()); err == nil {
		t.Error("call on a closed client succeeded")
	}
}

// TestContextDeadline: a server that never answers costs a call no more
// than its context allows, and the client stays usable.
func TestContextDeadline(t *testing.T) {
	answer := make(chan struct{})
	path := fakeServer(t, func(c net.Conn, dec *json.Decoder) {
		var req map[string]json.RawMessage
		dec.Decode(&req) // ignored
		<-answer
		dec.Decode(&req)
		fmt.Fprintf(c, `{"id":%s,"result":["late"],"error":null}`, req["id"])
		dec.Decode(&req)
	})
	c, err := Dial(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.ListDBs(cx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("unanswered call: %v", err)
	}
	done, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if _, err := c.ListDBs(done); !errors.Is(err, context.Canceled) {
		t.Errorf("call with a done context: %v", err)
	}
	close(answer)
	if dbs, err := c.ListDBs(context.Background()); err != nil || dbs[0] != "late" {
		t.Errorf("after a timeout: %v %v", dbs, err)
	}
}

func TestValueEncoding(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want string
	}{
		{UUID("u1"), `["uuid","u1"]`},
		{NamedUUID("n"), `["named-uuid","n"]`},
		{Set{}, `["set",[]]`},
		{Set{int64(1), "a", true, 1.5, UUID("u")}, `["set",[1,"a",true,1.5,["uuid","u"]]]`},
		{Map{"b": "2", "a": "1"}, `["map",[["a","1"],["b","2"]]]`},
		{Map{int64(2): UUID("x")}, `["map",[[2,["uuid","x"]]]]`},
		{Row{"m": Map{}, "n": 3}, `{"m":["map",[]],"n":3}`},
		{Cond("tag", "<=", 5), `["tag","\u003c=",5]`},
		{Mut("ports", "insert", UUIDSet(NamedUUID("p"))), `["ports","insert",["set",[["named-uuid","p"]]]]`},
	} {
		b, err := json.Marshal(tc.v)
		if err != nil || string(b) != tc.want {
			t.Errorf("%#v: %s %v, want %s", tc.v, b, err, tc.want)
		}
	}
	for _, bad := range []any{Set{[]int{1}}, Row{"x": map[string]string{}}, Map{"a": nil}, Cond("x", "==", struct{}{})} {
		if b, err := json.Marshal(bad); err == nil {
			t.Errorf("%#v encoded as %s", bad, b)
		}
	}
	var r Row
	in := `{"_uuid":["uuid","u"],"s":"x","i":7,"f":1.5,"b":true,"one":["set",[3]],"set":["set",["a","b"]],` +
		`"m":["map",[["k","v"]]],"refs":["set",[["uuid","a"],["uuid","b"]]],"ref":["uuid","c"],"none":["set",[]]}`
	if err := json.Unmarshal([]byte(in), &r); err != nil {
		t.Fatal(err)
	}
	if i, ok := r.Int("i"); r.UUID() != "u" || r.String("s") != "x" || !ok || i != 7 || r["f"] != 1.5 || !r.Bool("b") {
		t.Errorf("atoms: %v", r)
	}
	if one, ok := r.Int("one"); !ok || one != 3 {
		t.Errorf("set of one: %v", r["one"])
	}
	if _, ok := r.Int("none"); ok || r.String("none") != "" {
		t.Errorf("empty set: %v", r["none"])
	}
	if fmt.Sprint(r.Strings("set")) != "[a b]" || r.StringMap("m")["k"] != "v" ||
		fmt.Sprint(r.UUIDs("refs")) != "[a b]" || fmt.Sprint(r.UUIDs("ref")) != "[c]" {
		t.Errorf("sets/maps: %v", r)
	}
	for _, bad := range []string{`{"x":["uuid"]}`, `{"x":["set",1]}`, `{"x":["map",[[1]]]}`, `{"x":{"a":1}}`, `{"x":["foo","bar"]}`} {
		var r Row
		if err := json.Unmarshal([]byte(bad), &r); err == nil {
			t.Errorf("%s decoded as %v", bad, r)
		}
	}
}

// TestConcurrentTransactions: many goroutines on one client, each
// transaction its own; every one lands exactly once.
func TestConcurrentTransactions(t *testing.T) {
	e := newEnv(t, false)
	const workers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				ops := append(addBridgeOps(fmt.Sprintf("c%d-%d", w, i), nil),
					Mutate{Table: "Open_vSwitch", Mutations: []Mutation{Mut("next_cfg", "+=", 1)}})
				if _, err := e.c.Transact(ctx(t), DB, ops...); err != nil {
					errs <- err
				}
				if i%5 == 0 {
					if err := e.c.Echo(ctx(t)); err != nil {
						errs <- err
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	rows := selectBridges(t, e.c)
	names := map[string]bool{}
	for _, r := range rows {
		names[r.String("name")] = true
	}
	res, err := e.c.Transact(ctx(t), DB, Select{Table: "Open_vSwitch", Columns: []string{"next_cfg", "bridges"}})
	if err != nil {
		t.Fatal(err)
	}
	n, _ := res[0].Rows[0].Int("next_cfg")
	if len(rows) != workers*each || len(names) != workers*each || n != workers*each ||
		len(res[0].Rows[0].UUIDs("bridges")) != workers*each {
		t.Errorf("%d bridges, %d names, next_cfg %d, want %d", len(rows), len(names), n, workers*each)
	}
}

// TestEchoKeepalive: ovsdb-server probes an idle connection with echo and
// drops it unless answered; the client answers, so an idle client lives.
func TestEchoKeepalive(t *testing.T) {
	e := newEnv(t, false)
	probe := filepath.Join(e.ovs.Dir, "probe.sock")
	e.ovs.MustVsctl("--no-wait", "--", "--id=@m", "create", "Manager", "target=\"punix:"+probe+"\"", "inactivity_probe=1000",
		"--", "add", "Open_vSwitch", ".", "manager_options", "@m")
	var conn net.Conn
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var err error
		if conn, err = net.Dial("unix", probe); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the manager socket never came up: %v", err)
		}
	}
	// A raw connection that never answers is sent an echo, then dropped.
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	dec := json.NewDecoder(conn)
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m["method"] != "echo" {
		t.Fatalf("server sent %v, %v; want an echo request", m, err)
	}
	if err := dec.Decode(&m); err == nil {
		t.Fatalf("server sent %v to a silent client, want the connection closed", m)
	}
	conn.Close()

	c, err := Dial(ctx(t), probe)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for c.echoes.Load() < 3 {
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := c.ListDBs(ctx(t)); err != nil {
		t.Errorf("after three probes: %v", err)
	}
}
