// Package portspec parses and prints published ports the way Docker does:
// the values of `-p/--publish`, the image ports behind `-P`, the lines of
// `docker port` and the PORTS column of `docker ps`.
//
// The life of a mapping is Parse (or Exposed) → Allocate (host ports chosen
// for the ones left open) → ExpandFamilies (all addresses becomes 0.0.0.0 and,
// on IPv6-enabled networks, ::) → the firewall and the formatters.
package portspec

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Mapping publishes one container port on one host port.
type Mapping struct {
	// HostIP is the host address; the zero Addr means all addresses of both
	// families (Docker's default). An explicit 0.0.0.0 means all IPv4
	// addresses only and an explicit :: all IPv6 addresses only, as in Docker.
	HostIP netip.Addr
	// HostPort 0 means "choose one from the ephemeral range" (-p 80, -p 127.0.0.1::80).
	HostPort uint16
	// HostPortEnd, when non-zero, makes HostPort..HostPortEnd a range from
	// which one free port is to be chosen (Docker's -p 8000-8010:80).
	HostPortEnd   uint16
	ContainerPort uint16
	Proto         string // "tcp", "udp" or "sctp"
}

// Open reports whether the host port is still to be chosen by Allocate.
func (m Mapping) Open() bool { return m.HostPort == 0 || m.HostPortEnd != 0 }

// String gives the mapping as a -p value that Parse reads back to the same mapping.
func (m Mapping) String() string {
	var b strings.Builder
	host := ""
	if m.HostPort != 0 {
		host = strconv.Itoa(int(m.HostPort))
		if m.HostPortEnd > m.HostPort {
			host += "-" + strconv.Itoa(int(m.HostPortEnd))
		}
	}
	switch {
	case m.HostIP.Is6():
		b.WriteString("[" + m.HostIP.String() + "]:" + host + ":")
	case m.HostIP.IsValid():
		b.WriteString(m.HostIP.String() + ":" + host + ":")
	case host != "":
		b.WriteString(host + ":")
	}
	b.WriteString(strconv.Itoa(int(m.ContainerPort)) + "/" + m.Proto)
	return b.String()
}

// Parse reads one -p value. A container port range gives one mapping per port.
//
// Forms (Docker's): PORT, HOSTPORT:PORT, IP:HOSTPORT:PORT, IP::PORT,
// [IPv6]:HOSTPORT:PORT, each with an optional /tcp, /udp or /sctp (default
// tcp, case-insensitive). PORT and HOSTPORT may be ranges A-B of equal
// length. A host range with a single container port (8000-8010:80) asks for
// any free port of that range (HostPortEnd set), and host port 0 asks for an
// ephemeral one, as in Docker. Unlike Docker, an IPv6 address must be in
// brackets: "::1:8080:80" is ambiguous and is refused.
func Parse(s string) ([]Mapping, error) {
	ms, err := parse(s)
	if err != nil {
		return nil, fmt.Errorf("port spec %q: %w", s, err)
	}
	return ms, nil
}

func parse(s string) ([]Mapping, error) {
	rest, rawProto, _ := strings.Cut(s, "/")
	proto := strings.ToLower(rawProto)
	if proto == "" {
		proto = "tcp" // Docker reads "80/" as 80/tcp too
	}
	if !validProto(proto) {
		return nil, fmt.Errorf("protocol %q is not tcp, udp or sctp", rawProto)
	}

	var ipStr, hostStr, ctrStr string
	bracketed := strings.HasPrefix(rest, "[")
	if bracketed {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return nil, errors.New(`missing "]" after IPv6 address`)
		}
		ipStr = rest[1:end]
		after, ok := strings.CutPrefix(rest[end+1:], ":")
		if !ok {
			return nil, errors.New(`want ":" after "]"`)
		}
		fields := strings.Split(after, ":")
		if len(fields) != 2 {
			return nil, errors.New("want [IP]:HOSTPORT:PORT or [IP]::PORT")
		}
		hostStr, ctrStr = fields[0], fields[1]
	} else {
		parts := strings.Split(rest, ":")
		switch n := len(parts); n {
		case 1:
			ctrStr = parts[0]
		case 2:
			hostStr, ctrStr = parts[0], parts[1]
		case 3:
			ipStr, hostStr, ctrStr = parts[0], parts[1], parts[2]
		default:
			ipStr = strings.Join(parts[:n-2], ":")
			if _, err := netip.ParseAddr(ipStr); err != nil {
				return nil, errors.New(`too many ":" (an IPv6 address must be in brackets, as in "[::1]:8080:80")`)
			}
			return nil, fmt.Errorf("IPv6 address must be in brackets, as in %q",
				"["+ipStr+"]:"+parts[n-2]+":"+parts[n-1]+s[len(rest):])
		}
	}

	var ip netip.Addr
	if bracketed || ipStr != "" {
		a, err := netip.ParseAddr(ipStr)
		if err != nil {
			return nil, fmt.Errorf("invalid IP address %q", ipStr)
		}
		if a.Zone() != "" {
			return nil, fmt.Errorf("IP address %q has a zone, which is not supported", ipStr)
		}
		ip = a.Unmap()
	}

	if ctrStr == "" {
		return nil, errors.New("no container port")
	}
	cLo, cHi, err := parseRange("container", ctrStr)
	if err != nil {
		return nil, err
	}
	if cLo == 0 {
		return nil, errors.New("container port 0 is out of range 1-65535")
	}
	var hLo, hHi uint16
	if hostStr != "" {
		if hLo, hHi, err = parseRange("host", hostStr); err != nil {
			return nil, err
		}
		if hLo == 0 && hHi != 0 {
			return nil, errors.New("host port 0 is out of range 1-65535 (leave the host port empty to have one chosen)")
		}
	}

	ms := make([]Mapping, 0, int(cHi-cLo)+1)
	hostLen, ctrLen := int(hHi-hLo)+1, int(cHi-cLo)+1
	switch {
	case hostStr == "" || (hostLen == 1 && hLo == 0 && ctrLen == 1):
		for p := int(cLo); p <= int(cHi); p++ {
			ms = append(ms, Mapping{HostIP: ip, ContainerPort: uint16(p), Proto: proto})
		}
	case hostLen == ctrLen:
		for i := 0; i < ctrLen; i++ {
			ms = append(ms, Mapping{HostIP: ip, HostPort: hLo + uint16(i), ContainerPort: cLo + uint16(i), Proto: proto})
		}
	case ctrLen == 1:
		ms = append(ms, Mapping{HostIP: ip, HostPort: hLo, HostPortEnd: hHi, ContainerPort: cLo, Proto: proto})
	default:
		return nil, fmt.Errorf("host ports %s and container ports %s differ in length (%d and %d)",
			hostStr, ctrStr, hostLen, ctrLen)
	}
	return ms, nil
}

