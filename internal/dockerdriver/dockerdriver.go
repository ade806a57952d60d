// Package dockerdriver is ctnet's Docker front end: Docker's remote
// network-driver and IPAM-driver protocols (libnetwork's remote.md and
// ipam.md) served on one UNIX socket that dockerd discovers as the plugin
// "ctnet" (/run/docker/plugins/ctnet.sock), translated into calls of the
// network service and nothing else. `docker network create -d ctnet` makes a
// ctnet network with Docker's id; each container's endpoint is a ctnet
// attachment owned by Docker's endpoint id, so `ctnet network ls/inspect`
// show what `docker network ls/inspect` show. Every fact lives in ctnet's
// store: the plugin keeps no state of its own, so it can be killed and
// started again at any time.
//
// The flow: CreateNetwork (subnets from Docker's IPAM, or from ctnet's when
// --ipam-driver ctnet) → CreateEndpoint (addresses recorded, MAC chosen) →
// Join (a veth pair with both ends in the host; dockerd moves the inner end
// into the container and names it eth0…) → ProgramExternalConnectivity
// (published ports as elements of ctnet's maps: no docker-proxy, no rule per
// port) → RevokeExternalConnectivity → Leave → DeleteEndpoint →
// DeleteNetwork. Errors reach the docker CLI as one line, worded in its flags.
package dockerdriver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"

	"github.com/docker/go-plugins-helpers/ipam"
	dnet "github.com/docker/go-plugins-helpers/network"
	"github.com/docker/go-plugins-helpers/sdk"

	"github.com/ctnet/ctnet/internal/errdefs"
	"github.com/ctnet/ctnet/internal/network"
	"github.com/ctnet/ctnet/internal/portspec"
)

// Name is the plugin's name: the socket's base name, what `-d` and
// `--ipam-driver` take.
const Name = "ctnet"

// DefaultSocket is where dockerd looks for the plugin.
const DefaultSocket = "/run/docker/plugins/" + Name + ".sock"

// Address spaces of ctnet's IPAM.
const (
	LocalSpace  = "ctnet"
	GlobalSpace = "ctnet-global"
)

// OptDriver picks ctnet's driver for a network (-o ctnet.driver=bridge);
// every other -o goes to that driver as with `ctnet network create -o`.
const OptDriver = "ctnet.driver"

// Docker's option keys.
const (
	optGeneric     = "com.docker.network.generic"
	optIPv6        = "com.docker.network.enable_ipv6"
	optInternal    = "com.docker.network.internal"
	optPortMap     = "com.docker.network.portmap"
	optAddressType = "RequestAddressType"
	gatewayType    = "com.docker.network.gateway"
)

// Service is what the plugin asks of ctnet's network service.
type Service interface {
	CreateNetwork(ctx context.Context, spec network.NetworkSpec) (*network.Network, error)
	RemoveNetworks(ctx context.Context, refs ...string) ([]string, error)
	Network(ctx context.Context, ref string) (*network.NetworkInfo, error)
	Networks(ctx context.Context) ([]network.NetworkInfo, error)
	NetworkEndpoints(ref string) ([]network.Attachment, error)
	RenameNetwork(ctx context.Context, ref, name string) error
	CreateEndpoint(ctx context.Context, spec network.EndpointSpec) (*network.Attachment, error)
	Endpoint(owner network.Owner, network string) (*network.Attachment, error)
	JoinEndpoint(ctx context.Context, owner network.Owner, network, peer, sandbox string) (*network.JoinResult, error)
	PublishEndpoint(ctx context.Context, owner network.Owner, network string, ports []portspec.Mapping) (*network.Attachment, error)
	UnpublishEndpoint(ctx context.Context, owner network.Owner, network string) error
	LeaveEndpoint(ctx context.Context, owner network.Owner, network string) error
	DeleteEndpoint(ctx context.Context, owner network.Owner, network string) error
	RequestPool(ctx context.Context, spec network.PoolSpec) (*network.Pool, error)
	PoolByID(id string) (*network.Pool, error)
	ReleasePool(ctx context.Context, id string) error
	RequestAddress(ctx context.Context, poolID string, want netip.Addr, gateway bool) (netip.Prefix, error)
	ReleaseAddress(ctx context.Context, poolID string, a netip.Addr) error
}

// Plugin serves both protocols over one service.
type Plugin struct {
	svc Service
	// names asks Docker for a network's name (nil: never).
	names func(ctx context.Context, id string) (string, error)
	logf  func(format string, args ...any)
	ctx   context.Context
}

