package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ctnet/ctnet/internal/driver/bridge"
	"github.com/ctnet/ctnet/internal/ipam"
	"github.com/ctnet/ctnet/internal/netx"
	"github.com/ctnet/ctnet/internal/store"
)

// The default network, as Docker's `bridge` on docker0.
const (
	DefaultNetwork = "bridge"
	DefaultBridge  = "ctnet0"
)

// Docker's bridge driver options; anything else is an error.
const (
	OptBridgeName = "com.docker.network.bridge.name"
	OptICC        = "com.docker.network.bridge.enable_icc"
	OptMasquerade = "com.docker.network.bridge.enable_ip_masquerade"
	OptMTU        = "com.docker.network.driver.mtu"
)

var knownOptions = map[string]bool{OptBridgeName: true, OptICC: true, OptMasquerade: true, OptMTU: true}

// Predefined networks that are modes, not stored networks (as in Docker).
var predefined = map[string]string{"host": "host", "none": "null"}

// validName is Docker's rule for network and container names:
// [a-zA-Z0-9][a-zA-Z0-9_.-]* (checked by hand: a regexp costs start-up time).
func validName(s string) bool {
	for i, r := range s {
		alnum := r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
		if !alnum && (i == 0 || (r != '_' && r != '.' && r != '-')) {
			return false
		}
	}
	return s != ""
}

// SubnetSpec is one --subnet with the --gateway, --ip-range and
// --aux-address that go with it.
type SubnetSpec struct {
	Subnet, Gateway, IPRange string
	AuxAddresses             map[string]string
}

// NetworkSpec is what `network create` asks for.
type NetworkSpec struct {
	Name     string
	Driver   string
	Subnets  []SubnetSpec
	Internal bool
	IPv6     bool
	Options  map[string]string
	Labels   map[string]string
}

// NetworkInfo is a network with its endpoints, for inspect and ls.
type NetworkInfo struct {
	Network
	Endpoints []Endpoint
}

// CreateNetwork validates spec, makes the bridge and firewall elements, and
// records the network. On any error nothing is left behind.
func (e *Engine) CreateNetwork(spec NetworkSpec) (*Network, error) {
	if err := RequireRoot(); err != nil {
		return nil, err
	}
	if err := e.prepare(); err != nil {
		return nil, err
	}
	var n *Network
	err := e.repairing(func() error {
		return e.store.Update(func(tx store.Tx) error {
			var err error
			n, err = e.createNetwork(tx, spec)
			return err
		})
	})
	return n, err
}

