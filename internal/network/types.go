package network

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/ctnet/ctnet/internal/ipam"
	"github.com/ctnet/ctnet/internal/portspec"
)

// The default network, as Docker's `bridge`.
const DefaultNetwork = "bridge"

// Network is a network definition as stored (persistent).
type Network struct {
	Name    string
	ID      string
	Created time.Time
	Driver  string
	// Bridge is the kernel device the network lives on (its driver picks
	// it; the name is kept for the state files of earlier versions).
	Bridge   string
	MTU      int
	Internal bool
	IPv6     bool
	Subnets  []Subnet
	Options  map[string]string
	Labels   map[string]string
	// Pending is set while the network is being created or removed; a
	// crash leaves it for reconcile to finish ("removing") or undo
	// ("creating").
	Pending string `json:",omitempty"`
	// Host is the host a local-scope network belongs to when hosts share
	// the store ("" = a global network, or the only host's).
	Host string `json:",omitempty"`
	// PendingHost is the host whose operation set Pending: only its
	// reconcile may finish or undo it.
	PendingHost string `json:",omitempty"`
}

// Subnet is one address range of a network, in Docker's IPAM terms.
type Subnet struct {
	Subnet       netip.Prefix
	Gateway      netip.Addr
	IPRange      netip.Prefix          `json:",omitzero"`
	AuxAddresses map[string]netip.Addr `json:"AuxiliaryAddresses,omitempty"`
}

func (s Subnet) plan() (ipam.Subnet, error) {
	aux := map[string]string{}
	for k, v := range s.AuxAddresses {
		aux[k] = v.String()
	}
	r := ""
	if s.IPRange.IsValid() {
		r = s.IPRange.String()
	}
	return ipam.NewSubnet(s.Subnet.String(), s.Gateway.String(), r, aux)
}

func fromIPAM(s ipam.Subnet) Subnet {
	out := Subnet{Subnet: s.Prefix, Gateway: s.Gateway, IPRange: s.Range}
	if len(s.Aux) > 0 {
		out.AuxAddresses = map[string]netip.Addr{}
		for k, v := range s.Aux {
			out.AuxAddresses[k] = v
		}
	}
	return out
}

// NetworkInfo is a network with its attachments, for inspect and ls.
type NetworkInfo struct {
	Network
	Attachments []Attachment // of every host
	// Scope is "local" or "global" (a network on every host of a cluster).
	Scope string
	// Hosts are the hosts of the attachments and of the network's peers,
	// by id (global networks only).
	Hosts map[string]HostRecord `json:",omitempty"`
}

// Owner is who an attachment belongs to, in the terms of the caller that
// made it: a ctnet container, a namespace attached by path, a CNI attachment
// (container id and interface name), a Docker endpoint.
type Owner struct {
	Kind OwnerKind
	ID   string
}

// OwnerKind is the kind of an Owner.
type OwnerKind string

const (
	OwnerContainer OwnerKind = "container"
	OwnerNetNS     OwnerKind = "netns"
	OwnerCNI       OwnerKind = "cni"
	OwnerDocker    OwnerKind = "docker"
)

// Container is the owner of a ctnet container's attachments.
func Container(id string) Owner { return Owner{OwnerContainer, id} }

// NetNS is the owner of a namespace attached by path, by its identity.
func NetNS(key string) Owner { return Owner{OwnerNetNS, key} }

// CNI is the owner of one CNI attachment.
func CNI(containerID, ifname string) Owner { return Owner{OwnerCNI, containerID + "/" + ifname} }

// Docker is the owner of a Docker endpoint.
func Docker(endpointID string) Owner { return Owner{OwnerDocker, endpointID} }

// prefix is where the owner's attachments live in the store: one short
// prefix scan finds them however many attachments there are.
func (o Owner) prefix() string {
	switch o.Kind {
	case OwnerContainer:
		return "c:" + o.ID + "/"
	case OwnerNetNS:
		return "ns:" + o.ID + "/"
	default:
		return string(o.Kind) + ":" + o.ID + "/"
	}
}

func (o Owner) String() string { return string(o.Kind) + " " + o.ID }