// Options are the plugin's optional parts.
type Options struct {
	// Names asks Docker for the name of a network by id, so that ctnet's
	// network gets the name Docker's has (Docker's CreateNetwork carries
	// only the id). Nil leaves networks under their provisional names
	// (docker-<short id>).
	Names func(ctx context.Context, id string) (string, error)
	Log   func(format string, args ...any)
	// Context bounds the background work (renames); default Background.
	Context context.Context
}

// New makes the plugin over svc.
func New(svc Service, o Options) *Plugin {
	p := &Plugin{svc: svc, names: o.Names, logf: o.Log, ctx: o.Context}
	if p.logf == nil {
		p.logf = func(string, ...any) {}
	}
	if p.ctx == nil {
		p.ctx = context.Background()
	}
	return p
}

// ProvisionalName is the name ctnet gives a Docker network until it learns
// Docker's.
func ProvisionalName(id string) string { return "docker-" + network.ShortID(id) }

// Handler serves the protocols' endpoints.
func (p *Plugin) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/Plugin.Activate", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string][]string{"Implements": {"NetworkDriver", "IpamDriver"}}, nil)
	})
	handle(mux, "/NetworkDriver.GetCapabilities", func(ctx context.Context, _ *struct{}) (any, error) {
		return &dnet.CapabilitiesResponse{Scope: dnet.LocalScope, ConnectivityScope: dnet.LocalScope}, nil
	})
	handle(mux, "/NetworkDriver.CreateNetwork", p.createNetwork)
	handle(mux, "/NetworkDriver.AllocateNetwork", func(ctx context.Context, r *dnet.AllocateNetworkRequest) (any, error) {
		return nil, errors.New("ctnet serves local networks only, not swarm-scoped ones")
	})
	handle(mux, "/NetworkDriver.FreeNetwork", func(ctx context.Context, r *dnet.FreeNetworkRequest) (any, error) { return nil, nil })
	handle(mux, "/NetworkDriver.DeleteNetwork", p.deleteNetwork)
	handle(mux, "/NetworkDriver.CreateEndpoint", p.createEndpoint)
	handle(mux, "/NetworkDriver.EndpointOperInfo", p.endpointInfo)
	handle(mux, "/NetworkDriver.DeleteEndpoint", func(ctx context.Context, r *dnet.DeleteEndpointRequest) (any, error) {
		return nil, p.svc.DeleteEndpoint(ctx, network.Docker(r.EndpointID), r.NetworkID)
	})
	handle(mux, "/NetworkDriver.Join", p.join)
	handle(mux, "/NetworkDriver.Leave", func(ctx context.Context, r *dnet.LeaveRequest) (any, error) {
		return nil, p.svc.LeaveEndpoint(ctx, network.Docker(r.EndpointID), r.NetworkID)
	})
	handle(mux, "/NetworkDriver.DiscoverNew", func(ctx context.Context, r *dnet.DiscoveryNotification) (any, error) { return nil, nil })
	handle(mux, "/NetworkDriver.DiscoverDelete", func(ctx context.Context, r *dnet.DiscoveryNotification) (any, error) { return nil, nil })
	handle(mux, "/NetworkDriver.ProgramExternalConnectivity", p.programExternal)
	handle(mux, "/NetworkDriver.RevokeExternalConnectivity", func(ctx context.Context, r *dnet.RevokeExternalConnectivityRequest) (any, error) {
		return nil, p.svc.UnpublishEndpoint(ctx, network.Docker(r.EndpointID), r.NetworkID)
	})

	handle(mux, "/IpamDriver.GetCapabilities", func(ctx context.Context, _ *struct{}) (any, error) {
		// The replay: dockerd asks again for every pool and address it
		// holds when it starts, which rebuilds them after a reboot.
		return &ipamCapabilities{RequiresMACAddress: false, RequiresRequestReplay: true}, nil
	})
	handle(mux, "/IpamDriver.GetDefaultAddressSpaces", func(ctx context.Context, _ *struct{}) (any, error) {
		return &ipam.AddressSpacesResponse{LocalDefaultAddressSpace: LocalSpace, GlobalDefaultAddressSpace: GlobalSpace}, nil
	})
	handle(mux, "/IpamDriver.RequestPool", p.requestPool)
	handle(mux, "/IpamDriver.ReleasePool", func(ctx context.Context, r *ipam.ReleasePoolRequest) (any, error) {
		return nil, p.svc.ReleasePool(ctx, r.PoolID)
	})
	handle(mux, "/IpamDriver.RequestAddress", p.requestAddress)
	handle(mux, "/IpamDriver.ReleaseAddress", func(ctx context.Context, r *ipam.ReleaseAddressRequest) (any, error) {
		a, _ := parseAddr(r.Address)
		return nil, p.svc.ReleaseAddress(ctx, r.PoolID, a)
	})
	return mux
}

