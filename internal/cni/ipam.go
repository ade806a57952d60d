package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/ctnet/ctnet/internal/network"
)

// A configuration's "ipam" names the plugin (host-local, static, dhcp, …)
// that chooses the addresses instead of ctnet's allocator; it is called with
// the same configuration, as the reference plugins call theirs, and its
// addresses are handed to the service (network.Given).

func ipamAdd(ctx context.Context, c *Conf) (*types100.Result, error) {
	var r types.Result
	err := delegate(ctx, c, func(conf []byte) (err error) {
		r, err = invoke.DelegateAdd(ctx, c.IPAM.Type, conf, nil)
		return err
	})
	if err != nil {
		return nil, err
	}
	res, err := types100.NewResultFromResult(r)
	if err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, fmt.Sprintf("ctnet: the result of IPAM plugin %s: %v", c.IPAM.Type, err), "")
	}
	if len(res.IPs) == 0 {
		ipamDel(ctx, c)
		return nil, invalidConf("ipam", fmt.Sprintf("ctnet: IPAM plugin %s gave no address", c.IPAM.Type))
	}
	return res, nil
}

func ipamDel(ctx context.Context, c *Conf) error {
	return delegate(ctx, c, func(conf []byte) error { return invoke.DelegateDel(ctx, c.IPAM.Type, conf, nil) })
}

func ipamCheck(ctx context.Context, c *Conf) error {
	return delegate(ctx, c, func(conf []byte) error { return invoke.DelegateCheck(ctx, c.IPAM.Type, conf, nil) })
}

// ipamRelease gives back the IPAM's addresses of an attachment GC removed:
// its DEL, as the runtime would have called it for that container and
// interface.
func ipamRelease(ctx context.Context, c *Conf, owner network.Owner) error {
	i := strings.LastIndexByte(owner.ID, '/')
	if i < 0 {
		return nil
	}
	for k, v := range map[string]string{"CNI_CONTAINERID": owner.ID[:i], "CNI_IFNAME": owner.ID[i+1:], "CNI_NETNS": ""} {
		if err := os.Setenv(k, v); err != nil {
			return err
		}
	}
	return ipamDel(ctx, c)
}

// ipamStatus and ipamGC ask only IPAM plugins that know the verbs (1.1.0):
// an older one has nothing to collect and nothing to report.
func ipamStatus(ctx context.Context, c *Conf) error {
	if !ipamSpeaks(ctx, c, "1.1.0") {
		return nil
	}
	return delegate(ctx, c, func(conf []byte) error { return invoke.DelegateStatus(ctx, c.IPAM.Type, conf, nil) })
}

func ipamGC(ctx context.Context, c *Conf) error {
	if !ipamSpeaks(ctx, c, "1.1.0") {
		return nil
	}
	return delegate(ctx, c, func(conf []byte) error { return invoke.DelegateGC(ctx, c.IPAM.Type, conf, nil) })
}

// ipamVersions are the versions the IPAM plugin speaks (none if it cannot
// be asked).
func ipamVersions(ctx context.Context, c *Conf) []string {
	path, err := invoke.FindInPath(c.IPAM.Type, filepath.SplitList(os.Getenv("CNI_PATH")))
	if err != nil {
		return nil
	}
	info, err := invoke.GetVersionInfo(ctx, path, nil)
	if err != nil {
		return nil
	}
	return info.SupportedVersions()
}

func ipamSpeaks(ctx context.Context, c *Conf, v string) bool {
	return slices.Contains(ipamVersions(ctx, c), v)
}

// delegate calls the IPAM plugin with the configuration; one that does not
// speak its version is called again with the newest version both speak (an
// IPAM plugin of spec 1.0.0 under a 1.1.0 configuration).
func delegate(ctx context.Context, c *Conf, do func(conf []byte) error) error {
	err := do(c.raw)
	var te *types.Error
	if !errors.As(err, &te) || te.Code != types.ErrIncompatibleCNIVersion {
		return wrapIPAM(c, err)
	}
	best := ""
	for _, v := range ipamVersions(ctx, c) {
		older, _ := version.GreaterThanOrEqualTo(c.CNIVersion, v)
		newer, _ := version.GreaterThan(v, best)
		if slices.Contains(Versions.SupportedVersions(), v) && older && (best == "" || newer) {
			best = v
		}
	}
	var m map[string]any
	if best == "" || json.Unmarshal(c.raw, &m) != nil {
		return wrapIPAM(c, err)
	}
	m["cniVersion"] = best
	conf, jerr := json.Marshal(m)
	if jerr != nil {
		return wrapIPAM(c, err)
	}
	return wrapIPAM(c, do(conf))
}

func wrapIPAM(c *Conf, err error) error {
	if err == nil {
		return nil
	}
	var te *types.Error
	if errors.As(err, &te) {
		return types.NewError(te.Code, fmt.Sprintf("ctnet: IPAM plugin %s: %s", c.IPAM.Type, te.Msg), te.Details)
	}
	return types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf("ctnet: IPAM plugin %s: %v", c.IPAM.Type, err), "install it in a directory of CNI_PATH")
}