func (e *Engine) createNetwork(tx store.Tx, spec NetworkSpec) (n *Network, err error) {
	what := fmt.Sprintf("network %q", spec.Name)
	if !validName(spec.Name) {
		return nil, fmt.Errorf("%s: invalid name: use letters, digits and _ . - (starting with a letter or digit)", spec.Name)
	}
	if _, ok := predefined[spec.Name]; ok {
		return nil, fmt.Errorf("%s: the name is reserved for the %s mode", what, spec.Name)
	}
	if old, _ := getJSON[Network](tx, store.Networks, spec.Name); old != nil {
		return nil, fmt.Errorf("%s already exists (id %s); pick another name or remove it with `ctnet network rm %s`", what, ShortID(old.ID), spec.Name)
	}
	switch spec.Driver {
	case "", "bridge":
	default:
		return nil, fmt.Errorf("%s: unknown driver %q; ctnet has: bridge", what, spec.Driver)
	}
	n = &Network{
		Name:     spec.Name,
		ID:       newID(),
		Created:  time.Now().UTC(),
		Driver:   "bridge",
		Internal: spec.Internal,
		IPv6:     spec.IPv6,
		Options:  map[string]string{},
		Labels:   spec.Labels,
	}
	for k, v := range spec.Options {
		if !knownOptions[k] {
			return nil, fmt.Errorf("%s: unknown option %q; the bridge driver takes %s", what, k, strings.Join(sortedKeys(knownOptions), ", "))
		}
		n.Options[k] = v
	}
	for _, k := range []string{OptICC, OptMasquerade} {
		if v, ok := n.Options[k]; ok {
			if _, err := strconv.ParseBool(v); err != nil {
				return nil, fmt.Errorf("%s: option %s=%q: want true or false", what, k, v)
			}
		}
	}
	n.Bridge = n.Options[OptBridgeName]
	if n.Bridge == "" {
		n.Bridge = "br-" + ShortID(n.ID)
		if n.Name == DefaultNetwork {
			n.Bridge = DefaultBridge
		}
	}
	if err := netx.ValidIfName(n.Bridge); err != nil {
		return nil, fmt.Errorf("%s: bridge name: %w", what, err)
	}
	others, err := listJSON[Network](tx, store.Networks, "")
	if err != nil {
		return nil, err
	}
	for _, o := range others {
		if o.Bridge == n.Bridge {
			return nil, fmt.Errorf("%s: bridge %s is already used by network %q", what, n.Bridge, o.Name)
		}
	}
	if l, err := netx.LinkOrNil(e.host, n.Bridge); err != nil {
		return nil, err
	} else if l != nil {
		return nil, fmt.Errorf("%s: an interface named %s already exists on the host; pick another with -o %s=NAME", what, n.Bridge, OptBridgeName)
	}
	if v, ok := n.Options[OptMTU]; ok {
		mtu, err := strconv.Atoi(v)
		if err != nil || mtu < 68 || mtu > 65535 {
			return nil, fmt.Errorf("%s: option %s=%q: want a number from 68 to 65535", what, OptMTU, v)
		}
		n.MTU = mtu
	} else if n.MTU, err = netx.DefaultRouteMTU(e.host); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if n.Subnets, err = e.planSubnets(spec, others); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}

	if err := e.bridge.EnsureNetwork(n.driverNet()); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			e.bridge.DeleteNetwork(n.driverNet())
		}
	}()
	crashPoint("network-create")
	return n, putJSON(tx, store.Networks, n.Name, n)
}

// planSubnets validates the requested subnets, or picks a free one from the
// default pools, avoiding every other network and every host address and route.
func (e *Engine) planSubnets(spec NetworkSpec, others []Network) ([]Subnet, error) {
	hostNets, err := netx.HostPrefixes(e.host)
	if err != nil {
		return nil, err
	}
	var host []netip.Prefix
	for _, p := range hostNets {
		if q, ok := prefixOf(p); ok {
			host = append(host, q)
		}
	}
	taken := func(p netip.Prefix) error {
		for _, o := range others {
			for _, s := range o.Subnets {
				if q, err := netip.ParsePrefix(s.Subnet); err == nil && ipam.Overlaps(p, q) {
					return fmt.Errorf("subnet %s overlaps network %q (%s); pick another with --subnet", p, o.Name, q)
				}
			}
		}
		for _, q := range host {
			if ipam.Overlaps(p, q) {
				return fmt.Errorf("subnet %s overlaps %s, a route or address on the host; pick another with --subnet", p, q)
			}
		}
		return nil
	}

	var out []Subnet
	var v4, v6 int
	for _, s := range spec.Subnets {
		sub, err := ipam.NewSubnet(s.Subnet, s.Gateway, s.IPRange, s.AuxAddresses)
		if err != nil {
			return nil, err
		}
		if err := taken(sub.Prefix); err != nil {
			return nil, err
		}
		for _, prev := range out {
			if q := netip.MustParsePrefix(prev.Subnet); ipam.Overlaps(q, sub.Prefix) {
				return nil, fmt.Errorf("subnets %s and %s overlap", q, sub.Prefix)
			}
		}
		if sub.Prefix.Addr().Is4() {
			v4++
		} else {
			v6++
		}
		out = append(out, fromIPAM(sub))
	}
	if v6 > 0 && !spec.IPv6 {
		return nil, fmt.Errorf("an IPv6 --subnet needs --ipv6")
	}
	if spec.IPv6 && v6 == 0 {
		return nil, fmt.Errorf("--ipv6 needs an IPv6 --subnet (for example --subnet fd00:1::/64)")
	}
	if v4 == 0 {
		var used []netip.Prefix
		used = append(used, host...)
		for _, o := range others {
			for _, s := range o.Subnets {
				if q, err := netip.ParsePrefix(s.Subnet); err == nil {
					used = append(used, q)
				}
			}
		}
		p, err := ipam.PickSubnet(ipam.DefaultPools(), used)
		if err != nil {
			return nil, err
		}
		sub, err := ipam.NewSubnet(p.String(), "", "", nil)
		if err != nil {
			return nil, err
		}
		out = append([]Subnet{fromIPAM(sub)}, out...)
	}
	return out, nil
}

