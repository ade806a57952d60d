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
//	layers/<diffid hex>/   an unpacked layer (an overlayfs lowerdir)
//	layers/<diffid hex>.json  its size
//	tmp/                   work space; anything here is garbage after a crash
type Store struct {
	dir string
}

// Open opens (creating if needed) the image store in dir.
func Open(dir string) (*Store, error) {
	for _, d := range []string{dir, filepath.Join(dir, "images"), filepath.Join(dir, "layers"), filepath.Join(dir, "tmp")} {
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
	sort.Slice(recs, func(i, j int) bool { return recs[i].Created.After(recs[j].Created) })
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
	name, nameErr := NormalizeName(ref)
	if nameErr == nil && name == HostName+":latest" {
		return nil, nil
	}
	recs, err := s.records()
	if err != nil {
		return nil, err
	}
	if nameErr == nil {
		for i := range recs {
			for _, n := range recs[i].Names {
				if n == name {
					return &recs[i], nil
				}
			}
		}
	}
	hex := strings.TrimPrefix(ref, "sha256:")
	if isHex(hex) && len(hex) >= 4 {
		var match []int
		for i := range recs {
			if strings.HasPrefix(strings.TrimPrefix(recs[i].ID, "sha256:"), hex) {
				match = append(match, i)
			}
		}
		if len(match) == 1 {
			return &recs[match[0]], nil
		}
		if len(match) > 1 {
			return nil, fmt.Errorf("image id %q is ambiguous: %d images match; give more digits", ref, len(match))
		}
	}
	if nameErr != nil {
		return nil, nameErr
	}
	return nil, fmt.Errorf("image %q not found; load it with `ctnet image load -i FILE` or import one: %w", name, ErrNotFound)
}

// Remove deletes an image (by name or id) and the layers no other image uses.
// Like `docker rmi NAME` of an image with several names, removing by name only
// untags it while other names remain.
func (s *Store) Remove(ref string) error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	r, err := s.find(ref)
	if err != nil {
		return err
	}
	if r == nil {
		return fmt.Errorf("image %q is built in and cannot be removed", HostName)
	}
	if name, err := NormalizeName(ref); err == nil && len(r.Names) > 1 && contains(r.Names, name) {
		r.Names = remove(r.Names, name)
		return s.writeRecord(*r)
	}
	if err := os.Remove(s.recordPath(r.ID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove image %s: %w", r.ID, err)
	}
	recs, err := s.records()
	if err != nil {
		return err
	}
	used := map[string]bool{}
	for _, o := range recs {
		for _, d := range o.DiffIDs {
			used[d] = true
		}
	}
	for _, d := range r.DiffIDs {
		if used[d] {
			continue
		}
		// rename first so a crash never leaves a half-deleted layer under its real name
		trash, err := os.MkdirTemp(filepath.Join(s.dir, "tmp"), "rm-")
		if err != nil {
			return fmt.Errorf("remove layer %s: %w", d, err)
		}
		if err := os.Rename(s.layerDir(d), filepath.Join(trash, "layer")); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove layer %s: %w", d, err)
		}
		os.Remove(s.layerDir(d) + ".json")
		if err := os.RemoveAll(trash); err != nil {
			return fmt.Errorf("remove layer %s: %w", d, err)
		}
	}
	return nil
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
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
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
// it: a bare name gets ":latest" and Docker Hub prefixes are dropped.
func NormalizeName(ref string) (string, error) {
	if ref == "" || strings.ContainsAny(ref, "@ \t\n") {
		return "", fmt.Errorf("invalid image reference %q (digests are not supported)", ref)
	}
	orig := ref
	for _, p := range []string{"docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/", "library/"} {
		if strings.HasPrefix(ref, p) {
			ref = strings.TrimPrefix(ref, p)
			break
		}
	}
	if !strings.Contains(ref[strings.LastIndex(ref, "/")+1:], ":") {
		ref += ":latest"
	}
	repo := ref[:strings.LastIndex(ref, ":")]
	if repo == "" || strings.HasSuffix(ref, ":") || strings.HasPrefix(repo, "/") || strings.HasSuffix(repo, "/") || strings.Contains(repo, "//") {
		return "", fmt.Errorf("invalid image reference %q", orig)
	}
	return ref, nil
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
