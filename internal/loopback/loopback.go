// Package loopback makes container ports published on the host's [::1]
// reachable, without a proxy and without NAT.
//
// 127.0.0.1 is served by DNAT because IPv4 has route_localnet. IPv6 has no
// such switch: the kernel drops every packet with a loopback address that
// arrives on a real device, so a reply to ::1 from a container is lost
// whatever the firewall does (Docker serves [::1] only through its userland
// proxy). ctnet rewrites the socket instead of the packets: cgroup
// socket-address programs change the destination of connect(2) and
// sendmsg(2) from [::1]:hostport to the container's address before any packet
// exists, and change it back where the application looks (getpeername(2),
// the source address of recvmsg(2)). The connection is then an ordinary one
// from the host to the container: no conntrack entry, no NAT, no process.
//
// One map of published ports, keyed by network namespace cookie, host port
// and protocol, is shared by every ctnet that attaches at the same cgroup, so
// each rewrites only sockets of its own host namespace. The four programs are
// attached with BPF_F_ALLOW_MULTI to a cgroup directory (the root of the
// cgroup2 mount unless told otherwise), stay attached with no process holding
// them, are found again by name, and are detached with the last port.
package loopback

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Port is one host port on [::1] served by a container.
type Port struct {
	Proto         string // "tcp" or "udp"
	HostPort      uint16
	ContainerIP   netip.Addr // IPv6, or IPv4 (reached as ::ffff:a.b.c.d by dual-stack sockets)
	ContainerPort uint16
}

func (p Port) String() string {
	return fmt.Sprintf("%s [::1]:%d -> %s", p.Proto, p.HostPort, netip.AddrPortFrom(p.ContainerIP.Unmap(), p.ContainerPort))
}

// Supported reports whether a protocol can be redirected: the kernel runs
// the connect and sendmsg programs for TCP and UDP only.
func Supported(proto string) bool { return proto == "tcp" || proto == "udp" }

// Cookie is the cookie of the calling thread's network namespace, the key
// under which Table entries of that namespace are kept.
func Cookie() (uint64, error) {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("network namespace cookie: %w", err)
	}
	defer unix.Close(fd)
	c, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if err != nil {
		return 0, fmt.Errorf("network namespace cookie (needs Linux 5.14): %w", err)
	}
	return c, nil
}

// DefaultCgroup is the root of the cgroup2 hierarchy as this process sees it
// (/sys/fs/cgroup on cgroup v2 hosts, /sys/fs/cgroup/unified on hybrid ones):
// programs attached there apply to every process.
func DefaultCgroup() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source super
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if f := strings.Fields(pre); ok && len(f) >= 5 && strings.HasPrefix(post, "cgroup2 ") {
			return strings.ReplaceAll(f[4], `\040`, " "), nil
		}
	}
	return "", errors.New("no cgroup2 hierarchy is mounted; ports on [::1] need one (mount -t cgroup2 none /sys/fs/cgroup/unified)")
}

// Table is the [::1] ports of one network namespace.
type Table struct {
	cgroup string
	cookie uint64
}

// New returns the table of the namespace with the given cookie, attached at
// the cgroup directory. It does not touch the kernel yet.
func New(cgroup string, cookie uint64) *Table { return &Table{cgroup: cgroup, cookie: cookie} }

// Add publishes ports, attaching the programs if they are not yet.
func (t *Table) Add(ps []Port) error {
	if len(ps) == 0 {
		return nil
	}
	return t.locked(func(cg *os.File) error {
		o, _, err := ensure(cg, true)
		if err != nil {
			return err
		}
		defer o.close()
		for _, p := range ps {
			k, v, err := t.encode(p)
			if err != nil {
				return err
			}
			if err := o.ports.Put(k, v); err != nil {
				return fmt.Errorf("[::1] port %s: %w", p, err)
			}
		}
		return nil
	})
}

