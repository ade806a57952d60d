package image

import (
	"errors"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ListOptions are those of `docker images`.
type ListOptions struct {
	// All shows untagged (dangling) images too; as in Docker 29, without it
	// they show only under --filter dangling=true.
	All bool
	// Filters are --filter values, "key=value": dangling=true|false,
	// label=KEY or label=KEY=VALUE, before=IMAGE, since=IMAGE,
	// until=TIMESTAMP|DURATION, reference=PATTERN. Different keys must all
	// match; several reference= patterns match if any does, several label=
	// if all do, several before=/since=/until= narrow to the strictest.
	Filters []string
	// Match is the REPOSITORY[:TAG] argument, a reference= pattern.
	Match string
	// NoTrunc shows ids in full ("sha256:…") instead of 12 hex digits.
	NoTrunc bool
	// Now is the time relative until= values count back from; zero: now.
	Now time.Time
}

// Row is one line of `docker images`: one per name of an image, or one
// "<none>" line for an image without names.
type Row struct {
	Repository, Tag string
	ID              string    // as the IMAGE ID column (and -q) shows it
	Created         time.Time // zero for the host image: Docker shows "N/A"
	Size            int64
	Image           Image
}

// Rows filters imgs (as List returns them) and makes the lines `docker
// images` prints, in the same order, with Docker's semantics and errors.
// -q prints the ID of each row.
func Rows(imgs []Image, opt ListOptions) ([]Row, error) {
	f, err := parseFilters(opt.Filters)
	if err != nil {
		return nil, err
	}
	if opt.Match != "" {
		f.add("reference", opt.Match)
	}
	for _, k := range f.keys {
		switch k {
		case "dangling", "label", "before", "since", "until", "reference":
		default:
			return nil, fmt.Errorf("invalid filter '%s'", k)
		}
	}
	_, hasDangling := f.values["dangling"]
	danglingOnly := false
	if vs, ok := f.values["dangling"]; ok {
		isTrue := contains(vs, "true") || contains(vs, "1")
		isFalse := contains(vs, "false") || contains(vs, "0")
		if isTrue == isFalse {
			return nil, fmt.Errorf("invalid filter 'dangling=%v'", vs)
		}
		danglingOnly = isTrue
	}
	var before, since time.Time
	for _, v := range f.values["before"] {
		i, err := lookup(imgs, v)
		if err != nil {
			return nil, fmt.Errorf("filter before=%s: %w", v, err)
		}
		if c := imgs[i].Created; !c.IsZero() && (before.IsZero() || before.After(c)) {
			before = c
		}
	}
	now := opt.Now
	if now.IsZero() {
		now = time.Now()
	}
	for _, v := range f.values["until"] {
		t, err := parseTimestamp(v, now)
		if err != nil {
			return nil, fmt.Errorf("invalid value for 'until' filter: %w", err)
		}
		if before.IsZero() || before.After(t) {
			before = t
		}
	}
	for _, v := range f.values["since"] {
		i, err := lookup(imgs, v)
		if err != nil {
			return nil, fmt.Errorf("filter since=%s: %w", v, err)
		}
		if c := imgs[i].Created; !c.IsZero() && since.Before(c) {
			since = c
		}
	}
	patterns := f.values["reference"]
	for _, p := range patterns {
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf("invalid filter 'reference=%s': %w", p, err)
		}
	}
	_, hasReference := f.values["reference"]

	var rows []Row
	for _, img := range imgs {
		if !before.IsZero() && (img.Created.IsZero() || !img.Created.Before(before)) {
			continue
		}
		if !since.IsZero() && (img.Created.IsZero() || !img.Created.After(since)) {
			continue
		}
		if labels := f.values["label"]; len(labels) > 0 && !matchLabels(labels, img.Config.Labels) {
			continue
		}
		var names []string
		for _, n := range img.Names {
			if !hasReference || matchReference(patterns, n) {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		if len(names) == 0 {
			if hasReference || hasDangling && !danglingOnly || len(img.Names) > 0 {
				continue
			}
			if !opt.All && !danglingOnly {
				continue
			}
		} else if danglingOnly {
			continue
		}
		id := img.ShortID()
		if opt.NoTrunc {
			id = img.ID
		}
		row := Row{ID: id, Created: img.Created, Size: img.Size, Image: img}
		if len(names) == 0 {
			row.Repository, row.Tag = "<none>", "<none>"
			rows = append(rows, row)
		}
		for _, n := range names {
			row.Repository, row.Tag = repoTag(n)
			rows = append(rows, row)
		}
	}
	return rows, nil
}

type filterArgs struct {
	keys   []string
	values map[string][]string
}

func (f *filterArgs) add(k, v string) {
	if _, ok := f.values[k]; !ok {
		f.keys = append(f.keys, k)
	}
	if !contains(f.values[k], v) {
		f.values[k] = append(f.values[k], v)
	}
	sort.Strings(f.values[k])
}

// parseFilters reads --filter values as the docker CLI does: key=value,
// the key trimmed and lower-cased, the value trimmed; empty ones ignored.
func parseFilters(in []string) (filterArgs, error) {
	f := filterArgs{values: map[string][]string{}}
	for _, s := range in {
		if s == "" {
			continue
		}
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			return f, fmt.Errorf("bad format of filter %q (expected name=value)", s)
		}
		f.add(strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v))
	}
	return f, nil
}

