package resolvconf

import (
	"slices"
	"testing"
)

func TestParse(t *testing.T) {
	f := Parse([]byte("# generated\nnameserver 127.0.0.53\n  nameserver\t10.0.0.1 \nsearch a.example b.example\noptions edns0 trust-ad\n;nameserver 9.9.9.9\nnameserver\n\ndomain x\n"))
	if got := f.Nameservers(); !slices.Equal(got, []string{"127.0.0.53", "10.0.0.1"}) {
		t.Errorf("Nameservers = %q", got)
	}
	if got := string(f.Keep(Is("search", "options"))); got != "search a.example b.example\noptions edns0 trust-ad\n" {
		t.Errorf("Keep = %q", got)
	}
	if got := string(f.Keep(func(l Line) bool { return l.Keyword == "" })); got != "# generated\n;nameserver 9.9.9.9\n\n" {
		t.Errorf("comments = %q", got)
	}
	if len(Parse(nil).Lines) != 0 {
		t.Error("empty file has lines")
	}
}
