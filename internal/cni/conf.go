package cni

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/ctnet/ctnet/internal/driver/bridge"
	"github.com/ctnet/ctnet/internal/network"
	"github.com/ctnet/ctnet/internal/portspec"
)

// Conf is a ctnet plugin's configuration: CNI's common keys, the ctnet
// network it attaches to and, for its first ADD, how to create it.
type Conf struct {
	types.PluginConf
	// Network names the ctnet network; default the CNI network's name.
	Network string `json:"network,omitempty"`
	// Created from these when the network does not exist yet (Docker's
	// network create options under CNI-style names).
	Subnet   stringList `json:"subnet,omitempty"`
	Gateway  string     `json:"gateway,omitempty"`
	Bridge   string     `json:"bridge,omitempty"`
	MTU      int        `json:"mtu,omitempty"`
	IPMasq   *bool      `json:"ipMasq,omitempty"`
	Internal bool       `json:"internal,omitempty"`
	IPv6     bool       `json:"ipv6,omitempty"`
	// State directories, as --root and --run-root (default $CTNET_ROOT,
	// $CTNET_RUN_ROOT, then ctnet's defaults).
	Root    string `json:"root,omitempty"`
	RunRoot string `json:"runRoot,omitempty"`

	RuntimeConfig RuntimeConfig `json:"runtimeConfig"`
	// Args is the runtime's "args" key: args.cni.ips and args.cni.mac are
	// the convention's other way of asking for addresses.
	Args struct {
		CNI struct {
			IPs []string `json:"ips,omitempty"`
			MAC string   `json:"mac,omitempty"`
		} `json:"cni"`
	} `json:"args"`

	raw []byte // as the runtime gave it, for a delegated IPAM plugin
}

// RuntimeConfig holds the capabilities ctnet serves.
type RuntimeConfig struct {
	PortMappings []PortMapping `json:"portMappings,omitempty"`
	IPs          []string      `json:"ips,omitempty"`
	MAC          string        `json:"mac,omitempty"`
	// Aliases are names for the resolver: Podman's form (by network name)
	// or a plain list.
	Aliases json.RawMessage `json:"aliases,omitempty"`
}

// PortMapping is CNI's portMappings capability entry.
type PortMapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// stringList is a string or a list of strings.
type stringList []string

func (s *stringList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = stringList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("want a string or a list of strings")
	}
	*s = many
	return nil
}

// parseConf reads stdin's configuration; errors are code 7 (or 6: not JSON).
func parseConf(stdin []byte) (*Conf, error) {
	c := &Conf{raw: stdin}
	if err := json.Unmarshal(stdin, c); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "ctnet: the network configuration is not valid JSON: "+err.Error(), "")
	}
	if c.Network == "" {
		c.Network = c.Name
	}
	if !network.ValidName(c.Network) || network.Predefined(c.Network) {
		return nil, invalidConf("network", fmt.Sprintf("ctnet: %q is not a network name: set \"network\" (or \"name\") to letters, digits and _ . - (starting with a letter or digit), not host or none", c.Network))
	}
	for _, s := range c.Subnet {
		if _, err := netip.ParsePrefix(s); err != nil {
			return nil, invalidConf("subnet", fmt.Sprintf("ctnet: \"subnet\" %q is not a CIDR prefix such as 10.89.0.0/24", s))
		}
	}
	if c.Gateway != "" {
		if _, err := netip.ParseAddr(c.Gateway); err != nil || len(c.Subnet) == 0 {
			return nil, invalidConf("gateway", fmt.Sprintf("ctnet: \"gateway\" %q must be an address of \"subnet\"", c.Gateway))
		}
	}
	if c.MTU < 0 || c.MTU > 65535 {
		return nil, invalidConf("mtu", fmt.Sprintf("ctnet: \"mtu\" %d is out of range (68 to 65535)", c.MTU))
	}
	return c, nil
}

func invalidConf(key, msg string) *types.Error {
	return types.NewError(types.ErrInvalidNetworkConfig, msg, "key: "+key)
}

