package netx

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// BridgeInfo is what `brctl show` prints about one bridge.
type BridgeInfo struct {
	Name  string
	ID    string   // priority, '.', MAC: "8000.0242ac110001"
	STP   bool     // STP enabled (kernel or user space)
	Ports []string // sorted bytewise, as brctl's alphasort in the C locale
}

// Bridges returns the bridges of h's namespace sorted by name, or the named
// ones in the order given. A name that is missing or not a bridge is left
// out and reported in the error, worded as brctl words it; the bridges that
// were found are returned all the same, so a caller can print both as brctl
// does.
func Bridges(h *Handle, names ...string) ([]BridgeInfo, error) {
	links, err := retryDump(func() ([]rawLink, error) { return dumpLinks(h) })
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	byName := make(map[string]*rawLink, len(links))
	ports := map[int32][]string{}
	for i := range links {
		l := &links[i]
		byName[l.name] = l
		if l.master != 0 {
			ports[l.master] = append(ports[l.master], l.name)
		}
	}
	info := func(l *rawLink) BridgeInfo {
		p := ports[l.index]
		sort.Strings(p)
		return BridgeInfo{Name: l.name, ID: l.brID, STP: l.stp, Ports: p}
	}
	var out []BridgeInfo
	if len(names) == 0 {
		for i := range links {
			if links[i].isBridge {
				out = append(out, info(&links[i]))
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		return out, nil
	}
	var errs []error
	for _, n := range names {
		l := byName[n]
		switch {
		case l == nil:
			//lint:ignore ST1005 brctl's own words
			errs = append(errs, fmt.Errorf("bridge %s does not exist!", n))
		case !l.isBridge:
			//lint:ignore ST1005 brctl's own words
			errs = append(errs, fmt.Errorf("device %s is not a bridge!", n))
		default:
			out = append(out, info(l))
		}
	}
	return out, errors.Join(errs...)
}

// WriteBrctl writes bs in the format of `brctl show` (bridge-utils 1.7):
// nothing at all for no bridges, else a header and one line per bridge and
// per port after its first.
func WriteBrctl(w io.Writer, bs []BridgeInfo) error {
	if len(bs) == 0 {
		return nil
	}
	bw := bufio.NewWriter(w)
	bw.WriteString("bridge name\tbridge id\t\tSTP enabled\tinterfaces\n")
	for _, b := range bs {
		stp := "no"
		if b.STP {
			stp = "yes"
		}
		fmt.Fprintf(bw, "%s\t\t%s\t%s\t\t%s\n", b.Name, b.ID, stp, strings.Join(b.Ports, "\n\t\t\t\t\t\t\t"))
	}
	return bw.Flush()
}

// rawLink is what Bridges needs of a link, decoded by hand because
// vishvananda's Bridge type leaves out IFLA_BR_BRIDGE_ID and IFLA_BR_STP_STATE.
type rawLink struct {
	index, master int32
	name          string
	isBridge, stp bool
	brID          string
}

func dumpLinks(h *Handle) ([]rawLink, error) {
	req, err := h.request(unix.RTM_GETLINK, unix.NLM_F_DUMP)
	if err != nil {
		return nil, err
	}
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	// Ask for the smaller reply without per-VF data, as `ip link` does.
	req.AddData(nl.NewRtAttr(unix.IFLA_EXT_MASK, nl.Uint32Attr(nl.RTEXT_FILTER_VF)))
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, err
	}
	links := make([]rawLink, 0, len(msgs))
	for _, m := range msgs {
		l, perr := parseRawLink(m)
		if perr != nil {
			return nil, perr
		}
		links = append(links, l)
	}
	return links, err
}

func parseRawLink(m []byte) (rawLink, error) {
	if len(m) < unix.SizeofIfInfomsg {
		return rawLink{}, fmt.Errorf("short RTM_NEWLINK message (%d bytes)", len(m))
	}
	ifi := nl.DeserializeIfInfomsg(m)
	l := rawLink{index: ifi.Index}
	attrs, err := nl.ParseRouteAttr(m[unix.SizeofIfInfomsg:])
	if err != nil {
		return l, fmt.Errorf("link %d: %w", ifi.Index, err)
	}
	for _, a := range attrs {
		switch a.Attr.Type {
		case unix.IFLA_IFNAME:
			l.name = strings.TrimRight(string(a.Value), "\x00")
		case unix.IFLA_MASTER:
			if len(a.Value) >= 4 {
				l.master = int32(nl.NativeEndian().Uint32(a.Value))
			}
		case unix.IFLA_LINKINFO:
			if err := parseLinkInfo(&l, a.Value); err != nil {
				return l, fmt.Errorf("link %d: %w", ifi.Index, err)
			}
		}
	}
	return l, nil
}

func parseLinkInfo(l *rawLink, b []byte) error {
	infos, err := nl.ParseRouteAttr(b)
	if err != nil {
		return err
	}
	var data []byte
	for _, a := range infos {
		switch a.Attr.Type {
		case unix.IFLA_INFO_KIND:
			l.isBridge = strings.TrimRight(string(a.Value), "\x00") == "bridge"
		case unix.IFLA_INFO_DATA:
			data = a.Value
		}
	}
	if !l.isBridge || data == nil {
		return nil
	}
	brAttrs, err := nl.ParseRouteAttr(data)
	if err != nil {
		return err
	}
	for _, a := range brAttrs {
		switch a.Attr.Type {
		case nl.IFLA_BR_BRIDGE_ID:
			// struct ifla_bridge_id: u8 prio[2], u8 addr[6].
			if len(a.Value) >= 8 {
				v := a.Value
				l.brID = fmt.Sprintf("%02x%02x.%02x%02x%02x%02x%02x%02x", v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7])
			}
		case nl.IFLA_BR_STP_STATE:
			if len(a.Value) >= 4 {
				l.stp = nl.NativeEndian().Uint32(a.Value) != 0
			}
		}
	}
	return nil
}