func fromIPAM(s ipam.Subnet) Subnet {
	out := Subnet{Subnet: s.Prefix.String(), Gateway: s.Gateway.String()}
	if s.Range.IsValid() {
		out.IPRange = s.Range.String()
	}
	if len(s.Aux) > 0 {
		out.AuxAddresses = map[string]string{}
		for k, v := range s.Aux {
			out.AuxAddresses[k] = v.String()
		}
	}
	return out
}

func (s Subnet) plan() (ipam.Subnet, error) {
	return ipam.NewSubnet(s.Subnet, s.Gateway, s.IPRange, s.AuxAddresses)
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones).Masked(), true
}

func (n *Network) option(k string, def bool) bool {
	if v, ok := n.Options[k]; ok {
		b, _ := strconv.ParseBool(v)
		return b
	}
	return def
}

// driverNet is the network as the bridge driver sees it.
func (n *Network) driverNet() bridge.Network {
	d := bridge.Network{
		Name:       n.Name,
		Bridge:     n.Bridge,
		MTU:        n.MTU,
		Masquerade: n.option(OptMasquerade, true),
		Internal:   n.Internal,
		ICC:        n.option(OptICC, true),
		IPv6:       n.IPv6,
	}
	for _, s := range n.Subnets {
		_, sn, err := net.ParseCIDR(s.Subnet)
		if err != nil {
			continue
		}
		d.Subnets = append(d.Subnets, sn)
		d.Gateways = append(d.Gateways, &net.IPNet{IP: net.ParseIP(s.Gateway), Mask: sn.Mask})
	}
	return d
}

// findNetwork looks a network up by name, full id or unique id prefix.
func findNetwork(tx store.Tx, ref string) (*Network, error) {
	if n, err := getJSON[Network](tx, store.Networks, ref); n != nil || err != nil {
		return n, err
	}
	all, err := listJSON[Network](tx, store.Networks, "")
	if err != nil {
		return nil, err
	}
	var found *Network
	for i := range all {
		if ref != "" && strings.HasPrefix(all[i].ID, ref) {
			if found != nil {
				return nil, fmt.Errorf("network id prefix %q is ambiguous; give more characters", ref)
			}
			found = &all[i]
		}
	}
	if found == nil {
		return nil, &NotFoundError{Kind: "network", Ref: ref, Hint: "list networks with `ctnet network ls`"}
	}
	return found, nil
}

// NotFoundError names a missing object and what to do about it.
type NotFoundError struct{ Kind, Ref, Hint string }

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("%s %q not found; %s", e.Kind, e.Ref, e.Hint)
}

// IsNotFound reports whether err says an object does not exist.
func IsNotFound(err error) bool {
	var nf *NotFoundError
	return errors.As(err, &nf)
}

// RemoveNetwork removes networks by name or id; each one must have no
// endpoints. It goes on past failures and reports them all.
func (e *Engine) RemoveNetwork(refs ...string) (removed []string, err error) {
	if err := RequireRoot(); err != nil {
		return nil, err
	}
	if err := e.prepare(); err != nil {
		return nil, err
	}
	var errs []error
	for _, ref := range refs {
		err := e.store.Update(func(tx store.Tx) error {
			if kind, ok := predefined[ref]; ok {
				return fmt.Errorf("network %q is a pre-defined network (driver %s) and cannot be removed", ref, kind)
			}
			n, err := findNetwork(tx, ref)
			if err != nil {
				return err
			}
			if n.Name == DefaultNetwork {
				return fmt.Errorf("network %q is the default network and cannot be removed", n.Name)
			}
			eps, err := listJSON[Endpoint](tx, store.Endpoints, "")
			if err != nil {
				return err
			}
			var users []string
			for _, ep := range eps {
				if ep.NetworkID == n.ID {
					users = append(users, ep.Name)
				}
			}
			if len(users) > 0 {
				return fmt.Errorf("network %q is in use by %d endpoint(s) (%s); disconnect them or remove their containers first", n.Name, len(users), strings.Join(users, ", "))
			}
			if err := tx.Delete(store.Networks, n.Name); err != nil {
				return err
			}
			crashPoint("network-rm")
			if err := e.bridge.DeleteNetwork(n.driverNet()); err != nil {
				return err
			}
			removed = append(removed, ref)
			return nil
		})
		if err != nil {
			errs = append(errs, err)
		}
	}
	return removed, errors.Join(errs...)
}

