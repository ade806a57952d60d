package ovsdb

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestListDBsAndSchema(t *testing.T) {
	e := newEnv(t, false)
	dbs, err := e.c.ListDBs(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, d := range dbs {
		found = found || d == DB
	}
	if !found {
		t.Fatalf("list_dbs = %v, want %s among them", dbs, DB)
	}
	s, err := e.c.GetSchema(ctx(t), DB)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != DB || s.Version == "" {
		t.Fatalf("schema %q version %q", s.Name, s.Version)
	}
	tag, ok := s.Column("Port", "tag")
	if !ok || tag.Type.Key.Type != "integer" || tag.Type.Min != 0 || tag.Type.Max != 1 ||
		tag.Type.Key.MinInteger == nil || *tag.Type.Key.MinInteger != 0 || *tag.Type.Key.MaxInteger != 4095 {
		t.Errorf("Port.tag = %+v", tag)
	}
	ports, _ := s.Column("Bridge", "ports")
	if ports.Type.Key.RefTable != "Port" || ports.Type.Max != Unlimited {
		t.Errorf("Bridge.ports = %+v", ports)
	}
	ext, _ := s.Column("Bridge", "external_ids")
	if ext.Type.Value == nil || ext.Type.Value.Type != "string" {
		t.Errorf("Bridge.external_ids = %+v", ext)
	}
	mode, _ := s.Column("Port", "vlan_mode")
	if len(mode.Type.Key.Enum) != 5 {
		t.Errorf("Port.vlan_mode enum = %v", mode.Type.Key.Enum)
	}
	if !s.Tables["Open_vSwitch"].IsRoot || s.Tables["Bridge"].IsRoot {
		t.Errorf("isRoot: Open_vSwitch %v, Bridge %v", s.Tables["Open_vSwitch"].IsRoot, s.Tables["Bridge"].IsRoot)
	}
	if _, err := e.c.GetSchema(ctx(t), "NoSuchDB"); err == nil {
		t.Error("get_schema of an unknown database succeeded")
	} else {
		t.Log(err)
	}
}

// addBridgeOps inserts a bare Bridge row named name and hangs it off the root
// row, the least a Bridge needs to outlive its transaction.
func addBridgeOps(name string, extra Row) []Operation {
	row := Row{"name": name}
	for k, v := range extra {
		row[k] = v
	}
	return []Operation{
		Insert{Table: "Bridge", Row: row, UUIDName: "br"},
		Mutate{Table: "Open_vSwitch", Mutations: []Mutation{Mut("bridges", "insert", UUIDSet(NamedUUID("br")))}},
	}
}

func selectBridges(t *testing.T, c *Client, where ...Condition) []Row {
	t.Helper()
	res, err := c.Transact(ctx(t), DB, Select{Table: "Bridge", Where: where})
	if err != nil {
		t.Fatal(err)
	}
	return res[0].Rows
}

func TestEveryOperation(t *testing.T) {
	e := newEnv(t, false)
	c := e.c
	// insert with a uuid-name that a mutate of the same transaction uses
	ops := append(addBridgeOps("b0", Row{"external_ids": StringMap(map[string]string{"a": "1", "b": "2"}),
		"flood_vlans": Set{int64(10), 20}}), Comment{Comment: "ovsdb test: insert"}, Commit{Durable: true})
	res, err := c.Transact(ctx(t), DB, ops...)
	if err != nil {
		t.Fatal(err)
	}
	u := res[0].UUID
	if u == "" || res[1].Count != 1 {
		t.Fatalf("insert uuid %q, mutate count %d", u, res[1].Count)
	}
	// select: by uuid, with columns
	res, err = c.Transact(ctx(t), DB,
		Select{Table: "Bridge", Where: []Condition{Cond("_uuid", "==", u)}, Columns: []string{"name", "external_ids", "flood_vlans", "ports"}},
		Select{Table: "Open_vSwitch", Columns: []string{"bridges"}})
	if err != nil {
		t.Fatal(err)
	}
	row := res[0].Rows[0]
	if row.String("name") != "b0" || row.StringMap("external_ids")["b"] != "2" ||
		fmt.Sprint(row.Ints("flood_vlans")) != "[10 20]" || len(row.UUIDs("ports")) != 0 || row.UUID() != "" {
		t.Errorf("selected %v", row)
	}
	if got := res[1].Rows[0].UUIDs("bridges"); len(got) != 1 || got[0] != u {
		t.Errorf("root bridges = %v, want [%s]", got, u)
	}
	// update: several columns; a set of one comes back as the bare atom
	res, err = c.Transact(ctx(t), DB, Update{Table: "Bridge", Where: []Condition{Cond("name", "==", "b0")},
		Row: Row{"datapath_type": "netdev", "fail_mode": Set{"secure"}, "flood_vlans": Set{}}})
	if err != nil || res[0].Count != 1 {
		t.Fatalf("update: %v %+v", err, res)
	}
	row = selectBridges(t, c, Cond("name", "==", "b0"))[0]
	if row.String("datapath_type") != "netdev" || row.String("fail_mode") != "secure" || len(row.Ints("flood_vlans")) != 0 {
		t.Errorf("after update: %v", row)
	}
	// mutate: map insert (keeps existing keys), map delete by key, integer +=
	res, err = c.Transact(ctx(t), DB,
		Mutate{Table: "Bridge", Where: []Condition{Cond("_uuid", "==", u)}, Mutations: []Mutation{
			Mut("external_ids", "insert", StringMap(map[string]string{"a": "changed", "c": "3"})),
			Mut("external_ids", "delete", StringSet("b")),
			Mut("flood_vlans", "insert", Set{int64(7)}),
		}},
		Mutate{Table: "Open_vSwitch", Mutations: []Mutation{Mut("next_cfg", "+=", 5)}},
		Select{Table: "Open_vSwitch", Columns: []string{"next_cfg"}})
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res[2].Rows[0].Int("next_cfg"); n != 5 {
		t.Errorf("next_cfg after += 5: %d", n)
	}
	row = selectBridges(t, c, Cond("_uuid", "==", u))[0]
	if m := row.StringMap("external_ids"); len(m) != 2 || m["a"] != "1" || m["c"] != "3" {
		t.Errorf("external_ids after mutate: %v", m)
	}
	// includes / excludes on sets
	if n := len(selectBridges(t, c, Cond("flood_vlans", "includes", Set{int64(7)}))); n != 1 {
		t.Errorf("includes: %d rows", n)
	}
	if n := len(selectBridges(t, c, Cond("flood_vlans", "excludes", Set{int64(7)}))); n != 0 {
		t.Errorf("excludes: %d rows", n)
	}
	// wait that holds at once, and one that does not (timeout 0)
	if _, err := c.Transact(ctx(t), DB, Wait{Table: "Bridge", Where: []Condition{Cond("name", "==", "b0")},
		Columns: []string{"datapath_type"}, Until: "==", Rows: []Row{{"datapath_type": "netdev"}}}); err != nil {
		t.Errorf("wait ==: %v", err)
	}
	_, err = c.Transact(ctx(t), DB, Wait{Table: "Bridge", Where: []Condition{Cond("name", "==", "b0")},
		Columns: []string{"datapath_type"}, Until: "==", Rows: []Row{{"datapath_type": "system"}}})
	var oe *OpError
	if !errors.As(err, &oe) || oe.Err != "timed out" || oe.Op != "wait" || oe.Table != "Bridge" {
		t.Errorf("wait that cannot hold: %v", err)
	}
	// delete: a row still referenced fails at commit; unreferenced, it goes
	_, err = c.Transact(ctx(t), DB, Delete{Table: "Bridge", Where: []Condition{Cond("_uuid", "==", u)}})
	if !errors.As(err, &oe) || oe.Op != "commit" || oe.Err != "referential integrity violation" {
		t.Errorf("delete of a referenced row: %v", err)
	}
	res, err = c.Transact(ctx(t), DB,
		Mutate{Table: "Open_vSwitch", Mutations: []Mutation{Mut("bridges", "delete", UUIDSet(u))}},
		Delete{Table: "Bridge", Where: []Condition{Cond("_uuid", "==", u)}})
	if err != nil || res[1].Count != 1 {
		t.Fatalf("delete: %v %+v", err, res)
	}
	if rows := selectBridges(t, c); len(rows) != 0 {
		t.Errorf("bridges left: %v", rows)
	}
	// abort
	_, err = c.Transact(ctx(t), DB, append(addBridgeOps("aborted", nil), Abort{})...)
	if !errors.As(err, &oe) || oe.Err != "aborted" || oe.Index != 2 {
		t.Errorf("abort: %v", err)
	}
	if rows := selectBridges(t, c); len(rows) != 0 {
		t.Errorf("abort left %v", rows)
	}
	if err := c.Echo(ctx(t)); err != nil {
		t.Error(err)
	}
}

// TestGarbageCollection: rows of non-root tables that nothing references go
// at commit, which is what lets the helpers delete a bridge by dropping it
// from the root row's set.
func TestGarbageCollection(t *testing.T) {
	e := newEnv(t, false)
	if _, err := e.c.Transact(ctx(t), DB, Insert{Table: "Bridge", Row: Row{"name": "orphan"}}); err != nil {
		t.Fatal(err)
	}
	if rows := selectBridges(t, e.c); len(rows) != 0 {
		t.Errorf("an unreferenced bridge survived its transaction: %v", rows)
	}
}

func TestTransactErrors(t *testing.T) {
	e := newEnv(t, false)
	c := e.c
	if _, err := c.Transact(ctx(t), DB, addBridgeOps("taken", nil)...); err != nil {
		t.Fatal(err)
	}
	ovsRow := func() Row {
		res, err := c.Transact(ctx(t), DB, Select{Table: "Open_vSwitch"}, Select{Table: "Bridge"}, Select{Table: "Port"}, Select{Table: "Interface"})
		if err != nil {
			t.Fatal(err)
		}
		return Row{"ovs": res[0].Rows, "bridges": res[1].Rows, "ports": res[2].Rows, "ifaces": res[3].Rows}
	}
	before := fmt.Sprint(ovsRow())
	iface := Insert{Table: "Interface", Row: Row{"name": "p"}, UUIDName: "i"}
	port := func(extra Row) Insert {
		r := Row{"name": "p", "interfaces": UUIDSet(NamedUUID("i"))}
		for k, v := range extra {
			r[k] = v
		}
		return Insert{Table: "Port", Row: r, UUIDName: "p"}
	}
	attach := Mutate{Table: "Bridge", Where: []Condition{Cond("name", "==", "taken")},
		Mutations: []Mutation{Mut("ports", "insert", UUIDSet(NamedUUID("p")))}}
	for _, tc := range []struct {
		name  string
		ops   []Operation
		index int // failing operation; len(ops) for the commit
		err   string
		table string
	}{
		{"unknown table", []Operation{Select{Table: "NoSuch"}}, 0, "syntax error", "NoSuch"},
		{"unknown column in select", []Operation{Select{Table: "Bridge", Columns: []string{"nope"}}}, 0, "syntax error", "Bridge"},
		{"unknown column in insert", []Operation{Insert{Table: "Bridge", Row: Row{"name": "x", "nope": 1}}}, 0, "unknown column", "Bridge"},
		{"unknown column in where", []Operation{Delete{Table: "Bridge", Where: []Condition{Cond("nope", "==", 1)}}}, 0, "unknown column", "Bridge"},
		{"wrong type", []Operation{Insert{Table: "Bridge", Row: Row{"name": 5}}}, 0, "syntax error", "Bridge"},
		{"unknown function", []Operation{Select{Table: "Bridge", Where: []Condition{Cond("name", "~=", "x")}}}, 0, "unknown function", "Bridge"},
		{"immutable column", []Operation{Update{Table: "Bridge", Row: Row{"name": "x"}}}, 0, "constraint violation", "Bridge"},
		{"enum", []Operation{Update{Table: "Bridge", Row: Row{"fail_mode": "sometimes"}}}, 0, "constraint violation", "Bridge"},
		{"tag out of range, second op fails", append(addBridgeOps("first", nil), iface, port(Row{"tag": 4096}), attach), 3, "constraint violation", "Port"},
		{"negative tag", []Operation{iface, port(Row{"tag": -1}), attach}, 1, "constraint violation", "Port"},
		{"two values for an optional column", []Operation{iface, port(Row{"tag": Set{int64(1), int64(2)}}), attach}, 1, "syntax error", "Port"},
		{"duplicate uuid-name", []Operation{Insert{Table: "Bridge", Row: Row{"name": "x"}, UUIDName: "a"}, Insert{Table: "Bridge", Row: Row{"name": "y"}, UUIDName: "a"}}, 1, "duplicate uuid-name", "Bridge"},
		{"duplicate index value", addBridgeOps("taken", nil), 2, "constraint violation", ""},
		{"dangling reference", addBridgeOps("x", Row{"ports": UUIDSet(UUID("2c1d8597-c8b9-47be-b02a-6f7a8c39f640"))}), 2, "referential integrity violation", ""},
		{"port without interface", append(addBridgeOps("first", nil), Insert{Table: "Port", Row: Row{"name": "p"}, UUIDName: "p"}, attach), 4, "referential integrity violation", ""},
		{"delete of a referenced row", []Operation{Delete{Table: "Bridge", Where: []Condition{Cond("name", "==", "taken")}}}, 1, "referential integrity violation", ""},
		{"commit error after a good insert", append(addBridgeOps("first", nil), Insert{Table: "Bridge", Row: Row{"name": "taken"}, UUIDName: "dup"},
			Mutate{Table: "Open_vSwitch", Mutations: []Mutation{Mut("bridges", "insert", UUIDSet(NamedUUID("dup")))}}), 4, "constraint violation", ""},
	} {
		_, err := c.Transact(ctx(t), DB, tc.ops...)
		var oe *OpError
		if !errors.As(err, &oe) {
			t.Errorf("%s: err %v, want an *OpError", tc.name, err)
			continue
		}
		wantOp := "commit"
		if tc.index < len(tc.ops) {
			wantOp = tc.ops[tc.index].opName()
		}
		if oe.Index != tc.index || oe.Err != tc.err || oe.Op != wantOp || oe.Table != tc.table || oe.DB != DB {
			t.Errorf("%s: %+v, want operation %d (%s %s) %q", tc.name, oe, tc.index, wantOp, tc.table, tc.err)
		}
		if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, tc.err) ||
			(tc.table != "" && !strings.Contains(msg, tc.table)) {
			t.Errorf("%s: message %q", tc.name, msg)
		}
		t.Logf("%s: %v", tc.name, err)
		if after := fmt.Sprint(ovsRow()); after != before {
			t.Fatalf("%s changed the database:\nbefore %s\nafter  %s", tc.name, before, after)
		}
	}
	_, err := c.Transact(ctx(t), "NoSuchDB", Comment{"x"})
	var re *RPCError
	if !errors.As(err, &re) || re.Err != "unknown database" || !strings.Contains(err.Error(), "NoSuchDB") {
		t.Errorf("unknown database: %v", err)
	}
	// values the client cannot encode never reach the server
	if _, err := c.Transact(ctx(t), DB, Insert{Table: "Bridge", Row: Row{"name": []string{"a"}}}); err == nil ||
		!strings.Contains(err.Error(), "not an OVSDB atom") {
		t.Errorf("a []string value: %v", err)
	}
	if after := fmt.Sprint(ovsRow()); after != before {
		t.Fatalf("the database changed:\nbefore %s\nafter  %s", before, after)
	}
}

