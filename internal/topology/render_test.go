package topology

import (
	"bytes"
	"context"
	"encoding/json"
	"html"
	"strings"
	"testing"
	"unicode/utf8"
)

func sample() *Topology {
	return &Topology{
		Host: Host{Uplink: "eth0", Index: 2, MTU: 1400, Addrs: []string{"203.0.113.2/24", "2001:db8:113::2/64"},
			Gateway: "203.0.113.1", Forwarding: true},
		Tables: &Tables{Inet: true, Bridge: true, Ports: []PortMap{{Proto: "tcp", HostPort: 8080, ContainerPort: 80, Map: "ports4_any"}}},
		Networks: []Network{{
			Name: "bridge", Driver: "bridge", Subnets: []string{"172.17.0.0/16"}, InTable: true, Masquerade: true, ICC: true,
			AntiSpoofing: true, Device: "ctnet0",
			Bridge: &Bridge{Name: "ctnet0", Index: 4, MTU: 1400, Up: true, Addrs: []string{"172.17.0.1/16"}},
			Endpoints: []Endpoint{
				{Owner: `container "web"`, Kind: "container", NetNS: "/run/ctnet/netns/abc", HostIf: "veth0834b8a", HostIndex: 7,
					HostPeer: 2, IfName: "eth0", IfIndex: 2, IfPeer: 7, MAC: "02:42:ac:11:00:02", Addrs: []string{"172.17.0.2/16"},
					Gateway: "172.17.0.1", Guarded: true,
					Ports: []string{"0.0.0.0:8080->80/tcp", "127.0.0.1:8081->80/tcp", "0.0.0.0:8100->8100/tcp", "0.0.0.0:8101->8101/tcp",
						"0.0.0.0:8102->8102/tcp", "0.0.0.0:8103->8103/tcp", "0.0.0.0:8104->8104/tcp", "0.0.0.0:8105->8105/tcp"}},
				{Owner: "namespace /run/netns/a-rather-long-name-of-a-namespace-that-goes-on-and-on-and-on-beyond-any-reason",
					Kind: "netns", NetNS: "/run/netns/x", HostIf: "veth204e708", HostIndex: 8, HostPeer: 3, IfName: "eth0", IfPeer: 8},
				{Owner: "nobody", HostIf: "veth9999999", HostIndex: 9},
			},
		}, {
			Name: "lonely", Driver: "bridge", Internal: true, InTable: true, Device: "br-0123456789ab",
		}},
		Foreign: []Bridge{{Name: "docker0", Index: 10, MTU: 1500, Addrs: []string{"172.18.0.1/16"}, Ports: []string{"vethdocker1"}}},
		Drift: []Drift{{Where: "kernel", Object: "veth9999999 on ctnet0", Problem: "no endpoint in the store owns it"},
			{Where: "store", Object: `network "lonely"`, Problem: "its bridge br-0123456789ab is missing from the kernel (`ctnet system reconcile` recreates it)"}},
	}
}

func TestTextFitsAndSays(t *testing.T) {
	var b bytes.Buffer
	if err := WriteText(&b, sample()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for i, l := range strings.Split(out, "\n") {
		if n := utf8.RuneCountInString(l); n > Width {
			t.Errorf("line %d is %d columns: %q", i+1, n, l)
		}
	}
	for _, want := range []string{"eth0 (#2)", "203.0.113.2/24", "bridge ctnet0 (#4) 172.17.0.1/16 mtu 1400 up",
		"veth0834b8a@if2 (#7) <-> eth0@if7 (#2) in container \"web\"", "02:42:ac:11:00:02", "0.0.0.0:8080->80/tcp",
		"masquerade to the outside", "internal: no way out", "foreign bridge docker0", "not ctnet's", "drift",
		"veth9999999 on ctnet0: no endpoint in the store owns it", "bridge br-0123456789ab MISSING", "0.0.0.0:8105->8105/tcp"} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
}

func TestJSON(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJSON(&b, sample()); err != nil {
		t.Fatal(err)
	}
	var back Topology
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.Networks[0].Endpoints[0].HostName() != "veth0834b8a@if2" || back.Tables.Ports[0].HostPort != 8080 {
		t.Errorf("round trip: %+v", back.Networks[0].Endpoints[0])
	}
}

func TestSVGAndHTML(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles Graphviz's WebAssembly module (~1 s)")
	}
	var dot bytes.Buffer
	if err := WriteDOT(&dot, sample()); err != nil {
		t.Fatal(err)
	}
	var svg, page bytes.Buffer
	if err := SVG(context.Background(), &svg, sample()); err != nil {
		t.Fatalf("%v\n%s", err, dot.String())
	}
	if err := HTML(context.Background(), &page, sample()); err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{html.UnescapeString(svg.String()), html.UnescapeString(page.String())} {
		for _, want := range []string{"<svg", "ctnet0", "172.17.0.1/16", "veth0834b8a@if2", "eth0@if7", `container "web"`,
			"docker0 (foreign)", "masquerade", "published (DNAT)", "0.0.0.0:8080->80/tcp", "0.0.0.0:8105->8105/tcp"} {
			if !strings.Contains(out, want) {
				t.Errorf("lacks %q", want)
			}
		}
		// Laid out by dot: nodes carry computed coordinates.
		if strings.Count(out, "<g id=\"node") < 6 {
			t.Errorf("few nodes in the SVG")
		}
	}
	p := page.String()
	if !strings.HasPrefix(p, "<!DOCTYPE html>") || strings.Contains(p, "<?xml") || strings.Contains(p, "<script") ||
		strings.Contains(p, "http://") && !strings.Contains(p, "xmlns") {
		t.Errorf("the page is not one self-contained file:\n%.400s", p)
	}
	for _, bad := range []string{"src=\"http", "href=\"http", "@import", "url(http"} {
		if strings.Contains(p, bad) {
			t.Errorf("the page loads %s", bad)
		}
	}
}
