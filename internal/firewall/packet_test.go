package firewall

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// inNS runs fn on a thread inside ns, pinned to testCPU. The thread is
// never returned to the scheduler: it exits with the goroutine.
func inNS(t *testing.T, ns netns.NsHandle, fn func()) {
	t.Helper()
	done := make(chan error)
	go func() {
		err := errors.New("t.FailNow") // unless fn returns
		defer func() { done <- err }()
		runtime.LockOSThread()
		if err = pinThread(); err != nil {
			return
		}
		if err = netns.Set(ns); err != nil {
			err = fmt.Errorf("enter netns: %w", err)
			return
		}
		err = errors.New("t.FailNow")
		fn()
		err = nil
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// testCPU is the one CPU that test threads sending packets run on. A veth
// hands a packet to the backlog of the CPU that sent it (no RPS by
// default) and every hop after that runs there too, in order; so when a
// probe sent after a packet has been answered, the packet has been dealt
// with: a barrier instead of a timeout when a test proves that something
// did not arrive.
var testCPU = sync.OnceValues(func() (int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return 0, fmt.Errorf("sched_getaffinity: %w", err)
	}
	for cpu := 0; cpu < 1024; cpu++ {
		if set.IsSet(cpu) {
			return cpu, nil
		}
	}
	return 0, errors.New("no CPU in this process's affinity mask")
})

// pinThread pins the calling (locked) thread to testCPU.
func pinThread() error {
	cpu, err := testCPU()
	if err != nil {
		return err
	}
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("pin thread to CPU %d: %w", cpu, err)
	}
	return nil
}

// extraNS makes another namespace without moving the calling thread.
func extraNS(t *testing.T) netns.NsHandle {
	t.Helper()
	var ns netns.NsHandle
	var err error
	ch := make(chan struct{})
	go func() {
		runtime.LockOSThread() // this thread ends up in ns and dies with the goroutine
		ns, err = netns.New()
		close(ch)
	}()
	<-ch
	if err != nil {
		t.Fatalf("new netns: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func handle(t *testing.T, ns netns.NsHandle) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(ns)
	must(t, "netlink handle", err)
	t.Cleanup(h.Close)
	return h
}

func linkUp(t *testing.T, h *netlink.Handle, name, addr string) netlink.Link {
	t.Helper()
	l, err := h.LinkByName(name)
	must(t, "link "+name, err)
	if addr != "" {
		a, err := netlink.ParseAddr(addr)
		must(t, "parse "+addr, err)
		must(t, "addr "+addr+" on "+name, h.AddrAdd(l, a))
	}
	must(t, "up "+name, h.LinkSetUp(l))
	return l
}

// whoami serves "your address is" on l: each connection gets its peer address.
func whoami(t *testing.T, l net.Listener) {
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(c.RemoteAddr().String() + "\n"))
			c.Close()
		}
	}()
}

// ask dials addr from inside ns and returns the peer address the server saw.
func ask(t *testing.T, ns netns.NsHandle, addr string) (string, error) {
	t.Helper()
	var reply string
	var err error
	inNS(t, ns, func() {
		// The timeout only keeps a broken setup from hanging the test.
		var c net.Conn
		c, err = net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		reply, err = bufio.NewReader(c).ReadString('\n')
	})
	host, _, _ := net.SplitHostPort(strings.TrimSpace(reply))
	return host, err
}

// TestPackets: container C on ctnet0 behind the sandbox host H, which routes
// to an upstream O at 203.0.113.1.
//
//	C eth0 10.88.0.2 ── fwv0 [ctnet0 10.88.0.1] H [fwup0 203.0.113.2] ── eth0 203.0.113.1 O
func TestPackets(t *testing.T) {
	for _, brnf := range []bool{true, false} {
		t.Run(map[bool]string{true: "br_netfilter", false: "no_br_netfilter"}[brnf], func(t *testing.T) {
			testPackets(t, brnf)
		})
	}
}

var ctrMAC = net.HardwareAddr{0x02, 0x42, 0x0a, 0x58, 0x00, 0x02}

