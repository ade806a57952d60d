package topology

import (
	"fmt"
	"html"
	"io"
	"strings"
)

// Colours of the picture.
const (
	colHost     = "#eef3fb"
	colNS       = "#f3f8ee"
	colBridge   = "#cfe0f7"
	colVeth     = "#ffffff"
	colOutside  = "#fdf1dc"
	colForeign  = "#e6e6e6"
	colDrift    = "#c62828"
	colFirewall = "#fff7d6"
)

// WriteDOT writes t as a Graphviz graph: the host namespace as a cluster
// holding the uplink, each bridge and the host ends of its veths, each
// endpoint's namespace as a cluster of its own, the outside beyond the
// uplink, and the firewall's facts on the edges (masquerade, DNAT).
func WriteDOT(w io.Writer, t *Topology) error {
	d := &dotWriter{}
	d.p(`digraph ctnet {`)
	d.p(`  graph [rankdir=LR, fontname="Helvetica", fontsize=11, nodesep=0.25, ranksep=0.6, newrank=true, labeljust=l];`)
	d.p(`  node [fontname="Helvetica", fontsize=10, shape=plain];`)
	d.p(`  edge [fontname="Helvetica", fontsize=9, dir=none, color="#555555"];`)

	// The outside.
	d.p(`  outside [shape=box, style="rounded,filled", fillcolor="%s", color="#b08a3e", label=<%s>];`, colOutside,
		table("", []row{{bold: true, text: "outside"}, {text: "via " + orNone(t.Host.Gateway)}}))

	d.p(`  subgraph cluster_host {`)
	d.p(`    label=<<b>host network namespace</b>>; style="rounded,filled"; fillcolor="%s"; color="#8aa4c8";`, colHost)
	if t.Host.Uplink != "" {
		rows := []row{{bold: true, text: fmt.Sprintf("%s (#%d)", t.Host.Uplink, t.Host.Index)}, {text: "uplink"}}
		for _, a := range t.Host.Addrs {
			rows = append(rows, row{text: a})
		}
		rows = append(rows, row{text: fmt.Sprintf("mtu %d", t.Host.MTU)})
		d.p(`    uplink [label=<%s>];`, table("#ffffff", rows))
	}
	d.p(`    firewall [label=<%s>];`, table(colFirewall, firewallRows(t)))
	// The firewall sits with the uplink it guards, so that the host's
	// cluster starts at the veths and the namespaces line up on the left.
	if t.Host.Uplink != "" {
		d.p(`    { rank=same; uplink; firewall; }`)
	}
	for _, n := range t.Networks {
		d.bridge(n)
	}
	for _, b := range t.Foreign {
		rows := []row{{bold: true, text: b.Name + " (foreign)"}, {text: "not ctnet's"}}
		for _, a := range b.Addrs {
			rows = append(rows, row{text: a})
		}
		for _, p := range b.Ports {
			rows = append(rows, row{text: "port " + p})
		}
		d.p(`    %s [label=<%s>];`, id("foreign", b.Name), table(colForeign, rows))
	}
	d.p(`  }`)

	for _, n := range t.Networks {
		for _, e := range n.Endpoints {
			d.endpoint(n, e)
		}
	}
	// The way out and the published ports.
	if t.Host.Uplink != "" {
		d.p(`  uplink -> outside [penwidth=2];`)
	}
	for _, n := range t.Networks {
		br := id("br", n.Device)
		switch {
		case t.Host.Uplink == "":
		case n.Internal:
			d.p(`  %s -> uplink [style=dashed, color="%s", fontcolor="%s", label="internal: no route out"];`, br, colDrift, colDrift)
		case n.Masquerade:
			d.p(`  %s -> uplink [label="masquerade"];`, br)
		default:
			d.p(`  %s -> uplink [label="routed, no NAT"];`, br)
		}
	}
	for _, b := range t.Foreign {
		if t.Host.Uplink != "" {
			d.p(`  %s -> uplink [style=dotted, color="#999999"];`, id("foreign", b.Name))
		}
	}
	if len(t.Drift) > 0 {
		rows := []row{{bold: true, text: "drift: kernel and store disagree", color: colDrift}}
		for _, dr := range t.Drift {
			rows = append(rows, row{text: dr.Where + ": " + dr.String(), color: colDrift})
		}
		d.p(`  drift [label=<%s>];`, table("#ffffff", rows))
		d.p(`  { rank=same; outside; drift; }`)
	}
	d.p(`}`)
	_, err := io.WriteString(w, d.b.String())
	return err
}

func firewallRows(t *Topology) []row {
	rows := []row{{bold: true, text: "nftables"}}
	for _, tab := range []struct {
		name string
		ok   bool
	}{{"inet ctnet", t.Tables.Inet}, {"bridge ctnet", t.Tables.Bridge}} {
		r := row{text: "table " + tab.name}
		if !tab.ok {
			r.text += " MISSING"
			r.color = colDrift
		}
		rows = append(rows, r)
	}
	for _, n := range t.Networks {
		if !n.InTable {
			continue
		}
		var f []string
		if n.Masquerade {
			f = append(f, "masq")
		}
		if n.Internal {
			f = append(f, "internal")
		}
		if !n.ICC {
			f = append(f, "noicc")
		}
		if n.Routed {
			f = append(f, "routed")
		}
		rows = append(rows, row{text: n.Device + ": " + orNone(strings.Join(f, ", "))})
	}
	rows = append(rows, row{text: "networks isolated from each other"})
	for _, p := range t.Tables.Ports {
		rows = append(rows, row{text: "DNAT " + p.String()})
	}
	return rows
}

