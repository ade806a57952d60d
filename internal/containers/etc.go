package containers

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/ctnet/ctnet/internal/network"
	"github.com/ctnet/ctnet/internal/resolvconf"
)

// etcFiles writes a container's /etc/hosts, /etc/hostname and
// /etc/resolv.conf the way Docker does.
func (m *Manager) etcFiles(c *Container) (map[string][]byte, error) {
	owner := c.ID
	if strings.HasPrefix(c.NetworkMode, "container:") {
		owner = strings.TrimPrefix(c.NetworkMode, "container:") // shares that one's attachments
	}
	atts, err := m.net.Attachments(network.Container(owner))
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{"/etc/hostname": []byte(c.Hostname + "\n")}

	var hosts bytes.Buffer
	if c.NetworkMode == "host" {
		b, _ := os.ReadFile("/etc/hosts")
		hosts.Write(b)
	} else {
		hosts.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" +
			"fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")
	}
	for _, h := range c.AddHosts {
		name, ip, _ := strings.Cut(h, ":")
		fmt.Fprintf(&hosts, "%s\t%s\n", strings.Trim(ip, "[]"), name)
	}
	names := c.Hostname
	if c.Name != "" && c.Name != c.Hostname {
		names += " " + c.Name
	}
	for _, a := range atts {
		for _, p := range a.Addrs() {
			fmt.Fprintf(&hosts, "%s\t%s\n", p.Addr(), names)
		}
	}
	files["/etc/hosts"] = hosts.Bytes()
	host := resolvconf.Host()
	files["/etc/resolv.conf"] = resolvConf(c, host)
	for _, a := range atts {
		if a.Network != network.DefaultNetwork {
			files["/etc/resolv.conf"] = embeddedResolvConf(host)
			break
		}
	}
	return files, nil
}

// embeddedResolvConf points a container on a user network at the embedded
// resolver, as Docker does; --dns servers become its upstreams.
func embeddedResolvConf(host resolvconf.File) []byte {
	var out bytes.Buffer
	out.WriteString("nameserver 127.0.0.11\n")
	out.Write(host.Keep(resolvconf.Is("search")))
	out.WriteString("options ndots:0\n")
	return out.Bytes()
}

// resolvConf is --dns if given, else the host's resolv.conf. Outside host
// mode, loopback resolvers (127.0.0.53 and the like) cannot be reached from
// the container's namespace, so they are left out, as Docker does.
func resolvConf(c *Container, host resolvconf.File) []byte {
	var out bytes.Buffer
	if len(c.DNS) > 0 {
		for _, d := range c.DNS {
			fmt.Fprintf(&out, "nameserver %s\n", d)
		}
		out.Write(host.Keep(resolvconf.Is("search", "options")))
		return out.Bytes()
	}
	if c.NetworkMode == "host" {
		return host.Keep(func(resolvconf.Line) bool { return true })
	}
	dropped := 0
	out.Write(host.Keep(func(l resolvconf.Line) bool {
		if l.Keyword == "nameserver" && len(l.Args) > 0 {
			if a, err := netip.ParseAddr(l.Args[0]); err == nil && a.IsLoopback() {
				dropped++
				return false
			}
		}
		return true
	}))
	if dropped > 0 && !bytes.Contains(out.Bytes(), []byte("nameserver")) {
		out.WriteString("# the host's only resolvers are on its loopback, which a container cannot reach;\n# pass --dns IP to `ctnet run` to give this container one\n")
	}
	return out.Bytes()
}
