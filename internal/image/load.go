package image

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Load reads a `docker save` archive or an OCI image-layout tarball (told
// apart by their index files) and stores every image in it. It returns the
// names loaded ("busybox:latest"), or the ids of untagged images.
func (s *Store) Load(r io.Reader, progress io.Writer) ([]string, error) {
	if progress == nil {
		progress = io.Discard
	}
	unlock, err := s.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	work, err := os.MkdirTemp(filepath.Join(s.dir, "tmp"), "load-")
	if err != nil {
		return nil, fmt.Errorf("load image: %w", err)
	}
	defer os.RemoveAll(work)

	archive := filepath.Join(work, "archive.tar")
	if err := spool(archive, r); err != nil {
		return nil, fmt.Errorf("load image: %w", err)
	}
	entries, err := tarNames(archive)
	if err != nil {
		return nil, fmt.Errorf("load image: %w", err)
	}
	// A failed load leaves the store as it was: records it wrote are put
	// back, layers and records it added are removed.
	before, err := s.inventory()
	if err != nil {
		return nil, err
	}
	var names []string
	switch {
	case entries["manifest.json"]:
		names, err = s.loadDocker(archive, progress)
	case entries["index.json"] && entries["oci-layout"]:
		names, err = s.loadOCI(archive, filepath.Join(work, "layout"), progress)
	default:
		err = errors.New("load image: archive has neither manifest.json (docker save) nor index.json + oci-layout (OCI image layout)")
	}
	if err != nil {
		s.restore(before)
		return nil, err
	}
	return names, nil
}

// inventory is what a load may change: image records (with their content)
// and layer directories.
type inventory struct {
	records map[string][]byte
	layers  map[string]bool
}

func (s *Store) inventory() (inventory, error) {
	inv := inventory{records: map[string][]byte{}, layers: map[string]bool{}}
	for _, sub := range []string{"images", "layers"} {
		ents, err := os.ReadDir(filepath.Join(s.dir, sub))
		if err != nil {
			return inv, fmt.Errorf("image store %s: %w", s.dir, err)
		}
		for _, e := range ents {
			p := filepath.Join(s.dir, sub, e.Name())
			if sub == "layers" {
				inv.layers[p] = true
				continue
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return inv, fmt.Errorf("image store %s: %w", s.dir, err)
			}
			inv.records[p] = b
		}
	}
	return inv, nil
}

func (s *Store) restore(inv inventory) {
	now, err := s.inventory()
	if err != nil {
		return
	}
	for p := range now.layers {
		if !inv.layers[p] {
			os.RemoveAll(p)
		}
	}
	for p, b := range now.records {
		old, ok := inv.records[p]
		switch {
		case !ok:
			os.Remove(p)
		case string(old) != string(b):
			os.WriteFile(p, old, 0o600)
		}
	}
}

func (s *Store) loadDocker(archive string, progress io.Writer) ([]string, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(archive) }
	manifest, err := tarball.LoadManifest(opener)
	if err != nil {
		return nil, fmt.Errorf("load docker archive: %w", err)
	}
	var loaded []string
	for _, d := range manifest {
		var tag *name.Tag
		if len(d.RepoTags) > 0 {
			t, err := name.NewTag(d.RepoTags[0])
			if err != nil {
				return nil, fmt.Errorf("load docker archive: tag %q: %w", d.RepoTags[0], err)
			}
			tag = &t
		} else if len(manifest) > 1 {
			return nil, fmt.Errorf("load docker archive: untagged image %s among %d images is not supported", d.Config, len(manifest))
		}
		img, err := tarball.Image(opener, tag)
		if err != nil {
			return nil, fmt.Errorf("load docker archive: %w", err)
		}
		names, err := s.store(img, d.RepoTags, progress)
		if err != nil {
			return nil, err
		}
		loaded = append(loaded, names...)
	}
	return loaded, nil
}

