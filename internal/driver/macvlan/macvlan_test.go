package macvlan

import (
	"errors"
	"strings"
	"testing"

	"github.com/ctnet/ctnet/internal/errdefs"
)

const id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestParseOptions(t *testing.T) {
	for _, c := range []struct {
		opts     map[string]string
		internal bool
		want     config
	}{
		{map[string]string{"parent": "eth0"}, false, config{Parent: "eth0", Mode: "bridge"}},
		{map[string]string{"parent": "eth0", "macvlan_mode": "private"}, false, config{Parent: "eth0", Mode: "private"}},
		{map[string]string{"parent": "eth0.10", "macvlan_mode": "vepa"}, false, config{Parent: "eth0.10", Base: "eth0", VLAN: 10, Mode: "vepa"}},
		{map[string]string{"parent": "en.p1.4094", "macvlan_mode": "passthru"}, false, config{Parent: "en.p1.4094", Base: "en.p1", VLAN: 4094, Mode: "passthru"}},
		{map[string]string{}, true, config{Parent: "dm-0123456789ab", Own: true, Mode: "bridge"}},
		{map[string]string{"parent": "eth1"}, true, config{Parent: "eth1", Mode: "bridge"}},
	} {
		got, err := parseOptions(id, c.internal, c.opts)
		if err != nil || got != c.want {
			t.Errorf("parseOptions(%v, internal=%v) = %+v, %v; want %+v", c.opts, c.internal, got, err, c.want)
		}
	}
}

func TestParseOptionsRefuses(t *testing.T) {
	for _, c := range []struct {
		opts        map[string]string
		field, text string
	}{
		{map[string]string{}, "option:parent", "needs -o parent=IFACE"},
		{map[string]string{"parent": "eth0", "mode": "bridge"}, "option:mode", `unknown option "mode"; the macvlan driver takes macvlan_mode, parent`},
		{map[string]string{"parent": "eth0", "macvlan_mode": "source"}, "option:macvlan_mode", "want bridge, private, vepa or passthru"},
		{map[string]string{"parent": "eth0.0"}, "option:parent", "VLAN id from 1 to 4094"},
		{map[string]string{"parent": "eth0.4095"}, "option:parent", "VLAN id from 1 to 4094"},
		{map[string]string{"parent": "eth0.010"}, "option:parent", "VLAN id from 1 to 4094"},
		{map[string]string{"parent": "eth0.x"}, "option:parent", "VLAN id from 1 to 4094"},
		{map[string]string{"parent": ".10"}, "option:parent", "VLAN id from 1 to 4094"},
		{map[string]string{"parent": "averyveryverylongname"}, "option:parent", `option parent="averyveryverylongname"`},
	} {
		_, err := parseOptions(id, false, c.opts)
		var de *errdefs.Error
		if !errors.As(err, &de) || de.Field != c.field || !strings.Contains(err.Error(), c.text) {
			t.Errorf("parseOptions(%v) = %v; want field %s and %q", c.opts, err, c.field, c.text)
		}
	}
}
