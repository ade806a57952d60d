package cli

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/ctnet/ctnet/internal/containers"
	"github.com/ctnet/ctnet/internal/network"
	"github.com/ctnet/ctnet/internal/portspec"
)

// psFilter is `ps --filter KEY=VALUE…`, Docker's keys: values of one key
// are alternatives, different keys must all hold.
type psFilter map[string][]string

var psFilterKeys = []string{"id", "name", "label", "exited", "status", "ancestor", "network", "publish", "expose", "before", "since"}

var psStatuses = []string{"created", "restarting", "running", "removing", "paused", "exited", "dead"}

func parsePSFilter(args []string) (psFilter, error) {
	f := psFilter{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return nil, fmt.Errorf("--filter %q: want KEY=VALUE (keys: %s)", a, strings.Join(psFilterKeys, ", "))
		}
		known := false
		for _, kk := range psFilterKeys {
			known = known || kk == k
		}
		if !known {
			return nil, fmt.Errorf("--filter %q: Invalid filter '%s'; use %s", a, k, strings.Join(psFilterKeys, ", "))
		}
		switch k {
		case "exited":
			if _, err := strconv.Atoi(v); err != nil {
				return nil, fmt.Errorf("--filter exited=%s: want an exit code (an integer)", v)
			}
		case "status":
			ok := false
			for _, s := range psStatuses {
				ok = ok || s == v
			}
			if !ok {
				return nil, fmt.Errorf("--filter %q: Invalid filter 'status=%s'; use %s", a, v, strings.Join(psStatuses, ", "))
			}
		case "name":
			if _, err := regexp.Compile(v); err != nil {
				return nil, fmt.Errorf("--filter name=%s: %v", v, err)
			}
		}
		f[k] = append(f[k], v)
	}
	return f, nil
}

// match says whether c passes every key; all lists every container (for
// before/since).
func (f psFilter) match(c containers.Info, all []containers.Info) bool {
	for k, vs := range f {
		ok := false
		for _, v := range vs {
			ok = ok || f.one(k, v, c, all)
		}
		if !ok {
			return false
		}
	}
	return true
}

func (f psFilter) one(k, v string, c containers.Info, all []containers.Info) bool {
	switch k {
	case "id":
		return strings.HasPrefix(c.ID, v)
	case "name":
		re := regexp.MustCompile(v) // checked by parsePSFilter
		return re.MatchString(c.Name) || re.MatchString("/"+c.Name)
	case "label":
		key, val, hasVal := strings.Cut(v, "=")
		got, ok := c.Labels[key]
		return ok && (!hasVal || got == val)
	case "exited":
		n, _ := strconv.Atoi(v)
		return !c.Status.Running && c.Status.Status == "exited" && c.Status.ExitCode == n
	case "status":
		return c.Status.Status == v
	case "ancestor":
		return c.Image == v || c.Image == v+":latest" || strings.TrimSuffix(c.Image, ":latest") == v || strings.HasPrefix(strings.TrimPrefix(c.ImageID, "sha256:"), strings.TrimPrefix(v, "sha256:")) && len(strings.TrimPrefix(v, "sha256:")) >= 4
	case "network":
		for _, at := range c.Attachments {
			if at.Network == v || strings.HasPrefix(at.NetworkID, v) {
				return true
			}
		}
		return c.NetworkMode == v
	case "publish", "expose":
		want, err := portspec.ParseAll([]string{v})
		for _, m := range publishedNow(c) {
			if err != nil || len(want) == 0 {
				break
			}
			port := m.ContainerPort
			if k == "publish" {
				port = m.HostPort
			}
			if port == want[0].ContainerPort && (!strings.Contains(v, "/") || m.Proto == want[0].Proto) {
				return true
			}
		}
		return false
	case "before", "since":
		for _, o := range all {
			if o.Name == v || strings.HasPrefix(o.ID, v) || network.ShortID(o.ID) == v {
				if k == "before" {
					return c.Created.Before(o.Created)
				}
				return c.Created.After(o.Created)
			}
		}
		return false
	}
	return false
}