func testPackets(t *testing.T, brNetfilter bool) {
	sb := newSandbox(t)
	hostNS, ctrNS, outNS := sb.ns, extraNS(t), extraNS(t)
	h, hc, ho := handle(t, hostNS), handle(t, ctrNS), handle(t, outNS)

	must(t, "bridge", h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "ctnet0"}}))
	br := linkUp(t, h, "ctnet0", "10.88.0.1/24")
	must(t, "veth to container", h.LinkAdd(&netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: "fwv0", MasterIndex: br.Attrs().Index},
		PeerName:  "eth0", PeerNamespace: netlink.NsFd(ctrNS), PeerHardwareAddr: ctrMAC}))
	veth := linkUp(t, h, "fwv0", "")
	if brNetfilter {
		// With br_netfilter a DNATed packet whose new destination is on the
		// bridge it came from is bridged, not routed, so reaching one's own
		// published port needs hairpin mode on the port (as Docker does
		// when the userland proxy is off).
		must(t, "hairpin", h.LinkSetHairpin(veth, true))
	}
	must(t, "veth to outside", h.LinkAdd(&netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: "fwup0"},
		PeerName:  "eth0", PeerNamespace: netlink.NsFd(outNS)}))
	linkUp(t, h, "fwup0", "203.0.113.2/24")
	linkUp(t, h, "lo", "")
	eth0 := linkUp(t, hc, "eth0", "10.88.0.2/24")
	linkUp(t, hc, "lo", "")
	must(t, "container default route", hc.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: net.ParseIP("10.88.0.1")}))
	linkUp(t, ho, "eth0", "203.0.113.1/24")
	linkUp(t, ho, "lo", "")
	// The test thread is in the sandbox, so /proc/sys/net is the sandbox's.
	for _, path := range []string{"/proc/sys/net/ipv4/ip_forward", RouteLocalnetSysctl("ctnet0")} {
		must(t, path, os.WriteFile(path, []byte("1"), 0o644))
	}
	const brnf = "/proc/sys/net/bridge/bridge-nf-call-iptables" // per namespace since Linux 5.3
	if _, err := os.Stat(brnf); err != nil && brNetfilter {
		t.Skip("br_netfilter not loaded")
	} else if err == nil {
		must(t, brnf, os.WriteFile(brnf, []byte(map[bool]string{true: "1", false: "0"}[brNetfilter]), 0o644))
	}

	f := sb.firewallWithTable(t)
	n := Network{Bridge: "ctnet0", Subnets: []*net.IPNet{cidr("10.88.0.0/24")}, Masquerade: true, ICC: true}
	must(t, "add network", f.AddNetwork(n))
	c := net.ParseIP("10.88.0.2")
	// Bound to its port: what follows must work through the anti-spoofing rules.
	must(t, "add endpoint", f.AddEndpoint(n, Endpoint{Port: "fwv0", Bridge: "ctnet0", MAC: ctrMAC, IPs: []net.IP{c}}))
	must(t, "publish", f.Publish([]Port{
		{Proto: "tcp", HostPort: 8080, ContainerIP: c, ContainerPort: 80},
		{Proto: "tcp", HostIP: net.ParseIP("127.0.0.1"), HostPort: 8081, ContainerIP: c, ContainerPort: 80},
		{Proto: "tcp", HostIP: net.ParseIP("203.0.113.2"), HostPort: 8082, ContainerIP: c, ContainerPort: 80},
	}))

	inNS(t, outNS, func() {
		l, err := net.Listen("tcp", "203.0.113.1:7777")
		must(t, "listen outside", err)
		whoami(t, l)
	})
	inNS(t, ctrNS, func() {
		l, err := net.Listen("tcp", ":80")
		must(t, "listen container", err)
		whoami(t, l)
	})

	tests := []struct {
		name   string
		from   netns.NsHandle
		addr   string
		seenAs string // "" = connection must be refused
	}{
		{"masquerade to the outside", ctrNS, "203.0.113.1:7777", "203.0.113.2"},
		{"published port from the outside", outNS, "203.0.113.2:8080", "203.0.113.1"},
		{"address-specific port on its address", outNS, "203.0.113.2:8082", "203.0.113.1"},
		{"published port from the host", hostNS, "203.0.113.2:8080", "203.0.113.2"},
		{"loopback port from the host", hostNS, "127.0.0.1:8081", "10.88.0.1"},
		{"loopback port not on another address", outNS, "203.0.113.2:8081", ""},
		{"all-addresses port on host loopback", hostNS, "127.0.0.1:8080", "10.88.0.1"},
		{"hairpin to own published port", ctrNS, "203.0.113.2:8080", "10.88.0.1"},
		{"hairpin via gateway address", ctrNS, "10.88.0.1:8080", "10.88.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen, err := ask(t, tt.from, tt.addr)
			if tt.seenAs == "" {
				if !errors.Is(err, syscall.ECONNREFUSED) {
					t.Errorf("dial %s: %q, %v; want connection refused", tt.addr, seen, err)
				}
				return
			}
			if err != nil || seen != tt.seenAs {
				t.Errorf("dial %s: server saw %q, err %v; want %s", tt.addr, seen, err, tt.seenAs)
			}
		})
	}
}
