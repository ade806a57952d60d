// Package cni is ctnet as a CNI plugin (spec 1.1.0 and the versions a runtime
// negotiates down to, 0.3.0 on): the same binary, called with CNI_COMMAND
// set, attaches the runtime's namespace to a ctnet network through the
// network service, in the same store as the command line. It translates: a
// configuration and CNI's environment into service calls, the attachment into
// a CNI result, the service's errors into CNI's codes. ADD creates the
// network from the configuration when it does not exist yet.
package cni

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/ctnet/ctnet/internal/driver/bridge"
	"github.com/ctnet/ctnet/internal/errdefs"
	"github.com/ctnet/ctnet/internal/network"
	"github.com/ctnet/ctnet/internal/topology"
)

// Versions are the CNI versions ctnet speaks.
var Versions = version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

// ctnet's own error codes (CNI leaves 100 and up to plugins).
const (
	// ErrConflict: an address, MAC, host port or name asked for is in use.
	ErrConflict uint = 100
	// ErrNotFound: an object the request names does not exist.
	ErrNotFound uint = 101
)

// Main serves one CNI call from the environment and stdin; it returns the
// process's exit status, the error (if any) printed on stdout as CNI asks.
func Main(about string) int {
	funcs := skel.CNIFuncs{Add: cmdAdd, Del: cmdDel, Check: cmdCheck, GC: cmdGC, Status: cmdStatus}
	if err := skel.PluginMainFuncsWithError(funcs, Versions, about); err != nil {
		if perr := err.Print(); perr != nil {
			fmt.Fprintln(os.Stderr, perr)
		}
		return 1
	}
	return 0
}

// open opens the host's network service with the configuration's state
// directories.
func open(c *Conf) (*network.Service, error) {
	root := cmp.Or(c.Root, os.Getenv("CTNET_ROOT"), "/var/lib/ctnet")
	runRoot := cmp.Or(c.RunRoot, os.Getenv("CTNET_RUN_ROOT"), "/run/ctnet")
	cgroup := os.Getenv("CTNET_CGROUP")
	exe, err := os.Executable()
	if err != nil {
		exe = "/proc/self/exe"
	}
	svc, err := network.Open(network.Config{
		Root: root, RunRoot: runRoot, Cgroup: cgroup,
		Resolver: network.Command{Path: exe, Args: []string{"--root", root, "--run-root", runRoot, "--cgroup", cgroup, "system", "dns-serve"}},
		Log:      func(format string, args ...any) { fmt.Fprintf(os.Stderr, "ctnet: "+format+"\n", args...) },
	})
	if err != nil {
		return nil, types.NewError(types.ErrTryAgainLater, fmt.Sprintf("ctnet: open the state in %s and %s: %v", root, runRoot, err), "kind: unavailable")
	}
	return svc, nil
}

// call parses the configuration, opens the service and runs op, its error
// in CNI's terms.
func call(args *skel.CmdArgs, op func(ctx context.Context, c *Conf, svc *network.Service) error) error {
	c, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	svc, err := open(c)
	if err != nil {
		return err
	}
	defer svc.Close()
	return cniError(op(context.Background(), c, svc))
}

func cmdAdd(args *skel.CmdArgs) error {
	return call(args, func(ctx context.Context, c *Conf, svc *network.Service) error {
		req, err := c.requests()
		if err != nil {
			return err
		}
		labels := podLabels(args.Args)
		spec := network.AttachSpec{
			Network: c.Network, NetNS: args.Netns, Owner: network.CNI(args.ContainerID, args.IfName),
			Name: peopleName(args, labels), IfName: args.IfName, IP: req.ip, IP6: req.ip6, MAC: req.mac,
			Aliases: req.aliases, Ports: req.ports, Labels: labels,
		}
		var delegated *types100.Result
		if c.IPAM.Type != "" {
			if delegated, err = ipamAdd(ctx, c); err != nil {
				return err
			}
			var given network.Given
			for _, ip := range delegated.IPs {
				a, _ := netip.AddrFromSlice(ip.Address.IP)
				given = append(given, a.Unmap())
			}
			spec.Allocator = given
		}
		r, err := add(ctx, c, svc, spec, delegated)
		if err != nil {
			if delegated != nil {
				ipamDel(ctx, c)
			}
			return err
		}
		return types.PrintResult(r, c.CNIVersion)
	})
}

