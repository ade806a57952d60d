package cli

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/ctnet/ctnet/internal/containers"
	"github.com/ctnet/ctnet/internal/network"
	"github.com/ctnet/ctnet/internal/portspec"
)

// psFilter is `ps --filter KEY=VALUE…`, Docker's keys: values of one key
// are alternatives, different keys must all hold. Each value is parsed once,
// into a test of one container (all lists every container, for
// before/since).
type psFilter map[string][]func(c containers.Info, all []containers.Info) bool

var psFilterKeys = []string{"id", "name", "label", "exited", "status", "ancestor", "network", "publish", "expose", "before", "since"}

var psStatuses = []string{"created", "restarting", "running", "removing", "paused", "exited", "dead"}

func parsePSFilter(args []string) (psFilter, error) {
	f := psFilter{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return nil, fmt.Errorf("--filter %q: want KEY=VALUE (keys: %s)", a, strings.Join(psFilterKeys, ", "))
		}
		if !slices.Contains(psFilterKeys, k) {
			return nil, fmt.Errorf("--filter %q: Invalid filter '%s'; use %s", a, k, strings.Join(psFilterKeys, ", "))
		}
		test, err := psTest(a, k, v)
		if err != nil {
			return nil, err
		}
		f[k] = append(f[k], test)
	}
	return f, nil
}

// match says whether c passes every key.
func (f psFilter) match(c containers.Info, all []containers.Info) bool {
	for _, tests := range f {
		if !slices.ContainsFunc(tests, func(t func(containers.Info, []containers.Info) bool) bool { return t(c, all) }) {
			return false
		}
	}
	return true
}

func psTest(a, k, v string) (func(c containers.Info, all []containers.Info) bool, error) {
	switch k {
	case "id":
		return func(c containers.Info, _ []containers.Info) bool { return strings.HasPrefix(c.ID, v) }, nil
	case "name":
		re, err := regexp.Compile(v)
		if err != nil {
			return nil, fmt.Errorf("--filter name=%s: %v", v, err)
		}
		return func(c containers.Info, _ []containers.Info) bool {
			return re.MatchString(c.Name) || re.MatchString("/"+c.Name)
		}, nil
	case "label":
		key, val, hasVal := strings.Cut(v, "=")
		return func(c containers.Info, _ []containers.Info) bool {
			got, ok := c.Labels[key]
			return ok && (!hasVal || got == val)
		}, nil
	case "exited":
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, fmt.Errorf("--filter exited=%s: want an exit code (an integer)", v)
		}
		return func(c containers.Info, _ []containers.Info) bool {
			return !c.Status.Running && c.Status.Status == "exited" && c.Status.ExitCode == n
		}, nil
	case "status":
		if !slices.Contains(psStatuses, v) {
			return nil, fmt.Errorf("--filter %q: Invalid filter 'status=%s'; use %s", a, v, strings.Join(psStatuses, ", "))
		}
		return func(c containers.Info, _ []containers.Info) bool { return c.Status.Status == v }, nil
	case "ancestor":
		id := strings.TrimPrefix(v, "sha256:")
		return func(c containers.Info, _ []containers.Info) bool {
			return c.Image == v || c.Image == v+":latest" || strings.TrimSuffix(c.Image, ":latest") == v ||
				len(id) >= 4 && strings.HasPrefix(strings.TrimPrefix(c.ImageID, "sha256:"), id)
		}, nil
	case "network":
		return func(c containers.Info, _ []containers.Info) bool {
			for _, at := range c.Attachments {
				if at.Network == v || strings.HasPrefix(at.NetworkID, v) {
					return true
				}
			}
			return c.NetworkMode == v
		}, nil
	case "publish", "expose":
		want, err := portspec.ParseAll([]string{v})
		if err != nil || len(want) == 0 {
			return func(containers.Info, []containers.Info) bool { return false }, nil
		}
		anyProto := !strings.Contains(v, "/")
		return func(c containers.Info, _ []containers.Info) bool {
			for _, m := range publishedNow(c) {
				port := m.ContainerPort
				if k == "publish" {
					port = m.HostPort
				}
				if port == want[0].ContainerPort && (anyProto || m.Proto == want[0].Proto) {
					return true
				}
			}
			return false
		}, nil
	default: // before, since
		return func(c containers.Info, all []containers.Info) bool {
			for _, o := range all {
				if o.Name == v || strings.HasPrefix(o.ID, v) || network.ShortID(o.ID) == v {
					if k == "before" {
						return c.Created.Before(o.Created)
					}
					return c.Created.After(o.Created)
				}
			}
			return false
		}, nil
	}
}
