package ovsdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Operation is one operation of a transaction (RFC 7047 5.2): Insert,
// Select, Update, Mutate, Delete, Wait, Commit, Abort, Comment or Assert.
type Operation interface {
	opName() string
	opTable() string
}

// Condition is [column, function, value] of a where clause; function is one
// of < <= == != >= > includes excludes.
type Condition struct {
	Column, Function string
	Value            any
}

// Cond builds a condition.
func Cond(column, function string, value any) Condition {
	return Condition{column, function, value}
}

func (c Condition) MarshalJSON() ([]byte, error) {
	v, err := marshalValue(c.Value)
	if err != nil {
		return nil, fmt.Errorf("condition on %s: %w", c.Column, err)
	}
	return json.Marshal([]any{c.Column, c.Function, v})
}

// Mutation is [column, mutator, value]; mutator is one of += -= *= /= %=
// insert delete.
type Mutation struct {
	Column, Mutator string
	Value           any
}

// Mut builds a mutation.
func Mut(column, mutator string, value any) Mutation {
	return Mutation{column, mutator, value}
}

func (m Mutation) MarshalJSON() ([]byte, error) {
	v, err := marshalValue(m.Value)
	if err != nil {
		return nil, fmt.Errorf("mutation of %s: %w", m.Column, err)
	}
	return json.Marshal([]any{m.Column, m.Mutator, v})
}

func where(w []Condition) []Condition {
	if w == nil {
		return []Condition{}
	}
	return w
}

// Insert adds a row; UUIDName, when set, lets later operations of the same
// transaction refer to it as NamedUUID(UUIDName).
type Insert struct {
	Table    string
	Row      Row
	UUIDName string
}

func (o Insert) opName() string  { return "insert" }
func (o Insert) opTable() string { return o.Table }
func (o Insert) MarshalJSON() ([]byte, error) {
	m := map[string]any{"op": "insert", "table": o.Table, "row": rowOrEmpty(o.Row)}
	if o.UUIDName != "" {
		m["uuid-name"] = o.UUIDName
	}
	return json.Marshal(m)
}

func rowOrEmpty(r Row) Row {
	if r == nil {
		return Row{}
	}
	return r
}

// Select reads the rows matching Where; Columns limits the columns returned
// (all, with _uuid and _version, when empty).
type Select struct {
	Table   string
	Where   []Condition
	Columns []string
}

func (o Select) opName() string  { return "select" }
func (o Select) opTable() string { return o.Table }
func (o Select) MarshalJSON() ([]byte, error) {
	m := map[string]any{"op": "select", "table": o.Table, "where": where(o.Where)}
	if len(o.Columns) > 0 {
		m["columns"] = o.Columns
	}
	return json.Marshal(m)
}

// Update sets the columns of Row in every row matching Where.
type Update struct {
	Table string
	Where []Condition
	Row   Row
}

func (o Update) opName() string  { return "update" }
func (o Update) opTable() string { return o.Table }
func (o Update) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]any{"op": "update", "table": o.Table, "where": where(o.Where), "row": rowOrEmpty(o.Row)})
}

// Mutate changes columns of every row matching Where in place: arithmetic
// on numbers, insert/delete of set elements and map pairs (a map's delete
// also takes a set of keys).
type Mutate struct {
	Table     string
	Where     []Condition
	Mutations []Mutation
}

func (o Mutate) opName() string  { return "mutate" }
func (o Mutate) opTable() string { return o.Table }
func (o Mutate) MarshalJSON() ([]byte, error) {
	muts := o.Mutations
	if muts == nil {
		muts = []Mutation{}
	}
	return json.Marshal(map[string]any{"op": "mutate", "table": o.Table, "where": where(o.Where), "mutations": muts})
}

// Delete removes every row matching Where.
type Delete struct {
	Table string
	Where []Condition
}

func (o Delete) opName() string  { return "delete" }
func (o Delete) opTable() string { return o.Table }
func (o Delete) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]any{"op": "delete", "table": o.Table, "where": where(o.Where)})
}

// WaitForever, as a Wait's Timeout, lets the server wait until the
// condition holds or the call's context ends.
const WaitForever time.Duration = -1

// Wait makes the transaction wait until the rows matching Where, reduced to
// Columns, are equal ("==") or not equal ("!=") to Rows. The server waits
// Timeout (0: not at all, the check ovs-vsctl's verify makes) and then
// fails the transaction with "timed out".
type Wait struct {
	Table   string
	Where   []Condition
	Columns []string
	Until   string
	Rows    []Row
	Timeout time.Duration
}

