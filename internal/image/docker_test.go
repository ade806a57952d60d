package image_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"

	"github.com/ctnet/ctnet/internal/image"
	"github.com/ctnet/ctnet/internal/image/imagetest"
)

// snapshot is every path under dir with its type, mode and content digest,
// the lock file left out: two equal snapshots mean nothing changed.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "lock" {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		sum := ""
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h := sha256.Sum256(b)
			sum = hex.EncodeToString(h[:8])
		}
		lines = append(lines, fmt.Sprintf("%s %v %s", rel, fi.Mode(), sum))
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", dir, err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// layerTree describes a layer directory the way overlayfs and a container
// see it: type, mode, owner, size, content, mtime, link target, device,
// opaque marker.
func layerTree(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil // made when unpacking; the tar has no entry for it
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		line := fmt.Sprintf("%s mode=%o uid=%d gid=%d size=%d mtime=%d rdev=%d", rel, st.Mode, st.Uid, st.Gid, st.Size, st.Mtim.Sec, st.Rdev)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h := sha256.Sum256(b)
			line += " sha=" + hex.EncodeToString(h[:8])
		case unix.S_IFLNK:
			l, _ := os.Readlink(p)
			line += " -> " + l
		case unix.S_IFDIR:
			buf := make([]byte, 8)
			if n, err := unix.Lgetxattr(p, "trusted.overlay.opaque", buf); err == nil {
				line += " opaque=" + string(buf[:n])
			}
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// archEntry is one image of a hand-made `docker save` archive.
type archEntry struct {
	img  v1.Image
	tags []string // nil: RepoTags null, an untagged image
}

// dockerArchive writes entries in the classic `docker save` layout (config
// <hex>.json, gzip layers), manifest.json in the given order.
func dockerArchive(t *testing.T, entries ...archEntry) []byte {
	t.Helper()
	files := map[string]string{}
	var manifest []map[string]any
	for _, e := range entries {
		raw, err := e.img.RawConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cfg, _ := e.img.ConfigName()
		files[cfg.Hex+".json"] = string(raw)
		layers, err := e.img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		var paths []string
		for _, l := range layers {
			d, _ := l.Digest()
			rc, err := l.Compressed()
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(rc)
			rc.Close()
			files[d.Hex+".tar.gz"] = string(b)
			paths = append(paths, d.Hex+".tar.gz")
		}
		manifest = append(manifest, map[string]any{"Config": cfg.Hex + ".json", "RepoTags": e.tags, "Layers": paths})
	}
	b, _ := json.Marshal(manifest)
	files["manifest.json"] = string(b)
	return tarFiles(t, files)
}

func imageID(t *testing.T, img v1.Image) string {
	t.Helper()
	h, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

func lines(ls []image.Loaded) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.Line())
	}
	return out
}

func TestLoadPrintsEachNameOnce(t *testing.T) {
	needRoot(t)
	bb := imagetest.BusyboxImage(t)
	one, two := tinyImage(t, "one\n"), tinyImage(t, "two\n")
	oneID, twoID := imageID(t, one), imageID(t, two)
	for _, tc := range []struct {
		name    string
		entries []archEntry
		want    []string
	}{
		{"one name", []archEntry{{bb, []string{"busybox:latest"}}}, []string{"Loaded image: busybox:latest"}},
		{"one name spelled four ways", []archEntry{{bb, []string{"busybox", "busybox:latest", "docker.io/library/busybox:latest", "library/busybox"}}},
			[]string{"Loaded image: busybox:latest"}},
		{"image listed twice", []archEntry{{bb, []string{"busybox:1", "me/bb:2"}}, {bb, []string{"busybox:1"}}},
			[]string{"Loaded image: busybox:1", "Loaded image: me/bb:2"}},
		{"untagged", []archEntry{{one, nil}}, []string{"Loaded image ID: " + oneID}},
		{"untagged twice", []archEntry{{one, nil}, {one, []string{}}}, []string{"Loaded image ID: " + oneID}},
		{"tagged and untagged", []archEntry{{one, []string{"one"}}, {two, nil}, {bb, []string{"localhost:5000/bb:x"}}},
			[]string{"Loaded image: one:latest", "Loaded image ID: " + twoID, "Loaded image: localhost:5000/bb:x"}},
		{"a name given to two images goes to the last", []archEntry{{one, []string{"x", "one"}}, {two, []string{"x"}}},
			[]string{"Loaded image: one:latest", "Loaded image: x:latest"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t)
			archive := dockerArchive(t, tc.entries...)
			for round := 1; round <= 2; round++ { // the second time, everything is already there
				got, err := s.Load(bytes.NewReader(archive), nil)
				if err != nil {
					t.Fatal(err)
				}
				if strings.Join(lines(got), "\n") != strings.Join(tc.want, "\n") {
					t.Errorf("load %d printed\n%s\nwant\n%s", round, strings.Join(lines(got), "\n"), strings.Join(tc.want, "\n"))
				}
			}
			resolves(t, s, tc.want)
		})
	}
	s := openStore(t)
	if _, err := s.Load(bytes.NewReader(dockerArchive(t, archEntry{one, []string{"x"}}, archEntry{two, []string{"x"}})), nil); err != nil {
		t.Fatal(err)
	}
	if img, err := s.Get("x"); err != nil || img.ID != twoID {
		t.Errorf("x is %s, %v; want the last image named so, %s", img.ID, err, twoID)
	}
	if img, err := s.Get(oneID); err != nil || len(img.Names) != 0 {
		t.Errorf("the first image: %+v, %v; want it kept, untagged", img, err)
	}
}

