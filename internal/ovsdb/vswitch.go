package ovsdb

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sort"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"

	"github.com/ctnet/ctnet/internal/netx"
)

// DB is the database Open vSwitch keeps its configuration in.
const DB = "Open_vSwitch"

// Datapath types of a bridge.
const (
	DatapathSystem = "system" // the kernel's openvswitch module ("" means the same)
	DatapathNetdev = "netdev" // ovs-vswitchd's userspace datapath
)

// MaxTag is the highest VLAN tag a port can carry.
const MaxTag = 4095

// Tag returns a VLAN tag for PortSpec.Tag.
func Tag(n int) *int { return &n }

// System is what the root Open_vSwitch row says about this Open vSwitch.
// DatapathTypes lists what ovs-vswitchd was built with, not what works:
// "system" is there without the kernel module too (see KernelDatapath).
type System struct {
	UUID                      UUID
	OVSVersion, DBVersion     string
	SystemType, SystemVersion string
	DatapathTypes, IfaceTypes []string
	NextCfg, CurCfg           int64
	OtherConfig, ExternalIDs  map[string]string
	bridges, managers         []UUID
}

// Bridge is a bridge with its ports, as the database holds it.
type Bridge struct {
	UUID         UUID
	Name         string
	DatapathType string
	FailMode     string
	ExternalIDs  map[string]string
	OtherConfig  map[string]string
	Controllers  []Target
	Ports        []Port // in UUID order, as ovs-vsctl show prints them
}

// Target is a controller or manager connection.
type Target struct {
	Target      string
	IsConnected bool
}

// Port is a bridge port.
type Port struct {
	UUID        UUID
	Name        string
	Tag         *int
	Trunks      []int
	VLANMode    string
	ExternalIDs map[string]string
	Interfaces  []Interface
}

// Interface is a port's interface; the fields after Options are what
// ovs-vswitchd reports once it has applied it.
type Interface struct {
	UUID        UUID
	Name        string
	Type        string
	Options     map[string]string
	ExternalIDs map[string]string
	MTURequest  int
	OFPort      *int   // -1: ovs-vswitchd failed to add it
	Error       string // why it failed
	MTU         int
	MACInUse    string
	IfIndex     int
	LinkState   string
	AdminState  string
	BFDStatus   map[string]string
}

// KernelDatapath says whether the kernel's openvswitch datapath is there
// (its generic netlink family exists): without it, bridges must use
// DatapathNetdev. Families are global, not per network namespace; where the
// module is installed but not loaded, the lookup loads it, as ovs-vswitchd's
// own would.
func KernelDatapath() (bool, error) {
	_, err := netlink.GenlFamilyGet("ovs_datapath")
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, syscall.ENOENT):
		return false, nil
	}
	return false, fmt.Errorf("look up the openvswitch netlink family: %w", err)
}

func validName(what, name string) error {
	if err := netx.ValidIfName(name); err != nil {
		return fmt.Errorf("%s %q: %v", what, name, err)
	}
	return nil
}

func validExternalIDs(what string, m map[string]string) error {
	for k := range m {
		if k == "" {
			return fmt.Errorf("%s: external_ids key is empty", what)
		}
	}
	return nil
}

// normDatapath maps "" to its meaning, "system".
func normDatapath(t string) string {
	if t == "" {
		return DatapathSystem
	}
	return t
}

// System reads the root row.
func (c *Client) System(ctx context.Context) (*System, error) {
	res, err := c.Transact(ctx, DB, Select{Table: "Open_vSwitch"})
	if err != nil {
		return nil, err
	}
	return systemOf(res[0].Rows)
}

var errNoRoot = errors.New("ovsdb: the Open_vSwitch table has no row: the database is not initialised (ovs-vsctl init)")

func systemOf(rows []Row) (*System, error) {
	if len(rows) == 0 {
		return nil, errNoRoot
	}
	r := rows[0]
	s := &System{
		UUID: r.UUID(), OVSVersion: r.String("ovs_version"), DBVersion: r.String("db_version"),
		SystemType: r.String("system_type"), SystemVersion: r.String("system_version"),
		DatapathTypes: r.Strings("datapath_types"), IfaceTypes: r.Strings("iface_types"),
		OtherConfig: r.StringMap("other_config"), ExternalIDs: r.StringMap("external_ids"),
		bridges: sortedUUIDs(r.UUIDs("bridges")), managers: sortedUUIDs(r.UUIDs("manager_options")),
	}
	s.NextCfg, _ = r.Int("next_cfg")
	s.CurCfg, _ = r.Int("cur_cfg")
	return s, nil
}