// Remove unpublishes ports (missing ones are not an error, nor a cgroup
// directory that is gone or none) and detaches the programs when no
// namespace has any port left.
func (t *Table) Remove(ps []Port) error {
	if len(ps) == 0 {
		return nil
	}
	err := t.locked(func(cg *os.File) error {
		o, _, err := ensure(cg, false)
		if err != nil || o == nil {
			return err
		}
		defer o.close()
		for _, p := range ps {
			k, _, err := t.encode(p)
			if err != nil {
				return err
			}
			if err := o.ports.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("[::1] port %s: %w", p, err)
			}
		}
		return o.detachIfEmpty(cg)
	})
	if errors.Is(err, errNoCgroup) {
		return nil // nothing can have been attached there
	}
	return err
}

// Sync makes this namespace's entries exactly ps, re-attaching programs that
// went missing, and returns one line per change.
func (t *Table) Sync(ps []Port) ([]string, error) {
	var changes []string
	err := t.locked(func(cg *os.File) error {
		o, repaired, err := ensure(cg, len(ps) > 0)
		if err != nil || o == nil {
			return err
		}
		defer o.close()
		changes = append(changes, repaired...)
		want := map[string][]byte{}
		for _, p := range ps {
			k, v, err := t.encode(p)
			if err != nil {
				return err
			}
			want[string(k)] = v
		}
		var stale [][]byte
		k, v := make([]byte, keySize), make([]byte, valueSize)
		it := o.ports.Iterate()
		for it.Next(&k, &v) {
			if binary.NativeEndian.Uint64(k) != t.cookie {
				continue
			}
			if w, ok := want[string(k)]; ok && bytes.Equal(w, v) {
				delete(want, string(k))
			} else if !ok {
				stale = append(stale, slices.Clone(k))
			}
		}
		if err := it.Err(); err != nil {
			return fmt.Errorf("list [::1] ports: %w", err)
		}
		for _, k := range stale {
			if err := o.ports.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("[::1] ports: %w", err)
			}
			changes = append(changes, "removed [::1] port "+decodeKey(k))
		}
		for _, p := range ps {
			k, v, _ := t.encode(p)
			if _, ok := want[string(k)]; !ok {
				continue
			}
			if err := o.ports.Put(k, v); err != nil {
				return fmt.Errorf("[::1] port %s: %w", p, err)
			}
			changes = append(changes, "restored [::1] port "+p.String())
		}
		return o.detachIfEmpty(cg)
	})
	return changes, err
}

func (t *Table) encode(p Port) (key, value []byte, err error) {
	var proto byte
	switch p.Proto {
	case "tcp":
		proto = unix.IPPROTO_TCP
	case "udp":
		proto = unix.IPPROTO_UDP
	default:
		return nil, nil, fmt.Errorf("[::1] port %s: only tcp and udp can be published on [::1]", p)
	}
	if !p.ContainerIP.IsValid() {
		return nil, nil, fmt.Errorf("[::1] port %s: no container address", p)
	}
	key = make([]byte, keySize)
	binary.NativeEndian.PutUint64(key, t.cookie)
	binary.BigEndian.PutUint16(key[8:], p.HostPort)
	key[10] = proto
	value = make([]byte, valueSize)
	a := p.ContainerIP.As16() // IPv4 becomes ::ffff:a.b.c.d
	copy(value, a[:])
	binary.BigEndian.PutUint16(value[16:], p.ContainerPort)
	return key, value, nil
}

func decodeKey(k []byte) string {
	proto := "tcp"
	if k[10] == unix.IPPROTO_UDP {
		proto = "udp"
	}
	return fmt.Sprintf("%s [::1]:%d", proto, binary.BigEndian.Uint16(k[8:]))
}

var errNoCgroup = errors.New("ports on [::1] need a cgroup2 directory (--cgroup, $CTNET_CGROUP; empty means the cgroup2 root)")

