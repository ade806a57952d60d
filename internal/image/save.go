package image

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// savedImage is an image Save writes and the names it writes it under.
type savedImage struct {
	rec   record
	names []string
}

// Save writes the images refs name as a `docker save` archive (the layout
// of Docker 25 and later: manifest.json and repositories for `docker load`,
// an OCI image layout beside them, layers as uncompressed tars named by
// their diff id). As in Docker, name:tag saves that tag, a bare name every
// tag of the repository, an id (or unique prefix) the image untagged.
// Every ref is resolved, and every layer checked, before anything is
// written; a layer whose files changed on disk fails the save midway.
func (s *Store) Save(w io.Writer, refs []string) error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	imgs, err := s.resolveSave(refs)
	if err != nil {
		return err
	}
	return s.writeArchive(w, imgs)
}

// SaveFile is Save to a file, written under a temporary name and renamed
// into place, so a failed save leaves no file (and an old one as it was).
func (s *Store) SaveFile(path string, refs []string) error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	imgs, err := s.resolveSave(refs)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return fmt.Errorf("save: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	if err := s.writeArchive(f, imgs); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	ok = true
	return nil
}

func (s *Store) resolveSave(refs []string) ([]*savedImage, error) {
	if len(refs) == 0 {
		return nil, errors.New("save: name at least one image")
	}
	recs, err := s.records()
	if err != nil {
		return nil, err
	}
	imgs := []Image{HostImage()}
	for _, r := range recs {
		imgs = append(imgs, Image{ID: r.ID, Names: r.Names})
	}
	var out []*savedImage
	byID := map[string]*savedImage{}
	add := func(i int, name string) error {
		if i == 0 {
			return errors.New("save: the built-in host image has no files of its own to save")
		}
		si := byID[recs[i-1].ID]
		if si == nil {
			si = &savedImage{rec: recs[i-1]}
			byID[si.rec.ID] = si
			out = append(out, si)
		}
		if name != "" && !contains(si.names, name) {
			si.names = append(si.names, name)
		}
		return nil
	}
	for _, ref := range refs {
		if isNameOnly(ref) {
			// every tag of the repository; none: maybe an id
			repo, _ := repoTag(mustNormalize(ref))
			found := false
			for j, img := range imgs {
				for _, n := range img.Names {
					if r, _ := repoTag(n); r == repo {
						if err := add(j, n); err != nil {
							return nil, err
						}
						found = true
					}
				}
			}
			if found {
				continue
			}
		}
		i, err := lookup(imgs, ref)
		if err != nil {
			return nil, fmt.Errorf("save: %w", err)
		}
		name := mustNormalize(ref)
		if isIDPrefix(imgs[i].ID, ref) && !contains(imgs[i].Names, name) {
			name = ""
		}
		if err := add(i, name); err != nil {
			return nil, err
		}
	}
	for _, si := range out {
		if len(si.rec.DiffIDs) == 0 {
			return nil, fmt.Errorf("save: image %s has no layers; Docker cannot load such an archive either", si.rec.ID)
		}
		if _, err := os.Stat(s.configPath(si.rec.ID)); err != nil {
			return nil, fmt.Errorf("save: image %s was stored by an older ctnet without its config; remove it and load or import it again", si.rec.ID)
		}
		for _, d := range si.rec.DiffIDs {
			info, ok := s.readLayerInfo(d)
			if _, err := os.Stat(s.layerDir(d) + tarSplitSuffix); err != nil || !ok || info.TarSize == 0 {
				return nil, fmt.Errorf("save: layer %s of image %s has no tar metadata (stored by an older ctnet); load or import the image again", d, si.rec.ID)
			}
		}
	}
	return out, nil
}

func mustNormalize(ref string) string {
	n, _ := NormalizeName(ref)
	return n
}

func isNameOnly(ref string) bool {
	named, err := parseNormalized(ref)
	return err == nil && named.NameOnly()
}

type ociDescriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type ociManifest struct {
	SchemaVersion int             `json:"schemaVersion"`
	MediaType     string          `json:"mediaType"`
	Config        ociDescriptor   `json:"config"`
	Layers        []ociDescriptor `json:"layers"`
}

type ociIndex struct {
	SchemaVersion int             `json:"schemaVersion"`
	MediaType     string          `json:"mediaType"`
	Manifests     []ociDescriptor `json:"manifests"`
}