// sortedUUIDs orders UUIDs as OVSDB orders a set of them: the canonical
// lower-case form compares as the 32-bit words OVSDB compares.
func sortedUUIDs(u []UUID) []UUID {
	slices.Sort(u)
	return u
}

func eq(col string, v any) []Condition { return []Condition{Cond(col, "==", v)} }

// BridgeSpec is a bridge to ensure.
type BridgeSpec struct {
	Name         string
	DatapathType string            // "" or DatapathSystem, or DatapathNetdev
	ExternalIDs  map[string]string // set on the bridge; other keys stay
	MTU          int               // mtu_request of its internal port; 0: OVS's choice
}

func (s BridgeSpec) validate() error {
	if err := validName("bridge", s.Name); err != nil {
		return err
	}
	switch s.DatapathType {
	case "", DatapathSystem, DatapathNetdev:
	default:
		return fmt.Errorf("bridge %q: unknown datapath type %q; use %q (kernel) or %q (userspace)",
			s.Name, s.DatapathType, DatapathSystem, DatapathNetdev)
	}
	if s.MTU != 0 && (s.MTU < 68 || s.MTU > 65535) {
		return fmt.Errorf("bridge %q: MTU %d out of range 68..65535", s.Name, s.MTU)
	}
	return validExternalIDs(fmt.Sprintf("bridge %q", s.Name), s.ExternalIDs)
}

// attempts bounds the retries of a read-then-write whose write found the
// database changed by someone else in between.
const attempts = 5

var errRetry = errors.New("database changed, retry")

// retry runs f until it returns something other than errRetry.
func retry(what string, f func() error) error {
	for i := 0; i < attempts; i++ {
		if err := f(); !errors.Is(err, errRetry) {
			return err
		}
	}
	return fmt.Errorf("%s: the database kept changing under %d attempts; try again", what, attempts)
}

// indexClash says whether a transaction failed because a name was taken
// meanwhile.
func indexClash(err error) bool {
	var oe *OpError
	return errors.As(err, &oe) && oe.Op == "commit" && oe.Err == "constraint violation" &&
		strings.Contains(oe.Details, "identical values")
}

// EnsureBridge creates the bridge (with its internal port of the same name,
// as ovs-vsctl add-br does) or, if it exists with the same datapath type,
// adds the spec's external_ids to it (the MTU is applied at creation only).
// Each change is one transaction; a bridge that already is as asked costs
// one read.
//
// A netdev bridge also turns on userspace-tso-enable in the root row's
// other_config in the same transaction, unless that key is already set:
// without it the userspace datapath passes on the veth's partial checksums
// and TCP between containers stalls while ping works. ovs-vswitchd reads it
// only before it opens its first tap, so taps made earlier stay without.
func (c *Client) EnsureBridge(ctx context.Context, spec BridgeSpec) error {
	if err := spec.validate(); err != nil {
		return err
	}
	what := "ensure bridge " + spec.Name
	return retry(what, func() error {
		res, err := c.Transact(ctx, DB,
			Select{Table: "Bridge", Where: eq("name", spec.Name), Columns: []string{"_uuid", "datapath_type", "external_ids"}},
			Select{Table: "Open_vSwitch", Columns: []string{"_uuid"}})
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if len(res[1].Rows) == 0 {
			return fmt.Errorf("%s: %w", what, errNoRoot)
		}
		root := res[1].Rows[0].UUID()
		if rows := res[0].Rows; len(rows) > 0 {
			return c.updateBridge(ctx, spec, rows[0])
		}
		iface := Row{"name": spec.Name, "type": "internal"}
		if spec.MTU != 0 {
			iface["mtu_request"] = spec.MTU
		}
		br := Row{"name": spec.Name, "ports": UUIDSet(NamedUUID("port")), "external_ids": StringMap(spec.ExternalIDs)}
		if spec.DatapathType != "" {
			br["datapath_type"] = spec.DatapathType
		}
		muts := []Mutation{Mut("bridges", "insert", UUIDSet(NamedUUID("bridge")))}
		if spec.DatapathType == DatapathNetdev {
			// A map's insert leaves a key that is already there alone.
			muts = append(muts, Mut("other_config", "insert", Map{"userspace-tso-enable": "true"}))
		}
		res, err = c.Transact(ctx, DB,
			Insert{Table: "Interface", Row: iface, UUIDName: "iface"},
			Insert{Table: "Port", Row: Row{"name": spec.Name, "interfaces": UUIDSet(NamedUUID("iface"))}, UUIDName: "port"},
			Insert{Table: "Bridge", Row: br, UUIDName: "bridge"},
			Mutate{Table: "Open_vSwitch", Where: eq("_uuid", root), Mutations: muts},
			Comment{Comment: "ctnet: " + what})
		switch {
		case indexClash(err):
			return errRetry
		case err != nil:
			return fmt.Errorf("%s: %w", what, err)
		case res[3].Count != 1:
			return errRetry // the root row went; the rows inserted went with it
		}
		return nil
	})
}

