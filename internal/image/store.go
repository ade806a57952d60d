// Package image keeps container images as unpacked layer directories that
// overlayfs can stack, loaded from `docker save` or OCI image-layout archives
// or imported from plain root filesystem tarballs. It never talks to a
// registry.
package image

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"unicode"

	"golang.org/x/sys/unix"
)

// HostName is the embedded image whose root filesystem is the host's own /,
// mounted read-only. It is never stored and cannot be removed.
const HostName = "host"

// ErrNotFound is wrapped by Get and Remove when no image matches.
var ErrNotFound = errors.New("image not found")

// Image is a stored image ready to run.
type Image struct {
	ID      string // "sha256:<hex>" of the image config, as Docker shows it
	Names   []string
	Created time.Time
	Size    int64
	// Layers are overlayfs lowerdirs, top layer first. Empty for the host image.
	Layers []string
	// HostRoot means: use the host's / read-only as the root filesystem.
	HostRoot bool
	Config   Config
}

// Config is the part of an image's configuration a container starts with.
type Config struct {
	Env              []string
	Entrypoint, Cmd  []string
	WorkingDir, User string
	ExposedPorts     []string // "80/tcp"
	Hostname         string
	Labels           map[string]string
	Volumes          []string // container paths, sorted
	StopSignal       string
}

// ShortID is the 12 hex digits `ctnet images` prints.
func (img Image) ShortID() string {
	id := strings.TrimPrefix(img.ID, "sha256:")
	if len(id) > 12 {
		id = id[:12]
	}
	return id
}

// record is what is kept on disk per image, in images/<hex>.json.
type record struct {
	ID      string
	Names   []string
	Created time.Time
	Size    int64
	DiffIDs []string // bottom first, as in the image config
	Config  Config
}

// Store is an image store in one directory:
//
//	images/<id hex>.json   one record per image
//	configs/<id hex>       the image's config as loaded (its digest is the id), for save
//	layers/<diffid hex>/   an unpacked layer (an overlayfs lowerdir)
//	layers/<diffid hex>.json  its sizes
//	layers/<diffid hex>.tar-split.gz  the layer tar's headers and padding, to rebuild it byte for byte
//	tmp/                   work space; anything here is garbage after a crash
type Store struct {
	dir string
}

// Open opens (creating if needed) the image store in dir.
func Open(dir string) (*Store, error) {
	for _, d := range []string{dir, filepath.Join(dir, "images"), filepath.Join(dir, "configs"), filepath.Join(dir, "layers"), filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("image store %s: %w", dir, err)
		}
	}
	return &Store{dir: dir}, nil
}

// lock serialises changes to the store between processes.
func (s *Store) lock() (func(), error) {
	f, err := os.OpenFile(filepath.Join(s.dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("image store %s: lock: %w", s.dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("image store %s: lock: %w", s.dir, err)
	}
	return func() { f.Close() }, nil
}

// HostImage is the embedded image whose rootfs is the host's /.
func HostImage() Image {
	return Image{ID: HostName, Names: []string{HostName + ":latest"}, HostRoot: true,
		Config: Config{Cmd: []string{"/bin/sh"}}}
}

func (s *Store) layerDir(diffID string) string {
	return filepath.Join(s.dir, "layers", strings.TrimPrefix(diffID, "sha256:"))
}

func (s *Store) recordPath(id string) string {
	return filepath.Join(s.dir, "images", strings.TrimPrefix(id, "sha256:")+".json")
}

func (s *Store) configPath(id string) string {
	return filepath.Join(s.dir, "configs", strings.TrimPrefix(id, "sha256:"))
}

func (s *Store) image(r record) Image {
	img := Image{ID: r.ID, Names: r.Names, Created: r.Created, Size: r.Size, Config: r.Config}
	for i := len(r.DiffIDs) - 1; i >= 0; i-- {
		img.Layers = append(img.Layers, s.layerDir(r.DiffIDs[i]))
	}
	return img
}

func (s *Store) records() ([]record, error) {
	ents, err := os.ReadDir(filepath.Join(s.dir, "images"))
	if err != nil {
		return nil, fmt.Errorf("image store %s: %w", s.dir, err)
	}
	var out []record
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.dir, "images", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("image store %s: %w", s.dir, err)
		}
		var r record
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("image record %s: %w", e.Name(), err)
		}
		out = append(out, r)
	}
	return out, nil
}

// List returns the host image and every stored image, newest first.
func (s *Store) List() ([]Image, error) {
	recs, err := s.records()
	if err != nil {
		return nil, err
	}
	sort.SliceStable(recs, func(i, j int) bool {
		if !recs[i].Created.Equal(recs[j].Created) {
			return recs[i].Created.After(recs[j].Created)
		}
		return recs[i].ID < recs[j].ID
	})
	out := []Image{HostImage()}
	for _, r := range recs {
		out = append(out, s.image(r))
	}
	return out, nil
}