// add attaches the namespace to the configuration's network, made first if
// need be.
func add(ctx context.Context, c *Conf, svc *network.Service, spec network.AttachSpec, delegated *types100.Result) (*types100.Result, error) {
	n, err := ensureNetwork(ctx, c, svc, delegated)
	if err != nil {
		return nil, err
	}
	dns := c.DNS
	if len(dns.Nameservers) == 0 && delegated != nil {
		dns = delegated.DNS
	}
	if len(dns.Nameservers) == 0 && n.Name != network.DefaultNetwork {
		// As on Docker's user networks: the embedded resolver answers in
		// the namespace, names on the network first.
		spec.Resolver = &network.Resolver{}
		dns.Nameservers = []string{"127.0.0.11"}
	}
	a, err := svc.Attach(ctx, spec)
	if err != nil {
		return nil, err
	}
	r := result(n, a, spec.NetNS)
	r.DNS = dns
	return r, nil
}

// ensureNetwork finds the configuration's network or creates it from the
// configuration (with a delegated IPAM and no "subnet", from the subnet of
// the address the IPAM gave).
func ensureNetwork(ctx context.Context, c *Conf, svc *network.Service, delegated *types100.Result) (*network.NetworkInfo, error) {
	n, err := svc.Network(ctx, c.Network)
	if err == nil {
		return n, matches(c, n)
	}
	if !network.IsNotFound(err) {
		return nil, err
	}
	spec := c.networkSpec()
	if len(spec.Subnets) == 0 && delegated != nil {
		for _, ip := range delegated.IPs {
			p, _ := netip.AddrFromSlice(ip.Address.IP)
			bits, _ := ip.Address.Mask.Size()
			sub := network.SubnetSpec{Subnet: netip.PrefixFrom(p.Unmap(), bits).Masked().String()}
			if gw, ok := netip.AddrFromSlice(ip.Gateway); ok {
				sub.Gateway = gw.Unmap().String()
			}
			spec.Subnets = append(spec.Subnets, sub)
			spec.IPv6 = spec.IPv6 || p.Unmap().Is6()
		}
	}
	_, cerr := svc.CreateNetwork(ctx, spec)
	if cerr != nil && !errdefs.Is(cerr, errdefs.Conflict) {
		return nil, cerr
	}
	// Made now, or by a concurrent ADD a moment ago.
	n, err = svc.Network(ctx, c.Network)
	if network.IsNotFound(err) && cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, err
	}
	return n, matches(c, n)
}

// matches says whether an existing network is the one the configuration
// describes (its subnets), so that two configurations naming one network
// with different subnets are caught.
func matches(c *Conf, n *network.NetworkInfo) error {
	for _, s := range c.Subnet {
		p, _ := netip.ParsePrefix(s)
		if !slices.ContainsFunc(n.Subnets, func(ns network.Subnet) bool { return ns.Subnet == p.Masked() }) {
			var have []string
			for _, ns := range n.Subnets {
				have = append(have, ns.Subnet.String())
			}
			return invalidConf("subnet", fmt.Sprintf("ctnet: network %q exists with subnet %s, not %s: fix \"subnet\" or name another network", n.Name, strings.Join(have, ", "), s))
		}
	}
	return nil
}

// peopleName is the attachment's name in `ctnet network inspect`: the
// container id and interface, after the pod's namespace/name if known.
func peopleName(args *skel.CmdArgs, labels map[string]string) string {
	name := args.ContainerID + "/" + args.IfName
	if pod := labels["K8S_POD_NAME"]; pod != "" {
		name = cmp.Or(labels["K8S_POD_NAMESPACE"], "default") + "/" + pod + " " + name
	}
	return name
}

// result is the attachment in CNI's terms: the bridge, the host end and the
// inner end (with its sandbox), each address with its gateway, and default
// routes unless the network is internal.
func result(n *network.NetworkInfo, a *network.Attachment, netns string) *types100.Result {
	r := &types100.Result{
		CNIVersion: types100.ImplementedSpecVersion,
		Interfaces: []*types100.Interface{
			{Name: n.Bridge},
			{Name: a.HostIf},
			{Name: a.IfName, Mac: a.MAC.String(), Mtu: n.MTU, Sandbox: netns},
		},
	}
	inner := 2
	for _, p := range a.Addrs() {
		ip := &types100.IPConfig{Interface: &inner, Address: ipNet(p)}
		for _, s := range n.Subnets {
			if s.Subnet.Contains(p.Addr()) && s.Gateway.IsValid() {
				ip.Gateway = net.IP(s.Gateway.AsSlice())
			}
		}
		r.IPs = append(r.IPs, ip)
		if ip.Gateway != nil && !n.Internal {
			dst := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
			if p.Addr().Is6() {
				dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
			}
			r.Routes = append(r.Routes, &types.Route{Dst: ipNet(dst), GW: ip.Gateway})
		}
	}
	return r
}