func (c *Client) updateBridge(ctx context.Context, spec BridgeSpec, row Row) error {
	what := "ensure bridge " + spec.Name
	if have := row.String("datapath_type"); normDatapath(have) != normDatapath(spec.DatapathType) {
		return fmt.Errorf("%s: it exists with datapath type %q, not %q; delete it first or ask for %q",
			what, normDatapath(have), normDatapath(spec.DatapathType), normDatapath(have))
	}
	have := row.StringMap("external_ids")
	missing := false
	for k, v := range spec.ExternalIDs {
		missing = missing || have[k] != v
	}
	if !missing {
		return nil
	}
	keys := StringSet(slices.Sorted(maps.Keys(spec.ExternalIDs))...)
	res, err := c.Transact(ctx, DB,
		Mutate{Table: "Bridge", Where: eq("_uuid", row.UUID()), Mutations: []Mutation{
			Mut("external_ids", "delete", keys),
			Mut("external_ids", "insert", StringMap(spec.ExternalIDs)),
		}},
		Comment{Comment: "ctnet: " + what})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if res[0].Count != 1 {
		return errRetry
	}
	return nil
}

// DeleteBridge removes the bridge and, with it, its ports and interfaces
// (nothing else refers to them, so the database collects them in the same
// transaction). A missing bridge is not an error.
func (c *Client) DeleteBridge(ctx context.Context, name string) error {
	if err := validName("bridge", name); err != nil {
		return err
	}
	what := "delete bridge " + name
	return retry(what, func() error {
		res, err := c.Transact(ctx, DB, Select{Table: "Bridge", Where: eq("name", name), Columns: []string{"_uuid"}})
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if len(res[0].Rows) == 0 {
			return nil
		}
		u := res[0].Rows[0].UUID()
		_, err = c.Transact(ctx, DB,
			// the bridge called name must still be this one
			Wait{Table: "Bridge", Where: eq("name", name), Columns: []string{"_uuid"}, Until: "==", Rows: []Row{{"_uuid": u}}},
			Mutate{Table: "Open_vSwitch", Mutations: []Mutation{Mut("bridges", "delete", UUIDSet(u))}},
			Comment{Comment: "ctnet: " + what})
		var oe *OpError
		if errors.As(err, &oe) && oe.Op == "wait" {
			return errRetry
		}
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	})
}

// PortSpec is a port with one interface of the same name.
type PortSpec struct {
	Bridge string
	Name   string
	// Type is the interface type: "" for a kernel device that exists (the
	// host end of a veth), "internal" for a device OVS makes (a gateway),
	// "patch" for one end of a link to another bridge (Peer names the other
	// end's port).
	Type             string
	Peer             string
	Options          map[string]string
	Tag              *int              // access VLAN; nil: untagged (the port carries every VLAN)
	ExternalIDs      map[string]string // on the port
	IfaceExternalIDs map[string]string // on the interface
	MTU              int               // mtu_request; 0: OVS's choice
	// MAC of an internal port's device; "" lets OVS pick a random one, which
	// changes each time the port is made again (and neighbours keep the old).
	MAC string
}

