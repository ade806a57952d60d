package network

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/ctnet/ctnet/internal/driver"
	"github.com/ctnet/ctnet/internal/store"
)

// A namespace on several networks has one default route per family. ctnet
// puts it where Docker does: via the attachment with the highest gateway
// priority (`network connect --gw-priority`), ties going to the network whose
// name sorts first; connecting another network does not move it unless that
// one comes first, and disconnecting the network holding it hands it to the
// next. This holds for the namespaces ctnet itself attaches (containers,
// namespaces given by path); CNI and Docker decide their routes themselves.

// peer is another attachment of the same namespace, with its network.
type peer struct {
	a *Attachment
	n *Network
}

// sharesRoutes says whether the service chooses the default route among the
// owner's attachments.
func sharesRoutes(o Owner) bool { return o.Kind == OwnerContainer || o.Kind == OwnerNetNS }

// gwBefore says whether a's network takes the default route before b's.
func gwBefore(a peer, b peer) bool {
	if a.a.GwPriority != b.a.GwPriority {
		return a.a.GwPriority > b.a.GwPriority
	}
	return a.n.Name < b.n.Name
}

// peersOf are the attachments in mine that share a's namespace, with their
// networks.
func (s *Service) peersOf(tx store.Tx, a *Attachment, mine []Attachment) ([]peer, error) {
	var out []peer
	for i := range mine {
		o := &mine[i]
		if o.ID == a.ID || o.NetNSKey != a.NetNSKey || o.Pending != "" {
			continue
		}
		n, err := s.findNetwork(tx, o.NetworkID)
		if err != nil {
			return nil, err
		}
		out = append(out, peer{o, n})
	}
	return out, nil
}

// routedEndpoint is a's endpoint keeping only the gateways of the families
// whose default route a takes from its peers.
func routedEndpoint(a *Attachment, n *Network, peers []peer) driver.Endpoint {
	ep := a.endpoint(n)
	me := peer{a, n}
	ep.Gateways = slices.DeleteFunc(ep.Gateways, func(gw netip.Addr) bool {
		for _, p := range peers {
			if p.holds(gw.Is4()) && gwBefore(p, me) {
				return true
			}
		}
		return false
	})
	return ep
}

// gateway is p's gateway of one family, if it has a default route there.
func (p peer) gateway(is4 bool) netip.Addr {
	for _, gw := range p.a.endpoint(p.n).Gateways {
		if gw.Is4() == is4 {
			return gw
		}
	}
	return netip.Addr{}
}

func (p peer) holds(is4 bool) bool { return p.gateway(is4).IsValid() }

// handOverDefaultRoutes gives the default routes gone's removal took with
// it to the attachments of its namespace that come next.
func (s *Service) handOverDefaultRoutes(gone *Attachment, n *Network) error {
	gp := peer{gone, n}
	if !sharesRoutes(gone.Owner) || !gp.holds(true) && !gp.holds(false) {
		return nil
	}
	var peers []peer
	err := s.d.Store.View(func(tx store.Tx) error {
		mine, err := s.ownAttachments(tx, gone.Owner.prefix())
		if err != nil {
			return err
		}
		peers, err = s.peersOf(tx, gone, mine)
		return err
	})
	if err != nil || len(peers) == 0 {
		return err
	}
	slices.SortFunc(peers, func(a, b peer) int {
		if gwBefore(a, b) {
			return -1
		}
		return 1
	})
	var ns Namespace
	defer func() {
		if ns != nil {
			ns.Close()
		}
	}()
	for _, is4 := range []bool{true, false} {
		if !gp.holds(is4) {
			continue
		}
		for _, p := range peers {
			gw := p.gateway(is4)
			if !gw.IsValid() {
				continue
			}
			if ns == nil {
				if ns, err = s.d.Kernel.OpenNamespace(gone.NetNS); err != nil {
					return err
				}
			}
			if err := ns.SetDefaultRoute(p.a.IfName, gw); err != nil {
				return fmt.Errorf("default route of %s via network %q: %w", gone.Name, p.n.Name, err)
			}
			break
		}
	}
	return nil
}
