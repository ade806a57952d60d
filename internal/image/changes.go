package image

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// containerConfig is the "config" of an image config file as Docker writes
// it, limited to what Dockerfile instructions set.
type containerConfig struct {
	User         string                        `json:",omitempty"`
	ExposedPorts map[string]struct{}           `json:",omitempty"`
	Env          []string                      `json:",omitempty"`
	Cmd          []string                      `json:",omitempty"`
	Healthcheck  *dockerspec.HealthcheckConfig `json:",omitempty"`
	Volumes      map[string]struct{}           `json:",omitempty"`
	WorkingDir   string                        `json:",omitempty"`
	Entrypoint   []string                      `json:",omitempty"`
	OnBuild      []string                      `json:",omitempty"`
	Labels       map[string]string             `json:",omitempty"`
	StopSignal   string                        `json:",omitempty"`
}

// changeCommands are the instructions `docker import --change` and
// `docker commit --change` accept (moby's validCommitCommands).
var changeCommands = map[string]bool{
	"cmd": true, "entrypoint": true, "healthcheck": true, "env": true, "expose": true, "label": true,
	"onbuild": true, "stopsignal": true, "user": true, "volume": true, "workdir": true,
}

// applyChanges applies Dockerfile instructions to cfg as Docker's
// BuildFromConfig does: the changes are one Dockerfile (joined by newlines,
// parsed by BuildKit's parser), each instruction expanded with the
// environment built so far, then dispatched.
func applyChanges(cfg *containerConfig, changes []string) error {
	if len(changes) == 0 {
		return nil
	}
	var from []int // the change each line of the joined text comes from
	for i, c := range changes {
		for range strings.Count(c, "\n") + 1 {
			from = append(from, i)
		}
	}
	which := func(line int) string {
		if line >= 1 && line <= len(from) {
			return changes[from[line-1]]
		}
		return strings.Join(changes, "\n")
	}
	res, err := parser.Parse(strings.NewReader(strings.Join(changes, "\n")))
	if err != nil {
		var le *parser.LocationError
		if errors.As(err, &le) && len(le.Locations) > 0 && len(le.Locations[0]) > 0 {
			return fmt.Errorf("change %q: %s", which(le.Locations[0][0].Start.Line), oneLine(err.Error()))
		}
		return fmt.Errorf("invalid changes %q: %s", changes, oneLine(err.Error()))
	}
	lex := shell.NewLex(res.EscapeToken)
	cmdSet := false
	for _, n := range res.AST.Children {
		change := which(n.StartLine)
		fail := func(err error) error { return fmt.Errorf("change %q: %s", change, oneLine(err.Error())) }
		if !changeCommands[strings.ToLower(n.Value)] {
			return fail(fmt.Errorf("%s is not a valid change command", n.Value))
		}
		cmd, err := instructions.ParseCommand(n)
		if err != nil {
			return fail(err)
		}
		envs := shell.EnvsFromSlice(cfg.Env)
		if ex, ok := cmd.(instructions.SupportsSingleWordExpansion); ok {
			err := ex.Expand(func(word string) (string, error) {
				w, _, err := lex.ProcessWord(word, envs)
				return w, err
			})
			if err != nil {
				return fail(err)
			}
		}
		switch c := cmd.(type) {
		case *instructions.EnvCommand:
			for _, kv := range c.Env {
				setEnv(cfg, kv.Key, kv.Value)
			}
		case *instructions.LabelCommand:
			if cfg.Labels == nil {
				cfg.Labels = map[string]string{}
			}
			for _, kv := range c.Labels {
				cfg.Labels[kv.Key] = kv.Value
			}
		case *instructions.CmdCommand:
			cfg.Cmd = withShell(c.ShellDependantCmdLine)
			if len(c.CmdLine) != 0 {
				cmdSet = true
			}
		case *instructions.EntrypointCommand:
			cfg.Entrypoint = withShell(c.ShellDependantCmdLine)
			if !cmdSet {
				cfg.Cmd = nil
			}
		case *instructions.ExposeCommand:
			for _, p := range c.Ports {
				// the one instruction where one word may expand to several
				words, err := lex.ProcessWords(p, envs)
				if err != nil {
					return fail(err)
				}
				for _, w := range words {
					ports, err := exposedPorts(w)
					if err != nil {
						return fail(err)
					}
					if cfg.ExposedPorts == nil {
						cfg.ExposedPorts = map[string]struct{}{}
					}
					for _, p := range ports {
						cfg.ExposedPorts[p] = struct{}{}
					}
				}
			}
		case *instructions.UserCommand:
			cfg.User = c.User
		case *instructions.WorkdirCommand:
			if c.Path == "" {
				return fail(errors.New("cannot normalize nothing"))
			}
			if filepath.IsAbs(c.Path) {
				cfg.WorkingDir = filepath.Clean(c.Path)
			} else {
				cfg.WorkingDir = filepath.Join("/", cfg.WorkingDir, c.Path)
			}
		case *instructions.VolumeCommand:
			for _, v := range c.Volumes {
				if v == "" {
					return fail(errors.New("VOLUME specified can not be an empty string"))
				}
				if cfg.Volumes == nil {
					cfg.Volumes = map[string]struct{}{}
				}
				cfg.Volumes[v] = struct{}{}
			}
		case *instructions.StopSignalCommand:
			if _, err := parseSignal(c.Signal); err != nil {
				return fail(err)
			}
			cfg.StopSignal = c.Signal
		case *instructions.HealthCheckCommand:
			cfg.Healthcheck = c.Health
		case *instructions.OnbuildCommand:
			cfg.OnBuild = append(cfg.OnBuild, c.Expression)
		default:
			return fail(fmt.Errorf("%s is not a valid change command", n.Value))
		}
	}
	return nil
}

