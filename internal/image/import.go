package image

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// ImportOptions are those of `docker import`.
type ImportOptions struct {
	Ref string // name[:tag] of the new image; empty for an untagged one
	// Changes are Dockerfile instructions applied to the image's config
	// (-c/--change): CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL,
	// ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR.
	Changes []string
	Message string // -m/--message: the config's comment and history entry
}

// Import makes a one-layer image from a root filesystem tarball (plain,
// gzip, bzip2 or zstd), like `docker import` with no changes. name may be
// empty for an untagged image.
func (s *Store) Import(rootfsTar io.Reader, name string) (Image, error) {
	return s.ImportWith(rootfsTar, ImportOptions{Ref: name})
}

// imageConfigFile is an image config as Docker writes it for an import.
type imageConfigFile struct {
	Architecture string          `json:"architecture"`
	Comment      string          `json:"comment,omitempty"`
	Config       containerConfig `json:"config"`
	Created      time.Time       `json:"created"`
	History      []v1.History    `json:"history"`
	OS           string          `json:"os"`
	RootFS       v1.RootFS       `json:"rootfs"`
}

// ImportWith is Import with Docker's options. Bad options are refused
// before the tarball is read; a failure changes nothing.
func (s *Store) ImportWith(rootfsTar io.Reader, opt ImportOptions) (Image, error) {
	var names []string
	if opt.Ref != "" {
		if strings.Contains(opt.Ref, "@") {
			return Image{}, fmt.Errorf("import image: %q: cannot import digest reference", opt.Ref)
		}
		n, err := storedName(opt.Ref)
		if err != nil {
			return Image{}, fmt.Errorf("import image: %w", err)
		}
		names = []string{n}
	}
	var cfg containerConfig
	if err := applyChanges(&cfg, opt.Changes); err != nil {
		return Image{}, fmt.Errorf("import image: %w", err)
	}
	unlock, err := s.lock()
	if err != nil {
		return Image{}, err
	}
	defer unlock()
	work, err := os.MkdirTemp(filepath.Join(s.dir, "tmp"), "import-")
	if err != nil {
		return Image{}, fmt.Errorf("import image: %w", err)
	}
	defer os.RemoveAll(work)

	src, err := decompress(rootfsTar)
	if err != nil {
		return Image{}, fmt.Errorf("import image: %w", err)
	}
	defer src.Close()
	archive := filepath.Join(work, "rootfs.tar")
	h := sha256.New()
	n := &counter{}
	if err := spool(archive, io.TeeReader(src, io.MultiWriter(h, n))); err != nil {
		return Image{}, fmt.Errorf("import image: %w", err)
	}
	if n.n == 0 {
		return Image{}, errors.New("import image: the tarball is empty; give a root filesystem tar (an empty tar archive is 1024 zero bytes)")
	}
	diffID := "sha256:" + hex.EncodeToString(h.Sum(nil))
	created := time.Now().UTC()
	raw, err := json.Marshal(imageConfigFile{
		Architecture: goruntime.GOARCH, OS: "linux", Created: created, Comment: opt.Message, Config: cfg,
		RootFS:  v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{mustHash(diffID)}},
		History: []v1.History{{Created: v1.Time{Time: created}, Comment: opt.Message}},
	})
	if err != nil {
		return Image{}, fmt.Errorf("import image: %w", err)
	}
	img, err := newLoadedImage(raw, "import image")
	if err != nil {
		return Image{}, err
	}
	img.names = names
	img.layers = []func() (io.ReadCloser, error){func() (io.ReadCloser, error) { return os.Open(archive) }}
	err = s.transaction(func() error { return s.store(img, names, io.Discard) })
	if err != nil {
		return Image{}, fmt.Errorf("import image: %w", err)
	}
	r, err := s.readRecord(img.id())
	if err != nil {
		return Image{}, fmt.Errorf("import image: %w", err)
	}
	return s.image(r), nil
}

func mustHash(s string) v1.Hash {
	h, err := v1.NewHash(s)
	if err != nil {
		panic(err)
	}
	return h
}

func spool(path string, r io.Reader) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
