package dockerdriver

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/ctnet/ctnet/internal/errdefs"
	"github.com/ctnet/ctnet/internal/network"
	"github.com/ctnet/ctnet/internal/portspec"
)

// fakeService records what the plugin asks and answers with err when set.
type fakeService struct {
	err      error
	netSpec  network.NetworkSpec
	epSpec   network.EndpointSpec
	ports    []portspec.Mapping
	pool     network.PoolSpec
	gateway  bool
	removed  []string
	deleted  []network.Owner
	attached []network.Attachment
	joinGW   []netip.Addr
}

var errTest = &errdefs.Error{Kind: errdefs.Invalid, Field: "subnet", Msg: "subnet 1.2.3.0/24 is bad; pick another with {field}"}

func (f *fakeService) CreateNetwork(ctx context.Context, spec network.NetworkSpec) (*network.Network, error) {
	f.netSpec = spec
	return &network.Network{ID: spec.ID, Name: spec.Name}, f.err
}
func (f *fakeService) RemoveNetworks(ctx context.Context, refs ...string) ([]string, error) {
	f.removed = append(f.removed, refs...)
	return refs, f.err
}
func (f *fakeService) Network(ctx context.Context, ref string) (*network.NetworkInfo, error) {
	return nil, errdefs.New(errdefs.NotFound, "no")
}
func (f *fakeService) Networks(ctx context.Context) ([]network.NetworkInfo, error) { return nil, nil }
func (f *fakeService) NetworkEndpoints(ref string) ([]network.Attachment, error) {
	return f.attached, nil
}
func (f *fakeService) RenameNetwork(ctx context.Context, ref, name string) error { return f.err }
func (f *fakeService) CreateEndpoint(ctx context.Context, spec network.EndpointSpec) (*network.Attachment, error) {
	f.epSpec = spec
	a := &network.Attachment{ID: spec.ID, MAC: network.MAC{2, 0x42, 10, 0, 0, 9}, IPv4: netip.MustParsePrefix("10.0.0.9/24")}
	return a, f.err
}
func (f *fakeService) Endpoint(owner network.Owner, n string) (*network.Attachment, error) {
	return nil, f.err
}
func (f *fakeService) JoinEndpoint(ctx context.Context, owner network.Owner, n, peer, sandbox string) (*network.JoinResult, error) {
	return &network.JoinResult{Gateways: f.joinGW}, f.err
}
func (f *fakeService) PublishEndpoint(ctx context.Context, owner network.Owner, n string, ports []portspec.Mapping) (*network.Attachment, error) {
	f.ports = ports
	return nil, f.err
}
func (f *fakeService) UnpublishEndpoint(ctx context.Context, owner network.Owner, n string) error {
	return f.err
}
func (f *fakeService) LeaveEndpoint(ctx context.Context, owner network.Owner, n string) error {
	return f.err
}
func (f *fakeService) DeleteEndpoint(ctx context.Context, owner network.Owner, n string) error {
	f.deleted = append(f.deleted, owner)
	return f.err
}
func (f *fakeService) RequestPool(ctx context.Context, spec network.PoolSpec) (*network.Pool, error) {
	f.pool = spec
	return &network.Pool{ID: "10.9.0.0/24", Prefix: netip.MustParsePrefix("10.9.0.0/24")}, f.err
}
func (f *fakeService) PoolByID(id string) (*network.Pool, error) {
	return &network.Pool{ID: id, Range: netip.MustParsePrefix("10.9.0.128/25")}, nil
}
func (f *fakeService) ReleasePool(ctx context.Context, id string) error { return f.err }
func (f *fakeService) RequestAddress(ctx context.Context, poolID string, want netip.Addr, gateway bool) (netip.Prefix, error) {
	f.gateway = gateway
	return netip.MustParsePrefix("10.9.0.1/24"), f.err
}
func (f *fakeService) ReleaseAddress(ctx context.Context, poolID string, a netip.Addr) error {
	return f.err
}

// call posts body to path and returns the status and the decoded answer.
func call(t *testing.T, h http.Handler, path, body string) (int, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, strings.NewReader(body)))
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("%s: answer %q: %v", path, rec.Body.String(), err)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/vnd.docker.plugins.v1.1+json" {
		t.Errorf("%s: content type %q", path, ct)
	}
	return rec.Code, out
}

