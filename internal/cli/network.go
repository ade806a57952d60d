package cli

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ctnet/ctnet/internal/ipam"
	"github.com/ctnet/ctnet/internal/network"
)

func (a *app) networkCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "network",
		Short: "Manage networks",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(a.networkCreateCmd(), a.networkRmCmd(), a.networkLsCmd(), a.networkInspectCmd(),
		a.networkConnectCmd(), a.networkDisconnectCmd(), a.networkPruneCmd())
	return cmd
}

func (a *app) networkCreateCmd() *cobra.Command {
	var (
		driver                      string
		subnets, gateways, ipRanges []string
		aux, opts, labels           []string
		internal, ipv6              bool
	)
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] NETWORK",
		Short: "Create a network",
		Example: `  ctnet network create web
  ctnet network create --subnet 10.10.0.0/24 --gateway 10.10.0.254 web
  ctnet network create --internal -o com.docker.network.bridge.enable_icc=false backend`,
		Args: exactArgs(1, "NETWORK"),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec := network.NetworkSpec{Name: args[0], Driver: driver, Internal: internal, IPv6: ipv6}
			var err error
			if spec.Subnets, err = subnetSpecs(subnets, gateways, ipRanges, aux); err != nil {
				return err
			}
			if spec.Options, err = keyValues("--opt", opts); err != nil {
				return err
			}
			if spec.Labels, err = labelValues(labels); err != nil {
				return err
			}
			svc, err := a.network()
			if err != nil {
				return err
			}
			n, err := svc.CreateNetwork(cmd.Context(), spec)
			if err != nil {
				return err
			}
			fmt.Fprintln(a.out, n.ID)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&driver, "driver", "d", "bridge", "driver that manages the network")
	f.StringArrayVar(&subnets, "subnet", nil, "subnet in CIDR form (repeatable: one IPv4, IPv6 with --ipv6)")
	f.StringArrayVar(&gateways, "gateway", nil, "gateway of the subnet given in the same position")
	f.StringArrayVar(&ipRanges, "ip-range", nil, "allocate container addresses from this sub-range of the subnet")
	f.StringArrayVar(&aux, "aux-address", nil, "address the allocator must not hand out (NAME=IP)")
	f.StringArrayVarP(&opts, "opt", "o", nil, "driver option KEY=VALUE (Docker's com.docker.network.* names)")
	f.StringArrayVar(&labels, "label", nil, "metadata KEY[=VALUE]")
	f.BoolVar(&internal, "internal", false, "no route to the outside and no NAT")
	f.BoolVar(&ipv6, "ipv6", false, "enable IPv6 (needs an IPv6 --subnet)")
	return cmd
}

// subnetSpecs pairs --gateway, --ip-range and --aux-address with the
// --subnet that holds them, as the docker CLI does (ipam.FromFlags).
func subnetSpecs(subnets, gateways, ranges, aux []string) ([]network.SubnetSpec, error) {
	plans, err := ipam.FromFlags(subnets, ranges, gateways, aux)
	if err != nil {
		return nil, err
	}
	out := make([]network.SubnetSpec, 0, len(plans))
	for _, p := range plans {
		spec := network.SubnetSpec{Subnet: p.Prefix.String(), Gateway: p.Gateway.String()}
		if p.Range.IsValid() {
			spec.IPRange = p.Range.String()
		}
		for name, a := range p.Aux {
			if spec.AuxAddresses == nil {
				spec.AuxAddresses = map[string]string{}
			}
			spec.AuxAddresses[name] = a.String()
		}
		out = append(out, spec)
	}
	return out, nil
}

func keyValues(flag string, kvs []string) (map[string]string, error) {
	m := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s %q: want KEY=VALUE", flag, kv)
		}
		m[k] = v
	}
	return m, nil
}

// labelValues are --label KEY[=VALUE] flags, as Docker's: a label without
// a value has the empty one.
func labelValues(kvs []string) (map[string]string, error) {
	m := map[string]string{}
	for _, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		if k == "" || strings.TrimSpace(k) != k {
			return nil, fmt.Errorf("--label %q: want KEY[=VALUE]", kv)
		}
		m[k] = v
	}
	return m, nil
}

