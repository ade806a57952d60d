package image_test

import (
	"strings"
	"testing"
	"time"

	"github.com/ctnet/ctnet/internal/image"
)

// listFixture is what List returns for a store holding, newest first:
// web (labelled), busybox under three names, an untagged image, and old.
func listFixture() []image.Image {
	day := func(d int) time.Time { return time.Date(2024, 1, d, 0, 0, 0, 0, time.UTC) }
	id := func(c byte) string { return "sha256:" + strings.Repeat(string(c), 64) }
	return []image.Image{
		image.HostImage(),
		{ID: id('e'), Names: []string{"web:1", "web:latest"}, Created: day(5), Size: 5,
			Config: image.Config{Labels: map[string]string{"tier": "front", "team": "a"}}},
		{ID: id('b'), Names: []string{"busybox:latest", "localhost:5000/busybox:1.36", "me/busybox:x"}, Created: day(4), Size: 4,
			Config: image.Config{Labels: map[string]string{"team": "b"}}},
		{ID: id('d'), Created: day(3), Size: 3},
		{ID: id('a'), Names: []string{"old:0"}, Created: day(1), Size: 1},
	}
}

func rowsText(rows []image.Row) string {
	var out []string
	for _, r := range rows {
		out = append(out, r.Repository+":"+r.Tag+"@"+r.ID)
	}
	return strings.Join(out, " ")
}