const netID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestProtocol(t *testing.T) {
	f := &fakeService{joinGW: []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("fd00::1")}}
	h := New(f, Options{}).Handler()

	if _, out := call(t, h, "/Plugin.Activate", ""); !reflect.DeepEqual(out["Implements"], []any{"NetworkDriver", "IpamDriver"}) {
		t.Errorf("activate: %v", out)
	}
	if _, out := call(t, h, "/NetworkDriver.GetCapabilities", "{}"); out["Scope"] != "local" {
		t.Errorf("capabilities: %v", out)
	}
	if _, out := call(t, h, "/IpamDriver.GetCapabilities", ""); out["RequiresRequestReplay"] != true {
		t.Errorf("IPAM capabilities: %v", out)
	}

	code, _ := call(t, h, "/NetworkDriver.CreateNetwork", `{"NetworkID":"`+netID+`","Options":{"com.docker.network.enable_ipv6":true,"com.docker.network.internal":true,
		"com.docker.network.generic":{"ctnet.driver":"bridge","com.docker.network.bridge.enable_icc":"false"}},
		"IPv4Data":[{"AddressSpace":"ctnet","Pool":"10.9.0.0/24","Gateway":"10.9.0.1/24","AuxAddresses":{"r":"10.9.0.3/24"}}],
		"IPv6Data":[{"AddressSpace":"LocalDefault","Pool":"fd00::/64","Gateway":"fd00::1/64"}]}`)
	want := network.NetworkSpec{ID: netID, Name: "docker-0123456789ab", Driver: "bridge", IPv6: true, Internal: true,
		Options: map[string]string{"com.docker.network.bridge.enable_icc": "false"},
		Subnets: []network.SubnetSpec{
			{Subnet: "10.9.0.0/24", Gateway: "10.9.0.1", IPRange: "10.9.0.128/25", AuxAddresses: map[string]string{"r": "10.9.0.3"}},
			{Subnet: "fd00::/64", Gateway: "fd00::1"},
		}}
	if code != 200 || !reflect.DeepEqual(f.netSpec, want) {
		t.Errorf("create network: %d\n got %+v\nwant %+v", code, f.netSpec, want)
	}
	if code, out := call(t, h, "/NetworkDriver.CreateNetwork", `{"NetworkID":"short"}`); code != 500 || !strings.HasPrefix(out["Err"].(string), "ctnet: ") {
		t.Errorf("a bad network id: %d %v", code, out)
	}

	// Docker gave the address: the answer sets only the MAC.
	_, out := call(t, h, "/NetworkDriver.CreateEndpoint", `{"NetworkID":"`+netID+`","EndpointID":"`+netID+`","Interface":{"Address":"10.0.0.9/24"}}`)
	if iface, _ := out["Interface"].(map[string]any); iface["MacAddress"] != "02:42:0a:00:00:09" || iface["Address"] != nil && iface["Address"] != "" {
		t.Errorf("create endpoint: %v", out)
	}
	if f.epSpec.Owner != network.Docker(netID) || len(f.epSpec.Addrs) != 1 || f.epSpec.Addrs[0].String() != "10.0.0.9" {
		t.Errorf("endpoint spec %+v", f.epSpec)
	}
	// No address from Docker (the null IPAM): ctnet's goes back.
	_, out = call(t, h, "/NetworkDriver.CreateEndpoint", `{"NetworkID":"`+netID+`","EndpointID":"`+netID+`","Interface":{"MacAddress":"02:00:00:00:00:01"}}`)
	if iface, _ := out["Interface"].(map[string]any); iface["Address"] != "10.0.0.9/24" || iface["MacAddress"] != nil && iface["MacAddress"] != "" {
		t.Errorf("create endpoint without an address: %v", out)
	}

	_, out = call(t, h, "/NetworkDriver.Join", `{"NetworkID":"`+netID+`","EndpointID":"`+netID+`","SandboxKey":"/run/docker/netns/x"}`)
	iface, _ := out["InterfaceName"].(map[string]any)
	if iface["SrcName"] != "ctnp0123456" || iface["DstPrefix"] != "eth" || out["Gateway"] != "10.0.0.1" || out["GatewayIPv6"] != "fd00::1" {
		t.Errorf("join: %v", out)
	}

	call(t, h, "/NetworkDriver.ProgramExternalConnectivity", `{"NetworkID":"`+netID+`","EndpointID":"`+netID+`","Options":{
		"com.docker.network.portmap":[{"Proto":6,"IP":"","Port":80,"HostIP":"","HostPort":8080,"HostPortEnd":8080},
		{"Proto":17,"Port":53,"HostIP":"127.0.0.1","HostPort":0,"HostPortEnd":0},
		{"Proto":132,"Port":9,"HostIP":"::1","HostPort":9000,"HostPortEnd":9010}]}}`)
	wantPorts := []portspec.Mapping{
		{Proto: "tcp", ContainerPort: 80, HostPort: 8080},
		{Proto: "udp", ContainerPort: 53, HostIP: netip.MustParseAddr("127.0.0.1")},
		{Proto: "sctp", ContainerPort: 9, HostIP: netip.MustParseAddr("::1"), HostPort: 9000, HostPortEnd: 9010},
	}
	if !reflect.DeepEqual(f.ports, wantPorts) {
		t.Errorf("ports %+v", f.ports)
	}

	call(t, h, "/IpamDriver.RequestPool", `{"AddressSpace":"ctnet","Pool":"10.9.0.0/24","SubPool":"10.9.0.128/25","V6":false}`)
	if f.pool != (network.PoolSpec{Pool: "10.9.0.0/24", SubPool: "10.9.0.128/25"}) {
		t.Errorf("pool spec %+v", f.pool)
	}
	if _, out := call(t, h, "/IpamDriver.RequestAddress", `{"PoolID":"10.9.0.0/24","Options":{"RequestAddressType":"com.docker.network.gateway"}}`); !f.gateway || out["Address"] != "10.9.0.1/24" {
		t.Errorf("gateway request: %v %v", f.gateway, out)
	}
	for _, body := range []string{
		`{"AddressSpace":"ctnet-global"}`,
		`{"AddressSpace":"ctnet","Options":{"x":"y"}}`,
	} {
		if code, out := call(t, h, "/IpamDriver.RequestPool", body); code != 500 || !strings.HasPrefix(out["Err"].(string), "ctnet: ") {
			t.Errorf("pool %s: %d %v", body, code, out)
		}
	}

	// Docker endpoints ctnet still has on a network dockerd removes are
	// ones dockerd forgot: they go first.
	f.attached = []network.Attachment{{ID: "e1", Owner: network.Docker("e1")}, {ID: "c1", Owner: network.Container("c1")}}
	call(t, h, "/NetworkDriver.DeleteNetwork", `{"NetworkID":"`+netID+`"}`)
	if !reflect.DeepEqual(f.deleted, []network.Owner{network.Docker("e1")}) || !reflect.DeepEqual(f.removed, []string{netID}) {
		t.Errorf("delete network: deleted %v, removed %v", f.deleted, f.removed)
	}
}