func validProto(p string) bool { return p == "tcp" || p == "udp" || p == "sctp" }

// parseRange reads "N" or "A-B"; which is "host" or "container", for errors.
func parseRange(which, s string) (lo, hi uint16, err error) {
	a, b, isRange := strings.Cut(s, "-")
	if lo, err = parsePort(which, a, s); err != nil {
		return 0, 0, err
	}
	if !isRange {
		return lo, lo, nil
	}
	if hi, err = parsePort(which, b, s); err != nil {
		return 0, 0, err
	}
	if hi < lo {
		return 0, 0, fmt.Errorf("%s port range %s is reversed", which, s)
	}
	return lo, hi, nil
}

func parsePort(which, s, whole string) (uint16, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("%s port %q is not a port or range", which, whole)
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > 65535 {
		return 0, fmt.Errorf("%s port %s is out of range 1-65535", which, s)
	}
	return uint16(n), nil
}

// ParseAll parses several -p values and refuses two that claim the same host
// port and protocol on overlapping addresses (all addresses overlaps every
// address; 0.0.0.0 overlaps every IPv4 address, :: every IPv6 one).
// Open host ports are not compared: Allocate keeps them apart.
func ParseAll(values []string) ([]Mapping, error) {
	type key struct {
		proto string
		port  uint16
	}
	type claim struct {
		ip   netip.Addr
		spec string
	}
	claims := make(map[key][]claim)
	var out []Mapping
	for _, v := range values {
		ms, err := Parse(v)
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			if m.Open() {
				continue
			}
			k := key{m.Proto, m.HostPort}
			for _, c := range claims[k] {
				if overlap(c.ip, m.HostIP) {
					return nil, fmt.Errorf("port specs %q and %q both publish host port %d/%s on %s",
						c.spec, v, m.HostPort, m.Proto, describe(narrower(c.ip, m.HostIP)))
				}
			}
			claims[k] = append(claims[k], claim{m.HostIP, v})
		}
		out = append(out, ms...)
	}
	return out, nil
}

// overlap reports whether two host addresses can receive the same packet.
func overlap(a, b netip.Addr) bool {
	switch {
	case !a.IsValid() || !b.IsValid() || a == b:
		return true
	case a.Is4() != b.Is4():
		return false
	default:
		return a.IsUnspecified() || b.IsUnspecified()
	}
}

func narrower(a, b netip.Addr) netip.Addr {
	if !a.IsValid() || a.IsUnspecified() {
		return b
	}
	return a
}

func describe(ip netip.Addr) string {
	if !ip.IsValid() {
		return "all addresses"
	}
	return ip.String()
}

// Exposed reads image ExposedPorts keys ("80/tcp", "53/udp", "8000-8010/tcp")
// into mappings with open host ports, for -P. The result is sorted by port
// and protocol and has no duplicates, whatever the order of keys.
func Exposed(keys []string) ([]Mapping, error) {
	var out []Mapping
	for _, k := range keys {
		if strings.Contains(k, ":") {
			return nil, fmt.Errorf("exposed port %q: want PORT[/PROTO]", k)
		}
		ms, err := parse(k)
		if err != nil {
			return nil, fmt.Errorf("exposed port %q: %w", k, err)
		}
		out = append(out, ms...)
	}
	slices.SortFunc(out, func(a, b Mapping) int {
		return cmp.Or(cmp.Compare(a.ContainerPort, b.ContainerPort), cmp.Compare(a.Proto, b.Proto))
	})
	return slices.Compact(out), nil
}
