package driver

import (
	"github.com/ctnet/ctnet/internal/namespace"
	"github.com/ctnet/ctnet/internal/netx"
)

// InNamespace runs f in the namespace at path, as the Sandbox an endpoint
// joins, if it is still the one whose identity is key ("" takes whatever is
// there). Another namespace at the path now is left alone: f does not run and
// entered is false, as when the namespace cannot be opened (err says why).
// Drivers use it to reach an endpoint's inner end again (Leave, reconcile).
func InNamespace(path, key string, f func(Sandbox) error) (entered bool, err error) {
	ns, err := namespace.Open(path)
	if err != nil {
		return false, err
	}
	defer ns.Close()
	if key != "" && ns.Key != key {
		return false, nil
	}
	h, err := netx.Open(ns.Handle)
	if err != nil {
		return true, err
	}
	defer h.Close()
	return true, f(openSandbox{path, h})
}

type openSandbox struct {
	path string
	h    *netx.Handle
}

func (s openSandbox) Path() string         { return s.path }
func (s openSandbox) Handle() *netx.Handle { return s.h }

// IfaceConfig is the configuration of ep's inner interface: its addresses
// and its default routes.
func IfaceConfig(ep Endpoint) netx.IfaceConfig {
	cfg := netx.IfaceConfig{Name: ep.IfName}
	for _, a := range ep.Addrs {
		cfg.Addrs = append(cfg.Addrs, netx.IPNet(a))
	}
	for _, gw := range ep.Gateways {
		if gw.Is4() {
			cfg.Gateway4 = gw.AsSlice()
		} else {
			cfg.Gateway6 = gw.AsSlice()
		}
	}
	return cfg
}