var errIfaceType = errors.New("unknown interface type")

// interfaceTypes are accepted even before ovs-vswitchd has listed its own.
var interfaceTypes = []string{"", "system", "internal", "patch", "tap"}

func (s PortSpec) validate(ifaceTypes []string) error {
	what := fmt.Sprintf("port %q", s.Name)
	if err := validName("bridge", s.Bridge); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := validName("port", s.Name); err != nil {
		return err
	}
	if !slices.Contains(interfaceTypes, s.Type) && !slices.Contains(ifaceTypes, s.Type) {
		return fmt.Errorf("%s: %w %q; use \"\" (a kernel device), \"internal\" or \"patch\"", what, errIfaceType, s.Type)
	}
	if s.Type == "patch" {
		if s.Peer == "" {
			return fmt.Errorf("%s: a patch port needs a peer (the port at its other end)", what)
		}
		if err := validName("patch peer", s.Peer); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if s.Peer == s.Name {
			return fmt.Errorf("%s: a patch port cannot be its own peer", what)
		}
	} else if s.Peer != "" {
		return fmt.Errorf("%s: a peer is only for a patch port, not type %q", what, s.Type)
	}
	if _, ok := s.Options["peer"]; ok {
		return fmt.Errorf("%s: give the peer as Peer, not as an option", what)
	}
	if s.Tag != nil && (*s.Tag < 0 || *s.Tag > MaxTag) {
		return fmt.Errorf("%s: VLAN tag %d out of range 0..%d", what, *s.Tag, MaxTag)
	}
	if s.MTU != 0 && (s.MTU < 68 || s.MTU > 65535) {
		return fmt.Errorf("%s: MTU %d out of range 68..65535", what, s.MTU)
	}
	if s.MAC != "" {
		if s.Type != "internal" {
			return fmt.Errorf("%s: a MAC can be set only on an internal port, not type %q", what, s.Type)
		}
		if hw, err := net.ParseMAC(s.MAC); err != nil || len(hw) != 6 {
			return fmt.Errorf("%s: MAC %q is not an Ethernet address", what, s.MAC)
		} else if hw[0]&1 != 0 {
			return fmt.Errorf("%s: MAC %q is a multicast address", what, s.MAC)
		}
	}
	if err := validExternalIDs(what, s.ExternalIDs); err != nil {
		return err
	}
	return validExternalIDs(what, s.IfaceExternalIDs)
}

func (s PortSpec) options() map[string]string {
	o := maps.Clone(s.Options)
	if s.Peer != "" {
		if o == nil {
			o = map[string]string{}
		}
		o["peer"] = s.Peer
	}
	return o
}

// AddPort adds the port with its interface to the bridge in one transaction
// (one round trip when the port is new). A port that already is on that
// bridge as the spec describes is left alone; one that differs, or is on
// another bridge, is an error.
func (c *Client) AddPort(ctx context.Context, spec PortSpec) error {
	what := fmt.Sprintf("add port %s to bridge %s", spec.Name, spec.Bridge)
	if err := spec.validate(nil); err != nil {
		if !errors.Is(err, errIfaceType) {
			return err
		}
		// A type beyond the common ones: ask ovs-vswitchd's list.
		sys, serr := c.System(ctx)
		if serr != nil {
			return fmt.Errorf("%s: %w", what, serr)
		}
		if err := spec.validate(sys.IfaceTypes); err != nil {
			return err
		}
	}
	iface := Row{"name": spec.Name, "type": spec.Type, "options": StringMap(spec.options()),
		"external_ids": StringMap(spec.IfaceExternalIDs)}
	if spec.MTU != 0 {
		iface["mtu_request"] = spec.MTU
	}
	if spec.MAC != "" {
		hw, _ := net.ParseMAC(spec.MAC)
		iface["mac"] = hw.String()
	}
	port := Row{"name": spec.Name, "interfaces": UUIDSet(NamedUUID("iface")), "external_ids": StringMap(spec.ExternalIDs)}
	if spec.Tag != nil {
		port["tag"] = *spec.Tag
	}
	return retry(what, func() error {
		// Rows that no bridge ends up referring to are collected at commit,
		// so a missing bridge leaves nothing behind.
		res, err := c.Transact(ctx, DB,
			Insert{Table: "Interface", Row: iface, UUIDName: "iface"},
			Insert{Table: "Port", Row: port, UUIDName: "port"},
			Mutate{Table: "Bridge", Where: eq("name", spec.Bridge), Mutations: []Mutation{Mut("ports", "insert", UUIDSet(NamedUUID("port")))}},
			Comment{Comment: "ctnet: " + what})
		switch {
		case indexClash(err):
			return c.existingPort(ctx, spec)
		case err != nil:
			return fmt.Errorf("%s: %w", what, err)
		case res[2].Count == 0:
			return fmt.Errorf("%s: no bridge %q; create it first", what, spec.Bridge)
		}
		return nil
	})
}

