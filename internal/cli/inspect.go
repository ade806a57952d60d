package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ctnet/ctnet/internal/network"
	"github.com/ctnet/ctnet/internal/portspec"
)

// Docker's `inspect` shape for a container: every key Docker 20.10 has, so
// that templates written for Docker run; what ctnet has no notion of holds
// Docker's value for a container without it (no restarts, no log driver
// options, no cgroup limits).
type (
	containerJSON struct {
		Id              string
		Created         time.Time
		Path            string
		Args            []string
		State           stateJSON
		Image           string
		ResolvConfPath  string
		HostnamePath    string
		HostsPath       string
		LogPath         string
		Name            string
		RestartCount    int
		Driver          string
		Platform        string
		MountLabel      string
		ProcessLabel    string
		AppArmorProfile string
		ExecIDs         []string
		HostConfig      hostConfigJSON
		GraphDriver     graphDriverJSON
		Mounts          []mountJSON
		Config          configJSON
		NetworkSettings networkSettingsJSON
	}
	stateJSON struct {
		Status     string
		Running    bool
		Paused     bool
		Restarting bool
		OOMKilled  bool
		Dead       bool
		Pid        int
		ExitCode   int
		Error      string
		StartedAt  time.Time
		FinishedAt time.Time
	}
	hostConfigJSON struct {
		Binds           []string
		ContainerIDFile string
		LogConfig       logConfigJSON
		NetworkMode     string
		PortBindings    map[string][]portBindingJSON
		RestartPolicy   restartPolicyJSON
		AutoRemove      bool
		VolumeDriver    string
		VolumesFrom     []string
		CapAdd          []string
		CapDrop         []string
		CgroupnsMode    string
		Dns             []string
		DnsOptions      []string
		DnsSearch       []string
		ExtraHosts      []string
		GroupAdd        []string
		IpcMode         string
		Cgroup          string
		Links           []string
		OomScoreAdj     int
		PidMode         string
		Privileged      bool
		PublishAllPorts bool
		ReadonlyRootfs  bool
		SecurityOpt     []string
		UTSMode         string
		UsernsMode      string
		ShmSize         int64
		Runtime         string
		Isolation       string
		CpuShares       int64
		Memory          int64
		NanoCpus        int64
		CgroupParent    string
		Sysctls         map[string]string `json:",omitempty"`
	}
	logConfigJSON struct {
		Type   string
		Config map[string]string
	}
	restartPolicyJSON struct {
		Name              string
		MaximumRetryCount int
	}
	graphDriverJSON struct {
		Data map[string]string
		Name string
	}
	mountJSON struct {
		Type, Source, Destination, Mode string
		RW                              bool
		Propagation                     string
	}
	configJSON struct {
		Hostname     string
		Domainname   string
		User         string
		AttachStdin  bool
		AttachStdout bool
		AttachStderr bool
		ExposedPorts map[string]struct{} `json:",omitempty"`
		Tty          bool
		OpenStdin    bool
		StdinOnce    bool
		Env          []string
		Cmd          []string
		Image        string
		Volumes      map[string]struct{}
		WorkingDir   string
		Entrypoint   []string
		OnBuild      []string
		Labels       map[string]string
	}
	portBindingJSON struct {
		HostIp   string
		HostPort string
	}
	networkSettingsJSON struct {
		Bridge                 string
		SandboxID              string
		HairpinMode            bool
		LinkLocalIPv6Address   string
		LinkLocalIPv6PrefixLen int
		Ports                  map[string][]portBindingJSON
		SandboxKey             string
		SecondaryIPAddresses   []string
		SecondaryIPv6Addresses []string
		endpointSettingsJSON
		Networks map[string]endpointSettingsJSON
	}
	endpointSettingsJSON struct {
		IPAMConfig          map[string]string `json:",omitempty"`
		Links               []string          `json:",omitempty"`
		Aliases             []string          `json:",omitempty"`
		NetworkID           string            `json:",omitempty"`
		EndpointID          string
		Gateway             string
		IPAddress           string
		IPPrefixLen         int
		IPv6Gateway         string
		GlobalIPv6Address   string
		GlobalIPv6PrefixLen int
		MacAddress          string
		DriverOpts          map[string]string `json:",omitempty"`
	}
)

func endpointSettings(at network.Attachment, nets map[string]network.NetworkInfo) endpointSettingsJSON {
	s := endpointSettingsJSON{NetworkID: at.NetworkID, EndpointID: at.ID, MacAddress: at.MAC.String(), Aliases: at.Aliases}
	n := nets[at.NetworkID]
	if p := at.IPv4; p.IsValid() {
		s.IPAddress, s.IPPrefixLen = p.Addr().String(), p.Bits()
	}
	if p := at.IPv6; p.IsValid() {
		s.GlobalIPv6Address, s.GlobalIPv6PrefixLen = p.Addr().String(), p.Bits()
	}
	for _, sub := range n.Subnets {
		if n.Internal {
			break
		}
		if sub.Subnet.Addr().Is6() {
			s.IPv6Gateway = sub.Gateway.String()
		} else if s.Gateway == "" {
			s.Gateway = sub.Gateway.String()
		}
	}
	return s
}

