package loopback_test

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netns"

	"github.com/ctnet/ctnet/internal/loopback"
	"github.com/ctnet/ctnet/internal/namespace"
	"github.com/ctnet/ctnet/internal/sandbox"
)

// TestMain lets the test binary be its own client: a socket is governed by
// the cgroup of the process that creates it, so clients must be processes
// born in the sandbox's cgroup.
func TestMain(m *testing.M) {
	if addr := os.Getenv("LOOPBACK_CLIENT"); addr != "" {
		fmt.Print(client(os.Getenv("LOOPBACK_PROTO"), addr))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// client talks to addr and prints what the application sees: the answer,
// the peer (getpeername for TCP and connected UDP, the source of the reply
// for unconnected UDP).
func client(proto, addr string) string {
	buf := make([]byte, 512)
	switch proto {
	case "udp-unconnected":
		c, err := net.ListenPacket("udp6", "[::]:0")
		if err != nil {
			return "error: " + err.Error()
		}
		defer c.Close()
		to, _ := net.ResolveUDPAddr("udp6", addr)
		// Datagrams may be lost on a loaded machine: ask again each second.
		for range 10 {
			c.SetDeadline(time.Now().Add(time.Second))
			if _, err := c.WriteTo([]byte("ping\n"), to); err != nil {
				return "error: " + err.Error()
			}
			n, from, err := c.ReadFrom(buf)
			if err == nil {
				return fmt.Sprintf("%s from %s", strings.TrimSpace(string(buf[:n])), from)
			}
			if !os.IsTimeout(err) {
				return "error: " + err.Error()
			}
		}
		return "error: no answer"
	default: // "tcp" or "udp" (connected)
		c, err := net.DialTimeout(proto, addr, 3*time.Second)
		if err != nil {
			return "error: " + err.Error()
		}
		defer c.Close()
		// Datagrams may be lost on a loaded machine: ask again each second.
		wait := time.Second
		if proto == "tcp" {
			wait = 10 * time.Second
		}
		for range 10 {
			c.SetDeadline(time.Now().Add(wait))
			if _, err := c.Write([]byte("ping\n")); err != nil {
				return "error: " + err.Error()
			}
			n, err := c.Read(buf)
			if err == nil {
				return fmt.Sprintf("%s from %s", strings.TrimSpace(string(buf[:n])), c.RemoteAddr())
			}
			if !os.IsTimeout(err) || proto == "tcp" {
				return "error: " + err.Error()
			}
		}
		return "error: no answer"
	}
}

type rig struct {
	t     *testing.T
	s     *sandbox.Sandbox
	table *loopback.Table
}

// newRig: the sandbox host reaches a "container" namespace over a veth,
// fd00:7::1 ↔ fd00:7::2 and 10.77.0.1 ↔ 10.77.0.2. In the container, TCP
// 80 and 81 and UDP 53 answer with the peer address they saw.
func newRig(t *testing.T) *rig {
	s := sandbox.New(t)
	if s.Cgroup == "" {
		t.Skip("no cgroup2 hierarchy on this machine")
	}
	c := s.Netns()
	s.Host.MustRun("ip", "link", "add", "vlo", "type", "veth", "peer", "name", "eth0", "netns", fmt.Sprint(c.PID))
	for _, a := range [][]string{
		{"ip", "addr", "add", "fd00:7::1/64", "dev", "vlo", "nodad"},
		{"ip", "addr", "add", "10.77.0.1/24", "dev", "vlo"},
		{"ip", "link", "set", "vlo", "up"},
	} {
		s.Host.MustRun(a[0], a[1:]...)
	}
	for _, a := range [][]string{
		{"ip", "addr", "add", "fd00:7::2/64", "dev", "eth0", "nodad"},
		{"ip", "addr", "add", "10.77.0.2/24", "dev", "eth0"},
		{"ip", "link", "set", "eth0", "up"},
		{"ip", "link", "set", "lo", "up"},
	} {
		c.MustRun(a[0], a[1:]...)
	}
	for _, l := range []string{"TCP6-LISTEN:80,fork,reuseaddr", "TCP4-LISTEN:81,fork,reuseaddr", "UDP6-RECVFROM:53,fork"} {
		// The answer waits for the question: an answer that left before it
		// arrived would make socat fail writing it to the finished shell.
		cmd := c.Command("socat", l, `SYSTEM:read x; echo pong-$SOCAT_PEERADDR`)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	}
	var cookie uint64
	ns, err := netns.GetFromPath(s.Host.NetPath())
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if err := namespace.In(ns, func() (err error) { cookie, err = loopback.Cookie(); return err }); err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, s: s, table: loopback.New(s.Cgroup, cookie)}
	// Wait for the listeners.
	for i := 0; ; i++ {
		if out, _ := c.Run("ss", "-Hltun"); strings.Count(out, "\n") >= 3 {
			break
		} else if i == 100 {
			t.Fatalf("listeners did not start:\n%s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return r
}

// from runs the client in a namespace of the sandbox.
func (r *rig) from(ns *sandbox.NS, proto, addr string) string {
	r.t.Helper()
	cmd := ns.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "LOOPBACK_CLIENT="+addr, "LOOPBACK_PROTO="+proto)
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("client: %v\n%s", err, out)
	}
	return string(out)
}

func (r *rig) expect(ns *sandbox.NS, proto, addr, want string) {
	r.t.Helper()
	if got := r.from(ns, proto, addr); !strings.Contains(got, want) {
		r.t.Errorf("%s %s: got %q, want %q", proto, addr, got, want)
	}
}

func (r *rig) attached() []string {
	r.t.Helper()
	cg, err := os.Open(r.s.Cgroup)
	if err != nil {
		r.t.Fatal(err)
	}
	defer cg.Close()
	var names []string
	for _, at := range []ebpf.AttachType{ebpf.AttachCGroupInet6Connect, ebpf.AttachCGroupUDP6Sendmsg,
		ebpf.AttachCGroupUDP6Recvmsg, ebpf.AttachCgroupInet6GetPeername} {
		res, err := link.QueryPrograms(link.QueryOptions{Target: int(cg.Fd()), Attach: at})
		if err != nil {
			r.t.Fatal(err)
		}
		for _, p := range res.Programs {
			prog, err := ebpf.NewProgramFromID(p.ID)
			if err != nil {
				r.t.Fatal(err)
			}
			info, _ := prog.Info()
			names = append(names, info.Name)
			prog.Close()
		}
	}
	return names
}

var (
	ctr6  = netip.MustParseAddr("fd00:7::2")
	ctr4  = netip.MustParseAddr("10.77.0.2")
	ports = []loopback.Port{
		{Proto: "tcp", HostPort: 8080, ContainerIP: ctr6, ContainerPort: 80},
		{Proto: "udp", HostPort: 8053, ContainerIP: ctr6, ContainerPort: 53},
		{Proto: "tcp", HostPort: 8081, ContainerIP: ctr4, ContainerPort: 81},
	}
)

func TestRedirectAndRestore(t *testing.T) {
	r := newRig(t)
	h := r.s.Host
	r.expect(h, "tcp", "[::1]:8080", "error:") // nothing published yet
	if err := r.table.Add(ports); err != nil {
		t.Fatal(err)
	}
	if got := r.attached(); len(got) != 4 {
		t.Fatalf("attached programs: %v, want 4", got)
	}
	// The container sees the host's address on its link; the client sees [::1].
	r.expect(h, "tcp", "[::1]:8080", "pong-[fd00:0007:0000:0000:0000:0000:0000:0001]")
	r.expect(h, "tcp", "[::1]:8080", "from [::1]:8080")
	r.expect(h, "udp", "[::1]:8053", "from [::1]:8053")
	r.expect(h, "udp-unconnected", "[::1]:8053", "pong-[fd00:0007:0000:0000:0000:0000:0000:0001]")
	r.expect(h, "udp-unconnected", "[::1]:8053", "from [::1]:8053")
	// An IPv4 container through a dual-stack socket.
	r.expect(h, "tcp", "[::1]:8081", "pong-10.77.0.1")
	r.expect(h, "tcp", "[::1]:8081", "from [::1]:8081")
	// Unpublished ports, other protocols and other namespaces are left alone.
	r.expect(h, "tcp", "[::1]:8082", "refused")
	r.expect(h, "tcp", "[::1]:8053", "refused")
	r.expect(r.s.Upstream, "tcp", "[::1]:8080", "refused")
	// A direct connection to the container is not shown as [::1].
	r.expect(h, "tcp", "[fd00:7::2]:80", "from [fd00:7::2]:80")

	if err := r.table.Remove(ports[:1]); err != nil {
		t.Fatal(err)
	}
	r.expect(h, "tcp", "[::1]:8080", "refused")
	r.expect(h, "tcp", "[::1]:8081", "from [::1]:8081")
	if err := r.table.Remove(ports); err != nil {
		t.Fatal(err)
	}
	if got := r.attached(); len(got) != 0 {
		t.Fatalf("programs still attached after the last port: %v", got)
	}
}

func TestSyncRepairs(t *testing.T) {
	r := newRig(t)
	h := r.s.Host
	if ch, err := r.table.Sync(nil); err != nil || len(ch) != 0 || len(r.attached()) != 0 {
		t.Fatalf("sync of nothing: %v %v, attached %v", ch, err, r.attached())
	}
	if err := r.table.Add(ports); err != nil {
		t.Fatal(err)
	}
	// A port was removed behind our back, one is published that should not
	// be, and someone detaches one program.
	if err := r.table.Remove(ports[2:]); err != nil {
		t.Fatal(err)
	}
	stray := loopback.Port{Proto: "tcp", HostPort: 9999, ContainerIP: ctr6, ContainerPort: 80}
	if err := r.table.Add([]loopback.Port{stray}); err != nil {
		t.Fatal(err)
	}
	r.detach(ebpf.AttachCGroupInet6Connect)
	r.expect(h, "tcp", "[::1]:8080", "refused")
	changes, err := r.table.Sync(ports)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"re-attached [::1] program(s) ctnet1_connect6",
		"removed [::1] port tcp [::1]:9999",
		"restored [::1] port tcp [::1]:8081 -> 10.77.0.2:81",
	}
	if strings.Join(changes, "\n") != strings.Join(want, "\n") {
		t.Errorf("changes:\n%s\nwant:\n%s", strings.Join(changes, "\n"), strings.Join(want, "\n"))
	}
	r.expect(h, "tcp", "[::1]:8080", "from [::1]:8080")
	r.expect(h, "tcp", "[::1]:8081", "from [::1]:8081")
	r.expect(h, "tcp", "[::1]:9999", "refused")
	if changes, err := r.table.Sync(ports); err != nil || len(changes) != 0 {
		t.Errorf("second sync: %v %v", changes, err)
	}
	// Only a program without the ports map is left: start afresh.
	for _, at := range []ebpf.AttachType{ebpf.AttachCGroupInet6Connect, ebpf.AttachCGroupUDP6Sendmsg, ebpf.AttachCGroupUDP6Recvmsg} {
		r.detach(at)
	}
	changes, err = r.table.Sync(ports)
	if err != nil || len(changes) != 1+len(ports) || changes[0] != "attached the [::1] programs to "+r.s.Cgroup {
		t.Errorf("sync after losing the map: %v\n%s", err, strings.Join(changes, "\n"))
	}
	if got := r.attached(); len(got) != 4 {
		t.Errorf("attached after the fresh start: %v", got)
	}
	r.expect(h, "tcp", "[::1]:8080", "from [::1]:8080")
	if _, err := r.table.Sync(nil); err != nil || len(r.attached()) != 0 {
		t.Errorf("sync to nothing: %v, attached %v", err, r.attached())
	}
}

// detach takes ctnet's program off one hook, behind the table's back.
func (r *rig) detach(at ebpf.AttachType) {
	r.t.Helper()
	cg, err := os.Open(r.s.Cgroup)
	if err != nil {
		r.t.Fatal(err)
	}
	defer cg.Close()
	res, err := link.QueryPrograms(link.QueryOptions{Target: int(cg.Fd()), Attach: at})
	if err != nil || len(res.Programs) != 1 {
		r.t.Fatalf("programs on %v: %v %v", at, res, err)
	}
	p, err := ebpf.NewProgramFromID(res.Programs[0].ID)
	if err != nil {
		r.t.Fatal(err)
	}
	defer p.Close()
	if err := link.RawDetachProgram(link.RawDetachProgramOptions{Target: int(cg.Fd()), Program: p, Attach: at}); err != nil {
		r.t.Fatal(err)
	}
}

// BenchmarkAddRemove: publishing and unpublishing one [::1] port while the
// programs stay attached (another port keeps them).
func BenchmarkAddRemove(b *testing.B) {
	t := benchTable(b)
	keep := []loopback.Port{{Proto: "tcp", HostPort: 1, ContainerIP: ctr6, ContainerPort: 80}}
	if err := t.Add(keep); err != nil {
		b.Fatal(err)
	}
	addRemove(b, t)
	if err := t.Remove(keep); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkAttachDetach: the first [::1] port (load and attach four
// programs, make two maps) and the last (detach them).
func BenchmarkAttachDetach(b *testing.B) {
	addRemove(b, benchTable(b))
}

func addRemove(b *testing.B, t *loopback.Table) {
	one := []loopback.Port{{Proto: "tcp", HostPort: 8080, ContainerIP: ctr6, ContainerPort: 80}}
	for b.Loop() {
		if err := t.Add(one); err != nil {
			b.Fatal(err)
		}
		if err := t.Remove(one); err != nil {
			b.Fatal(err)
		}
	}
}

// benchTable is a table on a cgroup of the sandbox's; no client runs, so
// the programs never see a socket.
func benchTable(b *testing.B) *loopback.Table {
	s := sandbox.New(b)
	if s.Cgroup == "" {
		b.Skip("no cgroup2 hierarchy on this machine")
	}
	return loopback.New(s.Cgroup, 1)
}