// Get finds an image by name[:tag] (a bare name means :latest) or by its id
// or a unique prefix of it.
func (s *Store) Get(ref string) (Image, error) {
	r, err := s.find(ref)
	if err != nil {
		return Image{}, err
	}
	if r == nil {
		return HostImage(), nil
	}
	return s.image(*r), nil
}

// find returns nil, nil for the host image.
func (s *Store) find(ref string) (*record, error) {
	recs, err := s.records()
	if err != nil {
		return nil, err
	}
	imgs := []Image{HostImage()}
	for _, r := range recs {
		imgs = append(imgs, Image{ID: r.ID, Names: r.Names})
	}
	i, err := lookup(imgs, ref)
	if err != nil || i == 0 {
		return nil, err
	}
	return &recs[i-1], nil
}

// lookup finds ref in imgs as Docker does: a name first (a bare name means
// :latest), then an id or a unique prefix of one (4 hex digits at least).
func lookup(imgs []Image, ref string) (int, error) {
	name, nameErr := NormalizeName(ref)
	if nameErr == nil {
		for i, img := range imgs {
			if contains(img.Names, name) {
				return i, nil
			}
		}
	}
	hex := strings.TrimPrefix(ref, "sha256:")
	if isHex(hex) && len(hex) >= 4 {
		var match []int
		for i, img := range imgs {
			if strings.HasPrefix(strings.TrimPrefix(img.ID, "sha256:"), hex) {
				match = append(match, i)
			}
		}
		if len(match) == 1 {
			return match[0], nil
		}
		if len(match) > 1 {
			return 0, fmt.Errorf("image id %q is ambiguous: %d images match; give more digits", ref, len(match))
		}
	}
	if nameErr != nil {
		return 0, nameErr
	}
	//lint:ignore ST1005 Docker's words, which scripts grep
	return 0, fmt.Errorf("No such image: %s; load it with `ctnet image load -i FILE` or import one: %w", name, ErrNotFound)
}

// isIDPrefix tells whether ref named the image by (a prefix of) its id, not
// by a name.
func isIDPrefix(id, ref string) bool {
	return strings.HasPrefix(id, ref) || strings.HasPrefix(strings.TrimPrefix(id, "sha256:"), ref)
}

// RemoveOptions are those of `ctnet rmi`.
type RemoveOptions struct {
	// Force removes an image named by id with several names (untagging them
	// all), and one a stopped container uses, as `docker rmi -f`.
	Force bool
	// UsedBy names a container using the image with this id ("" for none)
	// and tells whether it runs. A running one blocks removal even with
	// Force. Nil means no container uses any image.
	UsedBy func(imageID string) (container string, running bool)
}

// Remove is Delete with Force and no container check, the contract the CLI
// had before Delete: drop it once the CLI calls Delete.
func (s *Store) Remove(ref string) error {
	_, err := s.Delete(ref, RemoveOptions{Force: true})
	return err
}

// Delete removes a name or an image as `docker rmi` does, and returns the
// lines Docker prints ("Untagged: busybox:latest", "Deleted: sha256:…"):
// removing a name of an image that has other names only untags it; removing
// its last name, or the image by id, deletes it with the layers no other
// image uses. An error changes nothing.
func (s *Store) Delete(ref string, opt RemoveOptions) ([]string, error) {
	unlock, err := s.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	r, err := s.find(ref)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, fmt.Errorf("image %q is built in and cannot be removed", HostName)
	}
	usedBy := func() (string, bool) {
		if opt.UsedBy == nil {
			return "", false
		}
		return opt.UsedBy(r.ID)
	}
	short := (Image{ID: r.ID}).ShortID()
	var lines []string
	quiet := false
	if !isIDPrefix(r.ID, ref) {
		name, _ := NormalizeName(ref) // find matched it as a name
		if ctr, _ := usedBy(); !opt.Force && len(r.Names) == 1 && ctr != "" {
			return nil, fmt.Errorf("conflict: unable to remove repository reference %q (must force) - container %s is using its referenced image %s", ref, ctr, short)
		}
		r.Names = remove(r.Names, name)
		lines = append(lines, "Untagged: "+name)
		if len(r.Names) > 0 {
			return lines, s.writeRecord(*r)
		}
		quiet = true
	} else if len(r.Names) == 1 {
		if ctr, running := usedBy(); ctr != "" && (running || !opt.Force) {
			return nil, conflict(short, ctr, running, "")
		}
		lines = append(lines, "Untagged: "+r.Names[0])
		r.Names = nil
	}
	// the checks of Docker's imageDeleteHelper, in its order
	var blocked error
	switch ctr, running := usedBy(); {
	case ctr != "" && running:
		blocked = conflict(short, ctr, true, "")
	case len(r.Names) > 0 && !opt.Force:
		blocked = conflict(short, "", false, "image is referenced in multiple repositories")
	case ctr != "" && !opt.Force:
		blocked = conflict(short, ctr, false, "")
	}
	if blocked != nil {
		if quiet {
			// the last name went; the image stays, dangling, for its container
			return lines, s.writeRecord(*r)
		}
		return nil, blocked
	}
	for _, n := range r.Names {
		lines = append(lines, "Untagged: "+n)
	}
	deleted, err := s.delete(*r)
	if err != nil {
		return nil, err
	}
	return append(lines, deleted...), nil
}

