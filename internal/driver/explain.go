package driver

import (
	"context"
	"fmt"
	"strings"
	"sync"
)

// Command is one step of an explanation: a command line a person could type
// for what a driver would do (Args), or only a remark (no Args).
type Command struct {
	Why  string
	Args []string
}

// Cmd is a command with its reason.
func Cmd(why string, args ...string) Command { return Command{Why: why, Args: args} }

// Note is a remark without a command.
func Note(format string, args ...any) Command { return Command{Why: fmt.Sprintf(format, args...)} }

// Line is the command as sh reads it back ("" for a remark).
func (c Command) Line() string {
	q := make([]string, len(c.Args))
	for i, a := range c.Args {
		q[i] = Quote(a)
	}
	return strings.Join(q, " ")
}

// Quote quotes s for sh when it needs it.
func Quote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@,+%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Explainer is a driver that can say what its kernel work would be, as the
// commands a person could type, without doing it. It reads the kernel (what
// exists already) and never changes it; what it says comes from the same
// facts its methods act on.
type Explainer interface {
	ExplainCreateNetwork(n Network) ([]Command, error)
	ExplainDeleteNetwork(n Network) ([]Command, error)
	ExplainJoin(n Network, ep Endpoint, sb Sandbox) ([]Command, error)
	ExplainLeave(n Network, ep Endpoint, nsGoing bool) ([]Command, error)
	ExplainPublish(n Network, ep Endpoint) ([]Command, error)
	ExplainUnpublish(n Network, ep Endpoint) ([]Command, error)
}

// Log collects an explanation; it is safe for concurrent use.
type Log struct {
	mu   sync.Mutex
	cmds []Command
}

// Add appends commands.
func (l *Log) Add(cs ...Command) {
	l.mu.Lock()
	l.cmds = append(l.cmds, cs...)
	l.mu.Unlock()
}

// Commands is everything added so far.
func (l *Log) Commands() []Command {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Command(nil), l.cmds...)
}

// Explaining wraps d so that it plans as d does (PlanNetwork, CreateEndpoint
// and Filter are d's own) but tells log what each kernel step would be
// instead of doing it. d must be an Explainer.
func Explaining(d Driver, log *Log) (Driver, error) {
	e, ok := d.(Explainer)
	if !ok {
		return nil, fmt.Errorf("driver %s cannot explain what it does", d.Name())
	}
	return &explaining{Driver: d, e: e, log: log}, nil
}

type explaining struct {
	Driver
	e   Explainer
	log *Log
}

func (x *explaining) add(cs []Command, err error) error {
	if err != nil {
		return err
	}
	x.log.Add(cs...)
	return nil
}

func (x *explaining) CreateNetwork(ctx context.Context, n Network) error {
	return x.add(x.e.ExplainCreateNetwork(n))
}

func (x *explaining) DeleteNetwork(ctx context.Context, n Network) error {
	return x.add(x.e.ExplainDeleteNetwork(n))
}

func (x *explaining) Join(ctx context.Context, n Network, ep Endpoint, sb Sandbox) error {
	return x.add(x.e.ExplainJoin(n, ep, sb))
}

func (x *explaining) Leave(ctx context.Context, n Network, ep Endpoint, nsGoing bool) error {
	return x.add(x.e.ExplainLeave(n, ep, nsGoing))
}

func (x *explaining) Publish(ctx context.Context, n Network, ep Endpoint) error {
	return x.add(x.e.ExplainPublish(n, ep))
}

func (x *explaining) Unpublish(ctx context.Context, n Network, ep Endpoint) error {
	return x.add(x.e.ExplainUnpublish(n, ep))
}

func (x *explaining) Inventory(ctx context.Context) (Inventory, error) { return nil, nil }

func (x *explaining) Reconcile(ctx context.Context, inv Inventory, s State, logf Logf) error {
	x.log.Add(Note("%s", "first, ctnet would make the kernel agree with its store (what `ctnet system reconcile` does): "+
		"its nftables tables inet ctnet and bridge ctnet with their fixed rules, and the "+x.Name()+
		" networks it knows; run `ctnet network ls` once to have that done, then explain again"))
	return nil
}
