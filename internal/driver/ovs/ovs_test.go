package ovs

import (
	"errors"
	"strings"
	"testing"

	"github.com/ctnet/ctnet/internal/errdefs"
)

func TestParseOptions(t *testing.T) {
	for _, c := range []struct {
		opts map[string]string
		want config
	}{
		{map[string]string{}, config{Bridge: DefaultBridge}},
		{map[string]string{"ovs.bridge": "br-int", "ovs.vlan": "10"}, config{Bridge: "br-int", VLAN: 10}},
		{map[string]string{"ovs.vlan": "4094", "ovs.datapath": "netdev"}, config{Bridge: DefaultBridge, VLAN: 4094, Datapath: "netdev"}},
		{map[string]string{"ovs.datapath": "system"}, config{Bridge: DefaultBridge, Datapath: "system"}},
	} {
		if got, err := parseOptions(c.opts); err != nil || got != c.want {
			t.Errorf("parseOptions(%v) = %+v, %v; want %+v", c.opts, got, err, c.want)
		}
	}
}

func TestParseOptionsRefuses(t *testing.T) {
	for _, c := range []struct {
		opts        map[string]string
		field, text string
	}{
		{map[string]string{"ovs.tag": "1"}, "option:ovs.tag", `unknown option "ovs.tag"; the ovs driver takes ovs.bridge, ovs.datapath, ovs.vlan`},
		{map[string]string{"ovs.vlan": "0"}, "option:ovs.vlan", "want a VLAN id from 1 to 4094"},
		{map[string]string{"ovs.vlan": "4095"}, "option:ovs.vlan", "want a VLAN id from 1 to 4094"},
		{map[string]string{"ovs.vlan": "010"}, "option:ovs.vlan", "want a VLAN id from 1 to 4094"},
		{map[string]string{"ovs.vlan": "ten"}, "option:ovs.vlan", "want a VLAN id from 1 to 4094"},
		{map[string]string{"ovs.datapath": "dpdk"}, "option:ovs.datapath", "want system (the kernel's) or netdev (userspace)"},
		{map[string]string{"ovs.bridge": "a-name-far-too-long"}, "option:ovs.bridge", `option ovs.bridge="a-name-far-too-long"`},
		{map[string]string{"ovs.bridge": "bad/name"}, "option:ovs.bridge", `option ovs.bridge="bad/name"`},
	} {
		_, err := parseOptions(c.opts)
		var de *errdefs.Error
		if !errors.As(err, &de) || de.Field != c.field || !strings.Contains(err.Error(), c.text) {
			t.Errorf("parseOptions(%v) = %v; want field %s and %q", c.opts, err, c.field, c.text)
		}
	}
}

func TestGatewayPortName(t *testing.T) {
	if got := gatewayPort("0123456789abcdef"); got != "ovs-0123456789a" || len(got) > 15 {
		t.Errorf("gatewayPort = %q", got)
	}
}
