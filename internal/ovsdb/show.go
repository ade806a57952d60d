package ovsdb

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"
)

// WriteShow prints sw as `ovs-vsctl show` does: the root row's UUID, its
// managers, the bridges with their controllers, fail mode, datapath type
// and ports, each port's VLAN tag, trunks and interfaces, each interface's
// type, options, error and BFD status — leaving out what is at its default,
// quoting strings as OVSDB's own text form does.
func WriteShow(w io.Writer, sw *Switch) error {
	bw := bufio.NewWriter(w)
	line := func(level int, format string, args ...any) {
		bw.WriteString(strings.Repeat("    ", level))
		fmt.Fprintf(bw, format, args...)
		bw.WriteByte('\n')
	}
	line(0, "%s", sw.UUID)
	for _, m := range sw.Managers {
		line(1, "Manager %s", quote(m.Target))
		if m.IsConnected {
			line(2, "is_connected: true")
		}
	}
	for _, b := range sw.Bridges {
		line(1, "Bridge %s", quote(b.Name))
		for _, c := range b.Controllers {
			line(2, "Controller %s", quote(c.Target))
			if c.IsConnected {
				line(3, "is_connected: true")
			}
		}
		if b.FailMode != "" {
			line(2, "fail_mode: %s", quote(b.FailMode))
		}
		if b.DatapathType != "" {
			line(2, "datapath_type: %s", quote(b.DatapathType))
		}
		for _, p := range b.Ports {
			line(2, "Port %s", quote(p.Name))
			if p.Tag != nil {
				line(3, "tag: %d", *p.Tag)
			}
			if len(p.Trunks) > 0 {
				s := make([]string, len(p.Trunks))
				for i, t := range p.Trunks {
					s[i] = strconv.Itoa(t)
				}
				line(3, "trunks: [%s]", strings.Join(s, ", "))
			}
			for _, i := range p.Interfaces {
				line(3, "Interface %s", quote(i.Name))
				if i.Type != "" {
					line(4, "type: %s", quote(i.Type))
				}
				if len(i.Options) > 0 {
					line(4, "options: %s", showMap(i.Options))
				}
				if i.Error != "" {
					line(4, "error: %s", quote(i.Error))
				}
				if len(i.BFDStatus) > 0 {
					line(4, "bfd_status: %s", showMap(i.BFDStatus))
				}
			}
		}
	}
	if sw.OVSVersion != "" {
		line(1, "ovs_version: %s", quote(sw.OVSVersion))
	}
	return bw.Flush()
}

func showMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = quote(k) + "=" + quote(m[k])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// uuidForm is compiled on first use: a package-level regexp costs every
// ctnet command at start.
var uuidForm = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
})

// quote writes a string atom as OVSDB's text form does: bare when it reads
// as an identifier (a letter or _, then letters, digits, _ - .) and could
// not be taken for a boolean or a UUID, else as a JSON string.
func quote(s string) string {
	bare := s != "" && s != "true" && s != "false" && !uuidForm().MatchString(s)
	for i, r := range s {
		if !bare {
			break
		}
		if r > unicode.MaxASCII {
			bare = false
		} else if i == 0 {
			bare = unicode.IsLetter(r) || r == '_'
		} else {
			bare = unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' || r == '-' || r == '.'
		}
	}
	if bare {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if r < 0x20 {
				fmt.Fprintf(&b, `\u%04x`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}
