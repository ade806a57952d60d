package containers

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"slices"
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
	// As Docker: each address with the host name only (the container's
	// name resolves through the embedded DNS on user networks), the oldest
	// attachment first, so that `hostname -i` stays what it was after a
	// connect.
	slices.SortStableFunc(atts, func(a, b network.Attachment) int { return a.Created.Compare(b.Created) })
	for _, a := range atts {
		for _, p := range a.Addrs() {
			fmt.Fprintf(&hosts, "%s\t%s\n", p.Addr(), c.Hostname)
		}
	}
	files["/etc/hosts"] = hosts.Bytes()
	host := resolvconf.Host()
	files["/etc/resolv.conf"] = resolvConf(c, host)
	for _, a := range atts {
		if a.Network != network.DefaultNetwork {
			files["/etc/resolv.conf"] = embeddedResolvConf(c, host)
			break
		}
	}
	return files, nil
}

// embeddedResolvConf points a container on a user network at the embedded
// resolver, as Docker does (--dns servers become its upstreams): search
// domains and options from --dns-search/--dns-option, else the host's, and
// ndots:0 unless an ndots option is given.
func embeddedResolvConf(c *Container, host resolvconf.File) []byte {
	var out bytes.Buffer
	writeSearch(&out, c, host)
	out.WriteString("nameserver 127.0.0.11\n")
	opts := resolvOptions(c, host)
	if !slices.ContainsFunc(opts, func(o string) bool { return strings.HasPrefix(o, "ndots:") }) {
		opts = append(opts, "ndots:0")
	}
	fmt.Fprintf(&out, "options %s\n", strings.Join(opts, " "))
	return out.Bytes()
}

// resolvConf is the host's resolv.conf as it is, unless --dns, --dns-search
// or --dns-option are given: then it is built as Docker builds it (search,
// nameservers, options; what is not given comes from the host's). Outside
// host mode, loopback resolvers (127.0.0.53 and the like) cannot be reached
// from the container's namespace, so they are left out, as Docker does.
func resolvConf(c *Container, host resolvconf.File) []byte {
	var out bytes.Buffer
	if len(c.DNS) > 0 || len(c.DNSSearch) > 0 || len(c.DNSOptions) > 0 {
		writeSearch(&out, c, host)
		servers := c.DNS
		if len(servers) == 0 {
			servers = reachable(c, host.Nameservers())
		}
		for _, d := range servers {
			fmt.Fprintf(&out, "nameserver %s\n", d)
		}
		if opts := resolvOptions(c, host); len(opts) > 0 {
			fmt.Fprintf(&out, "options %s\n", strings.Join(opts, " "))
		}
		return out.Bytes()
	}
	if c.NetworkMode == "host" {
		return host.Keep(func(resolvconf.Line) bool { return true })
	}
	dropped := 0
	out.Write(host.Keep(func(l resolvconf.Line) bool {
		if l.Keyword == "nameserver" && len(l.Args) > 0 && len(reachable(c, l.Args[:1])) == 0 {
			dropped++
			return false
		}
		return true
	}))
	if dropped > 0 && !bytes.Contains(out.Bytes(), []byte("nameserver")) {
		out.WriteString("# the host's only resolvers are on its loopback, which a container cannot reach;\n# pass --dns IP to `ctnet run` to give this container one\n")
	}
	return out.Bytes()
}

// reachable are the resolvers the container can reach: loopback ones only
// in host mode.
func reachable(c *Container, servers []string) []string {
	var out []string
	for _, s := range servers {
		if a, err := netip.ParseAddr(s); err == nil && a.IsLoopback() && c.NetworkMode != "host" {
			continue
		}
		out = append(out, s)
	}
	return out
}

func writeSearch(out *bytes.Buffer, c *Container, host resolvconf.File) {
	search := c.DNSSearch
	if len(search) == 0 {
		search = host.Args("search")
	}
	if len(search) > 0 && strings.Join(search, " ") != "." {
		fmt.Fprintf(out, "search %s\n", strings.Join(search, " "))
	}
}

func resolvOptions(c *Container, host resolvconf.File) []string {
	if len(c.DNSOptions) > 0 {
		return append([]string{}, c.DNSOptions...)
	}
	return host.Args("options")
}
