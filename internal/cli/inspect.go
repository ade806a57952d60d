package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ctnet/ctnet/internal/network"
	"github.com/ctnet/ctnet/internal/portspec"
)

// Docker's `inspect` shape for a container, the parts ctnet has.
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
		Name            string
		HostConfig      hostConfigJSON
		Config          configJSON
		NetworkSettings networkSettingsJSON
	}
	stateJSON struct {
		Status     string
		Running    bool
		Pid        int
		ExitCode   int
		StartedAt  time.Time
		FinishedAt time.Time
	}
	hostConfigJSON struct {
		NetworkMode  string
		PortBindings map[string][]portBindingJSON
		IpcMode      string
		AutoRemove   bool
		Binds        []string
		Dns          []string
		ExtraHosts   []string
		Runtime      string
	}
	configJSON struct {
		Hostname string
		Env      []string
		Cmd      []string
		Image    string
		Tty      bool
	}
	portBindingJSON struct {
		HostIp   string
		HostPort string
	}
	networkSettingsJSON struct {
		SandboxKey string
		Ports      map[string][]portBindingJSON
		endpointSettingsJSON
		Networks map[string]endpointSettingsJSON
	}
	endpointSettingsJSON struct {
		NetworkID           string `json:",omitempty"`
		EndpointID          string
		Gateway             string
		IPAddress           string
		IPPrefixLen         int
		IPv6Gateway         string
		GlobalIPv6Address   string
		GlobalIPv6PrefixLen int
		MacAddress          string
		Aliases             []string `json:",omitempty"`
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
					Id: c.ID, Created: c.Created, Image: c.ImageID, Name: "/" + c.Name,
					State: stateJSON{Status: c.Status.Status, Running: c.Status.Running, Pid: c.Status.Pid,
						ExitCode: c.Status.ExitCode, StartedAt: c.Status.StartedAt, FinishedAt: c.Status.FinishedAt},
					HostConfig: hostConfigJSON{NetworkMode: c.NetworkMode, IpcMode: c.IPC, AutoRemove: c.AutoRemove,
						Binds: c.Volumes, Dns: c.DNS, ExtraHosts: c.AddHosts, Runtime: c.Runtime},
					Config:          configJSON{Hostname: c.Hostname, Env: c.Env, Cmd: c.Args, Image: c.Image, Tty: c.Tty},
					NetworkSettings: networkSettingsJSON{SandboxKey: c.NetNS, Networks: map[string]endpointSettingsJSON{}},
				}
				if len(c.Args) > 0 {
					j.Path, j.Args = c.Args[0], c.Args[1:]
				}
				j.HostConfig.PortBindings = portBindings(c.Ports)
				j.NetworkSettings.Ports = portBindings(publishedNow(*c))
				if j.HostConfig.IpcMode == "" {
					j.HostConfig.IpcMode = "private"
				}
				for i, at := range c.Attachments {
					s := endpointSettings(at, nets)
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