func TestRows(t *testing.T) {
	const (
		host = "host:latest@host"
		web  = "web:1@eeeeeeeeeeee web:latest@eeeeeeeeeeee"
		bb   = "busybox:latest@bbbbbbbbbbbb localhost:5000/busybox:1.36@bbbbbbbbbbbb me/busybox:x@bbbbbbbbbbbb"
		none = "<none>:<none>@dddddddddddd"
		old  = "old:0@aaaaaaaaaaaa"
	)
	now := time.Date(2024, 1, 6, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		opt  image.ListOptions
		want string
	}{
		{"default hides untagged images", image.ListOptions{}, strings.Join([]string{host, web, bb, old}, " ")},
		{"-a shows them", image.ListOptions{All: true}, strings.Join([]string{host, web, bb, none, old}, " ")},
		{"dangling=true", image.ListOptions{Filters: []string{"dangling=true"}}, none},
		{"dangling=1", image.ListOptions{Filters: []string{"dangling=1"}}, none},
		{"dangling=false", image.ListOptions{All: true, Filters: []string{"dangling=false"}}, strings.Join([]string{host, web, bb, old}, " ")},
		{"reference by name", image.ListOptions{Filters: []string{"reference=busybox"}}, "busybox:latest@bbbbbbbbbbbb"},
		{"reference glob on the tag", image.ListOptions{Filters: []string{"reference=*:1*"}}, "web:1@eeeeeeeeeeee"},
		{"reference glob on the path", image.ListOptions{Filters: []string{"reference=*/busybox"}}, "localhost:5000/busybox:1.36@bbbbbbbbbbbb me/busybox:x@bbbbbbbbbbbb"},
		{"reference glob without the registry", image.ListOptions{Filters: []string{"reference=m*/*"}}, "me/busybox:x@bbbbbbbbbbbb"},
		{"reference with registry", image.ListOptions{Filters: []string{"reference=localhost:5000/*"}}, "localhost:5000/busybox:1.36@bbbbbbbbbbbb"},
		{"reference by full name", image.ListOptions{Filters: []string{"reference=docker.io/library/busybox"}}, "busybox:latest@bbbbbbbbbbbb"},
		{"several references: any", image.ListOptions{Filters: []string{"reference=old", "reference=web:latest"}}, "web:latest@eeeeeeeeeeee old:0@aaaaaaaaaaaa"},
		{"the argument: every tag of a repository", image.ListOptions{Match: "web"}, web},
		{"the argument with a tag", image.ListOptions{Match: "web:latest"}, "web:latest@eeeeeeeeeeee"},
		{"the argument with -a hides untagged", image.ListOptions{All: true, Match: "*"}, strings.Join([]string{host, web, "busybox:latest@bbbbbbbbbbbb", old}, " ")},
		{"label key", image.ListOptions{Filters: []string{"label=team"}}, web + " " + bb},
		{"label key=value", image.ListOptions{Filters: []string{"label=team=b"}}, bb},
		{"labels: all must match", image.ListOptions{Filters: []string{"label=team", "label=tier=front"}}, web},
		{"label none match", image.ListOptions{Filters: []string{"label=team=c"}}, ""},
		{"before", image.ListOptions{All: true, Filters: []string{"before=busybox"}}, none + " " + old},
		{"before by id", image.ListOptions{All: true, Filters: []string{"before=dddd"}}, old},
		{"before: the strictest", image.ListOptions{All: true, Filters: []string{"before=web:1", "before=sha256:dddd"}}, old},
		{"since", image.ListOptions{Filters: []string{"since=old:0"}}, web + " " + bb},
		{"since: the strictest", image.ListOptions{Filters: []string{"since=old:0", "since=busybox"}}, web},
		{"since and before", image.ListOptions{All: true, Filters: []string{"since=old:0", "before=web:1"}}, bb + " " + none},
		{"until a duration", image.ListOptions{All: true, Now: now, Filters: []string{"until=60h"}}, none + " " + old},
		{"until a date", image.ListOptions{Now: now, Filters: []string{"until=2024-01-04T12:00:00Z"}}, bb + " " + old},
		{"until unix seconds", image.ListOptions{Now: now, Filters: []string{"until=1704153600"}}, old},
		{"different keys: all", image.ListOptions{Filters: []string{"label=team", "reference=web:1"}}, "web:1@eeeeeeeeeeee"},
		{"key case and spaces, as the docker CLI", image.ListOptions{Filters: []string{" Reference = old "}}, old},
		{"empty filter ignored", image.ListOptions{Filters: []string{""}}, strings.Join([]string{host, web, bb, old}, " ")},
		{"reference matching nothing", image.ListOptions{Filters: []string{"reference=nosuch"}}, ""},
		{"--no-trunc", image.ListOptions{NoTrunc: true, Filters: []string{"reference=old"}}, "old:0@sha256:" + strings.Repeat("a", 64)},
		{"host by reference", image.ListOptions{Filters: []string{"reference=host"}}, host},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows, err := image.Rows(listFixture(), tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			if got := rowsText(rows); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
	rows, _ := image.Rows(listFixture(), image.ListOptions{Filters: []string{"reference=old"}})
	if len(rows) != 1 || rows[0].Size != 1 || !rows[0].Created.Equal(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)) || rows[0].Image.Names[0] != "old:0" {
		t.Errorf("row = %+v", rows)
	}
}

func TestRowsRefused(t *testing.T) {
	for _, tc := range []struct {
		filters []string
		want    string
	}{
		{[]string{"foo=bar"}, "invalid filter 'foo'"},
		{[]string{"reference=x", "Size=1"}, "invalid filter 'size'"},
		{[]string{"dangling"}, `bad format of filter "dangling" (expected name=value)`},
		{[]string{"dangling=maybe"}, "invalid filter 'dangling=[maybe]'"},
		{[]string{"dangling=true", "dangling=false"}, "invalid filter 'dangling=[false true]'"},
		{[]string{"dangling="}, "invalid filter 'dangling=[]'"},
		{[]string{"before=nosuch"}, `filter before=nosuch: No such image: nosuch:latest`},
		{[]string{"since=Bad"}, "must be lowercase"},
		{[]string{"until=yesterday"}, "invalid value for 'until' filter"},
		{[]string{"until="}, "invalid value for 'until' filter: failed to parse value as time or duration: value is empty"},
		{[]string{"reference=[a"}, "invalid filter 'reference=[a': syntax error in pattern"},
		{[]string{"reference=a\\"}, "syntax error in pattern"},
	} {
		_, err := image.Rows(listFixture(), image.ListOptions{Filters: tc.filters})
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.ContainsAny(err.Error(), "\n") {
			t.Errorf("Rows(%q) = %v; want %q", tc.filters, err, tc.want)
		}
	}
}