func (a *app) networkRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "rm NETWORK [NETWORK...]",
		Aliases: []string{"remove"},
		Short:   "Remove one or more networks",
		Args:    minArgs(1, "NETWORK"),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, err := a.network()
			if err != nil {
				return err
			}
			removed, err := svc.RemoveNetworks(cmd.Context(), args...)
			for _, r := range removed {
				fmt.Fprintln(a.out, r)
			}
			return err
		},
	}
}

// networkRow is one line of `network ls`, with Docker's field names.
type networkRow struct {
	ID, Name, Driver, Scope string
	IPv6, Internal          bool
	Labels                  string
	CreatedAt               string
	n                       network.NetworkInfo
}

// Label is one label's value, as {{.Label "KEY"}} in Docker's templates.
func (r networkRow) Label(key string) string { return r.n.Labels[key] }

var networkHeaders = map[string]string{
	"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
	"IPv6": "IPV6", "Internal": "INTERNAL", "Labels": "LABELS", "CreatedAt": "CREATED AT",
}

func (a *app) networkLsCmd() *cobra.Command {
	var (
		quiet, noTrunc bool
		format         string
		filters        []string
	)
	cmd := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List networks",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, err := a.network()
			if err != nil {
				return err
			}
			nets, err := svc.Networks(cmd.Context())
			if err != nil {
				return err
			}
			match, err := networkFilter(filters)
			if err != nil {
				return err
			}
			// By name, as Docker lists them.
			sort.SliceStable(nets, func(i, j int) bool { return nets[i].Name < nets[j].Name })
			var rows []networkRow
			for _, n := range nets {
				if !match(n) {
					continue
				}
				id := n.ID
				if !noTrunc {
					id = network.ShortID(id)
				}
				rows = append(rows, networkRow{
					ID: id, Name: n.Name, Driver: n.Driver, Scope: scopeOf(n),
					IPv6: n.IPv6, Internal: n.Internal, Labels: joinKV(n.Labels),
					CreatedAt: n.Created.Format("2006-01-02 15:04:05.999999999 -0700 MST"), n: n,
				})
			}
			if quiet {
				format = "{{.ID}}"
			}
			if format == "" {
				format = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
			}
			return writeList(a.out, format, networkHeaders, rows)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&quiet, "quiet", "q", false, "only display network IDs")
	f.BoolVar(&noTrunc, "no-trunc", false, "do not truncate the output")
	f.StringVar(&format, "format", "", "format output with a Go template, 'table TEMPLATE' or 'json'")
	f.StringArrayVarP(&filters, "filter", "f", nil, "filter output (name=, id=, driver=, label=KEY[=VALUE], type=custom|builtin)")
	return cmd
}

// networkFilter implements Docker's `network ls --filter` keys. Filters of
// one key are OR'ed, different keys AND'ed, as in Docker.
func networkFilter(filters []string) (func(network.NetworkInfo) bool, error) {
	by := map[string][]string{}
	for _, f := range filters {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return nil, fmt.Errorf("--filter %q: want KEY=VALUE", f)
		}
		switch k {
		case "name", "id", "driver", "label", "type", "scope", "dangling":
		default:
			return nil, fmt.Errorf("--filter %q: Invalid filter '%s'; use name, id, driver, label, type, scope or dangling", f, k)
		}
		if k == "dangling" && v != "true" && v != "false" && v != "1" && v != "0" {
			return nil, fmt.Errorf("--filter %q: dangling is true or false", f)
		}
		if k == "type" && v != "custom" && v != "builtin" {
			return nil, fmt.Errorf("--filter %q: type is custom or builtin", f)
		}
		by[k] = append(by[k], v)
	}
	builtin := func(n network.NetworkInfo) bool {
		return n.Name == network.DefaultNetwork || n.Name == "host" || n.Name == "none"
	}
	one := func(k, v string, n network.NetworkInfo) bool {
		switch k {
		case "name":
			return strings.Contains(n.Name, v)
		case "id":
			return strings.HasPrefix(n.ID, v)
		case "driver":
			return n.Driver == v
		case "scope":
			return v == scopeOf(n)
		case "type":
			return builtin(n) == (v == "builtin")
		case "dangling": // no endpoint, and not one of the predefined networks
			dangling := !builtin(n) && len(n.Attachments) == 0
			return dangling == (v == "true" || v == "1")
		default: // label
			lk, lv, hasV := strings.Cut(v, "=")
			got, ok := n.Labels[lk]
			return ok && (!hasV || got == lv)
		}
	}
	return func(n network.NetworkInfo) bool {
		for k, vs := range by {
			any := false
			for _, v := range vs {
				if one(k, v, n) {
					any = true
					break
				}
			}
			if !any {
				return false
			}
		}
		return true
	}, nil
}