// writeArchive writes the archive in Docker's order and with its metadata:
// blobs (layers, configs, manifests) dated by the image's creation, the
// index files at the epoch, so that saving twice gives the same bytes.
func (s *Store) writeArchive(w io.Writer, imgs []*savedImage) error {
	tw := tar.NewWriter(w)
	epoch := time.Unix(0, 0)
	put := func(name string, typ byte, size int64, mtime time.Time) error {
		mode := int64(0o644)
		if typ == tar.TypeDir {
			mode = 0o755
		}
		return tw.WriteHeader(&tar.Header{Name: name, Typeflag: typ, Size: size, Mode: mode, ModTime: mtime})
	}
	putFile := func(name string, b []byte, mtime time.Time) error {
		if err := put(name, tar.TypeReg, int64(len(b)), mtime); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	fail := func(err error) error { return fmt.Errorf("save: %w", err) }
	if err := put("blobs/", tar.TypeDir, 0, epoch); err != nil {
		return fail(err)
	}
	if err := put("blobs/sha256/", tar.TypeDir, 0, epoch); err != nil {
		return fail(err)
	}
	var manifest []manifestItem
	repos := map[string]map[string]string{}
	index := ociIndex{SchemaVersion: 2, MediaType: "application/vnd.oci.image.index.v1+json", Manifests: []ociDescriptor{}}
	written := map[string]bool{}
	for _, si := range imgs {
		r := si.rec
		mtime := r.Created
		if mtime.IsZero() {
			mtime = epoch
		}
		var layers []ociDescriptor
		var layerPaths []string
		for _, d := range r.DiffIDs {
			hex := strings.TrimPrefix(d, "sha256:")
			info, _ := s.readLayerInfo(d)
			layers = append(layers, ociDescriptor{MediaType: "application/vnd.oci.image.layer.v1.tar", Digest: d, Size: info.TarSize})
			layerPaths = append(layerPaths, "blobs/sha256/"+hex)
			if written[d] {
				continue
			}
			written[d] = true
			if err := put("blobs/sha256/"+hex, tar.TypeReg, info.TarSize, mtime); err != nil {
				return fail(err)
			}
			if err := s.writeLayerTar(tw, d); err != nil {
				return fail(err)
			}
		}
		raw, err := os.ReadFile(s.configPath(r.ID))
		if err != nil {
			return fail(err)
		}
		if sum := sha256.Sum256(raw); "sha256:"+hex.EncodeToString(sum[:]) != r.ID {
			return fail(fmt.Errorf("image %s: its stored config has another digest", r.ID))
		}
		if !written[r.ID] {
			written[r.ID] = true
			if err := putFile("blobs/sha256/"+strings.TrimPrefix(r.ID, "sha256:"), raw, mtime); err != nil {
				return fail(err)
			}
		}
		m, err := json.Marshal(ociManifest{SchemaVersion: 2, MediaType: "application/vnd.oci.image.manifest.v1+json",
			Config: ociDescriptor{MediaType: "application/vnd.oci.image.config.v1+json", Digest: r.ID, Size: int64(len(raw))},
			Layers: layers})
		if err != nil {
			return fail(err)
		}
		msum := sha256.Sum256(m)
		mdesc := ociDescriptor{MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: "sha256:" + hex.EncodeToString(msum[:]), Size: int64(len(m))}
		if !written[mdesc.Digest] {
			written[mdesc.Digest] = true
			if err := putFile("blobs/sha256/"+hex.EncodeToString(msum[:]), m, epoch); err != nil {
				return fail(err)
			}
		}
		var repoTags []string
		for _, n := range si.names {
			repo, tag := repoTag(n)
			if repos[repo] == nil {
				repos[repo] = map[string]string{}
			}
			repos[repo][tag] = strings.TrimPrefix(r.DiffIDs[len(r.DiffIDs)-1], "sha256:")
			repoTags = append(repoTags, n)
			named, err := parseNormalized(n)
			if err != nil {
				return fail(err)
			}
			d := mdesc
			d.Annotations = map[string]string{
				"io.containerd.image.name":          named.WithDefaultTag().String(),
				"org.opencontainers.image.ref.name": tag,
			}
			index.Manifests = append(index.Manifests, d)
		}
		if len(repoTags) == 0 {
			index.Manifests = append(index.Manifests, mdesc)
		}
		manifest = append(manifest, manifestItem{Config: "blobs/sha256/" + strings.TrimPrefix(r.ID, "sha256:"), RepoTags: repoTags, Layers: layerPaths})
	}
	files := []struct {
		name string
		v    any
	}{{"index.json", index}, {"manifest.json", manifest}, {"oci-layout", map[string]string{"imageLayoutVersion": "1.0.0"}}}
	if len(repos) > 0 {
		files = append(files, struct {
			name string
			v    any
		}{"repositories", repos})
	}
	for _, f := range files {
		b, err := json.Marshal(f.v)
		if err != nil {
			return fail(err)
		}
		if err := putFile(f.name, append(b, '\n'), epoch); err != nil {
			return fail(err)
		}
	}
	if err := tw.Close(); err != nil {
		return fail(err)
	}
	return nil
}