func ipNet(p netip.Prefix) net.IPNet {
	return net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func cmdDel(args *skel.CmdArgs) error {
	return call(args, func(ctx context.Context, c *Conf, svc *network.Service) error {
		// Every network of the owner: one container id and interface is
		// one attachment, whatever the configuration says now. Nothing
		// attached (no ADD, a second DEL) is success.
		err := svc.Detach(ctx, network.DetachSpec{Owner: network.CNI(args.ContainerID, args.IfName), What: peopleName(args, podLabels(args.Args))})
		if c.IPAM.Type != "" {
			err = errors.Join(err, ipamDel(ctx, c))
		}
		return err
	})
}

func cmdCheck(args *skel.CmdArgs) error {
	return call(args, func(ctx context.Context, c *Conf, svc *network.Service) error {
		owner := network.CNI(args.ContainerID, args.IfName)
		atts, err := svc.Attachments(owner)
		if err != nil {
			return err
		}
		what := fmt.Sprintf("ctnet: container %s interface %s", args.ContainerID, args.IfName)
		if len(atts) == 0 {
			return types.NewError(types.ErrUnknownContainer, what+" is not attached to network "+c.Network+"; ADD it first", "")
		}
		a := &atts[0]
		if err := version.ParsePrevResult(&c.PluginConf); err != nil {
			return types.NewError(types.ErrDecodingFailure, "ctnet: prevResult: "+err.Error(), "")
		}
		if err := checkPrev(c, a, what); err != nil {
			return err
		}
		if err := checkKernel(ctx, svc, a, what); err != nil {
			return err
		}
		if c.IPAM.Type != "" {
			return ipamCheck(ctx, c)
		}
		return nil
	})
}

// checkPrev compares the runtime's prevResult with the attachment.
func checkPrev(c *Conf, a *network.Attachment, what string) error {
	if c.PrevResult == nil {
		return nil
	}
	prev, err := types100.NewResultFromResult(c.PrevResult)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, "ctnet: prevResult: "+err.Error(), "")
	}
	var got []string
	for _, ip := range prev.IPs {
		if ip.Interface != nil && *ip.Interface < len(prev.Interfaces) && prev.Interfaces[*ip.Interface].Name == a.IfName {
			got = append(got, ip.Address.String())
		}
	}
	var want []string
	for _, p := range a.Addrs() {
		want = append(want, p.String())
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		return types.NewError(types.ErrInternal, fmt.Sprintf("%s: prevResult has addresses %v, ctnet gave %v", what, got, want), "")
	}
	return nil
}

// checkKernel is what `ctnet topology` would call drift, for the
// attachment, its bridge and the firewall table.
func checkKernel(ctx context.Context, svc *network.Service, a *network.Attachment, what string) error {
	v, err := svc.View(ctx)
	if err != nil {
		return err
	}
	var bridgeDev string
	for i := range v.Networks {
		if v.Networks[i].ID == a.NetworkID {
			info := v.Networks[i]
			info.Attachments = slices.DeleteFunc(info.Attachments, func(o network.Attachment) bool { return o.ID != a.ID })
			v.Networks, bridgeDev = []network.NetworkInfo{info}, info.Bridge
			break
		}
	}
	topo, err := topology.Gather(v)
	if err != nil {
		return err
	}
	ours := fmt.Sprintf("%s on network %q", a.Describe(), a.Network)
	var diffs []string
	for _, d := range topo.Drift {
		addr := ""
		if a.IPv4.IsValid() {
			addr = a.IPv4.Addr().String()
		}
		switch {
		case d.Object == ours, d.Object == a.HostIf, d.Object == "bridge "+bridgeDev,
			d.Object == fmt.Sprintf("network %q", a.Network), strings.HasPrefix(d.Object, "table "),
			strings.HasPrefix(d.Object, "map ") && addr != "" && strings.Contains(d.Problem, addr):
			diffs = append(diffs, d.String())
		}
	}
	if len(diffs) > 0 {
		return types.NewError(types.ErrInternal, fmt.Sprintf("%s: the kernel differs from what ADD made: %s", what, strings.Join(diffs, "; ")), "`ctnet system reconcile` repairs it")
	}
	return nil
}

