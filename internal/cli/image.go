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
	image.AddCommand(a.imageLoadCmd(), a.imageImportCmd(), a.imageSaveCmd(), a.imageTagCmd(), a.imagesCmd("ls"), a.rmiCmd("rm"))
	alias := func(c *cobra.Command) *cobra.Command { c.Hidden = true; return c }
	return []*cobra.Command{image, a.imagesCmd("images"), a.rmiCmd("rmi"),
		alias(a.imageLoadCmd()), alias(a.imageImportCmd()), alias(a.imageSaveCmd()), alias(a.imageTagCmd())}
}

func (a *app) images() (*image.Store, error) {
	m, err := a.containers()
	if err != nil {
		return nil, err
	}
	return m.Images()
}

// input is a file named on the command line, or stdin for "-" or "".
func input(name string) (io.Reader, func(), error) {
	if name == "" || name == "-" {
		return os.Stdin, func() {}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { f.Close() }, nil
}

func (a *app) imageLoadCmd() *cobra.Command {
	var file string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "load [-i FILE]",
		Short: "Load images from a `docker save` archive or an OCI image-layout tarball",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			r, done, err := input(file)
			if err != nil {
				return fmt.Errorf("image load: %w", err)
			}
			defer done()
			imgs, err := a.images()
			if err != nil {
				return err
			}
			var progress io.Writer = a.errOut
			if quiet {
				progress = io.Discard
			}
			loaded, err := imgs.Load(r, progress)
			if err != nil {
				if file != "" {
					return fmt.Errorf("%s: %w", file, err)
				}
				return err
			}
			for _, l := range loaded {
				fmt.Fprintln(a.out, l.Line())
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "input", "i", "", "read from a tar archive file instead of stdin")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "suppress the load progress")
	return cmd
}

func (a *app) imageImportCmd() *cobra.Command {
	var opt image.ImportOptions
	cmd := &cobra.Command{
		Use:   "import [OPTIONS] FILE|- [NAME[:TAG]]",
		Short: "Make an image from a plain root filesystem tarball (as `docker import`)",
		Args:  rangeArgs(1, 2, "FILE [NAME]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, done, err := input(args[0])
			if err != nil {
				return fmt.Errorf("image import: %w", err)
			}
			defer done()
			if len(args) == 2 {
				opt.Ref = args[1]
			}
			imgs, err := a.images()
			if err != nil {
				return err
			}
			img, err := imgs.ImportWith(r, opt)
			if err != nil {
				return fmt.Errorf("image import %s: %w", args[0], err)
			}
			fmt.Fprintln(a.out, img.ID)
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&opt.Changes, "change", "c", nil, "apply a Dockerfile instruction to the image (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME, WORKDIR, …)")
	cmd.Flags().StringVarP(&opt.Message, "message", "m", "", "commit message for the imported image")
	return cmd
}

func (a *app) imageSaveCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "save [-o FILE] IMAGE [IMAGE...]",
		Short: "Save images to a tar archive that `docker load` and `ctnet image load` read",
		Args:  minArgs(1, "IMAGE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			imgs, err := a.images()
			if err != nil {
				return err
			}
			if output != "" {
				return imgs.SaveFile(output, args)
			}
			if fi, err := os.Stdout.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				return fmt.Errorf("cowardly refusing to save to a terminal. Use the -o flag or redirect")
			}
			return imgs.Save(a.out, args)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to a file instead of stdout")
	return cmd
}

func (a *app) imageTagCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
		Short: "Give an image another name",
		Args:  exactArgs(2, "SOURCE TARGET"),
		RunE: func(cmd *cobra.Command, args []string) error {
			imgs, err := a.images()
			if err != nil {
				return err
			}
			return imgs.Tag(args[0], args[1])
		},
	}
}

type imageRow struct{ Repository, Tag, ID, CreatedSince, CreatedAt, Size string }

func (a *app) imagesCmd(use string) *cobra.Command {
	var (
		quiet, all, noTrunc bool
		format              string
		filters             []string
	)
	cmd := &cobra.Command{
		Use:   use + " [OPTIONS] [REPOSITORY[:TAG]]",
		Short: "List images",
		Args:  rangeArgs(0, 1, "[REPOSITORY[:TAG]]"),
		RunE: func(cmd *cobra.Command, args []string) error {
			imgs, err := a.images()
			if err != nil {
				return err
			}
			list, err := imgs.List()
			if err != nil {
				return err
			}
			opt := image.ListOptions{All: all, Filters: filters, NoTrunc: noTrunc}
			if len(args) == 1 {
				opt.Match = args[0]
			}
			found, err := image.Rows(list, opt)
			if err != nil {
				return err
			}
			var rows []imageRow
			for _, r := range found {
				created, at := "N/A", "N/A"
				if !r.Created.IsZero() {
					created, at = ago(r.Created)+" ago", r.Created.Local().Format("2006-01-02 15:04:05 -0700 MST")
				}
				rows = append(rows, imageRow{Repository: r.Repository, Tag: r.Tag, ID: r.ID, CreatedSince: created, CreatedAt: at, Size: humanSize(r.Size)})
			}
			if quiet {
				format = "{{.ID}}"
			}
			if format == "" {
				format = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
			}
			return writeList(a.out, format, map[string]string{
				"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
			}, rows)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&quiet, "quiet", "q", false, "only show image IDs")
	f.BoolVarP(&all, "all", "a", false, "show all images (untagged ones too)")
	f.BoolVar(&noTrunc, "no-trunc", false, "do not truncate the output")
	f.StringArrayVarP(&filters, "filter", "f", nil, "filter output (reference=, dangling=, label=, before=, since=, until=)")
	f.StringVar(&format, "format", "", "format output with a Go template, 'table TEMPLATE' or 'json'")
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
	var force bool
	cmd := &cobra.Command{
		Use:   use + " [OPTIONS] IMAGE [IMAGE...]",
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
			usedBy := func(id string) (string, bool) {
				for _, c := range cs {
					if c.ImageID == id {
						return c.Name, c.Status.Running
					}
				}
				return "", false
			}
			var errs []string
			for _, ref := range args {
				lines, err := imgs.Delete(ref, image.RemoveOptions{Force: force, UsedBy: usedBy})
				for _, l := range lines {
					fmt.Fprintln(a.out, l)
				}
				if err != nil {
					errs = append(errs, err.Error())
				}
			}
			if len(errs) > 0 {
				return fmt.Errorf("%s", strings.Join(errs, "; "))
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "remove an image a stopped container uses, or all names of an image named by id")
	return cmd
}