// resolves checks every name and id a load reported can be found.
func resolves(t *testing.T, s *image.Store, printed []string) {
	t.Helper()
	for _, w := range printed {
		ref := strings.TrimPrefix(strings.TrimPrefix(w, "Loaded image ID: "), "Loaded image: ")
		if _, err := s.Get(ref); err != nil {
			t.Errorf("Get(%q) after load: %v", ref, err)
		}
	}
}

func TestImportWithChanges(t *testing.T) {
	needRoot(t)
	s := openStore(t)
	img, err := s.ImportWith(bytes.NewReader(imagetest.BusyboxRootfsTar(t)), image.ImportOptions{
		Ref: "docker.io/library/web:1",
		Changes: []string{"EXPOSE 80", `CMD ["httpd", "-f"]`, "ENV K=V", "ENV L=$K-x", `ENTRYPOINT ["/bin/busybox"]`,
			"WORKDIR /srv", "WORKDIR www", "USER nobody", `LABEL org.example.k=v "with space"="a b"`, "STOPSIGNAL SIGINT", "VOLUME /data"},
		Message: "made by the test",
	})
	if err != nil {
		t.Fatal(err)
	}
	c := img.Config
	if strings.Join(img.Names, ",") != "web:1" || strings.Join(c.Cmd, " ") != "httpd -f" || strings.Join(c.Entrypoint, " ") != "/bin/busybox" ||
		strings.Join(c.Env, ",") != "K=V,L=V-x" || strings.Join(c.ExposedPorts, ",") != "80/tcp" || c.WorkingDir != "/srv/www" ||
		c.User != "nobody" || c.Labels["org.example.k"] != "v" || c.Labels["with space"] != "a b" || c.StopSignal != "SIGINT" ||
		strings.Join(c.Volumes, ",") != "/data" {
		t.Errorf("imported image = %+v", img)
	}
	again, err := s.Get("web:1")
	if err != nil || again.ID != img.ID || again.Config.WorkingDir != "/srv/www" {
		t.Errorf("Get = %+v, %v", again, err)
	}
	// the config as Docker writes it: comment, history, no environment of its own
	var buf bytes.Buffer
	if err := s.Save(&buf, []string{"web:1"}); err != nil {
		t.Fatal(err)
	}
	files := untar(t, buf.Bytes())
	var cf struct {
		Comment string `json:"comment"`
		History []struct {
			Comment string `json:"comment"`
		} `json:"history"`
		OS     string          `json:"os"`
		Config json.RawMessage `json:"config"`
	}
	if err := json.Unmarshal(files["blobs/sha256/"+strings.TrimPrefix(img.ID, "sha256:")], &cf); err != nil {
		t.Fatal(err)
	}
	if cf.Comment != "made by the test" || len(cf.History) != 1 || cf.History[0].Comment != "made by the test" || cf.OS != "linux" {
		t.Errorf("config file = %+v", cf)
	}
	if plain, err := s.Import(bytes.NewReader(imagetest.BusyboxRootfsTar(t)), ""); err != nil || len(plain.Config.Env) != 0 || len(plain.Names) != 0 {
		t.Errorf("import without changes: %+v, %v (Docker gives it no environment and no name)", plain, err)
	}
}

// failingReader gives some bytes and then an error, as a broken pipe would.
type failingReader struct {
	r io.Reader
}

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if errors.Is(err, io.EOF) {
		return n, errors.New("connection reset")
	}
	return n, err
}