// matchLabels is Docker's MatchKVList: every KEY or KEY=VALUE must hold.
func matchLabels(filters []string, labels map[string]string) bool {
	if len(labels) == 0 {
		return false
	}
	for _, f := range filters {
		k, v, hasValue := strings.Cut(f, "=")
		got, ok := labels[k]
		if !ok || hasValue && got != v {
			return false
		}
	}
	return true
}

// matchReference matches the glob patterns against a name in the four forms
// Docker tries: busybox:latest, busybox, docker.io/library/busybox:latest,
// docker.io/library/busybox.
func matchReference(patterns []string, name string) bool {
	named, err := parseNormalized(name)
	if err != nil {
		return false
	}
	targets := []string{named.FamiliarString(), named.FamiliarName(), named.WithDefaultTag().String(), named.Name()}
	for _, p := range patterns {
		for _, t := range targets {
			if ok, _ := path.Match(p, t); ok {
				return true
			}
		}
	}
	return false
}

// parseTimestamp reads an until= value as Docker does: a Go duration back
// from now, an RFC 3339 date or time (local time when it names no zone),
// or Unix seconds with optional fraction.
func parseTimestamp(value string, now time.Time) (time.Time, error) {
	if strings.TrimSpace(value) == "" {
		return time.Time{}, errors.New("failed to parse value as time or duration: value is empty")
	}
	if d, err := time.ParseDuration(value); value != "0" && err == nil {
		return now.Add(-d).UTC(), nil
	}
	inLocation := !strings.ContainsAny(value, "zZ+") && strings.Count(value, "-") != 3
	var format string
	switch {
	case strings.Contains(value, "."):
		format = "2006-01-02T15:04:05.999999999"
		if !inLocation {
			format = time.RFC3339Nano
		}
	case strings.Contains(value, "T"):
		colons := strings.Count(value, ":")
		if !inLocation && !strings.ContainsAny(value, "zZ") && colons > 0 {
			colons-- // the zone's
		}
		layouts := []string{"2006-01-02T15", "2006-01-02T15:04", "2006-01-02T15:04:05"}
		format = layouts[min(colons, 2)]
		if !inLocation {
			format = []string{"2006-01-02T15Z07:00", "2006-01-02T15:04Z07:00", time.RFC3339}[min(colons, 2)]
		}
	case inLocation:
		format = "2006-01-02"
	default:
		format = "2006-01-02Z07:00"
	}
	var t time.Time
	var err error
	if inLocation {
		t, err = time.ParseInLocation(format, value, time.FixedZone(now.Zone()))
	} else {
		t, err = time.Parse(format, value)
	}
	if err != nil {
		if strings.Contains(value, "-") {
			return time.Time{}, err
		}
		if t, err = parseUnix(value); err != nil {
			return time.Time{}, fmt.Errorf("failed to parse value as time or duration: %w", err)
		}
	}
	return t.UTC(), nil
}

func parseUnix(value string) (time.Time, error) {
	s, frac, _ := strings.Cut(value, ".")
	sec, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("invalid seconds %q", s)
	}
	if frac == "" {
		return time.Unix(sec, 0), nil
	}
	if len(frac) > 20 || strings.Trim(frac, "0123456789") != "" {
		return time.Time{}, fmt.Errorf("invalid nanoseconds %q", frac)
	}
	frac = (frac + "000000000")[:9]
	nsec, _ := strconv.ParseInt(frac, 10, 64)
	return time.Unix(sec, nsec), nil
}
