package image_test

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/ctnet/ctnet/internal/image"
)

func FuzzNormalizeName(f *testing.F) {
	for _, s := range []string{
		"busybox", "busybox:1.36", "docker.io/library/busybox:1", "docker.io/me/app", "index.docker.io/me/app:v1",
		"localhost:5000/app", "localhost:5000/app:v2", "registry.example.com/a/b/c:tag", "library/busybox",
		"", "busybox@sha256:00", "a b", "busybox:", ":tag", "a//b", "docker.io/", "UPPER", "a:b:c", "host", "sha256:abcd",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		got, err := image.NormalizeName(ref)
		if err != nil {
			if msg := err.Error(); strings.ContainsAny(msg, "\n\r") {
				t.Fatalf("NormalizeName(%q): error %q is not one line", ref, msg)
			}
			// anything Docker accepts as a tag reference must be accepted
			if want, ok := familiar(ref); ok {
				t.Fatalf("NormalizeName(%q): %v; Docker reads it as %q", ref, err, want)
			}
			return
		}
		last := got[strings.LastIndex(got, "/")+1:]
		if i := strings.LastIndex(last, ":"); i <= 0 || i == len(last)-1 || strings.ContainsAny(got, "@ \t\n") {
			t.Fatalf("NormalizeName(%q) = %q: not repository:tag", ref, got)
		}
		if want, ok := familiar(ref); ok && got != want {
			t.Fatalf("NormalizeName(%q) = %q; Docker shows it as %q", ref, got, want)
		}
	})
}

// dockerRef is the grammar of a reference without digest in Docker's
// distribution/reference: optional domain, lower-case path components, tag.
var dockerRef = regexp.MustCompile(`^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?/)?` +
	`[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?$`)

var anyID = regexp.MustCompile(`^[a-f0-9]{64}$`)

// familiar is how Docker shows a tag reference (the docker.io and library/
// prefixes dropped), as go-containerregistry parses it; false when Docker
// would refuse it.
func familiar(ref string) (string, bool) {
	if !dockerRef.MatchString(ref) {
		return "", false
	}
	path, _, _ := strings.Cut(ref, ":")
	if anyID.MatchString(path) {
		return "", false // Docker reads 64 hex digits as an image id, never a name
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		return "", false
	}
	repo := tag.RepositoryStr()
	if reg := tag.RegistryStr(); reg == name.DefaultRegistry {
		if len("docker.io/"+repo) > 255 {
			return "", false
		}
		repo = strings.TrimPrefix(repo, "library/")
	} else {
		repo = reg + "/" + repo
		if len(repo) > 255 {
			return "", false
		}
	}
	return repo + ":" + tag.TagStr(), true
}

// tree lists every path under dir with its type, mode and size, so that a
// before/after comparison sees any file added, removed or rewritten.
func tree(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		size := int64(0)
		if fi.Mode().IsRegular() {
			size = fi.Size()
		}
		lines = append(lines, fmt.Sprintf("%s %v %d", rel, fi.Mode(), size))
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// FuzzLoad feeds arbitrary bytes to Load as an archive. It must never panic;
// a refused archive gets a one-line error and leaves the store's directory
// exactly as it was; a loaded one leaves no work files and can be found by
// every name Load returned. As root, layers are really unpacked (owners,
// device nodes, xattrs); otherwise those archives fail and must still leave
// nothing behind.
func FuzzLoad(f *testing.F) {
	for _, seed := range loadSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := filepath.Join(t.TempDir(), "images")
		s, err := image.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		// the store makes its lock file on first use, which is not a change a load makes
		if _, err := s.Load(bytes.NewReader(nil), nil); err == nil {
			t.Fatal("Load of nothing succeeded")
		}
		before := tree(t, dir)
		names, err := s.Load(bytes.NewReader(data), io.Discard)
		if err != nil {
			if msg := err.Error(); strings.ContainsAny(msg, "\n\r") {
				t.Errorf("Load: error %q is not one line", msg)
			}
			if after := tree(t, dir); after != before {
				t.Fatalf("Load failed (%v) and changed the store:\nbefore:\n%s\nafter:\n%s", err, before, after)
			}
			return
		}
		if left := tree(t, filepath.Join(dir, "tmp")); left != ". drwx------ 0" {
			t.Fatalf("Load left work files:\n%s", left)
		}
		for _, l := range names {
			ref := l.Name
			if ref == "" {
				ref = l.ID
			}
			if _, err := s.Get(ref); err != nil {
				t.Fatalf("Load returned %q, which Get cannot find: %v", ref, err)
			}
		}
	})
}