// existingPort decides about a port whose name is taken: nil if it is the
// one spec asks for, an error if it differs, errRetry if it went meanwhile.
func (c *Client) existingPort(ctx context.Context, spec PortSpec) error {
	what := fmt.Sprintf("add port %s to bridge %s", spec.Name, spec.Bridge)
	res, err := c.Transact(ctx, DB,
		Select{Table: "Bridge", Where: eq("name", spec.Bridge), Columns: []string{"_uuid"}},
		Select{Table: "Port", Where: eq("name", spec.Name)},
		Select{Table: "Interface", Where: eq("name", spec.Name)})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	switch {
	case len(res[1].Rows) > 0:
		var bridge UUID
		if len(res[0].Rows) > 0 {
			bridge = res[0].Rows[0].UUID()
		}
		return c.samePort(ctx, spec, bridge, res[1].Rows[0], res[2].Rows)
	case len(res[2].Rows) > 0:
		return fmt.Errorf("%s: an interface %q exists on another port; delete that first", what, spec.Name)
	}
	return errRetry
}

// samePort checks that an existing port is the one spec asks for.
func (c *Client) samePort(ctx context.Context, spec PortSpec, bridge UUID, port Row, ifaces []Row) error {
	what := fmt.Sprintf("add port %s to bridge %s", spec.Name, spec.Bridge)
	res, err := c.Transact(ctx, DB, Select{Table: "Bridge", Where: []Condition{Cond("ports", "includes", UUIDSet(port.UUID()))}, Columns: []string{"_uuid", "name"}})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if len(res[0].Rows) == 0 {
		return errRetry // being deleted
	}
	if owner := res[0].Rows[0]; owner.UUID() != bridge {
		return fmt.Errorf("%s: the port exists on bridge %s; delete it there first", what, owner.String("name"))
	}
	var diffs []string
	tag, tagged := port.Int("tag")
	switch {
	case spec.Tag == nil && tagged:
		diffs = append(diffs, fmt.Sprintf("tag %d", tag))
	case spec.Tag != nil && (!tagged || int(tag) != *spec.Tag):
		diffs = append(diffs, fmt.Sprintf("tag %v", port["tag"]))
	}
	ids := port.UUIDs("interfaces")
	if len(ids) != 1 || len(ifaces) != 1 || ifaces[0].UUID() != ids[0] {
		diffs = append(diffs, fmt.Sprintf("%d interfaces", len(ids)))
	} else {
		i := ifaces[0]
		if i.String("type") != spec.Type {
			diffs = append(diffs, fmt.Sprintf("type %q", i.String("type")))
		}
		opts := i.StringMap("options")
		for k, v := range spec.options() {
			if opts[k] != v {
				diffs = append(diffs, fmt.Sprintf("options:%s=%q", k, opts[k]))
			}
		}
	}
	if len(diffs) > 0 {
		return fmt.Errorf("%s: it exists with %s; delete it first", what, strings.Join(diffs, ", "))
	}
	return nil
}