// Attachment is one interface of one namespace on one network (a runtime fact).
type Attachment struct {
	ID string
	// Host is the host the attachment is on when hosts share the store.
	Host      string `json:",omitempty"`
	Owner     Owner
	Network   string // network name
	NetworkID string
	Name      string // for people: a container's name, the namespace's path
	NetNS     string // namespace path at attach time
	NetNSKey  string // its identity, to tell it from a later one at the same path
	IfName    string // inside the namespace: eth0, eth1…
	HostIf    string // the driver's host side (veth + 7 hex on a bridge)
	MAC       MAC
	IPv4      netip.Prefix `json:",omitzero"` // address with the subnet's length, as Docker shows it
	IPv6      netip.Prefix `json:",omitzero"`
	Aliases   []string     `json:",omitempty"` // network-scoped aliases
	// GwPriority orders the networks of one namespace for its default
	// route: the highest takes it (Docker's --gw-priority).
	GwPriority int `json:",omitempty"`
	// DNSNames are the names the embedded resolver answers with this
	// attachment's addresses on its network (the first one also for PTR).
	DNSNames []string `json:",omitempty"`
	// Resolver, when set, serves the embedded resolver inside the
	// attachment's namespace, forwarding to these upstreams (none: the
	// host's).
	Resolver *Resolver          `json:",omitempty"`
	Ports    []portspec.Mapping `json:",omitempty"` // published, host ports chosen
	Labels   map[string]string  `json:",omitempty"` // the caller's facts (CNI_ARGS and the like)
	Created  time.Time
	// Pending is set while the attachment is being made or removed; a
	// crash leaves it for reconcile to undo ("attaching") or finish
	// ("detaching").
	Pending string `json:",omitempty"`
}

// Resolver says that a namespace uses the embedded resolver.
type Resolver struct {
	Upstreams []string `json:",omitempty"`
}

// key is where the attachment lives in the store.
func (a *Attachment) key() string { return hostKey(a.Host, a.Owner.prefix()+a.ID) }

// Addrs are the attachment's addresses, IPv4 first.
func (a *Attachment) Addrs() []netip.Prefix {
	var out []netip.Prefix
	for _, p := range []netip.Prefix{a.IPv4, a.IPv6} {
		if p.IsValid() {
			out = append(out, p)
		}
	}
	return out
}

// Describe names the attachment's owner for people: `container "web"`,
// `namespace /run/netns/x`.
func (a *Attachment) Describe() string {
	switch a.Owner.Kind {
	case OwnerContainer:
		return fmt.Sprintf("container %q", a.Name)
	case OwnerNetNS:
		return "namespace " + a.Name
	default:
		return fmt.Sprintf("%s attachment %s", a.Owner.Kind, a.Name)
	}
}

// MAC is a hardware address stored in its usual text form.
type MAC net.HardwareAddr

func (m MAC) String() string               { return net.HardwareAddr(m).String() }
func (m MAC) MarshalText() ([]byte, error) { return []byte(m.String()), nil }
func (m *MAC) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*m = nil
		return nil
	}
	hw, err := net.ParseMAC(string(b))
	if err != nil {
		return err
	}
	*m = MAC(hw)
	return nil
}

// ShortID is the 12-character id Docker prints.
func ShortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// ValidName is Docker's rule for network and container names:
// [a-zA-Z0-9][a-zA-Z0-9_.-]* (checked by hand: a regexp costs start-up time).
func ValidName(s string) bool {
	for i, r := range s {
		alnum := r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
		if !alnum && (i == 0 || (r != '_' && r != '.' && r != '-')) {
			return false
		}
	}
	return s != ""
}

// ValidHostName reports whether name can be a host name, an alias or a
// record of the resolver: letters, digits, '-' and '_' in dot-separated
// labels of 1 to 63 characters, 253 in all.
func ValidHostName(name string) bool {
	if len(name) == 0 || len(name) > 253 {
		return false
	}
	for _, label := range strings.Split(name, ".") {
		if len(label) == 0 || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if !(r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')) {
				return false
			}
		}
	}
	return true
}

// predefined networks are modes, not stored networks (as in Docker).
var predefined = map[string]string{"host": "host", "none": "null"}

// Predefined reports whether name is the host or none mode.
func Predefined(name string) bool { _, ok := predefined[name]; return ok }

func isPrefixOf(ref, id string) bool { return ref != "" && strings.HasPrefix(id, ref) }