// loadSeeds are small valid archives of each kind Load reads, and a few
// broken ones. The images are tiny so the fuzzer spends its time on parsing.
func loadSeeds(tb testing.TB) [][]byte {
	one := tinyImage(tb, "hello\n")
	two := tinyImage(tb, "hello\n", "world\n")
	other := tinyImage(tb, "other\n")
	docker := func(imgs map[string]v1.Image) []byte {
		refs := map[name.Reference]v1.Image{}
		for r, img := range imgs {
			tag, err := name.NewTag(r)
			if err != nil {
				tb.Fatal(err)
			}
			refs[tag] = img
		}
		var buf bytes.Buffer
		if err := tarball.MultiRefWrite(refs, &buf); err != nil {
			tb.Fatalf("write docker archive: %v", err)
		}
		return buf.Bytes()
	}
	oci := func(img v1.Image, ann map[string]string, dirs bool) []byte {
		dir := tb.TempDir()
		p, err := layout.Write(dir, empty.Index)
		if err != nil {
			tb.Fatal(err)
		}
		if err := p.AppendImage(img, layout.WithAnnotations(ann)); err != nil {
			tb.Fatal(err)
		}
		return tarTree(tb, dir, dirs)
	}
	valid := [][]byte{
		docker(map[string]v1.Image{"one:latest": one}),
		docker(map[string]v1.Image{"two:1": two}),
		docker(map[string]v1.Image{"two:1": two, "other:2": other}),
		oci(one, map[string]string{"io.containerd.image.name": "docker.io/library/one:latest", "org.opencontainers.image.ref.name": "latest"}, true),
		oci(two, map[string]string{"org.opencontainers.image.ref.name": "example.com/two:3"}, true),
		// as archive/tar writers that list only files make it
		oci(one, map[string]string{"org.opencontainers.image.ref.name": "example.com/nodirs:1"}, false),
	}
	out := append([][]byte{}, valid...)
	// broken: cut short, a layer's content changed, names outside the archive
	last := valid[2]
	out = append(out, last[:len(last)/2], lastDiffID(valid[1], false), lastDiffID(valid[4], false),
		lastDiffID(valid[2], false), lastDiffID(valid[2], true),
		tarFiles(tb, map[string]string{"manifest.json": `[{"Config":"../c.json","RepoTags":["x"],"Layers":["/etc/passwd"]}]`}),
		tarFiles(tb, map[string]string{"manifest.json": `[{"Config":"c.json","RepoTags":["x y"],"Layers":[]}]`, "c.json": `{"rootfs":{"type":"layers","diff_ids":[]}}`}),
		tarFiles(tb, map[string]string{"oci-layout": `{"imageLayoutVersion":"1.0.0"}`, "index.json": `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2}]}`}),
		[]byte("not a tar archive"), nil)
	return out
}

// lastDiffID changes a digit of the last layer's diff id in the first (or
// last) image config of an archive, so that only unpacking that layer can
// notice: the layers and images before it are fine.
func lastDiffID(b []byte, lastConfig bool) []byte {
	out := append([]byte{}, b...)
	i := bytes.Index(out, []byte(`"diff_ids":[`))
	if lastConfig {
		i = bytes.LastIndex(out, []byte(`"diff_ids":[`))
	}
	if i < 0 {
		return out
	}
	end := i + bytes.IndexByte(out[i:], ']')
	j := bytes.LastIndex(out[i:end], []byte("sha256:"))
	k := i + j + len("sha256:")
	if out[k] == '0' {
		out[k] = '1'
	} else {
		out[k] = '0'
	}
	return out
}

// tinyImage is an image with one small file per layer, each layer writing
// /fileN with body N.
func tinyImage(tb testing.TB, bodies ...string) v1.Image {
	tb.Helper()
	var layers []v1.Layer
	for i, body := range bodies {
		b := tarFiles(tb, map[string]string{fmt.Sprintf("file%d", i): body})
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
		if err != nil {
			tb.Fatal(err)
		}
		layers = append(layers, l)
	}
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		tb.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		tb.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = "linux", "amd64", v1.Time{Time: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}
	cf.Config = v1.Config{Cmd: []string{"sh"}, ExposedPorts: map[string]struct{}{"80/tcp": {}}}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		tb.Fatal(err)
	}
	return img
}

// tarFiles is a tar of regular files owned by root, in name order; a name
// ending in / is a directory.
func tarFiles(tb testing.TB, files map[string]string) []byte {
	tb.Helper()
	var names []string
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		hdr := &tar.Header{Name: n, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(files[n])), ModTime: time.Unix(0, 0)}
		if strings.HasSuffix(n, "/") {
			hdr.Mode, hdr.Typeflag = 0o755, tar.TypeDir
		}
		if err := tw.WriteHeader(hdr); err != nil {
			tb.Fatal(err)
		}
		if _, err := io.WriteString(tw, files[n]); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// tarTree archives a directory (an OCI layout) with relative names, with
// or without entries for its directories.
func tarTree(tb testing.TB, dir string, dirs bool) []byte {
	tb.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			if dirs {
				files[filepath.ToSlash(rel)+"/"] = ""
			}
			return nil
		}
		b, err := os.ReadFile(p)
		files[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return tarFiles(tb, files)
}

// TestLoadSeeds checks the seeds are what they claim: the valid ones load.
func TestLoadSeeds(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: unpacking layers sets owners")
	}
	for i, b := range loadSeeds(t)[:6] {
		s, err := image.Open(filepath.Join(t.TempDir(), "images"))
		if err != nil {
			t.Fatal(err)
		}
		if names, err := s.Load(bytes.NewReader(b), nil); err != nil || len(names) == 0 {
			t.Errorf("seed %d: Load = %q, %v", i, names, err)
		}
	}
}