// DeletePort removes the port (and its interface) from bridge, or from
// whichever bridge has it when bridge is "". A missing port is not an error;
// one on another bridge than the one named is.
func (c *Client) DeletePort(ctx context.Context, bridge, name string) error {
	if bridge != "" {
		if err := validName("bridge", bridge); err != nil {
			return err
		}
	}
	if err := validName("port", name); err != nil {
		return err
	}
	what := "delete port " + name
	if bridge != "" {
		what += " from bridge " + bridge
	}
	return retry(what, func() error {
		res, err := c.Transact(ctx, DB, Select{Table: "Port", Where: eq("name", name), Columns: []string{"_uuid"}})
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if len(res[0].Rows) == 0 {
			return nil
		}
		u := res[0].Rows[0].UUID()
		where := []Condition{Cond("ports", "includes", UUIDSet(u))}
		// the port called name must still be this one
		if bridge != "" {
			where = append(where, Cond("name", "==", bridge))
		}
		res, err = c.Transact(ctx, DB,
			Wait{Table: "Port", Where: eq("name", name), Columns: []string{"_uuid"}, Until: "==", Rows: []Row{{"_uuid": u}}},
			Mutate{Table: "Bridge", Where: where, Mutations: []Mutation{Mut("ports", "delete", UUIDSet(u))}},
			Select{Table: "Bridge", Where: []Condition{Cond("ports", "includes", UUIDSet(u))}, Columns: []string{"name"}},
			Comment{Comment: "ctnet: " + what})
		var oe *OpError
		if errors.As(err, &oe) && oe.Op == "wait" {
			return errRetry
		}
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if res[1].Count == 0 && len(res[2].Rows) > 0 {
			return fmt.Errorf("%s: the port is on bridge %s", what, res[2].Rows[0].String("name"))
		}
		return nil
	})
}

// Switch is the whole picture: the root row, managers and bridges.
type Switch struct {
	System
	Managers []Target
	Bridges  []Bridge // in UUID order, as ovs-vsctl show prints them
}

// Switch reads the root row and the named bridges (all when none is named)
// with their ports and interfaces, in one transaction.
func (c *Client) Switch(ctx context.Context, bridges ...string) (*Switch, error) {
	res, err := c.Transact(ctx, DB,
		Select{Table: "Open_vSwitch"}, Select{Table: "Bridge"}, Select{Table: "Port"},
		Select{Table: "Interface"}, Select{Table: "Controller"}, Select{Table: "Manager"})
	if err != nil {
		return nil, err
	}
	sys, err := systemOf(res[0].Rows)
	if err != nil {
		return nil, err
	}
	byUUID := func(rows []Row) map[UUID]Row {
		m := make(map[UUID]Row, len(rows))
		for _, r := range rows {
			m[r.UUID()] = r
		}
		return m
	}
	brs, ports, ifaces := byUUID(res[1].Rows), byUUID(res[2].Rows), byUUID(res[3].Rows)
	ctls, mgrs := byUUID(res[4].Rows), byUUID(res[5].Rows)
	sw := &Switch{System: *sys}
	for _, u := range sys.managers {
		if r, ok := mgrs[u]; ok {
			sw.Managers = append(sw.Managers, Target{r.String("target"), r.Bool("is_connected")})
		}
	}
	want := map[string]bool{}
	for _, n := range bridges {
		want[n] = true
	}
	found := map[string]bool{}
	for _, u := range sys.bridges {
		r, ok := brs[u]
		if !ok || (len(want) > 0 && !want[r.String("name")]) {
			continue
		}
		found[r.String("name")] = true
		b := Bridge{UUID: u, Name: r.String("name"), DatapathType: r.String("datapath_type"),
			FailMode: r.String("fail_mode"), ExternalIDs: r.StringMap("external_ids"), OtherConfig: r.StringMap("other_config")}
		for _, cu := range sortedUUIDs(r.UUIDs("controller")) {
			if cr, ok := ctls[cu]; ok {
				b.Controllers = append(b.Controllers, Target{cr.String("target"), cr.Bool("is_connected")})
			}
		}
		for _, pu := range sortedUUIDs(r.UUIDs("ports")) {
			if pr, ok := ports[pu]; ok {
				b.Ports = append(b.Ports, portOf(pr, ifaces))
			}
		}
		sw.Bridges = append(sw.Bridges, b)
	}
	for _, n := range bridges {
		if !found[n] {
			return nil, fmt.Errorf("ovsdb: no bridge %q", n)
		}
	}
	return sw, nil
}

// Bridges is Switch's bridges.
func (c *Client) Bridges(ctx context.Context, names ...string) ([]Bridge, error) {
	sw, err := c.Switch(ctx, names...)
	if err != nil {
		return nil, err
	}
	return sw.Bridges, nil
}