func joinKV(m map[string]string) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// Docker's `network inspect` shape.
type (
	networkJSON struct {
		Name       string
		Id         string
		Created    time.Time
		Scope      string
		Driver     string
		EnableIPv6 bool
		IPAM       ipamJSON
		Internal   bool
		Attachable bool
		Ingress    bool
		ConfigFrom struct{ Network string }
		ConfigOnly bool
		Containers map[string]endpointJSON
		Options    map[string]string
		Labels     map[string]string
		Peers      []peerJSON `json:",omitempty"`
	}
	ipamJSON struct {
		Driver  string
		Options map[string]string
		Config  []network.Subnet
	}
	endpointJSON struct {
		Name        string
		EndpointID  string
		MacAddress  string
		IPv4Address string
		IPv6Address string
		Host        string `json:",omitempty"` // on a global network: the host it is on
	}
)

func toNetworkJSON(n network.NetworkInfo) networkJSON {
	j := networkJSON{
		Name: n.Name, Id: n.ID, Created: n.Created, Scope: scopeOf(n), Driver: n.Driver,
		EnableIPv6: n.IPv6, Internal: n.Internal, Attachable: false,
		IPAM:       ipamJSON{Driver: "default", Options: map[string]string{}, Config: n.Subnets},
		Containers: map[string]endpointJSON{}, Options: n.Options, Labels: n.Labels,
	}
	if j.IPAM.Config == nil {
		j.IPAM.Config = []network.Subnet{}
	}
	if j.Options == nil {
		j.Options = map[string]string{}
	}
	if j.Labels == nil {
		j.Labels = map[string]string{}
	}
	for _, a := range n.Attachments {
		key := "ep-" + a.ID // a bare namespace has no container id
		if a.Owner.Kind == network.OwnerContainer {
			key = a.Owner.ID
		}
		j.Containers[key] = endpointJSON{
			Name: a.Name, EndpointID: a.ID, MacAddress: a.MAC.String(),
			IPv4Address: prefixText(a.IPv4), IPv6Address: prefixText(a.IPv6),
			Host: hostOf(n, a),
		}
	}
	j.Peers = peersOf(n)
	return j
}

func (a *app) networkInspectCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] NETWORK [NETWORK...]",
		Short: "Display detailed information on one or more networks",
		Args:  minArgs(1, "NETWORK"),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, err := a.network()
			if err != nil {
				return err
			}
			var out []networkJSON
			var missing []string
			for _, ref := range args {
				n, err := svc.Network(cmd.Context(), ref)
				if network.IsNotFound(err) {
					missing = append(missing, err.Error())
					continue
				}
				if err != nil {
					return err
				}
				out = append(out, toNetworkJSON(*n))
			}
			if err := writeInspect(a.out, format, out); err != nil {
				return err
			}
			if len(missing) > 0 {
				return fmt.Errorf("%s", strings.Join(missing, "; "))
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "format output with a Go template")
	return cmd
}

