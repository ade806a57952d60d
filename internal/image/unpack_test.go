package image_test

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ctnet/ctnet/internal/image"
)

// ent is one tar entry of a hand-made layer.
type ent struct {
	name string
	typ  byte
	link string // symlink or hard link target
	body string
}

func file(name, body string) ent      { return ent{name: name, typ: tar.TypeReg, body: body} }
func dir(name string) ent             { return ent{name: name, typ: tar.TypeDir} }
func symlink(name, target string) ent { return ent{name: name, typ: tar.TypeSymlink, link: target} }
func hardlink(name, target string) ent {
	return ent{name: name, typ: tar.TypeLink, link: target}
}

func layerTar(t *testing.T, entries ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: 0o644, Size: int64(len(e.body))}
		switch e.typ {
		case tar.TypeDir:
			h.Mode = 0o755
		case tar.TypeChar:
			h.Devmajor, h.Devminor = 1, 3
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestUnpackEscapes feeds layers that try to write outside the layer
// directory. Each is refused with one line naming the entry that tried, and
// leaves nothing anywhere: not outside, not in the store.
func TestUnpackEscapes(t *testing.T) {
	needRoot(t)
	// the layer is unpacked in <top>/images/tmp/layer-N/root: four levels up is <top>
	const up = "../../../../outside"
	for _, tc := range []struct {
		name    string
		entries func(outside string) []ent
		entry   string // the entry the error must name
	}{
		{"dotdot", func(string) []ent { return []ent{file("../escape", "x")} }, "../escape"},
		{"inner-dotdot", func(string) []ent { return []ent{dir("a/"), file("a/../../escape", "x")} }, "a/../../escape"},
		{"harmless-looking-dotdot", func(string) []ent { return []ent{dir("a/"), file("a/../b", "x")} }, "a/../b"},
		{"absolute-symlink-then-file", func(o string) []ent {
			return []ent{symlink("evil", o), file("evil/escape", "x")}
		}, "evil/escape"},
		{"absolute-symlink-to-root", func(string) []ent {
			return []ent{symlink("evil", "/"), file("evil/escape", "x")}
		}, "evil/escape"},
		{"relative-symlink-out", func(string) []ent {
			return []ent{symlink("evil", up), file("evil/escape", "x")}
		}, "evil/escape"},
		{"relative-symlink-chain", func(string) []ent {
			return []ent{symlink("a", "b"), symlink("b", "c/d"), dir("c/"), symlink("c/d", "../"+up), file("a/escape", "x")}
		}, "a/escape"},
		{"symlink-chain-in-subdir", func(string) []ent {
			return []ent{dir("d/"), symlink("d/l1", "../l2"), symlink("l2", "d/../../../../../outside"), file("d/l1/escape", "x")}
		}, "d/l1/escape"},
		{"symlink-parent-deep", func(o string) []ent {
			return []ent{symlink("evil", o), file("evil/a/b/escape", "x")}
		}, "evil/a/b/escape"},
		{"hardlink-dotdot", func(string) []ent { return []ent{hardlink("l", "../../etc/passwd")} }, "l"},
		{"hardlink-absolute", func(o string) []ent { return []ent{hardlink("l", o+"/target")} }, "l"},
		{"hardlink-through-symlink", func(o string) []ent {
			return []ent{symlink("s", o), hardlink("l", "s/target")}
		}, "l"},
		{"hardlink-through-relative-symlink", func(string) []ent {
			return []ent{symlink("s", up), hardlink("l", "s/target")}
		}, "l"},
		{"symlink-loop", func(string) []ent {
			return []ent{symlink("a", "b"), symlink("b", "a"), file("a/x", "x")}
		}, "a/x"},
		{"symlink-self-loop", func(string) []ent { return []ent{symlink("a", "a"), file("a/x", "x")} }, "a/x"},
		{"symlink-replaced-by-directory", func(o string) []ent {
			return []ent{symlink("d", o), dir("d/"), file("d/escape", "x")}
		}, "d/"},
		{"directory-replaced-by-symlink", func(o string) []ent {
			return []ent{dir("d/"), symlink("d", o), file("d/escape", "x")}
		}, "d"},
		{"file-named-twice", func(string) []ent { return []ent{file("f", "a"), file("./f", "b")} }, "./f"},
		{"whiteout-through-symlink", func(o string) []ent {
			return []ent{symlink("evil", o), file("evil/.wh.target", "")}
		}, "evil/.wh.target"},
		{"opaque-through-symlink", func(o string) []ent {
			return []ent{symlink("evil", o), file("evil/.wh..wh..opq", "")}
		}, "evil/.wh..wh..opq"},
		{"whiteout-of-dotdot", func(string) []ent { return []ent{dir("a/"), file("a/.wh...", "")} }, "a/.wh..."},
		{"whiteout-of-dot", func(string) []ent { return []ent{dir("a/"), file("a/.wh..", "")} }, "a/.wh.."},
		{"device-through-symlink", func(o string) []ent {
			return []ent{symlink("evil", o), {name: "evil/null", typ: tar.TypeChar}}
		}, "evil/null"},
		{"fifo-through-symlink", func(o string) []ent {
			return []ent{symlink("evil", o), {name: "evil/fifo", typ: tar.TypeFifo}}
		}, "evil/fifo"},
		{"symlink-through-symlink", func(o string) []ent {
			return []ent{symlink("evil", o), symlink("evil/new", "/etc/passwd")}
		}, "evil/new"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			top := t.TempDir()
			outside := filepath.Join(top, "outside")
			if err := os.Mkdir(outside, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(outside, "target"), []byte("keep\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			s, err := image.Open(filepath.Join(top, "images"))
			if err != nil {
				t.Fatal(err)
			}
			s.Remove("nothing") // makes the lock file, which is not a change an import makes
			beforeStore, beforeOut := tree(t, s.Dir()), tree(t, outside)
			_, err = s.Import(bytes.NewReader(layerTar(t, tc.entries(outside)...)), "evil")
			if err == nil {
				t.Fatal("unsafe layer imported")
			}
			msg := err.Error()
			if strings.ContainsAny(msg, "\n\r") || !strings.Contains(msg, strconv.Quote(tc.entry)) {
				t.Errorf("error %q: want one line naming entry %q", msg, tc.entry)
			}
			if testing.Verbose() {
				t.Log(msg)
			}
			if after := tree(t, outside); after != beforeOut {
				t.Errorf("outside changed:\n%s", after)
			}
			if b, _ := os.ReadFile(filepath.Join(outside, "target")); string(b) != "keep\n" {
				t.Errorf("outside/target rewritten: %q", b)
			}
			for _, p := range []string{"/escape", filepath.Join(top, "escape"), "/etc/.wh.target"} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("%s written", p)
				}
			}
			if after := tree(t, s.Dir()); after != beforeStore {
				t.Errorf("failed import changed the store:\nbefore:\n%s\nafter:\n%s", beforeStore, after)
			}
		})
	}
}