// TestImportRefused: bad changes, bad names and bad tarballs are refused in
// one line and change nothing.
func TestImportRefused(t *testing.T) {
	needRoot(t)
	rootfs := imagetest.BusyboxRootfsTar(t)
	s := openStore(t)
	if _, err := s.Import(bytes.NewReader(rootfs), "keep"); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, s.Dir())
	for _, tc := range []struct {
		name  string
		input []byte
		opt   image.ImportOptions
		want  string
	}{
		{"RUN", rootfs, image.ImportOptions{Changes: []string{"RUN true"}}, "RUN is not a valid change command"},
		{"unknown instruction", rootfs, image.ImportOptions{Changes: []string{"EXPOSE 80", "FROBNICATE"}}, "FROBNICATE is not a valid change command"},
		{"bad port", rootfs, image.ImportOptions{Changes: []string{"EXPOSE 80/icmp"}}, "invalid proto: icmp"},
		{"ENV without value", rootfs, image.ImportOptions{Changes: []string{"ENV K"}}, "ENV must have two arguments"},
		{"empty change", rootfs, image.ImportOptions{Changes: []string{""}}, "file with no instructions"},
		{"digest", rootfs, image.ImportOptions{Ref: "bb@sha256:" + strings.Repeat("a", 64)}, "cannot import digest reference"},
		{"upper case", rootfs, image.ImportOptions{Ref: "BusyBox"}, "must be lowercase"},
		{"empty tag", rootfs, image.ImportOptions{Ref: "bb:"}, "invalid reference format"},
		{"space", rootfs, image.ImportOptions{Ref: "b b"}, "invalid reference format"},
		{"64 hex", rootfs, image.ImportOptions{Ref: strings.Repeat("ab", 32)}, "cannot specify 64-byte hexadecimal strings"},
		{"host", rootfs, image.ImportOptions{Ref: "host"}, "built-in host image"},
		{"empty input", nil, image.ImportOptions{Ref: "x"}, "the tarball is empty"},
		{"not a tar", []byte("hello, this is not a tar archive at all, but it is long enough to look like one" + strings.Repeat(".", 600)), image.ImportOptions{Ref: "x"}, "invalid tar header"},
		{"truncated", rootfs[:len(rootfs)/2], image.ImportOptions{Ref: "x"}, "unexpected EOF"},
		{"bad gzip", []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3}, image.ImportOptions{Ref: "x"}, "import image"},
		{"xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0, 1, 2}, image.ImportOptions{Ref: "x"}, "xz compression is not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.ImportWith(bytes.NewReader(tc.input), tc.opt)
			if err == nil {
				t.Fatal("accepted")
			}
			if msg := err.Error(); !strings.Contains(msg, tc.want) || strings.ContainsAny(msg, "\n\r") {
				t.Errorf("error %q; want one line with %q", msg, tc.want)
			}
			if after := snapshot(t, s.Dir()); after != before {
				t.Errorf("the store changed:\n%s", after)
			}
		})
	}
	t.Run("reader fails midway", func(t *testing.T) {
		_, err := s.ImportWith(&failingReader{bytes.NewReader(rootfs)}, image.ImportOptions{Ref: "x"})
		if err == nil || !strings.Contains(err.Error(), "connection reset") {
			t.Fatalf("error %v", err)
		}
		if after := snapshot(t, s.Dir()); after != before {
			t.Errorf("the store changed:\n%s", after)
		}
	})
}

func untar(t *testing.T, b []byte) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		if _, dup := out[h.Name]; dup {
			t.Errorf("archive names %s twice", h.Name)
		}
		out[h.Name] = body
	}
}

// savedManifest is manifest.json of a `docker save` archive.
type savedManifest []struct {
	Config   string
	RepoTags []string
	Layers   []string
}