// TestWaitBlocksAndCancels: a wait with a timeout holds the transaction on
// the server until another client makes the condition true; a call whose
// context ends withdraws its transaction (RFC 7047 cancel), so it never
// commits later.
func TestWaitBlocksAndCancels(t *testing.T) {
	e := newEnv(t, false)
	other, err := Dial(ctx(t), e.ovs.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	untilBridge := func(name string, timeout time.Duration) Wait {
		return Wait{Table: "Bridge", Where: []Condition{Cond("name", "==", name)}, Columns: []string{"name"},
			Until: "==", Rows: []Row{{"name": name}}, Timeout: timeout}
	}
	done := make(chan error, 1)
	go func() {
		_, err := e.c.Transact(ctx(t), DB, append([]Operation{untilBridge("go", WaitForever)}, addBridgeOps("after-go", nil)...)...)
		done <- err
	}()
	// Not yet satisfied: the transaction waits (and the connection serves
	// other calls meanwhile).
	if err := e.c.Echo(ctx(t)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("wait returned before its condition held: %v", err)
	default:
	}
	if _, err := other.Transact(ctx(t), DB, addBridgeOps("go", nil)...); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("waiting transaction: %v", err)
	}
	if n := len(selectBridges(t, e.c, Cond("name", "==", "after-go"))); n != 1 {
		t.Fatalf("after-go: %d rows", n)
	}

	cx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = e.c.Transact(cx, DB, append([]Operation{untilBridge("never", WaitForever)}, addBridgeOps("cancelled", nil)...)...)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled wait: %v", err)
	}
	if _, err := other.Transact(ctx(t), DB, addBridgeOps("never", nil)...); err != nil {
		t.Fatal(err)
	}
	// A wait the server still held would commit on this change; one more
	// round trip on the same connection orders us after it.
	if err := e.c.Echo(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if n := len(selectBridges(t, e.c, Cond("name", "==", "cancelled"))); n != 0 {
		t.Errorf("a cancelled transaction committed")
	}

	// A timeout the server enforces.
	_, err = e.c.Transact(ctx(t), DB, untilBridge("nope", 100*time.Millisecond))
	var oe *OpError
	if !errors.As(err, &oe) || oe.Err != "timed out" {
		t.Errorf("wait with timeout: %v", err)
	}
}
