package ipam

import (
	"net"
	"net/netip"
)

// MACFromIP derives a container MAC from its IPv4 address the way classic Docker
// did: 02:42 (locally administered, unicast) followed by the four address bytes,
// e.g. 172.17.0.2 → 02:42:ac:11:00:02. It returns nil for anything but IPv4
// (IPv4-mapped IPv6 is unmapped first); callers then use a random MAC.
func MACFromIP(a netip.Addr) net.HardwareAddr {
	a = a.Unmap()
	if !a.Is4() {
		return nil
	}
	b := a.As4()
	return net.HardwareAddr{0x02, 0x42, b[0], b[1], b[2], b[3]}
}