// Networks lists every network with its endpoints, default network first,
// then by name, then the predefined modes.
func (e *Engine) Networks() ([]NetworkInfo, error) {
	if err := e.prepare(); err != nil {
		return nil, err
	}
	var out []NetworkInfo
	err := e.store.View(func(tx store.Tx) error {
		nets, err := listJSON[Network](tx, store.Networks, "")
		if err != nil {
			return err
		}
		eps, err := listJSON[Endpoint](tx, store.Endpoints, "")
		if err != nil {
			return err
		}
		for _, n := range nets {
			info := NetworkInfo{Network: n}
			for _, ep := range eps {
				if ep.NetworkID == n.ID {
					info.Endpoints = append(info.Endpoints, ep)
				}
			}
			out = append(out, info)
		}
		return nil
	})
	sort.SliceStable(out, func(i, j int) bool {
		if (out[i].Name == DefaultNetwork) != (out[j].Name == DefaultNetwork) {
			return out[i].Name == DefaultNetwork
		}
		return out[i].Name < out[j].Name
	})
	for _, name := range []string{"host", "none"} {
		out = append(out, predefinedNetwork(name))
	}
	return out, err
}

// InspectNetwork returns one network by name, id or unique id prefix.
func (e *Engine) InspectNetwork(ref string) (*NetworkInfo, error) {
	if err := e.prepare(); err != nil {
		return nil, err
	}
	var info *NetworkInfo
	err := e.store.View(func(tx store.Tx) error {
		n, err := findNetwork(tx, ref)
		if err != nil {
			return err
		}
		info = &NetworkInfo{Network: *n}
		eps, err := listJSON[Endpoint](tx, store.Endpoints, "")
		for _, ep := range eps {
			if ep.NetworkID == n.ID {
				info.Endpoints = append(info.Endpoints, ep)
			}
		}
		return err
	})
	if IsNotFound(err) {
		for _, name := range []string{"host", "none"} {
			if p := predefinedNetwork(name); ref == name || (ref != "" && strings.HasPrefix(p.ID, ref)) {
				return &p, nil
			}
		}
	}
	return info, err
}

// predefinedNetwork is the host or none mode, shown as Docker shows them.
func predefinedNetwork(name string) NetworkInfo {
	return NetworkInfo{Network: Network{Name: name, ID: predefinedID(name), Driver: predefined[name]}}
}

// predefinedID is a stable id for the host and none modes.
func predefinedID(name string) string {
	sum := sha256.Sum256([]byte("ctnet predefined network " + name))
	return hex.EncodeToString(sum[:])
}

// ensureDefault creates the default network the first time any command
// needs it, exactly as `network create` would.
func (e *Engine) ensureDefault() error {
	var ok bool
	e.store.View(func(tx store.Tx) error {
		ok = tx.Get(store.Networks, DefaultNetwork) != nil
		return nil
	})
	if ok {
		return nil
	}
	if err := RequireRoot(); err != nil {
		return err
	}
	return e.store.Update(func(tx store.Tx) error {
		if tx.Get(store.Networks, DefaultNetwork) != nil {
			return nil // another process made it meanwhile
		}
		_, err := e.createNetwork(tx, NetworkSpec{
			Name:    DefaultNetwork,
			Options: map[string]string{OptBridgeName: DefaultBridge},
		})
		if err != nil {
			return fmt.Errorf("create the default network: %w", err)
		}
		return nil
	})
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
