package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
)

func (a *app) cniCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cni",
		Short: "ctnet as a CNI plugin (containerd, CRI-O, Podman, cnitool)",
		Long: `This binary is also a CNI plugin (spec 1.1.0, and 0.3.0 to 1.0.0): a runtime
that runs it with CNI_COMMAND set attaches its namespace to a ctnet network.
A configuration with "type": "ctnet" names the network ("network", default
the CNI network's "name"); ADD creates it when absent from "subnet", "gateway",
"bridge", "mtu", "ipMasq", "internal" and "ipv6". "root" and "runRoot" (or
$CTNET_ROOT and $CTNET_RUN_ROOT) are ctnet's state, shared with this command
line: ctnet network inspect shows the pods attached through CNI.`,
	}
	cmd.AddCommand(a.cniInstallCmd())
	return cmd
}

func (a *app) cniInstallCmd() *cobra.Command {
	var dir string
	var link bool
	cmd := &cobra.Command{
		Use:   "install [--dir /opt/cni/bin] [--link]",
		Short: "Install this binary as the CNI plugin ctnet in a runtime's plugin directory",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find this binary: %w", err)
			}
			if self, err = filepath.EvalSymlinks(self); err != nil {
				return fmt.Errorf("find this binary: %w", err)
			}
			dst := filepath.Join(dir, "ctnet")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("--dir %s: %w", dir, err)
			}
			if link {
				tmp := dst + ".new"
				os.Remove(tmp)
				if err := os.Symlink(self, tmp); err != nil {
					return fmt.Errorf("link %s: %w", dst, err)
				}
				if err := os.Rename(tmp, dst); err != nil {
					os.Remove(tmp)
					return fmt.Errorf("link %s: %w", dst, err)
				}
			} else if err := copyFile(self, dst); err != nil {
				return err
			}
			fmt.Fprintln(a.out, dst)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "/opt/cni/bin", "the runtime's CNI plugin directory (containerd's bin_dir, Podman's cni_plugin_dirs)")
	cmd.Flags().BoolVar(&link, "link", false, "make a symbolic link to this binary instead of a copy")
	return cmd
}

// copyFile installs src at dst in one step: a runtime never runs a half
// written plugin, and a running one is not overwritten in place.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".new"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		return fmt.Errorf("install %s: %w", dst, err)
	}
	_, err = io.Copy(out, in)
	err = errors.Join(err, out.Close())
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("install %s: %w", dst, err)
	}
	return nil
}