func (o Wait) opName() string  { return "wait" }
func (o Wait) opTable() string { return o.Table }
func (o Wait) MarshalJSON() ([]byte, error) {
	cols, rows := o.Columns, o.Rows
	if cols == nil {
		cols = []string{}
	}
	if rows == nil {
		rows = []Row{}
	}
	m := map[string]any{"op": "wait", "table": o.Table, "where": where(o.Where),
		"columns": cols, "until": o.Until, "rows": rows}
	if o.Timeout >= 0 {
		m["timeout"] = o.Timeout.Milliseconds()
	}
	return json.Marshal(m)
}

// Commit asks for the transaction to be on disk (Durable) before the reply.
type Commit struct{ Durable bool }

func (o Commit) opName() string  { return "commit" }
func (o Commit) opTable() string { return "" }
func (o Commit) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]any{"op": "commit", "durable": o.Durable})
}

// Abort fails the transaction on purpose.
type Abort struct{}

func (o Abort) opName() string  { return "abort" }
func (o Abort) opTable() string { return "" }
func (o Abort) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]any{"op": "abort"})
}

// Comment records a note in the database log beside the transaction.
type Comment struct{ Comment string }

func (o Comment) opName() string  { return "comment" }
func (o Comment) opTable() string { return "" }
func (o Comment) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]any{"op": "comment", "comment": o.Comment})
}

// Assert fails the transaction unless this client holds Lock.
type Assert struct{ Lock string }

func (o Assert) opName() string  { return "assert" }
func (o Assert) opTable() string { return "" }
func (o Assert) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]any{"op": "assert", "lock": o.Lock})
}

// Result is one operation's outcome: UUID for an insert, Rows for a select,
// Count for an update, mutate or delete.
type Result struct {
	UUID  UUID
	Rows  []Row
	Count int
}

type wireResult struct {
	UUID    *uuidWire `json:"uuid"`
	Rows    []Row     `json:"rows"`
	Count   int       `json:"count"`
	Error   *string   `json:"error"`
	Details string    `json:"details"`
}

// uuidWire decodes ["uuid", "…"].
type uuidWire struct{ UUID UUID }

func (u *uuidWire) UnmarshalJSON(b []byte) error {
	var pair [2]string
	if err := json.Unmarshal(b, &pair); err != nil || pair[0] != "uuid" {
		return fmt.Errorf("ovsdb: malformed uuid %s", b)
	}
	u.UUID = UUID(pair[1])
	return nil
}

// OpError is a transaction that the server refused: which operation (Index
// into the operations; len(ops) when the commit itself failed, e.g. on a
// constraint checked only then), what it was, and the server's error.
// Nothing of the transaction took effect.
type OpError struct {
	DB      string
	Index   int
	N       int    // operations in the transaction
	Op      string // "insert", …, or "commit"
	Table   string
	Err     string // RFC 7047 error tag: "constraint violation", "timed out", …
	Details string
}

func (e *OpError) Error() string {
	var what string
	switch {
	case e.Op == "commit":
		what = fmt.Sprintf("commit of %d operations", e.N)
	case e.Table != "":
		what = fmt.Sprintf("operation %d of %d (%s %s)", e.Index+1, e.N, e.Op, e.Table)
	default:
		what = fmt.Sprintf("operation %d of %d (%s)", e.Index+1, e.N, e.Op)
	}
	msg := fmt.Sprintf("ovsdb transact %s: %s: %s", e.DB, what, e.Err)
	if e.Details != "" {
		msg += ": " + e.Details
	}
	return msg
}

// Transact runs ops as one transaction on database db: all of them take
// effect or none does. On failure the error is an *OpError.
func (c *Client) Transact(ctx context.Context, db string, ops ...Operation) ([]Result, error) {
	params := make([]any, 0, len(ops)+1)
	params = append(params, db)
	for _, op := range ops {
		params = append(params, op)
	}
	var wire []*wireResult
	if err := c.call(ctx, "transact", params, &wire); err != nil {
		var re *RPCError
		if errors.As(err, &re) {
			return nil, fmt.Errorf("ovsdb transact %s: %w", db, err)
		}
		return nil, err
	}
	out := make([]Result, len(ops))
	for i, w := range wire {
		if w == nil {
			continue // not executed, after an earlier failure
		}
		if w.Error != nil {
			e := &OpError{DB: db, Index: i, N: len(ops), Err: *w.Error, Details: w.Details}
			if i < len(ops) {
				e.Op, e.Table = ops[i].opName(), ops[i].opTable()
			} else {
				e.Op = "commit"
			}
			return nil, e
		}
		if i < len(ops) {
			out[i] = Result{Rows: w.Rows, Count: w.Count}
			if w.UUID != nil {
				out[i].UUID = w.UUID.UUID
			}
		}
	}
	if len(wire) < len(ops) {
		return nil, fmt.Errorf("ovsdb transact %s: %d results for %d operations", db, len(wire), len(ops))
	}
	return out, nil
}