func (s *Store) loadOCI(archive, dir string, progress io.Writer) ([]string, error) {
	if err := extractPlain(archive, dir); err != nil {
		return nil, fmt.Errorf("load OCI layout: %w", err)
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("load OCI layout: %w", err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("load OCI layout: %w", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("load OCI layout: %w", err)
	}
	var loaded []string
	for _, desc := range im.Manifests {
		img, err := pickImage(idx, desc)
		if err != nil {
			return nil, fmt.Errorf("load OCI layout: manifest %s: %w", desc.Digest, err)
		}
		var names []string
		if n := ociName(desc.Annotations); n != "" {
			names = []string{n}
		}
		got, err := s.store(img, names, progress)
		if err != nil {
			return nil, err
		}
		loaded = append(loaded, got...)
	}
	return loaded, nil
}

// pickImage resolves a descriptor to an image, choosing this machine's
// platform from a multi-platform index.
func pickImage(idx v1.ImageIndex, desc v1.Descriptor) (v1.Image, error) {
	if !desc.MediaType.IsIndex() {
		return idx.Image(desc.Digest)
	}
	child, err := idx.ImageIndex(desc.Digest)
	if err != nil {
		return nil, err
	}
	m, err := child.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range m.Manifests {
		if d.Platform == nil || (d.Platform.OS == "linux" && d.Platform.Architecture == goruntime.GOARCH) {
			return pickImage(child, d)
		}
	}
	return nil, fmt.Errorf("no image for linux/%s in index", goruntime.GOARCH)
}

// ociName reads the image name from an OCI index annotation. A ref.name that
// is only a tag ("latest") names no repository and is ignored, as Docker does.
func ociName(ann map[string]string) string {
	if n := ann["io.containerd.image.name"]; n != "" {
		return n
	}
	if n := ann["org.opencontainers.image.ref.name"]; strings.ContainsAny(n, ":/") {
		return n
	}
	return ""
}

// store unpacks the layers an image needs and records it under names.
func (s *Store) store(img v1.Image, names []string, progress io.Writer) ([]string, error) {
	id, err := img.ConfigName()
	if err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image %s config: %w", id, err)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("image %s layers: %w", id, err)
	}
	if len(layers) != len(cf.RootFS.DiffIDs) {
		return nil, fmt.Errorf("image %s: %d layers but %d diff ids in config", id, len(layers), len(cf.RootFS.DiffIDs))
	}
	rec := record{ID: id.String(), Created: cf.Created.Time, Config: convertConfig(cf.Config)}
	for _, n := range names {
		nn, err := NormalizeName(n)
		if err != nil {
			return nil, err
		}
		if !contains(rec.Names, nn) {
			rec.Names = append(rec.Names, nn)
		}
	}
	if old, err := s.readRecord(rec.ID); err == nil {
		for _, n := range old.Names {
			if !contains(rec.Names, n) {
				rec.Names = append(rec.Names, n)
			}
		}
	}
	for i, l := range layers {
		diffID := cf.RootFS.DiffIDs[i].String()
		fmt.Fprintf(progress, "Loading layer %s (%d/%d)\n", short(diffID), i+1, len(layers))
		size, err := s.ensureLayer(diffID, l.Uncompressed)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", id, err)
		}
		rec.DiffIDs = append(rec.DiffIDs, diffID)
		rec.Size += size
	}
	if err := s.writeRecord(rec); err != nil {
		return nil, err
	}
	if len(rec.Names) == 0 {
		fmt.Fprintf(progress, "Loaded image ID: %s\n", rec.ID)
		return []string{rec.ID}, nil
	}
	for _, n := range names {
		nn, _ := NormalizeName(n)
		fmt.Fprintf(progress, "Loaded image: %s\n", nn)
	}
	out := []string{}
	for _, n := range names {
		nn, _ := NormalizeName(n)
		out = append(out, nn)
	}
	return out, nil
}

func (s *Store) readRecord(id string) (record, error) {
	var r record
	b, err := os.ReadFile(s.recordPath(id))
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal(b, &r)
}

type layerInfo struct{ Size int64 }