// locked runs fn holding an exclusive lock on the cgroup directory, which
// serialises every ctnet (of any namespace) attaching there.
func (t *Table) locked(fn func(cg *os.File) error) error {
	cg, err := os.Open(t.cgroup)
	if err != nil {
		return fmt.Errorf("%w: %w", errNoCgroup, err)
	}
	defer cg.Close()
	var fs unix.Statfs_t
	if err := unix.Fstatfs(int(cg.Fd()), &fs); err != nil || fs.Type != unix.CGROUP2_SUPER_MAGIC {
		return fmt.Errorf("%w: %s is not a cgroup2 directory", errNoCgroup, t.cgroup)
	}
	if err := unix.Flock(int(cg.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", t.cgroup, err)
	}
	return fn(cg)
}

// objects are the maps and the attached programs, as found or made.
type objects struct {
	ports, socks *ebpf.Map
	progs        map[string]*ebpf.Program // by hook name, attached
}

// ensure finds ctnet's programs on the cgroup and the maps they use. With
// create, missing maps are made and missing programs attached, and a line
// says what was attached. Without create, nil means nothing is attached.
func ensure(cg *os.File, create bool) (*objects, []string, error) {
	o := &objects{progs: map[string]*ebpf.Program{}}
	found := false
	for _, h := range hooks {
		p, err := attached(cg, h)
		if err != nil {
			o.close()
			return nil, nil, err
		}
		if p == nil {
			continue
		}
		found = true
		if ok, err := o.adopt(p); err != nil {
			p.Close()
			o.close()
			return nil, nil, fmt.Errorf("inspect attached program %s: %w", h.name, err)
		} else if !ok {
			// Left over from an older set: it shares no state with the others.
			err := detach(cg, h, p)
			p.Close()
			if err != nil {
				o.close()
				return nil, nil, err
			}
			continue
		}
		o.progs[h.name] = p
	}
	if !found && !create {
		return nil, nil, nil
	}
	if o.ports == nil || o.socks == nil {
		// Nothing usable is attached: start afresh (programs attached
		// without the map are detached below and replaced).
		for _, h := range hooks {
			if p := o.progs[h.name]; p != nil {
				if err := detach(cg, h, p); err != nil {
					o.close()
					return nil, nil, err
				}
				p.Close()
				delete(o.progs, h.name)
			}
		}
		o.close() // a map adopted from them, if any
		o.ports, o.socks = nil, nil
		if err := o.makeMaps(); err != nil {
			o.close()
			return nil, nil, err
		}
	}
	var attachedNow []string
	for _, h := range hooks {
		if o.progs[h.name] != nil {
			continue
		}
		p, err := o.attach(cg, h)
		if err != nil {
			o.close()
			return nil, nil, err
		}
		o.progs[h.name] = p
		attachedNow = append(attachedNow, h.name)
	}
	switch {
	case len(attachedNow) == len(hooks):
		return o, []string{"attached the [::1] programs to " + cg.Name()}, nil
	case len(attachedNow) > 0:
		return o, []string{"re-attached [::1] program(s) " + strings.Join(attachedNow, ", ")}, nil
	}
	return o, nil, nil
}

func (o *objects) close() {
	for _, p := range o.progs {
		p.Close()
	}
	if o.ports != nil {
		o.ports.Close()
	}
	if o.socks != nil {
		o.socks.Close()
	}
}

// adopt takes the maps an attached program uses; false means the program
// uses other maps than those adopted before.
func (o *objects) adopt(p *ebpf.Program) (bool, error) {
	info, err := p.Info()
	if err != nil {
		return false, err
	}
	ids, _ := info.MapIDs()
	for _, id := range ids {
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			return false, err
		}
		mi, err := m.Info()
		if err != nil {
			m.Close()
			return false, err
		}
		slot := &o.socks
		if mi.Name == portsName {
			slot = &o.ports
		} else if mi.Name != socksName {
			m.Close()
			return false, nil
		}
		if *slot == nil {
			*slot = m
			continue
		}
		have, _ := (*slot).Info()
		haveID, _ := have.ID()
		m.Close()
		if gotID, _ := mi.ID(); gotID != haveID {
			return false, nil
		}
	}
	return true, nil
}