func (a *app) networkConnectCmd() *cobra.Command {
	var spec network.AttachSpec
	cmd := &cobra.Command{
		Use:   "connect [OPTIONS] NETWORK {CONTAINER | --netns PATH}",
		Short: "Connect a container, or any network namespace, to a network",
		Long: `Connect a running container, or any network namespace, to a network. A veth
pair is made with its host end (veth + 7 hex) on the network's bridge and its
inner end (eth0, eth1, …) inside the namespace, with an address, the bridge's
MTU and a default route via the gateway. A namespace on several networks has
its default route via the one with the highest --gw-priority, ties going to the
network whose name sorts first (as Docker); disconnecting it hands the route to
the next.`,
		Example: `  ctnet network connect --alias db web mycontainer
  ip netns add demo && ctnet network connect bridge --netns /run/netns/demo
  ctnet network connect web --netns /proc/1234/ns/net --ip 10.10.0.50`,
		Args: rangeArgs(1, 2, "NETWORK [CONTAINER]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (len(args) == 2) == (spec.NetNS != "") {
				return fmt.Errorf("network connect: give either a CONTAINER or --netns PATH")
			}
			spec.Network = args[0]
			if len(args) == 2 {
				m, err := a.containers()
				if err != nil {
					return err
				}
				_, err = m.Connect(cmd.Context(), args[1], spec)
				return err
			}
			svc, err := a.network()
			if err != nil {
				return err
			}
			at, err := svc.Attach(cmd.Context(), spec)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.out, "%s %s %s %s\n", at.IfName, prefixText(at.IPv4), at.MAC, at.HostIf)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&spec.NetNS, "netns", "", "path of a network namespace to connect (/proc/PID/ns/net, /run/netns/NAME)")
	f.StringVar(&spec.IP, "ip", "", "IPv4 address (default: next free one)")
	f.StringVar(&spec.IP6, "ip6", "", "IPv6 address (default: next free one)")
	f.StringVar(&spec.IfName, "ifname", "", "interface name inside the namespace (default: first free ethN)")
	f.StringVar(&spec.MAC, "mac-address", "", "MAC address (default: derived from the IPv4 address, as Docker)")
	f.StringArrayVar(&spec.Aliases, "alias", nil, "network-scoped alias, resolved by the embedded DNS")
	f.IntVar(&spec.GwPriority, "gw-priority", 0, "the network with the highest priority gives the namespace its default route")
	return cmd
}

func (a *app) networkDisconnectCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "disconnect NETWORK {CONTAINER | --netns PATH}",
		Short: "Disconnect a container, or a network namespace, from a network",
		Args:  rangeArgs(1, 2, "NETWORK [CONTAINER]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (len(args) == 2) == (path != "") {
				return fmt.Errorf("network disconnect: give either a CONTAINER or --netns PATH")
			}
			if len(args) == 2 {
				m, err := a.containers()
				if err != nil {
					return err
				}
				return m.Disconnect(cmd.Context(), args[0], args[1])
			}
			svc, err := a.network()
			if err != nil {
				return err
			}
			return svc.DetachNamespace(cmd.Context(), args[0], path)
		},
	}
	cmd.Flags().StringVar(&path, "netns", "", "path of the network namespace to disconnect")
	return cmd
}

func (a *app) networkPruneCmd() *cobra.Command {
	var force bool
	var filters []string
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove all user-defined networks that nothing is connected to",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			match, err := networkFilter(filters)
			if err != nil {
				return err
			}
			svc, err := a.network()
			if err != nil {
				return err
			}
			nets, err := svc.Networks(cmd.Context())
			if err != nil {
				return err
			}
			var unused []string
			for _, n := range nets {
				if !network.Predefined(n.Name) && n.Name != network.DefaultNetwork && len(n.Attachments) == 0 && match(n) {
					unused = append(unused, n.Name)
				}
			}
			if len(unused) == 0 {
				return nil
			}
			if !force {
				fmt.Fprintf(a.errOut, "WARNING! This will remove %d network(s) not used by any container: %s\n", len(unused), strings.Join(unused, ", "))
			}
			removed, err := svc.RemoveNetworks(cmd.Context(), unused...)
			if len(removed) > 0 {
				fmt.Fprintln(a.out, "Deleted Networks:")
				for _, r := range removed {
					fmt.Fprintln(a.out, r)
				}
				fmt.Fprintln(a.out) // Docker ends the list with an empty line
			}
			return err
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "do not print the warning (ctnet never prompts)")
	cmd.Flags().StringArrayVar(&filters, "filter", nil, "only networks matching (label=K[=V], name=, driver=)")
	return cmd
}

// prefixText is an address with its prefix length as Docker prints it, ""
// for none.
func prefixText(p netip.Prefix) string {
	if !p.IsValid() {
		return ""
	}
	return p.String()
}