// oneLine flattens BuildKit's messages, which may span lines and show the
// end of the text as U+FFFD.
func oneLine(s string) string {
	return strings.ReplaceAll(strings.Join(strings.Fields(s), " "), "(\uFFFD)", "(end of text)")
}

func setEnv(cfg *containerConfig, key, value string) {
	for i, e := range cfg.Env {
		if k, _, _ := strings.Cut(e, "="); k == key {
			cfg.Env[i] = key + "=" + value
			return
		}
	}
	cfg.Env = append(cfg.Env, key+"="+value)
}

// withShell turns the shell form into ["/bin/sh", "-c", line], as Docker
// does on Linux.
func withShell(c instructions.ShellDependantCmdLine) []string {
	if c.PrependShell && c.CmdLine != nil {
		return append([]string{"/bin/sh", "-c"}, c.CmdLine...)
	}
	return c.CmdLine
}

// exposedPorts reads one EXPOSE word as Docker does ([ip:][hostport:]port[-port][/proto],
// only the container side counting) and returns "80/tcp" forms.
func exposedPorts(raw string) ([]string, error) {
	ip, hostPort, ctrPort := "", "", raw
	if parts := strings.Split(raw, ":"); len(parts) == 2 {
		hostPort, ctrPort = parts[0], parts[1]
	} else if len(parts) > 2 {
		n := len(parts)
		ip, hostPort, ctrPort = strings.Join(parts[:n-2], ":"), parts[n-2], parts[n-1]
	}
	port, proto, _ := strings.Cut(ctrPort, "/")
	if port == "" {
		return nil, fmt.Errorf("no port specified: %s<empty>", raw)
	}
	if proto == "" {
		proto = "tcp"
	}
	proto = strings.ToLower(proto)
	if proto != "tcp" && proto != "udp" && proto != "sctp" {
		return nil, errors.New("invalid proto: " + proto)
	}
	if ip != "" {
		ip = strings.TrimSuffix(strings.TrimPrefix(ip, "["), "]")
		if _, err := netip.ParseAddr(ip); err != nil {
			return nil, fmt.Errorf("invalid IP address: %w", err)
		}
	}
	start, end, ok := portRange(port)
	if !ok {
		return nil, errors.New("invalid containerPort: " + port)
	}
	if hostPort != "" {
		hs, he, ok := portRange(hostPort)
		if !ok {
			return nil, errors.New("invalid hostPort: " + hostPort)
		}
		if end-start != he-hs && end != start {
			return nil, fmt.Errorf("invalid ranges specified for container and host Ports: %s and %s", port, hostPort)
		}
	}
	var out []string
	for p := start; p <= end; p++ {
		out = append(out, fmt.Sprintf("%d/%s", p, proto))
	}
	return out, nil
}

func portRange(s string) (uint64, uint64, bool) {
	a, b, isRange := strings.Cut(s, "-")
	start, err := strconv.ParseUint(a, 10, 16)
	if err != nil {
		return 0, 0, false
	}
	if !isRange || a == b {
		return start, start, true
	}
	end, err := strconv.ParseUint(b, 10, 16)
	if err != nil || end < start {
		return 0, 0, false
	}
	return start, end, true
}

// parseSignal accepts what Docker's STOPSIGNAL does: a positive number or a
// name with or without SIG (any case), RTMIN+n and RTMAX-n included.
func parseSignal(raw string) (unix.Signal, error) {
	if n, err := strconv.Atoi(raw); err == nil {
		if n <= 0 {
			//lint:ignore ST1005 Docker's wording
			return 0, fmt.Errorf("Invalid signal: %s", raw)
		}
		return unix.Signal(n), nil
	}
	name := strings.TrimPrefix(strings.ToUpper(raw), "SIG")
	if s := unix.SignalNum("SIG" + name); s != 0 {
		return s, nil
	}
	const rtmin, rtmax = 34, 64
	for _, r := range []struct {
		prefix     string
		base, sign int
		max        int
	}{{"RTMIN", rtmin, 1, 15}, {"RTMAX", rtmax, -1, 14}} {
		rest, ok := strings.CutPrefix(name, r.prefix)
		if !ok {
			continue
		}
		if rest == "" {
			return unix.Signal(r.base), nil
		}
		op := "+"
		if r.sign < 0 {
			op = "-"
		}
		if num, ok := strings.CutPrefix(rest, op); ok {
			if n, err := strconv.Atoi(num); err == nil && n >= 1 && n <= r.max && strconv.Itoa(n) == num {
				return unix.Signal(r.base + r.sign*n), nil
			}
		}
	}
	//lint:ignore ST1005 Docker's wording
	return 0, fmt.Errorf("Invalid signal: %s", raw)
}