func cmdStatus(args *skel.CmdArgs) error {
	return call(args, func(ctx context.Context, c *Conf, svc *network.Service) error {
		n, err := svc.Network(ctx, c.Network)
		if network.IsNotFound(err) {
			return nil // the first ADD creates it
		}
		if err != nil {
			return types.NewError(types.ErrPluginNotAvailable, "ctnet: "+err.Error(), "")
		}
		if c.IPAM.Type == "" {
			if full := exhausted(n); full != "" {
				return types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf("ctnet: network %q has no free address in %s; DEL or GC attachments, or use a network with a larger subnet", n.Name, full), "")
			}
		}
		v, err := svc.View(ctx)
		if err != nil {
			return err
		}
		for i := range v.Networks {
			if v.Networks[i].ID == n.ID {
				v.Networks = v.Networks[i : i+1]
				break
			}
		}
		topo, err := topology.Gather(v)
		if err != nil {
			return err
		}
		for _, d := range topo.Drift {
			if d.Object == "bridge "+n.Bridge || d.Object == fmt.Sprintf("network %q", n.Name) || strings.HasPrefix(d.Object, "table ") {
				return types.NewError(types.ErrPluginNotAvailable, "ctnet: "+d.String(), "`ctnet system reconcile` repairs it")
			}
		}
		if c.IPAM.Type != "" {
			return ipamStatus(ctx, c)
		}
		return nil
	})
}

// exhausted names the network's subnet with no address left for ctnet's
// allocator, "" when each has one.
func exhausted(n *network.NetworkInfo) string {
	for _, s := range n.Subnets {
		p := s.Subnet
		if s.IPRange.IsValid() {
			p = s.IPRange
		}
		host := p.Addr().BitLen() - p.Bits()
		if host >= 32 {
			continue
		}
		reserved := 1 + len(s.AuxAddresses) // the gateway
		if p.Addr().Is4() {
			reserved += 2 // network and broadcast
		}
		used := 0
		for _, a := range n.Attachments {
			for _, ap := range a.Addrs() {
				if p.Contains(ap.Addr()) {
					used++
				}
			}
		}
		if used+reserved >= 1<<host {
			return p.String()
		}
	}
	return ""
}

func cmdGC(args *skel.CmdArgs) error {
	return call(args, func(ctx context.Context, c *Conf, svc *network.Service) error {
		valid := map[network.Owner]bool{}
		for _, v := range c.ValidAttachments {
			valid[network.CNI(v.ContainerID, v.IfName)] = true
		}
		atts, err := svc.Attachments()
		if err != nil {
			return err
		}
		var errs []error
		for _, a := range atts {
			if a.Owner.Kind != network.OwnerCNI || a.Network != c.Network || valid[a.Owner] {
				continue
			}
			if err := svc.Detach(ctx, network.DetachSpec{Owner: a.Owner, Network: a.NetworkID}); err != nil && !network.IsNotFound(err) {
				errs = append(errs, err)
				continue
			}
			if c.IPAM.Type != "" {
				errs = append(errs, ipamRelease(ctx, c, a.Owner))
			}
		}
		if c.IPAM.Type != "" {
			errs = append(errs, ipamGC(ctx, c))
		}
		return errors.Join(errs...)
	})
}

// cniError words a service error in CNI's terms: its code, msg with the
// configuration key at fault, details with the kind and key.
func cniError(err error) error {
	if err == nil {
		return nil
	}
	var te *types.Error
	if errors.As(err, &te) {
		return te
	}
	var de *errdefs.Error
	field := ""
	if errors.As(err, &de) {
		field = de.Field
	}
	code := types.ErrInternal
	switch errdefs.KindOf(err) {
	case errdefs.Invalid:
		code = types.ErrInvalidNetworkConfig
		if field == "ifname" {
			code = types.ErrInvalidEnvironmentVariables
		}
	case errdefs.Conflict:
		code = ErrConflict
	case errdefs.NotFound:
		code = ErrNotFound
	case errdefs.Unavailable:
		code = types.ErrTryAgainLater
	}
	if field == "netns" {
		code = types.ErrInvalidNetNS
	}
	details := ""
	if k := errdefs.KindOf(err); k != 0 {
		details = "kind: " + k.String()
	}
	if field != "" {
		details += "; key: " + confKey(field)
	}
	return types.NewError(code, "ctnet: "+errdefs.Word(err, confKey), details)
}

// confKey is where a request field comes from in CNI: a configuration key,
// a runtimeConfig capability or an environment variable.
func confKey(field string) string {
	switch field {
	case "ip", "ip6":
		return "runtimeConfig.ips"
	case "mac-address":
		return "runtimeConfig.mac"
	case "alias":
		return "runtimeConfig.aliases"
	case "publish":
		return "runtimeConfig.portMappings"
	case "ifname":
		return "CNI_IFNAME"
	case "netns":
		return "CNI_NETNS"
	case "name":
		return "network"
	case "option:" + bridge.OptBridgeName:
		return "bridge"
	case "option:" + bridge.OptMTU:
		return "mtu"
	case "option:" + bridge.OptMasquerade:
		return "ipMasq"
	}
	return field
}