func portOf(r Row, ifaces map[UUID]Row) Port {
	p := Port{UUID: r.UUID(), Name: r.String("name"), VLANMode: r.String("vlan_mode"), ExternalIDs: r.StringMap("external_ids")}
	if t, ok := r.Int("tag"); ok {
		p.Tag = Tag(int(t))
	}
	for _, t := range r.Ints("trunks") {
		p.Trunks = append(p.Trunks, int(t))
	}
	sort.Ints(p.Trunks)
	for _, iu := range sortedUUIDs(r.UUIDs("interfaces")) {
		ir, ok := ifaces[iu]
		if !ok {
			continue
		}
		i := Interface{UUID: iu, Name: ir.String("name"), Type: ir.String("type"), Options: ir.StringMap("options"),
			ExternalIDs: ir.StringMap("external_ids"), Error: ir.String("error"), MACInUse: ir.String("mac_in_use"),
			LinkState: ir.String("link_state"), AdminState: ir.String("admin_state"), BFDStatus: ir.StringMap("bfd_status")}
		if v, ok := ir.Int("ofport"); ok {
			ofport := int(v)
			i.OFPort = &ofport
		}
		if v, ok := ir.Int("mtu"); ok {
			i.MTU = int(v)
		}
		if v, ok := ir.Int("mtu_request"); ok {
			i.MTURequest = int(v)
		}
		if v, ok := ir.Int("ifindex"); ok {
			i.IfIndex = int(v)
		}
		p.Interfaces = append(p.Interfaces, i)
	}
	return p
}

// Sync waits until ovs-vswitchd has applied everything committed so far
// (kernel devices of internal ports exist, ofports are assigned), as
// ovs-vsctl does after each change: it bumps next_cfg, then waits on the
// server for cur_cfg to reach it, for as long as ctx allows.
func (c *Client) Sync(ctx context.Context) error {
	res, err := c.Transact(ctx, DB,
		Mutate{Table: "Open_vSwitch", Mutations: []Mutation{Mut("next_cfg", "+=", 1)}},
		Select{Table: "Open_vSwitch", Columns: []string{"next_cfg"}})
	if err != nil {
		return fmt.Errorf("sync with ovs-vswitchd: %w", err)
	}
	if len(res[1].Rows) == 0 {
		return fmt.Errorf("sync with ovs-vswitchd: %w", errNoRoot)
	}
	next, _ := res[1].Rows[0].Int("next_cfg")
	_, err = c.Transact(ctx, DB, Wait{Table: "Open_vSwitch", Where: []Condition{Cond("cur_cfg", "<", next)},
		Columns: []string{"cur_cfg"}, Until: "==", Rows: []Row{}, Timeout: WaitForever})
	if ctx.Err() != nil {
		return fmt.Errorf("sync with ovs-vswitchd: it has not applied configuration %d (is ovs-vswitchd running?): %w", next, ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("sync with ovs-vswitchd: %w", err)
	}
	return nil
}

// CheckInterfaces reports the first of the named interfaces that
// ovs-vswitchd failed to set up (call it after Sync): a missing row, no
// OpenFlow port or ofport -1, with the error ovs-vswitchd recorded.
func (c *Client) CheckInterfaces(ctx context.Context, names ...string) error {
	ops := make([]Operation, len(names))
	for i, n := range names {
		ops[i] = Select{Table: "Interface", Where: eq("name", n), Columns: []string{"ofport", "error"}}
	}
	res, err := c.Transact(ctx, DB, ops...)
	if err != nil {
		return err
	}
	for i, n := range names {
		if len(res[i].Rows) == 0 {
			return fmt.Errorf("interface %s: not in the database", n)
		}
		r := res[i].Rows[0]
		ofport, ok := r.Int("ofport")
		if e := r.String("error"); e != "" {
			return fmt.Errorf("interface %s: %s", n, e)
		}
		if !ok || ofport < 0 {
			return fmt.Errorf("interface %s: ovs-vswitchd did not add it to its datapath (see its log; a %q bridge without the kernel module fails so)", n, DatapathSystem)
		}
	}
	return nil
}