func (d *dotWriter) bridge(n Network) {
	rows := []row{{bold: true, text: "bridge " + n.Device}, {text: fmt.Sprintf("network %q", n.Name)}}
	fill := colBridge
	if n.Bridge == nil {
		rows = append(rows, row{text: "MISSING from the kernel", color: colDrift})
		fill = "#ffffff"
	} else {
		for _, a := range n.Bridge.Addrs {
			rows = append(rows, row{text: a})
		}
		rows = append(rows, row{text: fmt.Sprintf("mtu %d, %s", n.Bridge.MTU, upDown(n.Bridge.Up))})
	}
	if !n.ICC {
		rows = append(rows, row{text: "icc=false"})
	}
	if n.Internal {
		rows = append(rows, row{text: "--internal"})
	}
	if n.Pending != "" {
		rows = append(rows, row{text: n.Pending, color: colDrift})
	}
	d.p(`    %s [label=<%s>];`, id("br", n.Device), table(fill, rows))
	for _, e := range n.Endpoints {
		rows := []row{{bold: true, text: e.HostName()}}
		if e.HostIndex > 0 {
			rows = append(rows, row{text: fmt.Sprintf("#%d", e.HostIndex)})
		}
		var flags []string
		if e.Isolated {
			flags = append(flags, "isolated")
		}
		if e.Hairpin {
			flags = append(flags, "hairpin")
		}
		if e.Guarded {
			flags = append(flags, "guarded")
		}
		if len(flags) > 0 {
			rows = append(rows, row{text: strings.Join(flags, ", ")})
		}
		if e.Kind == "" {
			rows = append(rows, row{text: "no endpoint owns it", color: colDrift})
		}
		d.p(`    %s [label=<%s>];`, id("veth", e.HostIf), table(colVeth, rows))
		d.p(`    %s -> %s [label="port"];`, id("veth", e.HostIf), id("br", n.Device))
	}
}

func (d *dotWriter) endpoint(n Network, e Endpoint) {
	if e.Kind == "" {
		return
	}
	ns := id("ns", e.NetNS+"/"+e.HostIf)
	d.p(`  subgraph cluster_%s {`, ns)
	d.p(`    label=<%s>; style="rounded,filled"; fillcolor="%s"; color="#8bb07a";`, html.EscapeString(e.Owner), colNS)
	rows := []row{{bold: true, text: e.InnerName()}}
	if e.IfIndex > 0 {
		rows = append(rows, row{text: fmt.Sprintf("#%d", e.IfIndex)})
	}
	for _, a := range e.Addrs {
		rows = append(rows, row{text: a})
	}
	if e.MAC != "" {
		rows = append(rows, row{text: e.MAC})
	}
	if e.Gateway != "" {
		rows = append(rows, row{text: "default via " + e.Gateway})
	}
	if e.Pending != "" {
		rows = append(rows, row{text: e.Pending, color: colDrift})
	}
	d.p(`    %s [label=<%s>];`, id("if", e.NetNS+"/"+e.HostIf), table("#ffffff", rows))
	d.p(`  }`)
	d.p(`  %s -> %s [penwidth=2, color="#2e7d32", label="veth pair"];`, id("if", e.NetNS+"/"+e.HostIf), id("veth", e.HostIf))
	if len(e.Ports) > 0 {
		label := "published (DNAT)\\l" + strings.Join(e.Ports, "\\l") + "\\l"
		d.p(`  outside -> %s [style=dashed, color="#b06000", fontcolor="#b06000", dir=forward, constraint=false, label="%s"];`,
			id("if", e.NetNS+"/"+e.HostIf), label)
	}
}

type dotWriter struct{ b strings.Builder }

func (d *dotWriter) p(format string, args ...any) { fmt.Fprintf(&d.b, format+"\n", args...) }

type row struct {
	text, color string
	bold        bool
}

// table is an HTML-like label: one cell per row.
func table(fill string, rows []row) string {
	var b strings.Builder
	b.WriteString(`<table border="1" cellborder="0" cellspacing="0" cellpadding="2" color="#777777"`)
	if fill != "" {
		fmt.Fprintf(&b, ` bgcolor="%s"`, fill)
	}
	b.WriteString(`>`)
	for _, r := range rows {
		t := html.EscapeString(r.text)
		if r.bold {
			t = "<b>" + t + "</b>"
		}
		if r.color != "" {
			t = fmt.Sprintf(`<font color="%s">%s</font>`, r.color, t)
		}
		fmt.Fprintf(&b, `<tr><td align="left">%s</td></tr>`, t)
	}
	b.WriteString(`</table>`)
	return b.String()
}

// id is a DOT node id for an object name.
func id(kind, name string) string {
	var b strings.Builder
	b.WriteString(kind + "_")
	for _, c := range []byte(name) {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "_%02x", c)
		}
	}
	return b.String()
}
