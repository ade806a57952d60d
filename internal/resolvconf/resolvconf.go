// Package resolvconf reads resolv.conf files, ctnet's one parser of them
// (the host's resolvers for the embedded DNS, a container's own file).
package resolvconf

import (
	"bufio"
	"bytes"
	"os"
	"strings"
)

// Path is the host's file.
const Path = "/etc/resolv.conf"

// File is a resolv.conf, line by line.
type File struct {
	Lines []Line
}

// Line is one line with its keyword ("nameserver", "search", "options", …;
// "" for comments and blank lines).
type Line struct {
	Text    string
	Keyword string
	Args    []string
}

// Parse reads a resolv.conf's content.
func Parse(b []byte) File {
	var f File
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		l := Line{Text: sc.Text()}
		if fs := strings.Fields(l.Text); len(fs) > 0 && fs[0][0] != '#' && fs[0][0] != ';' {
			l.Keyword, l.Args = fs[0], fs[1:]
		}
		f.Lines = append(f.Lines, l)
	}
	return f
}

// Read parses the file at path; a missing file is an empty one.
func Read(path string) (File, error) {
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return File{}, err
	}
	return Parse(b), nil
}

// Host is the host's file (empty if unreadable).
func Host() File {
	f, _ := Read(Path)
	return f
}

// Nameservers are the addresses of the nameserver lines, in order.
func (f File) Nameservers() []string {
	var out []string
	for _, l := range f.Lines {
		if l.Keyword == "nameserver" && len(l.Args) > 0 {
			out = append(out, l.Args[0])
		}
	}
	return out
}

// Args are the arguments of keyword's lines: of the last one for "search"
// and "domain" (the resolver takes the last), of every one for the rest.
func (f File) Args(keyword string) []string {
	var out []string
	for _, l := range f.Lines {
		if l.Keyword != keyword {
			continue
		}
		if keyword == "search" || keyword == "domain" {
			out = nil
		}
		out = append(out, l.Args...)
	}
	return out
}

// Keep returns the lines for which keep is true, as text with newlines.
func (f File) Keep(keep func(Line) bool) []byte {
	var out bytes.Buffer
	for _, l := range f.Lines {
		if keep(l) {
			out.WriteString(l.Text)
			out.WriteByte('\n')
		}
	}
	return out.Bytes()
}

// Is is a keep function for lines with one of the keywords.
func Is(keywords ...string) func(Line) bool {
	return func(l Line) bool {
		for _, k := range keywords {
			if l.Keyword == k {
				return true
			}
		}
		return false
	}
}
