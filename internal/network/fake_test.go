package network

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/ctnet/ctnet/internal/driver"
	"github.com/ctnet/ctnet/internal/netx"
	"github.com/ctnet/ctnet/internal/store"
)

// fakeKernel is a host with namespaces by path, each a set of link names.
type fakeKernel struct {
	mu     sync.Mutex
	seq    int
	ns     map[string]*fakeNS // by path
	host   []netip.Prefix
	listen map[string]bool // "tcp/8080"
}

func newFakeKernel() *fakeKernel {
	return &fakeKernel{ns: map[string]*fakeNS{}, listen: map[string]bool{},
		host: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}}
}

type fakeNS struct {
	k     *fakeKernel
	path  string
	key   string
	links map[string]bool
	// routes are the default routes: "4" or "6" -> "ifname gateway"
	routes map[string]string
}

// addNS makes a namespace at path (again: a new one, as after a PID reuse).
func (k *fakeKernel) addNS(path string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.seq++
	k.ns[path] = &fakeNS{k: k, path: path, key: fmt.Sprintf("%s#%d", path, k.seq), links: map[string]bool{"lo": true}}
}

func (k *fakeKernel) dropNS(path string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.ns, path)
}

func (k *fakeKernel) BootID() []byte                        { return []byte("boot-1") }
func (k *fakeKernel) HostPrefixes() ([]netip.Prefix, error) { return k.host, nil }

func (k *fakeKernel) OpenNamespace(path string) (Namespace, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	ns := k.ns[path]
	if ns == nil {
		return nil, fmt.Errorf("namespace %s does not exist", path)
	}
	return ns, nil
}

func (k *fakeKernel) NamespaceKey(path string) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	if ns := k.ns[path]; ns != nil {
		return ns.key
	}
	return ""
}

func (k *fakeKernel) Listening(proto string, addr netip.Addr, port uint16) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.listen[proto+"/"+strconv.Itoa(int(port))]
}

func (k *fakeKernel) TCPListeners() map[uint16]bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := map[uint16]bool{}
	for k := range k.listen {
		if p, ok := strings.CutPrefix(k, "tcp/"); ok {
			n, _ := strconv.Atoi(p)
			out[uint16(n)] = true
		}
	}
	return out
}

func (n *fakeNS) Key() string          { return n.key }
func (n *fakeNS) Path() string         { return n.path }
func (n *fakeNS) Handle() *netx.Handle { return nil }
func (n *fakeNS) Close()               {}

func (n *fakeNS) NextIfName(prefix string) (string, error) {
	n.k.mu.Lock()
	defer n.k.mu.Unlock()
	for i := 0; ; i++ {
		if name := prefix + strconv.Itoa(i); !n.links[name] {
			return name, nil
		}
	}
}

func (n *fakeNS) SetDefaultRoute(ifname string, gw netip.Addr) error {
	n.k.mu.Lock()
	defer n.k.mu.Unlock()
	if !n.links[ifname] {
		return fmt.Errorf("link %q: not found", ifname)
	}
	n.setRoute(ifname, gw)
	return nil
}

// setRoute is the kernel's RouteReplace of a default route; k.mu is held.
func (n *fakeNS) setRoute(ifname string, gw netip.Addr) {
	if n.routes == nil {
		n.routes = map[string]string{}
	}
	n.routes[family(gw)] = ifname + " " + gw.String()
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "4"
	}
	return "6"
}

func (n *fakeNS) HasLink(name string) (bool, error) {
	n.k.mu.Lock()
	defer n.k.mu.Unlock()
	return n.links[name], nil
}

// fakeDriver keeps its "kernel" in maps and fails on the Nth call when told.
type fakeDriver struct {
	k        *fakeKernel
	mu       sync.Mutex
	nets     map[string]bool   // devices
	eps      map[string]string // host if -> "path ifname"
	ports    map[string]string // "proto/hostport/hostip" -> host if
	calls    int
	failAt   int // fail the call with this number (1-based); 0 never
	byMethod map[string]int
}

func newFakeDriver(k *fakeKernel) *fakeDriver {
	return &fakeDriver{k: k, nets: map[string]bool{}, eps: map[string]string{}, ports: map[string]string{}, byMethod: map[string]int{}}
}

var errInjected = errors.New("injected failure")

// call counts a kernel-changing call and says whether it must fail.
func (d *fakeDriver) call(method string) error {
	d.calls++
	d.byMethod[method]++
	if d.calls == d.failAt {
		return fmt.Errorf("%s: %w", method, errInjected)
	}
	return nil
}

// kernel is the fake kernel's state, for comparing before and after.
func (d *fakeDriver) kernel() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(d.nets)) {
		fmt.Fprintf(&b, "net %s\n", k)
	}
	for _, k := range slices.Sorted(maps.Keys(d.eps)) {
		fmt.Fprintf(&b, "ep %s %s\n", k, d.eps[k])
	}
	for _, k := range slices.Sorted(maps.Keys(d.ports)) {
		fmt.Fprintf(&b, "port %s %s\n", k, d.ports[k])
	}
	return b.String()
}

func (d *fakeDriver) Name() string { return "fake" }