// ensureLayer unpacks a layer once per diff id: into a temp dir, then renamed
// into place, so a crash never leaves a half layer under its real name.
func (s *Store) ensureLayer(diffID string, open func() (io.ReadCloser, error)) (int64, error) {
	dst := s.layerDir(diffID)
	if b, err := os.ReadFile(dst + ".json"); err == nil {
		var li layerInfo
		if json.Unmarshal(b, &li) == nil {
			if _, err := os.Stat(dst); err == nil {
				return li.Size, nil
			}
		}
	}
	tmp, err := os.MkdirTemp(filepath.Join(s.dir, "tmp"), "layer-")
	if err != nil {
		return 0, fmt.Errorf("layer %s: %w", diffID, err)
	}
	defer os.RemoveAll(tmp)
	rc, err := open()
	if err != nil {
		return 0, fmt.Errorf("layer %s: %w", diffID, err)
	}
	defer rc.Close()
	root := filepath.Join(tmp, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		return 0, fmt.Errorf("layer %s: %w", diffID, err)
	}
	h := sha256.New()
	size, err := unpackLayer(root, io.TeeReader(rc, h))
	if err != nil {
		return 0, fmt.Errorf("layer %s: %w", diffID, err)
	}
	// drain padding so the digest covers the whole stream
	if _, err := io.Copy(h, rc); err != nil {
		return 0, fmt.Errorf("layer %s: %w", diffID, err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != diffID {
		return 0, fmt.Errorf("layer %s: content has digest %s", diffID, got)
	}
	if err := writeFileAtomic(dst+".json", layerInfo{Size: size}); err != nil {
		return 0, err
	}
	os.RemoveAll(dst) // an orphan from an interrupted run, not recorded anywhere
	if err := os.Rename(root, dst); err != nil {
		return 0, fmt.Errorf("layer %s: %w", diffID, err)
	}
	return size, nil
}

// Import makes a one-layer image from a root filesystem tarball (plain or
// gzip-compressed), like `docker import`. name may be empty for an untagged
// image.
func (s *Store) Import(rootfsTar io.Reader, name string) (Image, error) {
	var names []string
	if name != "" {
		n, err := NormalizeName(name)
		if err != nil {
			return Image{}, err
		}
		names = []string{n}
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

	br := bufio.NewReader(rootfsTar)
	var src io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return Image{}, fmt.Errorf("import image: %w", err)
		}
		src = zr
	}
	archive := filepath.Join(work, "rootfs.tar")
	h := sha256.New()
	if err := spool(archive, io.TeeReader(src, h)); err != nil {
		return Image{}, fmt.Errorf("import image: %w", err)
	}
	diffID := "sha256:" + hex.EncodeToString(h.Sum(nil))
	size, err := s.ensureLayer(diffID, func() (io.ReadCloser, error) { return os.Open(archive) })
	if err != nil {
		return Image{}, fmt.Errorf("import image: %w", err)
	}
	created := time.Now().UTC()
	cfgJSON, err := json.Marshal(v1.ConfigFile{
		Architecture: goruntime.GOARCH, OS: "linux", Created: v1.Time{Time: created},
		RootFS: v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{mustHash(diffID)}},
		Config: v1.Config{Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}},
	})
	if err != nil {
		return Image{}, fmt.Errorf("import image: %w", err)
	}
	sum := sha256.Sum256(cfgJSON)
	rec := record{ID: "sha256:" + hex.EncodeToString(sum[:]), Names: names, Created: created, Size: size,
		DiffIDs: []string{diffID}, Config: Config{Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}}}
	if err := s.writeRecord(rec); err != nil {
		return Image{}, err
	}
	return s.image(rec), nil
}

func mustHash(s string) v1.Hash {
	h, err := v1.NewHash(s)
	if err != nil {
		panic(err)
	}
	return h
}

func convertConfig(c v1.Config) Config {
	out := Config{Env: c.Env, Entrypoint: c.Entrypoint, Cmd: c.Cmd, WorkingDir: c.WorkingDir, User: c.User, Hostname: c.Hostname}
	for p := range c.ExposedPorts {
		out.ExposedPorts = append(out.ExposedPorts, p)
	}
	sort.Strings(out.ExposedPorts)
	return out
}

func short(digest string) string {
	h := strings.TrimPrefix(digest, "sha256:")
	if len(h) > 12 {
		h = h[:12]
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

func tarNames(path string) (map[string]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read archive: %w", err)
		}
		names[strings.TrimPrefix(hdr.Name, "./")] = true
	}
}

// extractPlain unpacks an OCI layout archive, which has no symlinks (the
// layout reader would follow them).
func extractPlain(archive, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	symlinks, err := extractArchive(f, dir)
	if err == nil && symlinks {
		err = errors.New("the archive has symlinks, which an OCI layout never needs; refused")
	}
	return err
}