func TestErrorsAreOneLineInDockersFlags(t *testing.T) {
	f := &fakeService{err: errTest}
	h := New(f, Options{}).Handler()
	code, out := call(t, h, "/NetworkDriver.CreateNetwork", `{"NetworkID":"`+netID+`"}`)
	if code != 500 || out["Err"] != "ctnet: subnet 1.2.3.0/24 is bad; pick another with --subnet" {
		t.Errorf("%d %v", code, out)
	}
	f.err = errdefs.Field("option:com.docker.network.driver.mtu", "bad\n{field}\n\nvalue")
	if _, out := call(t, h, "/NetworkDriver.CreateEndpoint", `{"NetworkID":"`+netID+`","EndpointID":"`+netID+`"}`); out["Err"] != "ctnet: bad; -o com.docker.network.driver.mtu; value" {
		t.Errorf("%v", out)
	}
	if code, out := call(t, h, "/NetworkDriver.Join", `{"NetworkID":`); code != 500 || !strings.Contains(out["Err"].(string), "bad request") {
		t.Errorf("broken JSON: %d %v", code, out)
	}
}

func TestMappingsRefuseBadBindings(t *testing.T) {
	for _, raw := range []string{
		`[{"Proto":1,"Port":80}]`,
		`[{"Proto":6,"Port":0}]`,
		`[{"Proto":6,"Port":80,"HostIP":"nope"}]`,
		`[{"Proto":6,"Port":70000}]`,
		`{"Proto":6}`,
		`"x"`,
	} {
		var v any
		json.Unmarshal([]byte(raw), &v)
		if ms, err := Mappings(v); err == nil {
			t.Errorf("%s: %+v", raw, ms)
		}
	}
	if ms, err := Mappings(nil); err != nil || ms != nil {
		t.Errorf("no bindings: %v %v", ms, err)
	}
	var v any
	json.Unmarshal([]byte(`[{"Proto":6,"Port":80,"HostIP":"::ffff:10.0.0.1","HostPort":8080,"HostPortEnd":8080}]`), &v)
	if ms, err := Mappings(v); err != nil || ms[0].HostIP.String() != "10.0.0.1" || ms[0].HostPortEnd != 0 {
		t.Errorf("a mapped address: %+v %v", ms, err)
	}
}