func (d *fakeDriver) PlanNetwork(n *driver.Network, others []driver.Network) error {
	if v, ok := n.Options["bad"]; ok {
		return fmt.Errorf("option bad=%s", v)
	}
	n.Device = "fk-" + n.ID[:8]
	if n.Default {
		n.Device = "fake0"
	}
	n.MTU = 1500
	return nil
}

func (d *fakeDriver) CreateNetwork(ctx context.Context, n driver.Network) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.call("CreateNetwork"); err != nil {
		return err
	}
	d.nets[n.Device] = true
	return nil
}

func (d *fakeDriver) DeleteNetwork(ctx context.Context, n driver.Network) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.call("DeleteNetwork"); err != nil {
		return err
	}
	delete(d.nets, n.Device)
	return nil
}

func (d *fakeDriver) CreateEndpoint(n driver.Network, ep *driver.Endpoint) error {
	ep.HostIf = "fk" + ep.ID[:7]
	return nil
}

func (d *fakeDriver) nsOf(path string) *fakeNS {
	d.k.mu.Lock()
	defer d.k.mu.Unlock()
	return d.k.ns[path]
}

func (d *fakeDriver) Join(ctx context.Context, n driver.Network, ep driver.Endpoint, sb driver.Sandbox) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.call("Join"); err != nil {
		return err
	}
	if !d.nets[n.Device] {
		return driver.Stale(fmt.Errorf("device %s is missing", n.Device))
	}
	if _, ok := d.eps[ep.HostIf]; ok {
		return fmt.Errorf("%s exists", ep.HostIf)
	}
	path := sb.Path()
	ns := d.nsOf(path)
	if ns == nil {
		return fmt.Errorf("namespace %s is gone", path)
	}
	d.k.mu.Lock()
	taken := ns.links[ep.IfName]
	if !taken {
		ns.links[ep.IfName] = true
	}
	d.k.mu.Unlock()
	if taken {
		return fmt.Errorf("%s exists in %s", ep.IfName, path)
	}
	d.eps[ep.HostIf] = path + " " + ep.IfName
	for _, gw := range ep.Gateways {
		ns.setRoute(ep.IfName, gw)
	}
	return nil
}

func (d *fakeDriver) Leave(ctx context.Context, n driver.Network, ep driver.Endpoint, nsGoing bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.call("Leave"); err != nil {
		return err
	}
	if v, ok := d.eps[ep.HostIf]; ok {
		path, ifname, _ := strings.Cut(v, " ")
		if ns := d.nsOf(path); ns != nil {
			d.k.mu.Lock()
			delete(ns.links, ifname)
			for f, r := range ns.routes {
				if strings.HasPrefix(r, ifname+" ") {
					delete(ns.routes, f) // the kernel drops a link's routes with it
				}
			}
			d.k.mu.Unlock()
		}
		delete(d.eps, ep.HostIf)
	}
	return nil
}

func portID(m interface{ String() string }) string { return m.String() }

func (d *fakeDriver) Publish(ctx context.Context, n driver.Network, ep driver.Endpoint) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.call("Publish"); err != nil {
		return err
	}
	for _, m := range ep.Ports {
		if o, ok := d.ports[portID(m)]; ok && o != ep.HostIf {
			return fmt.Errorf("port %s taken by %s", m, o)
		}
	}
	for _, m := range ep.Ports {
		d.ports[portID(m)] = ep.HostIf
	}
	return nil
}

func (d *fakeDriver) Unpublish(ctx context.Context, n driver.Network, ep driver.Endpoint) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.call("Unpublish"); err != nil {
		return err
	}
	for _, m := range ep.Ports {
		if d.ports[portID(m)] == ep.HostIf {
			delete(d.ports, portID(m))
		}
	}
	return nil
}

func (d *fakeDriver) Inventory(ctx context.Context) (driver.Inventory, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return maps.Clone(d.eps), nil
}

func (d *fakeDriver) Filter(s driver.State) driver.Filter { return driver.Filter{} }

func (d *fakeDriver) Reconcile(ctx context.Context, inv driver.Inventory, s driver.State, logf driver.Logf) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	eps := inv.(map[string]string)
	owned := map[string]bool{}
	for _, n := range s.Networks {
		if !d.nets[n.Device] {
			d.nets[n.Device] = true
			logf("recreated %s", n.Device)
		}
		for _, ep := range n.Endpoints {
			owned[ep.HostIf] = true
			if _, ok := d.eps[ep.HostIf]; !ok {
				d.eps[ep.HostIf] = ep.NetNS + " " + ep.IfName
				logf("rejoined %s", ep.HostIf)
			}
			for _, m := range ep.Ports {
				d.ports[portID(m)] = ep.HostIf
			}
		}
	}
	for hostIf := range eps {
		if !owned[hostIf] && !s.Keep[hostIf] {
			delete(d.eps, hostIf)
			logf("deleted %s", hostIf)
		}
	}
	return nil
}

// testService is a service over an in-memory store, a fake kernel and the
// fake driver.
type testService struct {
	*Service
	st *store.Memory
	k  *fakeKernel
	d  *fakeDriver
}

func newTestService(replay bool) *testService {
	st := store.NewMemory()
	st.Replay = replay
	k := newFakeKernel()
	d := newFakeDriver(k)
	s := New(Deps{Store: st, Kernel: k, Drivers: driver.NewRegistry(nil, d), Lock: &MemLock{}})
	return &testService{Service: s, st: st, k: k, d: d}
}
