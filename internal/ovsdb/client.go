package ovsdb

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultRunDir is where Open vSwitch keeps its sockets when OVS_RUNDIR is
// unset (Debian's /var/run/openvswitch is a link to it).
const DefaultRunDir = "/run/openvswitch"

// SocketPath returns the database socket a client should use, as ovs-vsctl
// chooses it: explicit when given (with or without a "unix:" prefix), else
// $OVS_RUNDIR/db.sock, else /run/openvswitch/db.sock.
func SocketPath(explicit string) string {
	if explicit != "" {
		return strings.TrimPrefix(explicit, "unix:")
	}
	if d := os.Getenv("OVS_RUNDIR"); d != "" {
		return filepath.Join(d, "db.sock")
	}
	return filepath.Join(DefaultRunDir, "db.sock")
}

// replyTimeout bounds writes the client makes on its own (echo replies,
// cancels): a server that reads nothing for that long is given up.
const replyTimeout = 10 * time.Second

// ErrClosed is returned by calls on a closed client.
var ErrClosed = errors.New("ovsdb: client closed")

// Client is a JSON-RPC connection to ovsdb-server, safe for concurrent use.
// It answers the server's echo requests, so the server's inactivity probe
// never drops it. A lost connection fails every pending and later call;
// Dial again to go on.
type Client struct {
	path string
	conn net.Conn

	wmu sync.Mutex // one message on the stream at a time

	mu      sync.Mutex
	pending map[uint64]chan response
	err     error // set once the connection is unusable

	nextID atomic.Uint64
	echoes atomic.Int64 // echo requests answered, for tests
	done   chan struct{}
}

type response struct {
	result json.RawMessage
	err    error
}

// Dial connects to the database server listening on the UNIX socket at
// SocketPath(path).
func Dial(ctx context.Context, path string) (*Client, error) {
	path = SocketPath(path)
	if strings.Contains(path, ":") && !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("ovsdb: socket %q: only unix: sockets are supported; name a socket path", path)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, dialError(path, err)
	}
	c := &Client{path: path, conn: conn, pending: map[uint64]chan response{}, done: make(chan struct{})}
	go c.read()
	return c, nil
}

func dialError(path string, err error) error {
	var hint string
	switch {
	case errors.Is(err, os.ErrNotExist):
		hint = "no such socket"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return fmt.Errorf("ovsdb: connect %s: %w", path, err)
	default:
		var op *net.OpError
		if errors.As(err, &op) && op.Err != nil {
			hint = op.Err.Error()
		} else {
			hint = err.Error()
		}
	}
	return fmt.Errorf("ovsdb: no database server at %s (%s); start Open vSwitch (systemctl start openvswitch-switch) or point OVS_RUNDIR at its run directory", path, hint)
}

// Path is the socket the client is connected to.
func (c *Client) Path() string { return c.path }

// Close ends the connection; pending calls fail with ErrClosed.
func (c *Client) Close() error {
	c.fail(ErrClosed)
	<-c.done
	return nil
}

// fail marks the connection unusable and wakes every pending call.
func (c *Client) fail(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	pending := c.pending
	c.pending = nil
	c.mu.Unlock()
	c.conn.Close()
	for _, ch := range pending {
		ch <- response{err: err}
	}
}

// wire forms of JSON-RPC 1.0 messages; OVSDB wants every member present.
type request struct {
	Method string `json:"method"`
	Params any    `json:"params"`
	ID     any    `json:"id"`
}

type reply struct {
	Result any `json:"result"`
	Error  any `json:"error"`
	ID     any `json:"id"`
}

type incoming struct {
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	Result json.RawMessage `json:"result"`
	Error  json.RawMessage `json:"error"`
	ID     json.RawMessage `json:"id"`
}

func (c *Client) read() {
	defer close(c.done)
	dec := json.NewDecoder(c.conn)
	for {
		var m incoming
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			c.fail(fmt.Errorf("ovsdb: connection to %s lost: %v", c.path, err))
			return
		}
		if m.Method != "" {
			c.serve(&m)
			continue
		}
		id, err := strconv.ParseUint(string(m.ID), 10, 64)
		if err != nil {
			continue // a reply to nothing this client sent
		}
		c.mu.Lock()
		ch := c.pending[id]
		delete(c.pending, id)
		c.mu.Unlock()
		if ch == nil {
			continue // its caller gave up
		}
		r := response{result: m.Result}
		if len(m.Error) > 0 && !bytes.Equal(m.Error, []byte("null")) {
			r.err = decodeRPCError(m.Error)
		}
		ch <- r
	}
}