// ipamCapabilities is the IPAM's GetCapabilities answer with the replay
// flag, which go-plugins-helpers' type lacks.
type ipamCapabilities struct {
	RequiresMACAddress    bool
	RequiresRequestReplay bool
}

// handle decodes a request of type T, calls f and encodes its answer or
// its error as Docker's {"Err": …} (one line, worded in docker's flags).
func handle[T any](mux *http.ServeMux, path string, f func(context.Context, *T) (any, error)) {
	mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		req := new(T)
		if err := json.NewDecoder(r.Body).Decode(req); err != nil && !errors.Is(err, io.EOF) { // some calls have no body
			reply(w, nil, errdefs.New(errdefs.Invalid, fmt.Sprintf("%s: bad request: %v", path, err)))
			return
		}
		// An operation always finishes, even if dockerd stops waiting:
		// what the store says must be what the kernel has.
		res, err := f(context.WithoutCancel(r.Context()), req)
		reply(w, res, err)
	})
}

func reply(w http.ResponseWriter, res any, err error) {
	if err != nil {
		sdk.EncodeResponse(w, dnet.NewErrorResponse(Word(err)), true)
		return
	}
	if res == nil {
		res = struct{}{}
	}
	sdk.EncodeResponse(w, res, false)
}

// Word is err as the docker CLI shows it: one line, fields named by docker's
// flags.
func Word(err error) string {
	msg := errdefs.Word(err, flagName)
	var parts []string
	for _, l := range strings.Split(msg, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return "ctnet: " + strings.Join(parts, "; ")
}

// flagName names a request field as docker's flag.
func flagName(field string) string {
	if k, ok := strings.CutPrefix(field, "option:"); ok {
		return "-o " + k
	}
	switch field {
	case "publish":
		return "-p"
	case "driver":
		return "-o " + OptDriver
	case "pool":
		return "--subnet"
	case "endpoint", "id":
		return "the endpoint"
	}
	return "--" + field
}

func (p *Plugin) createNetwork(ctx context.Context, r *dnet.CreateNetworkRequest) (any, error) {
	if !validID(r.NetworkID) {
		return nil, errdefs.Field("id", fmt.Sprintf("network id %q is not Docker's (64 hexadecimal digits)", r.NetworkID))
	}
	if n, err := p.svc.Network(ctx, r.NetworkID); err == nil && n.ID == r.NetworkID {
		return nil, nil // made before (dockerd asking again after a restart of the plugin)
	}
	spec := network.NetworkSpec{ID: r.NetworkID, Name: ProvisionalName(r.NetworkID), Options: map[string]string{}}
	for k, v := range r.Options {
		switch k {
		case optGeneric:
			m, ok := v.(map[string]any)
			if !ok && v != nil {
				return nil, errdefs.Field("opt", fmt.Sprintf("driver options %v are not a map of strings", v))
			}
			for ok, ov := range m {
				s, isStr := ov.(string)
				if !isStr {
					s = fmt.Sprint(ov)
				}
				if ok == OptDriver {
					spec.Driver = s
					continue
				}
				spec.Options[ok] = s
			}
		case optIPv6:
			spec.IPv6 = truth(v)
		case optInternal:
			spec.Internal = truth(v)
		}
	}
	for _, d := range append(append([]*dnet.IPAMData{}, r.IPv4Data...), r.IPv6Data...) {
		if d == nil || d.Pool == "" {
			continue
		}
		sub := network.SubnetSpec{Subnet: d.Pool, Gateway: stripLen(d.Gateway)}
		for name, v := range d.AuxAddresses {
			if sub.AuxAddresses == nil {
				sub.AuxAddresses = map[string]string{}
			}
			sub.AuxAddresses[name] = stripLen(fmt.Sprint(v))
		}
		if d.AddressSpace == LocalSpace {
			if pool, err := p.svc.PoolByID(d.Pool); err == nil && pool.Range.IsValid() {
				sub.IPRange = pool.Range.String()
			}
		}
		spec.Subnets = append(spec.Subnets, sub)
	}
	if _, err := p.svc.CreateNetwork(ctx, spec); err != nil {
		return nil, err
	}
	if p.names != nil {
		go p.learnName(r.NetworkID)
	}
	return nil, nil
}

func truth(v any) bool {
	switch b := v.(type) {
	case bool:
		return b
	case string:
		return b == "true"
	}
	return false
}

func validID(id string) bool {
	if len(id) != 64 {
		return false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// stripLen turns Docker's "10.1.0.1/24" into "10.1.0.1".
func stripLen(s string) string {
	a, _, _ := strings.Cut(s, "/")
	return a
}

func (p *Plugin) deleteNetwork(ctx context.Context, r *dnet.DeleteNetworkRequest) (any, error) {
	eps, err := p.svc.NetworkEndpoints(r.NetworkID)
	if network.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	// dockerd removes a network once none of its endpoints is left; any
	// Docker endpoint ctnet still has is one dockerd forgot (at a start
	// without live-restore it drops the endpoints of dead containers
	// without asking a driver that is not loaded yet).
	for _, a := range eps {
		if a.Owner.Kind == network.OwnerDocker {
			if err := p.svc.DeleteEndpoint(ctx, a.Owner, r.NetworkID); err != nil {
				return nil, err
			}
			p.logf("removed endpoint %s on network %q: dockerd forgot it", network.ShortID(a.ID), a.Network)
		}
	}
	_, err = p.svc.RemoveNetworks(ctx, r.NetworkID)
	if network.IsNotFound(err) {
		err = nil
	}
	return nil, err
}

// parseAddr reads "10.1.0.5/24" or "10.1.0.5"; "" is no address.
func parseAddr(s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Addr(), nil
	}
	return netip.ParseAddr(s)
}

func (p *Plugin) createEndpoint(ctx context.Context, r *dnet.CreateEndpointRequest) (any, error) {
	spec := network.EndpointSpec{Network: r.NetworkID, Owner: network.Docker(r.EndpointID), ID: r.EndpointID}
	in := r.Interface
	if in == nil {
		in = &dnet.EndpointInterface{}
	}
	for _, s := range []struct{ field, v string }{{"ip", in.Address}, {"ip6", in.AddressIPv6}} {
		a, err := parseAddr(s.v)
		if err != nil {
			return nil, errdefs.Field(s.field, fmt.Sprintf("address %q from Docker: %v", s.v, err))
		}
		if a.IsValid() {
			spec.Addrs = append(spec.Addrs, a)
		}
	}
	spec.MAC = in.MacAddress
	a, err := p.svc.CreateEndpoint(ctx, spec)
	if err != nil {
		return nil, err
	}
	// Docker refuses an answer that sets again what it gave.
	out := &dnet.EndpointInterface{}
	if in.MacAddress == "" {
		out.MacAddress = a.MAC.String()
	}
	if in.Address == "" && a.IPv4.IsValid() {
		out.Address = a.IPv4.String()
	}
	if in.AddressIPv6 == "" && a.IPv6.IsValid() {
		out.AddressIPv6 = a.IPv6.String()
	}
	if *out == (dnet.EndpointInterface{}) {
		return &dnet.CreateEndpointResponse{}, nil
	}
	return &dnet.CreateEndpointResponse{Interface: out}, nil
}

func (p *Plugin) endpointInfo(ctx context.Context, r *dnet.InfoRequest) (any, error) {
	a, err := p.svc.Endpoint(network.Docker(r.EndpointID), r.NetworkID)
	if err != nil {
		return nil, err
	}
	v := map[string]string{}
	if a != nil {
		v["ctnet.network"] = a.Network
		v["ctnet.host_interface"] = a.HostIf
		v["ctnet.ports"] = strings.Join(portspec.FormatPort(a.Ports), ", ")
	}
	return &dnet.InfoResponse{Value: v}, nil
}

// peerName is the inner end's name until dockerd moves and renames it.
func peerName(endpointID string) string { return "ctnp" + network.ShortID(endpointID)[:7] }

func (p *Plugin) join(ctx context.Context, r *dnet.JoinRequest) (any, error) {
	if len(r.EndpointID) < 12 {
		return nil, errdefs.Field("endpoint", fmt.Sprintf("endpoint id %q is too short", r.EndpointID))
	}
	res, err := p.svc.JoinEndpoint(ctx, network.Docker(r.EndpointID), r.NetworkID, peerName(r.EndpointID), r.SandboxKey)
	if err != nil {
		return nil, err
	}
	out := &dnet.JoinResponse{InterfaceName: dnet.InterfaceName{SrcName: peerName(r.EndpointID), DstPrefix: "eth"}}
	for _, gw := range res.Gateways {
		if gw.Is4() {
			out.Gateway = gw.String()
		} else {
			out.GatewayIPv6 = gw.String()
		}
	}
	return out, nil
}

// portBinding is libnetwork's types.PortBinding as it travels.
type portBinding struct {
	Proto       int
	IP          string
	Port        uint16
	HostIP      string
	HostPort    uint16
	HostPortEnd uint16
}

var protoNames = map[int]string{6: "tcp", 17: "udp", 132: "sctp"}

// Mappings turns Docker's port bindings into ctnet's.
func Mappings(raw any) ([]portspec.Mapping, error) {
	if raw == nil {
		return nil, nil
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return nil, err
	}
	var pbs []portBinding
	if err := json.Unmarshal(b, &pbs); err != nil {
		return nil, errdefs.Field("publish", fmt.Sprintf("port bindings %s: %v", b, err))
	}
	var out []portspec.Mapping
	for _, pb := range pbs {
		proto, ok := protoNames[pb.Proto]
		if !ok {
			return nil, errdefs.Field("publish", fmt.Sprintf("port %d: protocol number %d is not tcp, udp or sctp", pb.Port, pb.Proto))
		}
		if pb.Port == 0 {
			return nil, errdefs.Field("publish", "container port 0 cannot be published")
		}
		m := portspec.Mapping{Proto: proto, ContainerPort: pb.Port, HostPort: pb.HostPort}
		if pb.HostPortEnd > pb.HostPort && pb.HostPort != 0 {
			m.HostPortEnd = pb.HostPortEnd
		}
		if pb.HostIP != "" {
			ip, err := netip.ParseAddr(pb.HostIP)
			if err != nil {
				return nil, errdefs.Field("publish", fmt.Sprintf("port %d: host address %q: %v", pb.Port, pb.HostIP, err))
			}
			m.HostIP = ip.Unmap()
		}
		out = append(out, m)
	}
	return out, nil
}

func (p *Plugin) programExternal(ctx context.Context, r *dnet.ProgramExternalConnectivityRequest) (any, error) {
	ms, err := Mappings(r.Options[optPortMap])
	if err != nil || len(ms) == 0 {
		return nil, err
	}
	_, err = p.svc.PublishEndpoint(ctx, network.Docker(r.EndpointID), r.NetworkID, ms)
	return nil, err
}

func (p *Plugin) requestPool(ctx context.Context, r *ipam.RequestPoolRequest) (any, error) {
	if r.AddressSpace != LocalSpace && r.AddressSpace != "" {
		return nil, errdefs.Field("ipam-driver", fmt.Sprintf("address space %q: ctnet's IPAM serves local networks only (%s)", r.AddressSpace, LocalSpace))
	}
	for k := range r.Options {
		return nil, errdefs.Field("ipam-opt", fmt.Sprintf("unknown IPAM option %q: ctnet's IPAM takes none", k))
	}
	pool, err := p.svc.RequestPool(ctx, network.PoolSpec{Pool: r.Pool, SubPool: r.SubPool, V6: r.V6})
	if err != nil {
		return nil, err
	}
	return &ipam.RequestPoolResponse{PoolID: pool.ID, Pool: pool.Prefix.String(), Data: map[string]string{}}, nil
}

func (p *Plugin) requestAddress(ctx context.Context, r *ipam.RequestAddressRequest) (any, error) {
	want, err := parseAddr(r.Address)
	if err != nil {
		return nil, errdefs.Field("ip", fmt.Sprintf("address %q: %v", r.Address, err))
	}
	a, err := p.svc.RequestAddress(ctx, r.PoolID, want, r.Options[optAddressType] == gatewayType)
	if err != nil {
		return nil, err
	}
	return &ipam.RequestAddressResponse{Address: a.String(), Data: map[string]string{}}, nil
}

// learnName gives a Docker network its Docker name once dockerd has stored
// it (it does after CreateNetwork returns), trying for a few seconds.
func (p *Plugin) learnName(id string) {
	if err := p.rename(id); err != nil {
		p.logf("network %s keeps the name %s: %v", network.ShortID(id), ProvisionalName(id), err)
	}
}

// SyncNames gives every Docker network still under its provisional name the
// name Docker has for it (at start: renames missed while the plugin was
// down).
func (p *Plugin) SyncNames(ctx context.Context) {
	if p.names == nil {
		return
	}
	nets, err := p.svc.Networks(ctx)
	if err != nil {
		p.logf("list networks: %v", err)
		return
	}
	for _, n := range nets {
		if n.Name == ProvisionalName(n.ID) {
			go p.learnName(n.ID)
		}
	}
}
