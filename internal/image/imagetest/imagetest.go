// Package imagetest builds tiny busybox images for tests, from the host's
// /bin/busybox (Debian package busybox-static).
package imagetest

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	goruntime "runtime"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// BusyboxPath is where busybox-static installs its binary.
const BusyboxPath = "/bin/busybox"

// Applets get a symlink in /bin of every test image.
var Applets = []string{
	"sh", "ash", "ls", "cat", "echo", "ip", "ping", "nc", "sleep", "hostname", "id", "ps", "grep",
	"wc", "touch", "mkdir", "rm", "mount", "true", "false", "test", "env", "sed", "stat", "wget",
	"nslookup", "ifconfig", "route", "printf", "head", "tail", "kill", "pwd", "uname", "readlink",
	"tr", "cut", "sort", "uniq", "dd", "ln", "chmod", "chown", "cp", "mv", "find", "df", "timeout",
	"seq", "date", "netstat", "traceroute", "arp", "httpd", "whoami", "vi", "less", "more", "tee",
}

var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

type entry struct {
	name, body, link string
	mode             int64
	typ              byte
}

func writeTar(t testing.TB, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Mode: e.mode, Typeflag: e.typ, Linkname: e.link, ModTime: epoch, Size: int64(len(e.body))}
		if e.typ != tar.TypeReg {
			hdr.Size = 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("imagetest: tar header %s: %v", e.name, err)
		}
		if hdr.Size > 0 {
			if _, err := io.WriteString(tw, e.body); err != nil {
				t.Fatalf("imagetest: tar body %s: %v", e.name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatalf("imagetest: close tar: %v", err)
	}
	return buf.Bytes()
}

// BusyboxRootfsTar is a root filesystem tarball: /bin/busybox with applet
// symlinks, /etc/passwd and /etc/group (root and nobody), and the usual
// empty directories. It skips the test when busybox is not installed.
func BusyboxRootfsTar(t testing.TB) []byte {
	t.Helper()
	bin, err := os.ReadFile(BusyboxPath)
	if err != nil {
		t.Skipf("imagetest: %s not available (apt-get install busybox-static): %v", BusyboxPath, err)
	}
	es := []entry{}
	for _, d := range []string{"bin", "etc", "dev", "proc", "sys", "tmp", "root", "var", "data", "data/old", "home"} {
		mode := int64(0o755)
		if d == "tmp" {
			mode = 0o1777
		}
		es = append(es, entry{name: d + "/", typ: tar.TypeDir, mode: mode})
	}
	es = append(es, entry{name: "bin/busybox", typ: tar.TypeReg, mode: 0o755, body: string(bin)})
	for _, a := range Applets {
		es = append(es, entry{name: "bin/" + a, typ: tar.TypeSymlink, link: "busybox", mode: 0o777})
	}
	es = append(es,
		entry{name: "etc/passwd", typ: tar.TypeReg, mode: 0o644, body: "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"},
		entry{name: "etc/group", typ: tar.TypeReg, mode: 0o644, body: "root:x:0:\nnogroup:x:65534:\n"},
		entry{name: "etc/gone", typ: tar.TypeReg, mode: 0o644, body: "whited out by the second layer\n"},
		entry{name: "data/old/file", typ: tar.TypeReg, mode: 0o644, body: "hidden by an opaque directory\n"},
		entry{name: "bin/hardlinked-busybox", typ: tar.TypeLink, link: "bin/busybox"},
	)
	return writeTar(t, es)
}

// secondLayerTar whites out /etc/gone, makes /data opaque and adds /etc/motd.
func secondLayerTar(t testing.TB) []byte {
	return writeTar(t, []entry{
		{name: "etc/", typ: tar.TypeDir, mode: 0o755},
		{name: "etc/.wh.gone", typ: tar.TypeReg, mode: 0o644},
		{name: "etc/motd", typ: tar.TypeReg, mode: 0o644, body: "ctnet test image\n"},
		{name: "data/", typ: tar.TypeDir, mode: 0o755},
		{name: "data/.wh..wh..opq", typ: tar.TypeReg, mode: 0o644},
		{name: "data/new", typ: tar.TypeReg, mode: 0o644, body: "new\n"},
	})
}

// BusyboxImage is the two-layer image the archive helpers write: the rootfs
// of BusyboxRootfsTar, then a layer with a whiteout (/etc/gone), an opaque
// directory (/data) and /etc/motd. Cmd is ["sh"]; it exposes 80/tcp.
func BusyboxImage(t testing.TB) v1.Image {
	t.Helper()
	var layers []v1.Layer
	for _, b := range [][]byte{BusyboxRootfsTar(t), secondLayerTar(t)} {
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
		if err != nil {
			t.Fatalf("imagetest: layer: %v", err)
		}
		layers = append(layers, l)
	}
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatalf("imagetest: append layers: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatalf("imagetest: config: %v", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = "linux", goruntime.GOARCH, v1.Time{Time: epoch}
	cf.Config = v1.Config{
		Env:          []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		Cmd:          []string{"sh"},
		ExposedPorts: map[string]struct{}{"80/tcp": {}},
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatalf("imagetest: set config: %v", err)
	}
	return img
}

// BusyboxDockerArchive is BusyboxImage tagged name in `docker save` format.
func BusyboxDockerArchive(t testing.TB, ref string) []byte {
	t.Helper()
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatalf("imagetest: tag %q: %v", ref, err)
	}
	var buf bytes.Buffer
	if err := tarball.Write(tag, BusyboxImage(t), &buf); err != nil {
		t.Fatalf("imagetest: write docker archive: %v", err)
	}
	return buf.Bytes()
}

// BusyboxOCIArchive is BusyboxImage as an OCI image-layout tarball, named the
// way containerd exports it (full name and tag-only ref.name annotations).
func BusyboxOCIArchive(t testing.TB, ref string) []byte {
	t.Helper()
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatalf("imagetest: tag %q: %v", ref, err)
	}
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatalf("imagetest: layout: %v", err)
	}
	err = p.AppendImage(BusyboxImage(t), layout.WithAnnotations(map[string]string{
		"io.containerd.image.name":          tag.Name(),
		"org.opencontainers.image.ref.name": tag.TagStr(),
	}))
	if err != nil {
		t.Fatalf("imagetest: append image: %v", err)
	}
	return tarDir(t, dir)
}

func tarDir(t testing.TB, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		hdr, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if fi.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(b)
			return err
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		t.Fatalf("imagetest: tar %s: %v", dir, err)
	}
	return buf.Bytes()
}