func conflict(short, ctr string, running bool, refs string) error {
	switch {
	case ctr != "" && running:
		return fmt.Errorf("conflict: unable to delete %s (cannot be forced) - image is being used by running container %s", short, ctr)
	case ctr != "":
		return fmt.Errorf("conflict: unable to delete %s (must be forced) - image is being used by stopped container %s", short, ctr)
	}
	return fmt.Errorf("conflict: unable to delete %s (must be forced) - %s", short, refs)
}

// delete removes an image's record and config and the layers no other image
// uses, and returns Docker's "Deleted:" lines: the image id, then each layer
// removed (by diff id).
func (s *Store) delete(r record) ([]string, error) {
	if err := os.Remove(s.recordPath(r.ID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove image %s: %w", r.ID, err)
	}
	os.Remove(s.configPath(r.ID))
	lines := []string{"Deleted: " + r.ID}
	recs, err := s.records()
	if err != nil {
		return nil, err
	}
	used := map[string]bool{}
	for _, o := range recs {
		for _, d := range o.DiffIDs {
			used[d] = true
		}
	}
	for i := len(r.DiffIDs) - 1; i >= 0; i-- {
		d := r.DiffIDs[i]
		if used[d] {
			continue
		}
		used[d] = true // an image may list one layer twice
		// rename first so a crash never leaves a half-deleted layer under its real name
		trash, err := os.MkdirTemp(filepath.Join(s.dir, "tmp"), "rm-")
		if err != nil {
			return nil, fmt.Errorf("remove layer %s: %w", d, err)
		}
		if err := os.Rename(s.layerDir(d), filepath.Join(trash, "layer")); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("remove layer %s: %w", d, err)
		}
		os.Remove(s.layerDir(d) + ".json")
		os.Remove(s.layerDir(d) + tarSplitSuffix)
		if err := os.RemoveAll(trash); err != nil {
			return nil, fmt.Errorf("remove layer %s: %w", d, err)
		}
		lines = append(lines, "Deleted: "+d)
	}
	return lines, nil
}

// Tag gives the image source (a name, an id or a unique id prefix) the name
// target, taking it from the image that had it, as `docker tag`.
func (s *Store) Tag(source, target string) error {
	if strings.Contains(target, "@") {
		return fmt.Errorf("tag %q: refusing to create a tag with a digest reference", target)
	}
	name, err := storedName(target)
	if err != nil {
		return fmt.Errorf("tag: %w", err)
	}
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	r, err := s.find(source)
	if err != nil {
		return err
	}
	if r == nil {
		return fmt.Errorf("tag %q: the built-in host image cannot be tagged; tag a stored image", source)
	}
	if contains(r.Names, name) {
		return nil
	}
	r.Names = append(r.Names, name)
	return s.writeRecord(*r)
}

// writeRecord stores r atomically, taking its names away from other images
// (a tag points at one image, as in Docker).
func (s *Store) writeRecord(r record) error {
	recs, err := s.records()
	if err != nil {
		return err
	}
	for _, o := range recs {
		if o.ID == r.ID {
			continue
		}
		changed := false
		for _, n := range r.Names {
			if contains(o.Names, n) {
				o.Names = remove(o.Names, n)
				changed = true
			}
		}
		if changed {
			if err := writeFileAtomic(s.recordPath(o.ID), o); err != nil {
				return err
			}
		}
	}
	return writeFileAtomic(s.recordPath(r.ID), r)
}

func writeFileAtomic(p string, v any) error {
	b, ok := v.([]byte)
	if !ok {
		var err error
		if b, err = json.MarshalIndent(v, "", "  "); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
	}
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}

// NormalizeName turns a reference into "repository:tag" the way Docker shows
// it (its distribution/reference rules): a bare name gets ":latest", Docker
// Hub's docker.io/ and library/ prefixes are dropped.
func NormalizeName(ref string) (string, error) {
	if strings.ContainsFunc(ref, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
		// the library's messages would repeat it raw
		return "", fmt.Errorf("invalid image reference %q: invalid reference format", ref)
	}
	named, err := parseNormalized(ref)
	if err != nil {
		return "", fmt.Errorf("invalid image reference %q: %v", ref, err)
	}
	if named.digest != "" {
		return "", fmt.Errorf("invalid image reference %q: digests are not supported (images here come from archives, not a registry)", ref)
	}
	return named.WithDefaultTag().FamiliarString(), nil
}

// repoTag splits a normalised name into repository and tag.
func repoTag(name string) (string, string) {
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		return name[:i], name[i+1:]
	}
	return name, "latest"
}

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func remove(list []string, s string) []string {
	var out []string
	for _, x := range list {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }
