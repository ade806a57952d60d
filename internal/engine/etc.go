package engine

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/ctnet/ctnet/internal/store"
)

// etcFiles writes a container's /etc/hosts, /etc/hostname and
// /etc/resolv.conf the way Docker does.
func (e *Engine) etcFiles(c *Container) (map[string][]byte, error) {
	var eps []Endpoint
	if err := e.store.View(func(tx store.Tx) error {
		owner := c.ID
		if strings.HasPrefix(c.NetworkMode, "container:") {
			owner = strings.TrimPrefix(c.NetworkMode, "container:") // shares that one's endpoints
		}
		var err error
		eps, err = listJSON[Endpoint](tx, store.Endpoints, ownerOfContainer(owner))
		return err
	}); err != nil {
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
	for _, ep := range eps {
		for _, a := range []string{ep.IPv4, ep.IPv6} {
			if p, err := netip.ParsePrefix(a); err == nil {
				fmt.Fprintf(&hosts, "%s\t%s\n", p.Addr(), names)
			}
		}
	}
	files["/etc/hosts"] = hosts.Bytes()
	files["/etc/resolv.conf"] = resolvConf(c)
	for _, ep := range eps {
		if ep.Network != DefaultNetwork {
			files["/etc/resolv.conf"] = embeddedResolvConf()
			break
		}
	}
	return files, nil
}

// embeddedResolvConf points a container on a user network at the embedded
// resolver, as Docker does; --dns servers become its upstreams.
func embeddedResolvConf() []byte {
	var out bytes.Buffer
	out.WriteString("nameserver 127.0.0.11\n")
	host, _ := os.ReadFile("/etc/resolv.conf")
	sc := bufio.NewScanner(bytes.NewReader(host))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 0 && f[0] == "search" {
			fmt.Fprintln(&out, sc.Text())
		}
	}
	out.WriteString("options ndots:0\n")
	return out.Bytes()
}

// resolvConf is --dns if given, else the host's resolv.conf. Outside host
// mode, loopback resolvers (127.0.0.53 and the like) cannot be reached from
// the container's namespace, so they are left out, as Docker does.
func resolvConf(c *Container) []byte {
	var out bytes.Buffer
	host, _ := os.ReadFile("/etc/resolv.conf")
	if len(c.DNS) > 0 {
		for _, d := range c.DNS {
			fmt.Fprintf(&out, "nameserver %s\n", d)
		}
		sc := bufio.NewScanner(bytes.NewReader(host))
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) > 0 && (f[0] == "search" || f[0] == "options") {
				fmt.Fprintln(&out, sc.Text())
			}
		}
		return out.Bytes()
	}
	if c.NetworkMode == "host" {
		return host
	}
	dropped := 0
	sc := bufio.NewScanner(bytes.NewReader(host))
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "nameserver" {
			if a, err := netip.ParseAddr(f[1]); err == nil && a.IsLoopback() {
				dropped++
				continue
			}
		}
		fmt.Fprintln(&out, line)
	}
	if dropped > 0 && !bytes.Contains(out.Bytes(), []byte("nameserver")) {
		out.WriteString("# the host's only resolvers are on its loopback, which a container cannot reach;\n# pass --dns IP to `ctnet run` to give this container one\n")
	}
	return out.Bytes()
}