func TestSaveRoundTrip(t *testing.T) {
	needRoot(t)
	s := openStore(t)
	if _, err := s.Load(bytes.NewReader(imagetest.BusyboxDockerArchive(t, "busybox:1")), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Tag("busybox:1", "busybox:latest"); err != nil {
		t.Fatal(err)
	}
	if err := s.Tag("busybox:1", "other/bb"); err != nil {
		t.Fatal(err)
	}
	web, err := s.ImportWith(bytes.NewReader(imagetest.BusyboxRootfsTar(t)), image.ImportOptions{Ref: "web", Changes: []string{"EXPOSE 80", "LABEL a=b"}})
	if err != nil {
		t.Fatal(err)
	}
	untagged, err := s.Import(bytes.NewReader(layerTar(t, dir("etc/"), file("etc/x", "x\n"))), "")
	if err != nil {
		t.Fatal(err)
	}
	bb, _ := s.Get("busybox:1")

	for _, tc := range []struct {
		name string
		refs []string
		want map[string][]string // image id -> RepoTags in manifest.json
	}{
		{"a repository: all its tags", []string{"busybox"}, map[string][]string{bb.ID: {"busybox:1", "busybox:latest"}}},
		{"one tag", []string{"docker.io/library/busybox:1"}, map[string][]string{bb.ID: {"busybox:1"}}},
		{"by id: untagged", []string{bb.ShortID()}, map[string][]string{bb.ID: nil}},
		{"an untagged image", []string{untagged.ID}, map[string][]string{untagged.ID: nil}},
		{"several, repeated", []string{"web", "other/bb", "web:latest", "other/bb:latest"}, map[string][]string{web.ID: {"web:latest"}, bb.ID: {"other/bb:latest"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := s.Save(&buf, tc.refs); err != nil {
				t.Fatal(err)
			}
			files := untar(t, buf.Bytes())
			var m savedManifest
			if err := json.Unmarshal(files["manifest.json"], &m); err != nil {
				t.Fatalf("manifest.json: %v", err)
			}
			if len(m) != len(tc.want) {
				t.Fatalf("manifest.json has %d images, want %d: %s", len(m), len(tc.want), files["manifest.json"])
			}
			for _, e := range m {
				id := "sha256:" + strings.TrimPrefix(e.Config, "blobs/sha256/")
				want, ok := tc.want[id]
				if !ok || strings.Join(e.RepoTags, ",") != strings.Join(want, ",") {
					t.Errorf("manifest entry %s tags %q; want %q", id, e.RepoTags, want)
				}
				checkBlob(t, files, e.Config)
				for _, l := range e.Layers {
					checkBlob(t, files, l)
				}
			}
			for _, f := range []string{"index.json", "oci-layout"} {
				if _, ok := files[f]; !ok {
					t.Errorf("no %s", f)
				}
			}
			var repos map[string]map[string]string
			if err := json.Unmarshal(files["repositories"], &repos); len(files["repositories"]) > 0 && err != nil {
				t.Errorf("repositories: %v", err)
			}
			for id, tags := range tc.want {
				for _, tag := range tags {
					i := strings.LastIndex(tag, ":")
					if repos[tag[:i]][tag[i+1:]] == "" {
						t.Errorf("repositories %s lacks %s (image %s)", files["repositories"], tag, id)
					}
				}
			}

			// ctnet loads it back into a fresh store, the same images with the same files
			fresh := openStore(t)
			loaded, err := fresh.Load(bytes.NewReader(buf.Bytes()), nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(loaded) == 0 {
				t.Fatal("nothing loaded")
			}
			for id, tags := range tc.want {
				orig, err1 := s.Get(id)
				back, err2 := fresh.Get(id)
				if err1 != nil || err2 != nil {
					t.Fatalf("%s: %v, %v", id, err1, err2)
				}
				sort.Strings(back.Names)
				if strings.Join(back.Names, ",") != strings.Join(tags, ",") || !back.Created.Equal(orig.Created) ||
					fmt.Sprint(back.Config) != fmt.Sprint(orig.Config) || back.Size != orig.Size || len(back.Layers) != len(orig.Layers) {
					t.Errorf("round trip of %s:\n got %+v\nfrom %+v", id, back, orig)
				}
				for i := range orig.Layers {
					if a, b := layerTree(t, orig.Layers[i]), layerTree(t, back.Layers[i]); a != b {
						t.Errorf("layer %d of %s differs after the round trip:\n%s\n---\n%s", i, id, a, b)
					}
				}
			}
			// go-containerregistry reads it as docker load does
			for id, tags := range tc.want {
				var tag *name.Tag
				if len(tags) > 0 {
					tg, err := name.NewTag(tags[0])
					if err != nil {
						t.Fatal(err)
					}
					tag = &tg
				} else if len(tc.want) > 1 {
					continue
				}
				img, err := tarball.Image(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil }, tag)
				if err != nil {
					t.Fatalf("go-containerregistry: %v", err)
				}
				if got, _ := img.ConfigName(); got.String() != id {
					t.Errorf("go-containerregistry reads image %s, want %s", got, id)
				}
				ls, _ := img.Layers()
				for _, l := range ls {
					if _, err := l.DiffID(); err != nil {
						t.Errorf("layer: %v", err)
					}
				}
			}
			// saving again gives the same bytes, and a file the same as the stream
			var again bytes.Buffer
			if err := s.Save(&again, tc.refs); err != nil || !bytes.Equal(again.Bytes(), buf.Bytes()) {
				t.Errorf("second save differs (%v)", err)
			}
			p := filepath.Join(t.TempDir(), "out.tar")
			if err := s.SaveFile(p, tc.refs); err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(p); !bytes.Equal(b, buf.Bytes()) {
				t.Error("SaveFile wrote other bytes than Save")
			}
			if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
				t.Errorf("saved file mode %v", fi.Mode())
			}
		})
	}
}

// checkBlob: blobs/sha256/HEX holds content with that digest.
func checkBlob(t *testing.T, files map[string][]byte, p string) {
	t.Helper()
	b, ok := files[p]
	if !ok {
		t.Errorf("archive lacks %s", p)
		return
	}
	sum := sha256.Sum256(b)
	if !strings.HasPrefix(p, "blobs/sha256/") || hex.EncodeToString(sum[:]) != strings.TrimPrefix(p, "blobs/sha256/") {
		t.Errorf("%s has digest %x", p, sum)
	}
}

func TestSaveRefused(t *testing.T) {
	needRoot(t)
	s := openStore(t)
	if _, err := s.Load(bytes.NewReader(imagetest.BusyboxDockerArchive(t, "busybox")), nil); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "old.tar")
	if err := os.WriteFile(dst, []byte("old content"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		refs []string
		want string
	}{
		{nil, "name at least one image"},
		{[]string{"nosuch"}, `No such image: nosuch:latest`},
		{[]string{"busybox", "nosuch:2"}, `No such image: nosuch:2`},
		{[]string{"host"}, "built-in host image"},
		{[]string{"Bad:Name"}, "invalid reference format"},
		{[]string{"busybox@sha256:" + strings.Repeat("0", 64)}, "digests are not supported"},
	} {
		var buf bytes.Buffer
		err := s.Save(&buf, tc.refs)
		if err == nil || !strings.Contains(err.Error(), tc.want) || buf.Len() > 0 {
			t.Errorf("Save(%q) = %v, %d bytes written; want %q and nothing written", tc.refs, err, buf.Len(), tc.want)
		}
		if err := s.SaveFile(dst, tc.refs); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("SaveFile(%q) = %v", tc.refs, err)
		}
		if b, _ := os.ReadFile(dst); string(b) != "old content" {
			t.Errorf("SaveFile(%q) overwrote the file", tc.refs)
		}
		if ents, _ := os.ReadDir(filepath.Dir(dst)); len(ents) != 1 {
			t.Errorf("SaveFile(%q) left %d files", tc.refs, len(ents))
		}
	}
	if err := s.SaveFile(filepath.Join(t.TempDir(), "no/such/dir/x.tar"), []string{"busybox"}); err == nil {
		t.Error("SaveFile into a missing directory succeeded")
	}

	img, _ := s.Get("busybox")
	// a file of the layer changed on disk: the rebuilt tar cannot match its diff id
	motd := filepath.Join(img.Layers[0], "etc/motd")
	if err := os.WriteFile(motd, []byte("CTNET TEST IMAGE\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "x.tar")
	if err := s.SaveFile(out, []string{"busybox"}); err == nil || strings.ContainsAny(err.Error(), "\n") {
		t.Errorf("save of a changed layer: %v", err)
	} else if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed SaveFile left %s", out)
	}
	os.WriteFile(motd, []byte("ctnet test image\n"), 0o644)

	// a layer stored before ctnet kept tar metadata: refused, and repaired by loading it again
	split, _ := filepath.Glob(filepath.Join(filepath.Dir(img.Layers[0]), "*.tar-split.gz"))
	if len(split) != 2 {
		t.Fatalf("tar-split files: %v", split)
	}
	os.Remove(split[0])
	if err := s.Save(io.Discard, []string{"busybox"}); err == nil || !strings.Contains(err.Error(), "no tar metadata") {
		t.Errorf("save without tar metadata: %v", err)
	}
	if _, err := s.Load(bytes.NewReader(imagetest.BusyboxDockerArchive(t, "busybox")), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(io.Discard, []string{"busybox"}); err != nil {
		t.Errorf("save after loading again: %v", err)
	}
}

func TestTag(t *testing.T) {
	needRoot(t)
	s := openStore(t)
	a, err := s.Import(bytes.NewReader(layerTar(t, file("a", "a\n"))), "a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Import(bytes.NewReader(layerTar(t, file("b", "b\n"))), "b")
	if err != nil {
		t.Fatal(err)
	}
	names := func(ref string) string {
		img, err := s.Get(ref)
		if err != nil {
			t.Fatalf("Get(%s): %v", ref, err)
		}
		sort.Strings(img.Names)
		return strings.Join(img.Names, ",")
	}
	for _, step := range []struct{ source, target, a, b string }{
		{"a", "docker.io/library/x:1", "a:latest,x:1", "b:latest"},
		{a.ID, "y", "a:latest,x:1,y:latest", "b:latest"},
		{b.ShortID(), "localhost:5000/z:v", "a:latest,x:1,y:latest", "b:latest,localhost:5000/z:v"},
		{"b", "x:1", "a:latest,y:latest", "b:latest,localhost:5000/z:v,x:1"}, // moves, as Docker
		{"x:1", "x:1", "a:latest,y:latest", "b:latest,localhost:5000/z:v,x:1"},
		{"a", "b", "a:latest,b:latest,y:latest", "localhost:5000/z:v,x:1"},
	} {
		if err := s.Tag(step.source, step.target); err != nil {
			t.Fatalf("Tag(%s, %s): %v", step.source, step.target, err)
		}
		if got := names(a.ID); got != step.a {
			t.Errorf("after Tag(%s, %s) a is %s, want %s", step.source, step.target, got, step.a)
		}
		if got := names(b.ID); got != step.b {
			t.Errorf("after Tag(%s, %s) b is %s, want %s", step.source, step.target, got, step.b)
		}
	}
	before := snapshot(t, s.Dir())
	for _, tc := range []struct{ source, target, want string }{
		{"nosuch", "t", `No such image: nosuch:latest`},
		{"host", "t", "built-in host image cannot be tagged"},
		{"a", "host", "built-in host image's name"},
		{"a", "host:latest", "built-in host image's name"},
		{"a", "t@sha256:" + strings.Repeat("0", 64), "refusing to create a tag with a digest reference"},
		{"a", "Upper", "must be lowercase"},
		{"a", ":x", "invalid reference format"},
		{"a", "", "invalid reference format"},
		{"a", "a b", "invalid reference format"},
		{"a", strings.Repeat("0", 64), "cannot specify 64-byte hexadecimal strings"},
		{"a", "x:" + strings.Repeat("t", 129), "invalid reference format"},
	} {
		err := s.Tag(tc.source, tc.target)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.ContainsAny(err.Error(), "\n") {
			t.Errorf("Tag(%q, %q) = %v; want %q", tc.source, tc.target, err, tc.want)
		}
	}
	if after := snapshot(t, s.Dir()); after != before {
		t.Errorf("refused tags changed the store:\n%s", after)
	}
}

func TestDelete(t *testing.T) {
	needRoot(t)
	s := openStore(t)
	if _, err := s.Load(bytes.NewReader(imagetest.BusyboxDockerArchive(t, "busybox")), nil); err != nil {
		t.Fatal(err)
	}
	bb, _ := s.Get("busybox")
	top, bottom := "sha256:"+filepath.Base(bb.Layers[0]), "sha256:"+filepath.Base(bb.Layers[1])
	if _, err := s.Import(bytes.NewReader(imagetest.BusyboxRootfsTar(t)), "flat"); err != nil { // shares the bottom layer
		t.Fatal(err)
	}
	for _, n := range []string{"bb:1", "bb:2", "bb:3"} {
		if err := s.Tag("busybox", n); err != nil {
			t.Fatal(err)
		}
	}
	short := bb.ShortID()
	var used, running bool
	opt := func(force bool) image.RemoveOptions {
		return image.RemoveOptions{Force: force, UsedBy: func(id string) (string, bool) {
			if used && id == bb.ID {
				return "c0ffee", running
			}
			return "", false
		}}
	}
	type step struct {
		ref     string
		force   bool
		used    bool
		running bool
		want    string // lines joined by |, or the error
	}
	for _, st := range []step{
		{ref: "bb:1", want: "Untagged: bb:1"},
		{ref: "docker.io/library/bb:2", used: true, want: "Untagged: bb:2"}, // other names remain: a container does not matter
		{ref: short, want: "conflict: unable to delete " + short + " (must be forced) - image is referenced in multiple repositories"},
		{ref: bb.ID, used: true, running: true, force: true, want: "conflict: unable to delete " + short + " (cannot be forced) - image is being used by running container c0ffee"},
		{ref: "nosuch", want: `No such image: nosuch:latest`},
		{ref: "host", want: "built in and cannot be removed"},
		{ref: "Bad", want: "must be lowercase"},
		{ref: "bb:3", want: "Untagged: bb:3"},
		{ref: "busybox", used: true, want: `conflict: unable to remove repository reference "busybox" (must force) - container c0ffee is using its referenced image ` + short},
	} {
		used, running = st.used, st.running
		before := snapshot(t, s.Dir())
		out, err := s.Delete(st.ref, opt(st.force))
		got := strings.Join(out, "|")
		if err != nil {
			got = err.Error()
			if after := snapshot(t, s.Dir()); after != before {
				t.Errorf("failed Delete(%s) changed the store", st.ref)
			}
		}
		if !strings.Contains(got, st.want) {
			t.Errorf("Delete(%s) = %s; want %s", st.ref, got, st.want)
		}
	}
	// the last name, with a running container, forced: untagged, the image stays
	used, running = true, true
	if out, err := s.Delete("busybox", opt(true)); err != nil || strings.Join(out, "|") != "Untagged: busybox:latest" {
		t.Errorf("Delete(busybox) = %q, %v", out, err)
	}
	if img, err := s.Get(short); err != nil || len(img.Names) != 0 {
		t.Errorf("the image in use: %+v, %v; want it kept, untagged", img, err)
	}
	// by id, a stopped container: only forced deletes it
	running = false
	out, err := s.Delete(short, opt(false))
	if err == nil || !strings.Contains(err.Error(), "(must be forced) - image is being used by stopped container c0ffee") {
		t.Errorf("Delete(%s) with a stopped container = %q, %v", short, out, err)
	}
	out, err = s.Delete(short, opt(true))
	want := "Deleted: " + bb.ID + "|Deleted: " + top
	if err != nil || strings.Join(out, "|") != want {
		t.Errorf("Delete(%s) = %q, %v; want %s (the bottom layer %s stays for flat)", short, out, err, want, bottom)
	}
	if _, err := os.Stat(bb.Layers[0]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("top layer left: %v", err)
	}
	if _, err := os.Stat(bb.Layers[1]); err != nil {
		t.Errorf("shared bottom layer removed: %v", err)
	}
	flat, _ := s.Get("flat")
	out, err = s.Delete("flat", image.RemoveOptions{})
	if err != nil || strings.Join(out, "|") != "Untagged: flat:latest|Deleted: "+flat.ID+"|Deleted: "+bottom {
		t.Errorf("Delete(flat) = %q, %v", out, err)
	}
	// an untagged image by id
	dangling, err := s.Import(bytes.NewReader(layerTar(t, file("d", "d\n"))), "")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := s.Delete(dangling.ID, image.RemoveOptions{}); err != nil || len(out) != 2 || out[0] != "Deleted: "+dangling.ID {
		t.Errorf("Delete(dangling) = %q, %v", out, err)
	}
	if list, _ := s.List(); len(list) != 1 {
		t.Errorf("left: %+v", list)
	}
	for _, sub := range []string{"images", "configs", "layers", "tmp"} {
		if ents, _ := os.ReadDir(filepath.Join(s.Dir(), sub)); len(ents) != 0 {
			t.Errorf("%s not empty: %v", sub, ents)
		}
	}
}

// tarEntries writes tar entries in order: name ending in / is a directory,
// link set makes a symlink.
func tarEntries(t *testing.T, entries ...ent) []byte { return layerTar(t, entries...) }

func TestLoadArchiveForms(t *testing.T) {
	needRoot(t)
	bb := imagetest.BusyboxImage(t)
	raw, _ := bb.RawConfigFile()
	cfg, _ := bb.ConfigName()
	layers, _ := bb.Layers()
	var layerTars []string
	for _, l := range layers {
		rc, _ := l.Uncompressed()
		b, _ := io.ReadAll(rc)
		rc.Close()
		layerTars = append(layerTars, string(b))
	}
	manifest := func(config string, tags []string, layers ...string) string {
		b, _ := json.Marshal([]map[string]any{{"Config": config, "RepoTags": tags, "Layers": layers}})
		return string(b)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(imagetest.BusyboxDockerArchive(t, "zipped"))
	zw.Close()
	for _, tc := range []struct {
		name    string
		archive []byte
		want    string
	}{
		{"gzip-compressed archive", gz.Bytes(), "zipped:latest"},
		// docker < 25: one folder per layer, a layer that repeats one is a symlink to it
		{"old layout with symlinked layer", tarEntries(t,
			file("manifest.json", manifest(cfg.Hex+".json", []string{"old:1"}, "l1/layer.tar", "l2/layer.tar")),
			file(cfg.Hex+".json", string(raw)), dir("l1/"), file("l1/layer.tar", layerTars[0]), dir("l2/"),
			file("real/layer.tar", layerTars[1]), symlink("l2/layer.tar", "../real/layer.tar")), "old:1"},
		{"config reached through a symlink", tarEntries(t,
			file("manifest.json", manifest("c.json", []string{"sym:1"}, "a.tar", "b.tar")),
			file("blobs/config", string(raw)), symlink("c.json", "blobs/config"), file("a.tar", layerTars[0]), file("b.tar", layerTars[1])), "sym:1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t)
			got, err := s.Load(bytes.NewReader(tc.archive), nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0].Name != tc.want || got[0].ID != cfg.String() {
				t.Errorf("loaded %q", lines(got))
			}
		})
	}
}

// TestLoadRefused: broken and hostile archives are refused in one line and
// leave the store as it was.
func TestLoadRefused(t *testing.T) {
	needRoot(t)
	bb := imagetest.BusyboxImage(t)
	raw, _ := bb.RawConfigFile()
	layers, _ := bb.Layers()
	var layerTars []string
	for _, l := range layers {
		rc, _ := l.Uncompressed()
		b, _ := io.ReadAll(rc)
		rc.Close()
		layerTars = append(layerTars, string(b))
	}
	good := imagetest.BusyboxDockerArchive(t, "busybox")
	manifest := func(config string, tags []string, layers ...string) string {
		b, _ := json.Marshal([]map[string]any{{"Config": config, "RepoTags": tags, "Layers": layers}})
		return string(b)
	}
	withManifest := func(m string, extra ...ent) []byte {
		es := []ent{file("manifest.json", m), file("c.json", string(raw)), file("a.tar", layerTars[0]), file("b.tar", layerTars[1])}
		return tarEntries(t, append(es, extra...)...)
	}
	windows := strings.Replace(string(raw), `"os":"linux"`, `"os":"windows"`, 1)
	keep := dockerArchive(t, archEntry{tinyImage(t, "keep\n"), []string{"keep"}})
	outside := filepath.Join(t.TempDir(), "outside.json")
	os.WriteFile(outside, raw, 0o644)
	for _, tc := range []struct {
		name    string
		archive []byte
		want    string
	}{
		{"empty", nil, "archive has neither manifest.json"},
		{"not a tar", []byte(strings.Repeat("not a tar ", 100)), "invalid tar header"},
		{"truncated", good[:len(good)/3], "unexpected EOF"},
		{"truncated gzip", func() []byte {
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			zw.Write(good)
			zw.Close()
			return b.Bytes()[:b.Len()/2]
		}(), "unexpected EOF"},
		{"manifest null", withManifest("null"), "manifest cannot be null"},
		{"manifest not JSON", withManifest("[{"), "manifest.json"},
		{"config missing", withManifest(manifest("nope.json", nil, "a.tar", "b.tar")), `config "nope.json"`},
		{"config outside by ..", withManifest(manifest("../c.json", nil, "a.tar", "b.tar")), `config "../c.json"`},
		{"config outside by absolute symlink", withManifest(manifest("l.json", nil, "a.tar", "b.tar"), symlink("l.json", outside)), `config "l.json"`},
		{"config outside by relative symlink", withManifest(manifest("l.json", nil, "a.tar", "b.tar"), symlink("l.json", "../../../../../../../../.."+outside)), `config "l.json"`},
		{"config not JSON", withManifest(manifest("a.tar", nil, "a.tar", "b.tar")), "image config"},
		{"windows image", tarEntries(t, file("manifest.json", manifest("w.json", nil, "a.tar", "b.tar")), file("w.json", windows), file("a.tar", layerTars[0]), file("b.tar", layerTars[1])),
			"cannot load windows image on linux"},
		{"layer count", withManifest(manifest("c.json", nil, "a.tar")), "invalid manifest, layers length mismatch: expected 1, got 2"},
		{"layer missing", withManifest(manifest("c.json", nil, "a.tar", "zzz.tar")), `layer "zzz.tar" is not a file in the archive`},
		{"layer is a directory", withManifest(manifest("c.json", nil, "a.tar", "d"), dir("d/")), `layer "d" is not a file`},
		{"layer outside", withManifest(manifest("c.json", nil, "a.tar", "/etc/passwd")), `layer "/etc/passwd" is not a file`},
		{"layers swapped", withManifest(manifest("c.json", nil, "b.tar", "a.tar")), "content has digest"},
		{"layer changed", tarEntries(t, file("manifest.json", manifest("c.json", nil, "a.tar", "b.tar")), file("c.json", string(raw)), file("a.tar", layerTars[0]),
			file("b.tar", strings.Replace(layerTars[1], "ctnet test image", "CTNET TEST IMAGE", 1))), "content has digest"},
		{"bad tag", withManifest(manifest("c.json", []string{"Bad Tag"}, "a.tar", "b.tar")), "invalid reference format"},
		{"the host image's name", withManifest(manifest("c.json", []string{"host"}, "a.tar", "b.tar")), "built-in host image's name"},
		{"digest tag", withManifest(manifest("c.json", []string{"a@sha256:" + strings.Repeat("0", 64)}, "a.tar", "b.tar")), "digests are not supported"},
		{"second image broken", tarEntries(t, file("manifest.json", `[{"Config":"c.json","RepoTags":["ok"],"Layers":["a.tar","b.tar"]},{"Config":"c.json","RepoTags":["x"],"Layers":["a.tar","nope"]}]`),
			file("c.json", string(raw)), file("a.tar", layerTars[0]), file("b.tar", layerTars[1])), `layer "nope"`},
		{"entry name with ..", tarEntries(t, file("../evil", "x")), "path traversal refused"},
		{"device in the archive", tarEntries(t, ent{name: "null", typ: tar.TypeChar}), "unexpected type"},
		{"OCI layout with a symlink", tarEntries(t, file("oci-layout", `{"imageLayoutVersion":"1.0.0"}`), file("index.json", `{"schemaVersion":2,"manifests":[]}`),
			symlink("blobs", "/")), "the archive has symlinks"},
		{"OCI index missing blob", tarEntries(t, file("oci-layout", `{"imageLayoutVersion":"1.0.0"}`),
			file("index.json", `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:`+strings.Repeat("0", 64)+`","size":2}]}`)), "load OCI layout"},
		{"xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0, 0}, "xz compression is not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t)
			if _, err := s.Load(bytes.NewReader(keep), nil); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, s.Dir())
			_, err := s.Load(bytes.NewReader(tc.archive), nil)
			if err == nil {
				t.Fatal("loaded")
			}
			if msg := err.Error(); !strings.Contains(msg, tc.want) || strings.ContainsAny(msg, "\n\r") {
				t.Errorf("error %q; want one line with %q", msg, tc.want)
			}
			if after := snapshot(t, s.Dir()); after != before {
				t.Errorf("the store changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}
