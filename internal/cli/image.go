package cli

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ctnet/ctnet/internal/image"
)

func (a *app) imageCmds() []*cobra.Command {
	image := &cobra.Command{Use: "image", Short: "Manage images", Args: cobra.NoArgs}
	image.AddCommand(a.imageLoadCmd(), a.imageImportCmd(), a.imagesCmd("ls"), a.rmiCmd("rm"))
	return []*cobra.Command{image, a.imagesCmd("images"), a.rmiCmd("rmi"), a.loadAlias()}
}

func (a *app) images() (*image.Store, error) {
	m, err := a.containers()
	if err != nil {
		return nil, err
	}
	return m.Images()
}

func (a *app) imageLoadCmd() *cobra.Command {
	var input string
	cmd := &cobra.Command{
		Use:   "load [-i FILE]",
		Short: "Load images from a `docker save` archive or an OCI image-layout tarball",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var r io.Reader = os.Stdin
			if input != "" {
				f, err := os.Open(input)
				if err != nil {
					return fmt.Errorf("image load: %w", err)
				}
				defer f.Close()
				r = f
			}
			imgs, err := a.images()
			if err != nil {
				return err
			}
			names, err := imgs.Load(r, a.errOut)
			if err != nil {
				if input != "" {
					return fmt.Errorf("%s: %w", input, err)
				}
				return err
			}
			for _, n := range names {
				fmt.Fprintf(a.out, "Loaded image: %s\n", n)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&input, "input", "i", "", "read from a tar archive file instead of stdin")
	return cmd
}

func (a *app) loadAlias() *cobra.Command {
	c := a.imageLoadCmd()
	c.Hidden = true
	return c
}

func (a *app) imageImportCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "import FILE|- NAME[:TAG]",
		Short: "Make an image from a plain root filesystem tarball (as `docker import`)",
		Args:  exactArgs(2, "FILE NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var r io.Reader = os.Stdin
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return fmt.Errorf("image import: %w", err)
				}
				defer f.Close()
				r = f
			}
			imgs, err := a.images()
			if err != nil {
				return err
			}
			img, err := imgs.Import(r, args[1])
			if err != nil {
				return fmt.Errorf("image import %s: %w", args[0], err)
			}
			fmt.Fprintln(a.out, img.ID)
			return nil
		},
	}
}

type imageRow struct{ Repository, Tag, ID, CreatedSince, Size string }

func (a *app) imagesCmd(use string) *cobra.Command {
	var (
		quiet  bool
		format string
	)
	cmd := &cobra.Command{
		Use:   use,
		Short: "List images",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			imgs, err := a.images()
			if err != nil {
				return err
			}
			list, err := imgs.List()
			if err != nil {
				return err
			}
			var rows []imageRow
			for _, img := range list {
				names := img.Names
				if len(names) == 0 {
					names = []string{"<none>:<none>"}
				}
				for _, n := range names {
					repo, tag := n, "latest"
					if i := strings.LastIndex(n, ":"); i > strings.LastIndex(n, "/") {
						repo, tag = n[:i], n[i+1:]
					}
					created := "N/A"
					if !img.Created.IsZero() {
						created = ago(img.Created) + " ago"
					}
					rows = append(rows, imageRow{Repository: repo, Tag: tag, ID: img.ShortID(), CreatedSince: created, Size: humanSize(img.Size)})
				}
			}
			if quiet {
				format = "{{.ID}}"
			}
			if format == "" {
				format = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
			}
			return writeList(a.out, format, map[string]string{
				"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID", "CreatedSince": "CREATED", "Size": "SIZE",
			}, rows)
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only show image IDs")
	cmd.Flags().StringVar(&format, "format", "", "format output with a Go template, 'table TEMPLATE' or 'json'")
	return cmd
}

func humanSize(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.3gGB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.3gMB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.3gkB", float64(n)/1e3)
	}
	return fmt.Sprintf("%dB", n)
}

func (a *app) rmiCmd(use string) *cobra.Command {
	return &cobra.Command{
		Use:   use + " IMAGE [IMAGE...]",
		Short: "Remove one or more images",
		Args:  minArgs(1, "IMAGE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			imgs, err := a.images()
			if err != nil {
				return err
			}
			cs, err := a.ctrs.Containers() // opened by a.images
			if err != nil {
				return err
			}
			var errs []string
			for _, ref := range args {
				img, err := imgs.Get(ref)
				if err == nil {
					for _, c := range cs {
						if c.ImageID == img.ID {
							err = fmt.Errorf("image %q is used by container %q; remove the container first (ctnet rm %s)", ref, c.Name, c.Name)
							break
						}
					}
				}
				if err == nil {
					err = imgs.Remove(ref)
				}
				if err != nil {
					errs = append(errs, err.Error())
					continue
				}
				fmt.Fprintf(a.out, "Untagged: %s\n", ref)
			}
			if len(errs) > 0 {
				return fmt.Errorf("%s", strings.Join(errs, "; "))
			}
			return nil
		},
	}
}
