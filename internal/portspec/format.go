package portspec

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Formatters take mappings after Allocate and ExpandFamilies. A mapping whose
// HostIP is still "all addresses" is shown on 0.0.0.0 (the IPv4-only view);
// one whose host port is still open is not published yet: FormatPort leaves it
// out and DisplayPorts shows it as exposed only ("80/tcp"), as Docker shows a
// port with no binding.

func hostIP(m Mapping) netip.Addr {
	if !m.HostIP.IsValid() {
		return netip.IPv4Unspecified()
	}
	return m.HostIP
}

func hostAddr(m Mapping) string {
	return net.JoinHostPort(hostIP(m).String(), strconv.Itoa(int(m.HostPort)))
}

// FormatPort gives the lines of `docker port NAME`: "80/tcp -> 0.0.0.0:8080",
// "80/tcp -> [::]:8080", in the docker CLI's natural sort order.
func FormatPort(ms []Mapping) []string {
	var out []string
	for _, m := range ms {
		if !m.Open() {
			out = append(out, fmt.Sprintf("%d/%s -> %s", m.ContainerPort, m.Proto, hostAddr(m)))
		}
	}
	slices.SortFunc(out, naturalCompare)
	return out
}

// FormatPrivate gives the lines of `docker port NAME PORT[/PROTO]`: the host
// addresses ("0.0.0.0:8080", "[::]:8080") that port/proto is published on.
// None means Docker's "No public port '80/tcp' published for NAME".
func FormatPrivate(ms []Mapping, port uint16, proto string) []string {
	var out []string
	for _, m := range ms {
		if !m.Open() && m.ContainerPort == port && m.Proto == proto {
			out = append(out, hostAddr(m))
		}
	}
	slices.SortFunc(out, naturalCompare)
	return out
}

// ParsePrivate reads the PRIVATE_PORT[/PROTO] argument of `ctnet port`
// (protocol tcp when left out).
func ParsePrivate(s string) (uint16, string, error) {
	port, proto, _ := strings.Cut(s, "/")
	proto = strings.ToLower(proto)
	if proto == "" {
		proto = "tcp"
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return 0, "", fmt.Errorf("private port %q: port %q is not a number in 1-65535", s, port)
	}
	if !validProto(proto) {
		return 0, "", fmt.Errorf("private port %q: protocol %q is not tcp, udp or sctp", s, proto)
	}
	return uint16(n), proto, nil
}

// DisplayPorts gives the PORTS column of `docker ps`, e.g.
// "0.0.0.0:8000-8010->8000-8010/tcp, 0.0.0.0:8080->80/tcp". It follows the
// docker CLI's DisplayablePorts: sort by container port, host IP, host port
// and protocol; collapse runs of consecutive ports published on the same port
// number per address and protocol; list the remapped ones after the runs.
func DisplayPorts(ms []Mapping) string {
	type entry struct {
		ip              netip.Addr // invalid: exposed only
		private, public uint16
		proto           string
	}
	es := make([]entry, 0, len(ms))
	for _, m := range ms {
		e := entry{private: m.ContainerPort, proto: m.Proto}
		if !m.Open() {
			e.ip, e.public = hostIP(m), m.HostPort
		}
		es = append(es, e)
	}
	slices.SortStableFunc(es, func(a, b entry) int {
		return cmp.Or(cmp.Compare(a.private, b.private), a.ip.Compare(b.ip),
			cmp.Compare(a.public, b.public), cmp.Compare(a.proto, b.proto))
	})

	type gkey struct {
		ip    netip.Addr
		proto string
	}
	groups := make(map[gkey]*portGroup)
	var order []gkey
	var result, remapped []string
	for _, e := range es {
		if e.ip.IsValid() && e.public != e.private {
			remapped = append(remapped, fmt.Sprintf("%s->%d/%s",
				net.JoinHostPort(e.ip.String(), strconv.Itoa(int(e.public))), e.private, e.proto))
			continue
		}
		k := gkey{e.ip, e.proto}
		g := groups[k]
		switch {
		case g == nil:
			order = append(order, k)
		case int(e.private) == int(g.last)+1:
			g.last = e.private
			continue
		default:
			// Docker emits a finished run at once and keeps the key's place
			// in the final list for the run that replaces it.
			result = append(result, g.String())
		}
		groups[k] = &portGroup{ip: e.ip, proto: e.proto, first: e.private, last: e.private}
	}
	for _, k := range order {
		result = append(result, groups[k].String())
	}
	return strings.Join(append(result, remapped...), ", ")
}

type portGroup struct {
	ip          netip.Addr
	proto       string
	first, last uint16
}

func (g *portGroup) String() string {
	ports := strconv.Itoa(int(g.first))
	if g.last != g.first {
		ports += "-" + strconv.Itoa(int(g.last))
	}
	if g.ip.IsValid() {
		ports = net.JoinHostPort(g.ip.String(), ports) + "->" + ports
	}
	return ports + "/" + g.proto
}

// naturalCompare orders as github.com/fvbommel/sortorder.NaturalLess, which
// the docker CLI sorts `docker port` lines with: runs of digits compare as
// numbers (fewer leading zeros first on a tie), other bytes compare bytewise,
// and at a digit/non-digit difference the digit sorts first.
func naturalCompare(a, b string) int {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		da, db := isDigit(a[i]), isDigit(b[j])
		switch {
		case da != db:
			if da {
				return -1
			}
			return 1
		case !da:
			if c := cmp.Compare(a[i], b[j]); c != 0 {
				return c
			}
			i++
			j++
		default:
			za, zb := i, j
			for i < len(a) && a[i] == '0' {
				i++
			}
			for j < len(b) && b[j] == '0' {
				j++
			}
			na, nb := i, j
			for i < len(a) && isDigit(a[i]) {
				i++
			}
			for j < len(b) && isDigit(b[j]) {
				j++
			}
			if c := cmp.Or(cmp.Compare(i-na, j-nb), strings.Compare(a[na:i], b[nb:j]),
				cmp.Compare(na-za, nb-zb)); c != 0 {
				return c
			}
		}
	}
	return cmp.Compare(len(a)-i, len(b)-j)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
