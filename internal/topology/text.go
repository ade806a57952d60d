package topology

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// Width is the most columns a line of the text form takes.
const Width = 100

// WriteJSON writes t as indented JSON.
func WriteJSON(w io.Writer, t *Topology) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(t)
}

// WriteText writes t for a terminal, no line longer than Width.
func WriteText(w io.Writer, t *Topology) error {
	p := &printer{}
	h := t.Host
	if h.Uplink != "" {
		p.wrap("", "    ", append([]string{"host", "uplink", fmt.Sprintf("%s (#%d)", h.Uplink, h.Index)},
			append(h.Addrs, fmt.Sprintf("mtu %d", h.MTU), "via "+orNone(h.Gateway), "ip_forward="+onOff(h.Forwarding))...))
	} else {
		p.line("host  no default route: containers reach nothing beyond the host")
	}
	p.line("      nft: table inet ctnet %s, table bridge ctnet %s", present(t.Tables.Inet), present(t.Tables.Bridge))
	for _, n := range t.Networks {
		p.line("")
		p.network(n)
	}
	for _, b := range t.Foreign {
		p.line("")
		p.wrap("", "    ", append([]string{"foreign bridge", b.Name, fmt.Sprintf("(#%d)", b.Index)}, append(b.Addrs,
			fmt.Sprintf("mtu %d", b.MTU), upDown(b.Up)+",", "not ctnet's; ports:", orNone(strings.Join(b.Ports, " ")))...))
	}
	if len(t.Drift) > 0 {
		p.line("")
		p.line("drift (kernel and store disagree):")
		for _, d := range t.Drift {
			p.wrap("  "+pad(d.Where, 6)+" ", strings.Repeat(" ", 9), strings.Fields(d.String()))
		}
	}
	_, err := io.WriteString(w, p.b.String())
	return err
}

func (p *printer) network(n Network) {
	head := []string{fmt.Sprintf("network %q", n.Name), "(" + n.Driver + ")"}
	head = append(head, n.Subnets...)
	if n.Pending != "" {
		head = append(head, "["+n.Pending+"]")
	}
	p.wrap("", "    ", head)
	var facts []string
	switch {
	case !n.InTable:
		facts = append(facts, "NOT in the firewall table")
	case n.Internal:
		facts = append(facts, "internal: no way out, no NAT")
	case n.Masquerade:
		facts = append(facts, "masquerade to the outside")
	default:
		facts = append(facts, "no masquerade")
	}
	if n.ICC {
		facts = append(facts, "icc")
	} else {
		facts = append(facts, "icc=false: ports isolated")
	}
	facts = append(facts, "isolated from other networks")
	if n.Routed {
		facts = append(facts, "every port open from outside (nat-unprotected)")
	}
	if !n.AntiSpoofing {
		facts = append(facts, "anti-spoofing off")
	}
	if n.PublishedIPv6 != "" {
		facts = append(facts, "IPv6 clients of published ports DNATed into "+n.PublishedIPv6)
	}
	p.wrap("    ", "    ", strings.Fields(strings.Join(facts, ", ")))
	if n.Bridge == nil {
		p.line("└─ bridge %s MISSING from the kernel", n.Device)
	} else {
		b := n.Bridge
		p.wrap("└─ ", "   ", append([]string{"bridge", b.Name, fmt.Sprintf("(#%d)", b.Index)},
			append(b.Addrs, fmt.Sprintf("mtu %d", b.MTU), upDown(b.Up))...))
	}
	for i, e := range n.Endpoints {
		branch, cont := "   ├─ ", "   │    "
		if i == len(n.Endpoints)-1 {
			branch, cont = "   └─ ", "        "
		}
		pair := []string{e.HostName()}
		if e.HostIndex > 0 {
			pair = append(pair, fmt.Sprintf("(#%d)", e.HostIndex))
		}
		if e.IfName != "" {
			pair = append(pair, "<->", e.InnerName())
			if e.IfIndex > 0 {
				pair = append(pair, fmt.Sprintf("(#%d)", e.IfIndex))
			}
		}
		if e.Kind != "" {
			pair = append(pair, "in")
			pair = append(pair, strings.Fields(e.Owner)...)
		} else {
			pair = append(pair, "(no endpoint owns it)")
		}
		if e.Pending != "" {
			pair = append(pair, "["+e.Pending+"]")
		}
		p.wrap(branch, cont, pair)
		var detail []string
		detail = append(detail, e.Addrs...)
		if e.MAC != "" {
			detail = append(detail, e.MAC)
		}
		if e.Gateway != "" {
			detail = append(detail, "via "+e.Gateway)
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
			detail = append(detail, "port: "+strings.Join(flags, ","))
		}
		if len(detail) > 0 {
			p.wrap(cont, cont, detail)
		}
		if len(e.Ports) > 0 {
			p.wrap(cont, cont+"      ", append([]string{"ports"}, e.Ports...))
		}
	}
}

type printer struct{ b strings.Builder }

func (p *printer) line(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	for utf8.RuneCountInString(s) > Width {
		r := []rune(s)
		p.b.WriteString(string(r[:Width]) + "\n")
		s = "  " + string(r[Width:])
	}
	p.b.WriteString(s + "\n")
}

// wrap writes words after first, going on after cont on further lines.
func (p *printer) wrap(first, cont string, words []string) {
	cur := first
	n := 0
	for _, w := range words {
		if w == "" {
			continue
		}
		if n > 0 && utf8.RuneCountInString(cur)+1+utf8.RuneCountInString(w) > Width {
			p.line("%s", cur)
			cur, n = cont, 0
		}
		if n > 0 {
			cur += " "
		}
		cur += w
		n++
	}
	p.line("%s", cur)
}

func pad(s string, n int) string {
	for len(s) < n {
		s += " "
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func onOff(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func upDown(up bool) string {
	if up {
		return "up"
	}
	return "DOWN"
}

func present(b bool) string {
	if b {
		return "present"
	}
	return "MISSING"
}