// networkSpec is the network the configuration describes.
func (c *Conf) networkSpec() network.NetworkSpec {
	spec := network.NetworkSpec{
		Name: c.Network, Internal: c.Internal, IPv6: c.IPv6, Options: map[string]string{},
		Labels: map[string]string{"ctnet.cni.network": c.Name},
	}
	for i, s := range c.Subnet {
		sub := network.SubnetSpec{Subnet: s}
		if i == 0 {
			sub.Gateway = c.Gateway
		}
		spec.Subnets = append(spec.Subnets, sub)
		if strings.Contains(s, ":") {
			spec.IPv6 = true
		}
	}
	if c.Bridge != "" {
		spec.Options[bridge.OptBridgeName] = c.Bridge
	}
	if c.MTU != 0 {
		spec.Options[bridge.OptMTU] = strconv.Itoa(c.MTU)
	}
	if c.IPMasq != nil {
		spec.Options[bridge.OptMasquerade] = strconv.FormatBool(*c.IPMasq)
	}
	return spec
}

// requests are the addresses, MAC, ports and aliases the runtime asks for.
type requests struct {
	ip, ip6 string
	mac     string
	ports   []portspec.Mapping
	aliases []string
}

func (c *Conf) requests() (requests, error) {
	var r requests
	ips := c.RuntimeConfig.IPs
	if len(ips) == 0 {
		ips = c.Args.CNI.IPs
	}
	for _, s := range ips {
		a, err := netip.ParseAddr(s)
		if err != nil {
			p, perr := netip.ParsePrefix(s)
			if perr != nil {
				return r, invalidConf("runtimeConfig.ips", fmt.Sprintf("ctnet: requested address %q is not an IP address", s))
			}
			a = p.Addr()
		}
		if a.Is4() && r.ip == "" {
			r.ip = a.String()
		} else if a.Is6() && r.ip6 == "" {
			r.ip6 = a.String()
		} else {
			return r, invalidConf("runtimeConfig.ips", fmt.Sprintf("ctnet: more than one IPv%d address requested (%s)", map[bool]int{true: 4, false: 6}[a.Is4()], s))
		}
	}
	r.mac = c.RuntimeConfig.MAC
	if r.mac == "" {
		r.mac = c.Args.CNI.MAC
	}
	for _, pm := range c.RuntimeConfig.PortMappings {
		m, err := pm.mapping()
		if err != nil {
			return r, err
		}
		r.ports = append(r.ports, m)
	}
	if raw := c.RuntimeConfig.Aliases; len(raw) > 0 {
		var byNet map[string][]string
		if err := json.Unmarshal(raw, &byNet); err == nil {
			r.aliases = byNet[c.Name]
			if r.aliases == nil {
				r.aliases = byNet[c.Network]
			}
		} else if err := json.Unmarshal(raw, &r.aliases); err != nil {
			return r, invalidConf("runtimeConfig.aliases", "ctnet: runtimeConfig.aliases: want a list of names or an object of lists by network name")
		}
	}
	return r, nil
}

func (pm PortMapping) mapping() (portspec.Mapping, error) {
	bad := func(what string) error {
		return invalidConf("runtimeConfig.portMappings", fmt.Sprintf("ctnet: port mapping %d:%d/%s: %s", pm.HostPort, pm.ContainerPort, pm.Protocol, what))
	}
	m := portspec.Mapping{Proto: strings.ToLower(pm.Protocol)}
	if m.Proto == "" {
		m.Proto = "tcp"
	}
	if m.Proto != "tcp" && m.Proto != "udp" && m.Proto != "sctp" {
		return m, bad("protocol must be tcp, udp or sctp")
	}
	if pm.HostPort < 1 || pm.HostPort > 65535 || pm.ContainerPort < 1 || pm.ContainerPort > 65535 {
		return m, bad("ports must be 1 to 65535")
	}
	m.HostPort, m.ContainerPort = uint16(pm.HostPort), uint16(pm.ContainerPort)
	if pm.HostIP != "" {
		a, err := netip.ParseAddr(pm.HostIP)
		if err != nil {
			return m, bad(fmt.Sprintf("hostIP %q is not an IP address", pm.HostIP))
		}
		m.HostIP = a
	}
	return m, nil
}

// podLabels are CNI_ARGS' facts kept with the attachment (K8S_POD_NAME and
// the like; IgnoreUnknown is the convention's flag, not a fact).
func podLabels(args string) map[string]string {
	out := map[string]string{}
	for _, kv := range strings.Split(args, ";") {
		k, v, ok := strings.Cut(kv, "=")
		if ok && k != "" && k != "IgnoreUnknown" {
			out[k] = v
		}
	}
	return out
}