// TestUnpackInside checks what stays inside the layer is kept as tar and
// Docker keep it: symlinks pointing anywhere (never followed while
// unpacking), a parent reached through a symlink inside the layer, absolute
// entry names, hard links to symlinks.
func TestUnpackInside(t *testing.T) {
	needRoot(t)
	s := openStore(t)
	img, err := s.Import(bytes.NewReader(layerTar(t,
		dir("usr/"), dir("usr/lib/"), symlink("lib", "usr/lib"), file("lib/x", "via symlink\n"),
		symlink("passwd", "/etc/passwd"), symlink("up", "../../../../.."), hardlink("passwd-link", "passwd"),
		file("/abs", "absolute name\n"), file("./dot", "dot name\n"),
		dir("wh/"), file("wh/.wh..wh.plnk", ""),
	)), "inside")
	if err != nil {
		t.Fatal(err)
	}
	root := img.Layers[0]
	for p, want := range map[string]string{"usr/lib/x": "via symlink\n", "abs": "absolute name\n", "dot": "dot name\n"} {
		if b, err := os.ReadFile(filepath.Join(root, p)); err != nil || string(b) != want {
			t.Errorf("%s = %q, %v", p, b, err)
		}
	}
	for p, want := range map[string]string{"lib": "usr/lib", "passwd": "/etc/passwd", "up": "../../../../..", "passwd-link": "/etc/passwd"} {
		if l, err := os.Readlink(filepath.Join(root, p)); err != nil || l != want {
			t.Errorf("symlink %s = %q, %v", p, l, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(root, "wh/.wh..wh.plnk")); err == nil {
		t.Error("AUFS metadata kept")
	}
}
