package image

import (
	"strings"
	"testing"

	"github.com/distribution/reference"
)

// referenceCases are names Docker users type, and the ways they go wrong.
var referenceCases = []string{
	"busybox", "busybox:latest", "busybox:1.36", "library/busybox", "docker.io/busybox", "docker.io/library/busybox:1",
	"index.docker.io/busybox", "index.docker.io/user/app:v1", "user/app", "user/app/sub:tag", "localhost/app", "localhost:5000/app:1",
	"localhost", "example.com", "example.com/app", "example.com:443/a/b/c:t", "10.0.0.1:5000/app", "[::1]:5000/app", "[fd00::1]/app",
	"[::1]/app:tag", "[zz]/app", "[]/app", "[::1]x/app", "registry-1.docker.io/app", "-bad.com/app", "bad-.com/app", "a..b/app",
	"a.b_c/d", "a_b/c", "a__b", "a___b", "a-b", "a--b", "a.b", "a..b", "a._b", "a_", "_a", "-a", "a-", ".a", "a.", "a/b/", "/a", "a//b",
	"Busybox", "BUSYBOX:latest", "User/app", "user/App", "Example.com/app", "example.com/App", "busybox:Latest", "busybox:-x",
	"busybox:.x", "busybox:_x", "busybox:" + strings.Repeat("t", 128), "busybox:" + strings.Repeat("t", 129), "busybox:",
	"busybox:a:b", "busybox@sha256:" + strings.Repeat("a", 64), "busybox:1@sha256:" + strings.Repeat("a", 64),
	"busybox@sha256:" + strings.Repeat("A", 64), "busybox@sha256:" + strings.Repeat("a", 63), "busybox@sha512:" + strings.Repeat("b", 128),
	"busybox@md5:" + strings.Repeat("a", 32), "busybox@sha256:", "busybox@", "busybox@sha256+b64:" + strings.Repeat("a", 64),
	"busybox@1sha:" + strings.Repeat("a", 32), "@sha256:" + strings.Repeat("a", 64), strings.Repeat("a", 64),
	strings.Repeat("a", 64) + ":tag", strings.Repeat("A", 64), strings.Repeat("a", 63), "user/" + strings.Repeat("a", 64),
	strings.Repeat("a", 250) + "/b", strings.Repeat("a", 255), strings.Repeat("a", 256), "example.com/" + strings.Repeat("a", 255),
	"", " ", "busy box", "busybox\n", "ünïcode", "a/b:c/d", "a:1/b", "a.b:x/c", "host:99999999999999999999/app", "a.b:/c",
	"ex_ample.com/app", "example.com./app", "1.2.3.4/a", "xn--bcher-kva.example/app",
}

// TestReferenceAsDocker: every case parses as distribution/reference parses
// it, with the same names, or fails with the same message.
func TestReferenceAsDocker(t *testing.T) {
	for _, s := range referenceCases {
		checkReference(t, s)
	}
}

func FuzzReferenceAsDocker(f *testing.F) {
	for _, s := range referenceCases {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkReference(t, s) })
}

func checkReference(t *testing.T, s string) {
	t.Helper()
	got, err := parseNormalized(s)
	want, wantErr := reference.ParseNormalizedNamed(s)
	if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
		t.Fatalf("parse %q: error %v, distribution/reference says %v", s, err, wantErr)
	}
	if err != nil {
		return
	}
	_, digested := want.(reference.Digested)
	for _, c := range []struct{ what, got, want string }{
		{"Name", got.Name(), want.Name()},
		{"String", got.String(), want.String()},
		{"FamiliarName", got.FamiliarName(), reference.FamiliarName(want)},
		{"FamiliarString", got.FamiliarString(), reference.FamiliarString(want)},
		{"TagNameOnly", got.WithDefaultTag().String(), reference.TagNameOnly(want).String()},
		{"familiar TagNameOnly", got.WithDefaultTag().FamiliarString(), reference.FamiliarString(reference.TagNameOnly(want))},
	} {
		if c.got != c.want {
			t.Fatalf("%q: %s %q, distribution/reference says %q", s, c.what, c.got, c.want)
		}
	}
	if got.NameOnly() != reference.IsNameOnly(want) || (got.digest != "") != digested {
		t.Fatalf("%q: name only %v digest %q; distribution/reference says %v, %v", s, got.NameOnly(), got.digest, reference.IsNameOnly(want), digested)
	}
}