// attached returns ctnet's program on the cgroup for h, or nil.
func attached(cg *os.File, h hook) (*ebpf.Program, error) {
	res, err := link.QueryPrograms(link.QueryOptions{Target: int(cg.Fd()), Attach: h.attach})
	if err != nil {
		return nil, fmt.Errorf("list programs on %s: %w", cg.Name(), err)
	}
	for _, ap := range res.Programs {
		p, err := ebpf.NewProgramFromID(ap.ID)
		if err != nil {
			continue // detached meanwhile
		}
		if info, err := p.Info(); err == nil && info.Name == h.name {
			return p, nil
		}
		p.Close()
	}
	return nil, nil
}

func (o *objects) makeMaps() error {
	var err error
	o.ports, err = ebpf.NewMap(&ebpf.MapSpec{
		Name: portsName, Type: ebpf.Hash, KeySize: keySize, ValueSize: valueSize,
		MaxEntries: 1 << 16, Flags: unix.BPF_F_NO_PREALLOC,
	})
	if err != nil {
		return fmt.Errorf("create map for [::1] ports: %w", err)
	}
	// Socket storage needs BTF for its key and value.
	u8 := &btf.Int{Name: "u8", Size: 1}
	o.socks, err = ebpf.NewMap(&ebpf.MapSpec{
		Name: socksName, Type: ebpf.SkStorage, KeySize: 4, ValueSize: valueSize,
		Flags: unix.BPF_F_NO_PREALLOC,
		Key:   &btf.Int{Name: "int", Size: 4, Encoding: btf.Signed},
		Value: &btf.Array{Index: &btf.Int{Name: "u32", Size: 4}, Type: u8, Nelems: valueSize},
	})
	if err != nil {
		return fmt.Errorf("create socket storage for [::1] ports: %w", err)
	}
	return nil
}

func (o *objects) attach(cg *os.File, h hook) (*ebpf.Program, error) {
	ins := restoreProgram(o.socks)
	if h.redirect {
		ins = redirectProgram(o.ports, o.socks)
	}
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: h.name, Type: ebpf.CGroupSockAddr, AttachType: h.attach,
		Instructions: ins, License: "GPL",
	})
	if err != nil {
		return nil, fmt.Errorf("load program %s: %w", h.name, err)
	}
	if err := link.RawAttachProgram(link.RawAttachProgramOptions{
		Target: int(cg.Fd()), Program: p, Attach: h.attach, Flags: unix.BPF_F_ALLOW_MULTI,
	}); err != nil {
		p.Close()
		return nil, fmt.Errorf("attach program %s to %s: %w", h.name, cg.Name(), err)
	}
	return p, nil
}

func detach(cg *os.File, h hook, p *ebpf.Program) error {
	err := link.RawDetachProgram(link.RawDetachProgramOptions{
		Target: int(cg.Fd()), Program: p, Attach: h.attach, Flags: unix.BPF_F_ALLOW_MULTI,
	})
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("detach program %s from %s: %w", h.name, cg.Name(), err)
	}
	return nil
}

// detachIfEmpty detaches the programs (redirectors first) once no namespace
// publishes anything; the kernel frees them and their maps.
func (o *objects) detachIfEmpty(cg *os.File) error {
	k, v := make([]byte, keySize), make([]byte, valueSize)
	if it := o.ports.Iterate(); it.Next(&k, &v) || it.Err() != nil {
		return it.Err()
	}
	for _, h := range slices.Backward(hooks) {
		if p := o.progs[h.name]; p != nil {
			if err := detach(cg, h, p); err != nil {
				return err
			}
		}
	}
	return nil
}
