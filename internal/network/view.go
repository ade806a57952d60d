package network

import (
	"context"
	"slices"
	"strings"

	"github.com/ctnet/ctnet/internal/driver"
	"github.com/ctnet/ctnet/internal/store"
)

// View is what the store says of the host's networks, read without changing
// anything: no default network is made and nothing is reconciled, so a
// half-done operation shows as such (Pending) instead of being repaired.
type View struct {
	// Networks are every stored network (those being created or removed
	// too), default network first, with every attachment (pending ones
	// too).
	Networks []NetworkInfo
	// Filter is what the drivers want in the shared packet filter for the
	// networks and attachments that are not pending.
	Filter driver.Filter
	// Keep are host interfaces no settled attachment owns that are no
	// orphans either: attachments being made or removed, and those the
	// kernel is still reclaiming with their namespace.
	Keep map[string]bool
}

// View reads the store's networks and attachments and what their drivers
// want in the packet filter.
func (s *Service) View(ctx context.Context) (*View, error) {
	v := &View{}
	err := s.d.Store.View(func(tx store.Tx) error {
		nets, err := s.networks(tx, false)
		if err != nil {
			return err
		}
		atts, err := s.ownAttachments(tx, "") // this host's kernel holds only these
		if err != nil {
			return err
		}
		for _, n := range nets {
			info := NetworkInfo{Network: n}
			for _, a := range atts {
				if a.NetworkID == n.ID {
					info.Attachments = append(info.Attachments, a)
				}
			}
			v.Networks = append(v.Networks, info)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(v.Networks, func(a, b NetworkInfo) int {
		if (a.Name == DefaultNetwork) != (b.Name == DefaultNetwork) {
			if a.Name == DefaultNetwork {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	states, err := s.desired()
	if err != nil {
		return nil, err
	}
	v.Keep = map[string]bool{}
	for _, name := range s.d.Drivers.Names() {
		d, _ := s.d.Drivers.Get(name)
		st := states[name]
		for k := range st.Keep {
			v.Keep[k] = true
		}
		f := d.Filter(st)
		v.Filter.Networks = append(v.Filter.Networks, f.Networks...)
		v.Filter.Endpoints = append(v.Filter.Endpoints, f.Endpoints...)
		v.Filter.Ports = append(v.Filter.Ports, f.Ports...)
		v.Filter.Loopback = append(v.Filter.Loopback, f.Loopback...)
	}
	return v, nil
}