// serve answers the server's requests; notifications (updates of monitors
// this client never sets up) are dropped.
func (c *Client) serve(m *incoming) {
	if m.Method != "echo" || len(m.ID) == 0 || bytes.Equal(m.ID, []byte("null")) {
		return
	}
	params := m.Params
	if len(params) == 0 {
		params = json.RawMessage("[]")
	}
	ctx, cancel := context.WithTimeout(context.Background(), replyTimeout)
	defer cancel()
	if err := c.write(ctx, reply{Result: params, Error: nil, ID: m.ID}); err == nil {
		c.echoes.Add(1)
	}
}

// write sends one message; a write cut short leaves half a message on the
// stream, so any write error ends the connection.
func (c *Client) write(ctx context.Context, msg any) error {
	b, err := json.Marshal(msg)
	if err != nil {
		return fmt.Errorf("ovsdb: encode: %w", err)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if dl, ok := ctx.Deadline(); ok {
		c.conn.SetWriteDeadline(dl)
	} else {
		c.conn.SetWriteDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { c.conn.SetWriteDeadline(time.Now()) })
	_, err = c.conn.Write(b)
	stop()
	if err != nil {
		err = fmt.Errorf("ovsdb: write to %s: %v", c.path, err)
		c.fail(err)
		return err
	}
	return nil
}

// call sends method(params…) and decodes the result into out (if not nil).
func (c *Client) call(ctx context.Context, method string, params []any, out any) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("ovsdb %s: %w", method, err)
	}
	id := c.nextID.Add(1)
	ch := make(chan response, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return err
	}
	c.pending[id] = ch
	c.mu.Unlock()
	if params == nil {
		params = []any{}
	}
	if err := c.write(ctx, request{Method: method, Params: params, ID: id}); err != nil {
		c.forget(id)
		return err
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return r.err
		}
		if out == nil {
			return nil
		}
		if err := json.Unmarshal(r.result, out); err != nil {
			return fmt.Errorf("ovsdb %s: decode reply: %v", method, err)
		}
		return nil
	case <-ctx.Done():
		c.forget(id)
		if method == "transact" {
			// The server may hold a waiting transaction: withdraw it (RFC 7047 4.1.4).
			cctx, cancel := context.WithTimeout(context.Background(), replyTimeout)
			c.write(cctx, request{Method: "cancel", Params: []any{id}, ID: nil})
			cancel()
		}
		return fmt.Errorf("ovsdb %s: %w", method, ctx.Err())
	}
}

func (c *Client) forget(id uint64) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// RPCError is an error the server returned for a whole request.
type RPCError struct {
	Err     string // e.g. "unknown database"
	Details string
}

func (e *RPCError) Error() string {
	if e.Details != "" {
		return e.Err + ": " + e.Details
	}
	return e.Err
}

func decodeRPCError(raw json.RawMessage) error {
	var obj struct {
		Error   string `json:"error"`
		Details string `json:"details"`
	}
	if json.Unmarshal(raw, &obj) == nil && obj.Error != "" {
		return &RPCError{Err: obj.Error, Details: obj.Details}
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return &RPCError{Err: s}
	}
	return &RPCError{Err: string(raw)}
}

// Echo sends an echo request and waits for the server's reply.
func (c *Client) Echo(ctx context.Context) error {
	var out []string
	if err := c.call(ctx, "echo", []any{"ctnet"}, &out); err != nil {
		return wrapRPC("echo", "", err)
	}
	if len(out) != 1 || out[0] != "ctnet" {
		return fmt.Errorf("ovsdb echo: server answered %q", out)
	}
	return nil
}

// ListDBs returns the names of the databases the server holds.
func (c *Client) ListDBs(ctx context.Context) ([]string, error) {
	var out []string
	if err := c.call(ctx, "list_dbs", nil, &out); err != nil {
		return nil, wrapRPC("list_dbs", "", err)
	}
	return out, nil
}

// GetSchema returns the schema of database db.
func (c *Client) GetSchema(ctx context.Context, db string) (*Schema, error) {
	var s Schema
	if err := c.call(ctx, "get_schema", []any{db}, &s); err != nil {
		return nil, wrapRPC("get_schema", db, err)
	}
	return &s, nil
}

func wrapRPC(method, db string, err error) error {
	var re *RPCError
	if !errors.As(err, &re) {
		return err
	}
	if db != "" {
		return fmt.Errorf("ovsdb %s %s: %w", method, db, err)
	}
	return fmt.Errorf("ovsdb %s: %w", method, err)
}
