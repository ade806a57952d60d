package engine

import "time"

// Network is a network definition as stored (persistent).
type Network struct {
	Name     string
	ID       string
	Created  time.Time
	Driver   string
	Bridge   string // the bridge device
	MTU      int
	Internal bool
	IPv6     bool
	Subnets  []Subnet
	Options  map[string]string
	Labels   map[string]string
}

// Subnet is one address range of a network, in Docker's IPAM terms.
type Subnet struct {
	Subnet       string
	Gateway      string
	IPRange      string            `json:",omitempty"`
	AuxAddresses map[string]string `json:"AuxiliaryAddresses,omitempty"`
}

// Endpoint is one interface of one namespace on one network (runtime fact).
type Endpoint struct {
	ID        string
	Network   string // network name
	NetworkID string
	Container string // container id; empty for a namespace attached with --netns
	Name      string // container name, or the namespace path
	NetNS     string // namespace path at attach time
	NetNSKey  string // "dev:inode" of that namespace, to tell it from a later one at the same path
	IfName    string // inside the namespace: eth0, eth1…
	HostIf    string // host end of the veth: veth + 7 hex
	MAC       string
	IPv4      string   `json:",omitempty"` // CIDR form, as Docker shows it
	IPv6      string   `json:",omitempty"`
	Aliases   []string `json:",omitempty"`
	Created   time.Time
}

// Key is where the endpoint lives in the store: under its owner (the
// container, or the namespace for a bare one) so that a container's or a
// namespace's endpoints are one short prefix scan, however many there are.
func (ep *Endpoint) Key() string { return ep.owner() + ep.ID }

func (ep *Endpoint) owner() string {
	if ep.Container != "" {
		return ownerOfContainer(ep.Container)
	}
	return ownerOfNetNS(ep.NetNSKey)
}

func ownerOfContainer(id string) string { return "c:" + id + "/" }
func ownerOfNetNS(key string) string    { return "ns:" + key + "/" }

// ShortID is the 12-character id Docker prints.
func ShortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