func (a *app) inspectCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Display detailed information on containers, as JSON",
		Args:  minArgs(1, "CONTAINER"),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := a.containers()
			if err != nil {
				return err
			}
			svc, err := a.network()
			if err != nil {
				return err
			}
			all, err := svc.Networks(cmd.Context())
			if err != nil {
				return err
			}
			nets := map[string]network.NetworkInfo{}
			for _, n := range all {
				nets[n.ID] = n
			}
			var out []containerJSON
			var errs []string
			for _, ref := range args {
				c, err := m.Inspect(ref)
				if err != nil {
					errs = append(errs, err.Error())
					continue
				}
				j := containerJSON{
					Id: c.ID, Created: c.Created, Image: c.ImageID, Name: "/" + c.Name, Platform: "linux", Driver: "overlay",
					State: stateJSON{Status: c.Status.Status, Running: c.Status.Running, Pid: c.Status.Pid,
						ExitCode: c.Status.ExitCode, StartedAt: c.Status.StartedAt, FinishedAt: c.Status.FinishedAt},
					HostConfig: hostConfigJSON{NetworkMode: c.NetworkModeAsked(), IpcMode: c.IPC, AutoRemove: c.AutoRemove,
						Binds: c.Volumes, Dns: c.DNS, DnsSearch: c.DNSSearch, DnsOptions: c.DNSOptions, ExtraHosts: c.AddHosts,
						Runtime: c.Runtime, ReadonlyRootfs: c.ReadOnly, LogConfig: logConfigJSON{Type: "json-file", Config: map[string]string{}},
						RestartPolicy: restartPolicyJSON{Name: "no"}, CgroupnsMode: "host", ShmSize: 64 << 20, Isolation: ""},
					Config: configJSON{Hostname: c.Hostname, Env: c.Env, Cmd: c.Cmd(), Image: c.Image, Tty: c.Tty, OpenStdin: c.Tty,
						Entrypoint: c.Entrypoint, WorkingDir: c.WorkDir, User: c.User, Labels: c.Labels,
						AttachStdout: true, AttachStderr: true},
					NetworkSettings: networkSettingsJSON{SandboxKey: c.NetNS, SandboxID: c.ID, Networks: map[string]endpointSettingsJSON{}},
					GraphDriver:     graphDriverJSON{Name: "overlay", Data: map[string]string{}},
					Mounts:          []mountJSON{},
				}
				if j.Config.Labels == nil {
					j.Config.Labels = map[string]string{}
				}
				for _, v := range c.Volumes {
					parts := strings.Split(v, ":")
					if len(parts) < 2 {
						continue
					}
					mj := mountJSON{Type: "bind", Source: parts[0], Destination: parts[1], RW: true, Propagation: "rprivate"}
					if len(parts) == 3 {
						mj.Mode, mj.RW = parts[2], parts[2] != "ro"
					}
					j.Mounts = append(j.Mounts, mj)
				}
				if len(c.Args) > 0 {
					j.Path, j.Args = c.Args[0], c.Args[1:]
				}
				if len(c.Ports) > 0 {
					j.Config.ExposedPorts = map[string]struct{}{}
					for _, p := range append(c.PortBindings, c.Ports...) {
						j.Config.ExposedPorts[fmt.Sprintf("%d/%s", p.ContainerPort, p.Proto)] = struct{}{}
					}
				}
				j.ResolvConfPath, j.HostnamePath, j.HostsPath = m.EtcPaths(c.ID)
				j.HostConfig.PortBindings = askedBindings(c.PortBindings)
				j.NetworkSettings.Ports = portBindings(publishedNow(*c))
				if j.HostConfig.IpcMode == "" {
					j.HostConfig.IpcMode = "private"
				}
				for i, at := range c.Attachments {
					s := endpointSettings(at, nets)
					if at.Network != network.DefaultNetwork {
						// Docker's aliases on a user network begin with the short id.
						s.Aliases = append([]string{network.ShortID(c.ID)}, at.Aliases...)
					}
					j.NetworkSettings.Networks[at.Network] = s
					if i == 0 {
						top := s
						top.NetworkID, top.Aliases = "", nil
						j.NetworkSettings.endpointSettingsJSON = top
					}
				}
				out = append(out, j)
			}
			if err := writeInspect(a.out, format, out); err != nil {
				return err
			}
			if len(errs) > 0 {
				return fmt.Errorf("%s", strings.Join(errs, "; "))
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "format output with a Go template")
	return cmd
}

// portBindings is Docker's "80/tcp": [{HostIp, HostPort}] map.
func portBindings(ms []portspec.Mapping) map[string][]portBindingJSON {
	out := map[string][]portBindingJSON{}
	for _, m := range ms {
		k := fmt.Sprintf("%d/%s", m.ContainerPort, m.Proto)
		ip := ""
		if m.HostIP.IsValid() {
			ip = m.HostIP.String()
		}
		out[k] = append(out[k], portBindingJSON{HostIp: ip, HostPort: fmt.Sprint(m.HostPort)})
	}
	return out
}

// askedBindings are -p flags as Docker's HostConfig.PortBindings keeps
// them: no address is "", a port to be chosen is "", a range is
// "8000-8010".
func askedBindings(ms []portspec.Mapping) map[string][]portBindingJSON {
	out := map[string][]portBindingJSON{}
	for _, m := range ms {
		k := fmt.Sprintf("%d/%s", m.ContainerPort, m.Proto)
		b := portBindingJSON{}
		if m.HostIP.IsValid() {
			b.HostIp = m.HostIP.String()
		}
		switch {
		case m.HostPortEnd != 0:
			b.HostPort = fmt.Sprintf("%d-%d", m.HostPort, m.HostPortEnd)
		case m.HostPort != 0:
			b.HostPort = fmt.Sprint(m.HostPort)
		}
		out[k] = append(out[k], b)
	}
	return out
}
