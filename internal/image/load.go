package image

import (
	"bytes"
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

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// Loaded is one line `docker load` prints: a name the archive gave an image,
// or the id of an image it gave none.
type Loaded struct {
	Name string // "busybox:latest"; empty for an untagged image
	ID   string // "sha256:…"
}

// Line is the line as Docker prints it: "Loaded image: busybox:latest" or
// "Loaded image ID: sha256:…".
func (l Loaded) Line() string {
	if l.Name != "" {
		return "Loaded image: " + l.Name
	}
	return "Loaded image ID: " + l.ID
}

// String is the name, or the id of an untagged image.
func (l Loaded) String() string {
	if l.Name != "" {
		return l.Name
	}
	return l.ID
}

// Load reads a `docker save` archive or an OCI image-layout tarball (told
// apart by their index files; either may be gzip, bzip2 or zstd compressed)
// and stores every image in it. It returns one Loaded per name, once even
// when the archive repeats it (the last image named so keeps it, as in
// Docker), and one per untagged image. progress gets a line per layer.
// A failed load leaves the store as it was.
func (s *Store) Load(r io.Reader, progress io.Writer) ([]Loaded, error) {
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
	in, err := decompress(r)
	if err != nil {
		return nil, fmt.Errorf("load image: %w", err)
	}
	defer in.Close()
	dir := filepath.Join(work, "archive")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("load image: %w", err)
	}
	symlinks, err := extractArchive(in, dir)
	if err != nil {
		return nil, fmt.Errorf("load image: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("load image: %w", err)
	}
	defer root.Close()
	has := func(name string) bool { _, err := root.Lstat(name); return err == nil }
	var out []Loaded
	err = s.transaction(func() error {
		var imgs []loadedImage
		var err error
		switch {
		case has("manifest.json"):
			imgs, err = readDockerArchive(root)
		case has("index.json") && has("oci-layout"):
			if symlinks {
				return errors.New("load OCI layout: the archive has symlinks, which an OCI layout never needs; refused")
			}
			imgs, err = readOCILayout(dir)
		default:
			return errors.New("load image: archive has neither manifest.json (docker save) nor index.json + oci-layout (OCI image layout)")
		}
		if err != nil {
			return err
		}
		out, err = s.storeAll(imgs, progress)
		return err
	})
	return out, err
}

// storedName normalises a name an image is to be stored under; the host
// image's is taken.
func storedName(ref string) (string, error) {
	n, err := NormalizeName(ref)
	if err == nil && n == HostName+":latest" {
		err = fmt.Errorf("%q is the built-in host image's name; pick another", ref)
	}
	return n, err
}

// loadedImage is an image read from an archive, not yet stored.
type loadedImage struct {
	raw    []byte // the config, whose digest is the id
	config *v1.ConfigFile
	layers []func() (io.ReadCloser, error) // uncompressed layer tars, bottom first
	names  []string                        // normalised
}

func newLoadedImage(raw []byte, where string) (loadedImage, error) {
	cf, err := v1.ParseConfigFile(bytes.NewReader(raw))
	if err != nil {
		return loadedImage{}, fmt.Errorf("%s: image config: %w", where, err)
	}
	if cf.OS != "" && cf.OS != "linux" {
		return loadedImage{}, fmt.Errorf("%s: cannot load %s image on linux", where, cf.OS)
	}
	return loadedImage{raw: raw, config: cf}, nil
}

func (li loadedImage) id() string {
	sum := sha256.Sum256(li.raw)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// manifestItem is one image of a `docker save` archive's manifest.json.
type manifestItem struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// readDockerArchive reads a `docker save` archive, old (<id>/layer.tar,
// symlinks between layers) or new (blobs/sha256/…), as Docker's loader
// does; paths resolve inside the archive or are refused.
func readDockerArchive(root *os.Root) ([]loadedImage, error) {
	b, err := root.ReadFile("manifest.json")
	if err != nil {
		return nil, fmt.Errorf("load docker archive: %w", err)
	}
	var manifest []manifestItem
	if err := json.Unmarshal(b, &manifest); err != nil {
		return nil, fmt.Errorf("load docker archive: manifest.json: %w", err)
	}
	if manifest == nil {
		return nil, errors.New("load docker archive: invalid manifest, manifest cannot be null (but can be [])")
	}
	var out []loadedImage
	for _, m := range manifest {
		raw, err := root.ReadFile(m.Config)
		if err != nil {
			return nil, fmt.Errorf("load docker archive: config %q: %w", m.Config, err)
		}
		img, err := newLoadedImage(raw, fmt.Sprintf("load docker archive: config %q", m.Config))
		if err != nil {
			return nil, err
		}
		if want, got := len(m.Layers), len(img.config.RootFS.DiffIDs); want != got {
			return nil, fmt.Errorf("load docker archive: image %s: invalid manifest, layers length mismatch: expected %d, got %d", img.id(), want, got)
		}
		for _, l := range m.Layers {
			if fi, err := root.Stat(l); err != nil || !fi.Mode().IsRegular() {
				return nil, fmt.Errorf("load docker archive: image %s: layer %q is not a file in the archive", img.id(), l)
			}
			img.layers = append(img.layers, func() (io.ReadCloser, error) {
				f, err := root.Open(l)
				if err != nil {
					return nil, err
				}
				zr, err := decompress(f)
				if err != nil {
					f.Close()
					return nil, err
				}
				return readCloser{zr, f}, nil
			})
		}
		for _, t := range m.RepoTags {
			n, err := storedName(t)
			if err != nil {
				return nil, fmt.Errorf("load docker archive: image %s: %w", img.id(), err)
			}
			img.names = append(img.names, n)
		}
		out = append(out, img)
	}
	return out, nil
}

type readCloser struct {
	io.ReadCloser
	under io.Closer
}

func (r readCloser) Close() error {
	err := r.ReadCloser.Close()
	if cerr := r.under.Close(); err == nil {
		err = cerr
	}
	return err
}

func readOCILayout(dir string) ([]loadedImage, error) {
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
	var out []loadedImage
	for _, desc := range im.Manifests {
		where := fmt.Sprintf("load OCI layout: manifest %s", desc.Digest)
		img, err := pickImage(idx, desc)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		raw, err := img.RawConfigFile()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		li, err := newLoadedImage(raw, where)
		if err != nil {
			return nil, err
		}
		layers, err := img.Layers()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if want, got := len(layers), len(li.config.RootFS.DiffIDs); want != got {
			return nil, fmt.Errorf("%s: %d layers but %d diff ids in config", where, want, got)
		}
		for _, l := range layers {
			li.layers = append(li.layers, l.Uncompressed)
		}
		if n := ociName(desc.Annotations); n != "" {
			nn, err := storedName(n)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
			li.names = []string{nn}
		}
		out = append(out, li)
	}
	return out, nil
}

// pickImage resolves a descriptor to an image, choosing this machine's
// platform from a nested index.
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

// storeAll stores the images of one archive in order and says what Docker
// would print: each name once, and the id of each image left without one.
func (s *Store) storeAll(imgs []loadedImage, progress io.Writer) ([]Loaded, error) {
	owner := map[string]string{} // name -> id of the last image the archive gives it
	for _, img := range imgs {
		for _, n := range img.names {
			owner[n] = img.id()
		}
	}
	var out []Loaded
	seen := map[string]bool{}
	for _, img := range imgs {
		id := img.id()
		var names []string
		for _, n := range img.names {
			if owner[n] == id && !contains(names, n) {
				names = append(names, n)
			}
		}
		if err := s.store(img, names, progress); err != nil {
			return nil, err
		}
		if len(img.names) == 0 && !seen[id] {
			seen[id] = true
			out = append(out, Loaded{ID: id})
		}
		for _, n := range names {
			if !seen[n] {
				seen[n] = true
				out = append(out, Loaded{Name: n, ID: id})
			}
		}
	}
	return out, nil
}

// store unpacks the layers an image needs and records it under names, on
// top of the names it already had.
func (s *Store) store(img loadedImage, names []string, progress io.Writer) error {
	id := img.id()
	cf := img.config
	rec := record{ID: id, Created: cf.Created.Time, Config: convertConfig(cf.Config)}
	if old, err := s.readRecord(id); err == nil {
		rec.Names = old.Names
	}
	for _, n := range names {
		if !contains(rec.Names, n) {
			rec.Names = append(rec.Names, n)
		}
	}
	for i, open := range img.layers {
		diffID := cf.RootFS.DiffIDs[i].String()
		fmt.Fprintf(progress, "Loading layer %s (%d/%d)\n", short(diffID), i+1, len(img.layers))
		size, err := s.ensureLayer(diffID, open)
		if err != nil {
			return fmt.Errorf("image %s: %w", id, err)
		}
		rec.DiffIDs = append(rec.DiffIDs, diffID)
		rec.Size += size
	}
	if err := writeFileAtomic(s.configPath(id), img.raw); err != nil {
		return err
	}
	return s.writeRecord(rec)
}

func (s *Store) readRecord(id string) (record, error) {
	var r record
	b, err := os.ReadFile(s.recordPath(id))
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal(b, &r)
}

// transaction runs fn and, if it fails, puts the store back as it was:
// records it rewrote get their old content, records, configs and layers it
// added go.
func (s *Store) transaction(fn func() error) error {
	before, err := s.inventory()
	if err != nil {
		return err
	}
	if err := fn(); err != nil {
		s.restore(before)
		return err
	}
	return nil
}

// inventory is what a change may touch: image records (with their content),
// configs and layer entries (by name).
type inventory struct {
	records map[string][]byte
	names   map[string]bool
}

func (s *Store) inventory() (inventory, error) {
	inv := inventory{records: map[string][]byte{}, names: map[string]bool{}}
	for _, sub := range []string{"images", "configs", "layers"} {
		ents, err := os.ReadDir(filepath.Join(s.dir, sub))
		if err != nil {
			return inv, fmt.Errorf("image store %s: %w", s.dir, err)
		}
		for _, e := range ents {
			p := filepath.Join(s.dir, sub, e.Name())
			if sub != "images" {
				inv.names[p] = true
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
	for p := range now.names {
		if !inv.names[p] {
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
	for p, b := range inv.records {
		if _, ok := now.records[p]; !ok {
			os.WriteFile(p, b, 0o600)
		}
	}
}

func convertConfig(c v1.Config) Config {
	out := Config{Env: c.Env, Entrypoint: c.Entrypoint, Cmd: c.Cmd, WorkingDir: c.WorkingDir, User: c.User,
		Hostname: c.Hostname, Labels: c.Labels, StopSignal: c.StopSignal}
	for p := range c.ExposedPorts {
		out.ExposedPorts = append(out.ExposedPorts, p)
	}
	sort.Strings(out.ExposedPorts)
	for v := range c.Volumes {
		out.Volumes = append(out.Volumes, v)
	}
	sort.Strings(out.Volumes)
	return out
}

func short(digest string) string {
	h := strings.TrimPrefix(digest, "sha256:")
	if len(h) > 12 {
		h = h[:12]
	}
	return h
}
