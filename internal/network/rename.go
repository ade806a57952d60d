package network

import (
	"context"
	"fmt"

	"github.com/ctnet/ctnet/internal/errdefs"
	"github.com/ctnet/ctnet/internal/store"
)

// RenameNetwork gives a network another name (a front end learns the name
// its caller uses only after the network exists: Docker's CreateNetwork
// carries its id, not its name). Its attachments follow; the kernel is not
// touched.
func (s *Service) RenameNetwork(ctx context.Context, ref, name string) error {
	dns := false
	err := s.change(ctx, func() error {
		return s.d.Store.Update(func(tx store.Tx) error {
			dns = false
			n, err := s.findNetwork(tx, ref)
			if err != nil {
				return err
			}
			what := fmt.Sprintf("rename network %q to %q", n.Name, name)
			if n.Name == name {
				return nil
			}
			if !ValidName(name) {
				return errdefs.Field("name", what+": invalid name: use letters, digits and _ . - (starting with a letter or digit)")
			}
			if Predefined(name) || n.Name == DefaultNetwork || name == DefaultNetwork {
				return &errdefs.Error{Kind: errdefs.Conflict, Field: "name", Msg: what + ": the default and predefined networks keep their names"}
			}
			if old, err := s.findNetwork(tx, name); err == nil {
				return s.exists(fmt.Sprintf("%s: network %q", what, name), old)
			}
			if err := tx.Delete(store.Networks, n.key()); err != nil {
				return err
			}
			n.Name = name
			if err := store.PutJSON(tx, store.Networks, n.key(), n); err != nil {
				return err
			}
			atts, err := store.ListJSON[Attachment](tx, store.Endpoints, "")
			if err != nil {
				return err
			}
			for _, a := range atts {
				if a.NetworkID == n.ID {
					a.Network = name
					dns = dns || len(a.DNSNames) > 0 || a.Resolver != nil
					if err := store.PutJSON(tx, store.Endpoints, a.key(), a); err != nil {
						return err
					}
				}
			}
			return nil
		})
	})
	if err == nil && dns {
		err = s.publishDNS(false)
	}
	return err
}
