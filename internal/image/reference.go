package image

import (
	"errors"
	"fmt"
	"strings"
)

// imageRef is an image name as Docker reads it (the grammar of
// github.com/distribution/reference): [domain/]path[:tag][@digest], with
// Docker Hub's docker.io/ and library/ filled in. It is written here rather
// than taken from that package because the package compiles a dozen
// regular expressions when the program starts, ~1.2 ms of every ctnet
// command, image-related or not; reference_test.go checks it against the
// package on the same inputs.
type imageRef struct {
	domain, path, tag, digest string
}

// Errors with the messages of distribution/reference and go-digest, which
// Docker prints.
var (
	errRefFormat       = errors.New("invalid reference format")
	errRefTooLong      = fmt.Errorf("repository name must not be more than %d characters", maxNameLen)
	errRefUppercase    = errors.New("repository name must be lowercase")
	errDigestFormat    = errors.New("invalid checksum digest format")
	errDigestLength    = errors.New("invalid checksum digest length")
	errDigestAlgorithm = errors.New("unsupported digest algorithm")
)

const (
	maxNameLen  = 255
	dockerHub   = "docker.io"
	hubLibrary  = "library/"
	legacyIndex = "index.docker.io"
)

// digestLen is the length of the hexadecimal part of each algorithm Docker
// knows.
var digestLen = map[string]int{"sha256": 64, "sha384": 96, "sha512": 128}

// parseNormalized reads s as Docker's ParseNormalizedNamed does.
func parseNormalized(s string) (imageRef, error) {
	if isImageID(s) {
		return imageRef{}, fmt.Errorf("invalid repository name (%s), cannot specify 64-byte hexadecimal strings", s)
	}
	domain, rest := splitDomain(s)
	if remote, _, _ := strings.Cut(rest, ":"); remote != strings.ToLower(remote) {
		return imageRef{}, fmt.Errorf("invalid reference format: repository name (%s) must be lowercase", remote)
	}
	return parseReference(domain + "/" + rest)
}

// isImageID: 64 lowercase hexadecimal digits.
func isImageID(s string) bool {
	return len(s) == 64 && strings.Trim(s, "0123456789abcdef") == ""
}

// splitDomain is Docker's rule: a name without a slash is on Docker Hub;
// otherwise the first component is a domain when it is "localhost", has a
// dot or a colon, or has an upper-case letter.
func splitDomain(s string) (domain, rest string) {
	first, after, ok := strings.Cut(s, "/")
	switch {
	case !ok:
		return dockerHub, hubLibrary + s
	case first == legacyIndex:
		domain, rest = dockerHub, after
	case first == "localhost" || strings.ContainsAny(first, ".:") || strings.ToLower(first) != first:
		domain, rest = first, after
	default:
		domain, rest = dockerHub, s
	}
	if domain == dockerHub && !strings.ContainsRune(rest, '/') {
		rest = hubLibrary + rest
	}
	return domain, rest
}

// parseReference reads [domain/]path[:tag][@digest] as the package's
// ReferenceRegexp and Parse do.
func parseReference(s string) (imageRef, error) {
	r, err := matchRefGrammar(s)
	if err != nil {
		if _, lowerErr := matchRefGrammar(strings.ToLower(s)); lowerErr == nil {
			return imageRef{}, errRefUppercase
		}
		return imageRef{}, err
	}
	if len(r.path) > maxNameLen {
		return imageRef{}, errRefTooLong
	}
	if r.digest != "" {
		alg, hex, _ := strings.Cut(r.digest, ":")
		n, ok := digestLen[alg]
		switch {
		case !ok:
			return imageRef{}, errDigestAlgorithm
		case len(hex) != n:
			return imageRef{}, errDigestLength
		case strings.Trim(hex, "0123456789abcdef") != "":
			return imageRef{}, errDigestFormat
		}
	}
	return r, nil
}

// matchRefGrammar is the grammar alone.
func matchRefGrammar(s string) (imageRef, error) {
	var r imageRef
	rest, digest, hasDigest := strings.Cut(s, "@")
	if hasDigest {
		if !validDigest(digest) {
			return r, errRefFormat
		}
		r.digest = digest
	}
	if i := strings.LastIndexByte(rest, ':'); i > strings.LastIndexByte(rest, '/') {
		if !validTag(rest[i+1:]) {
			return r, errRefFormat
		}
		rest, r.tag = rest[:i], rest[i+1:]
	}
	validPath := func(p string) bool {
		for _, c := range strings.Split(p, "/") {
			if !validPathComponent(c) {
				return false
			}
		}
		return true
	}
	// The domain is optional: a first component that is no domain may
	// still be a path component.
	if first, after, ok := strings.Cut(rest, "/"); ok && validDomain(first) && validPath(after) {
		r.domain, r.path = first, after
		return r, nil
	}
	if !validPath(rest) {
		return r, errRefFormat
	}
	r.path = rest
	return r, nil
}

// validDomain: host[:port], the host a name of dot-separated labels
// (letters, digits, inner dashes) or an IPv6 address in brackets.
func validDomain(d string) bool {
	host := d
	if strings.HasPrefix(d, "[") {
		end := strings.IndexByte(d, ']')
		if end < 2 || strings.Trim(d[1:end], "0123456789abcdefABCDEF:") != "" {
			return false
		}
		host, d = "", d[end+1:]
		if d == "" {
			return true
		}
		if d[0] != ':' {
			return false
		}
		return allDigits(d[1:])
	}
	if i := strings.IndexByte(d, ':'); i >= 0 {
		host = d[:i]
		if !allDigits(d[i+1:]) {
			return false
		}
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !isAlnum(c) && c != '-' {
				return false
			}
		}
	}
	return true
}

// validPathComponent: [a-z0-9]+ joined by ".", "_", "__" or runs of "-".
func validPathComponent(c string) bool {
	if c == "" {
		return false
	}
	sep := 0 // length of the separator being read; -1 after a "-" run
	for i, ch := range c {
		switch {
		case isLowerAlnum(ch):
			sep = 0
		case i == 0:
			return false
		case ch == '-':
			if sep > 0 {
				return false
			}
			sep = -1
		case ch == '.':
			if sep != 0 {
				return false
			}
			sep = 3 // a dot stands alone
		case ch == '_':
			switch {
			case sep == 0:
				sep = 1
			case sep == 1:
				sep = 2
			default:
				return false
			}
		default:
			return false
		}
	}
	return sep == 0
}

// validTag: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}.
func validTag(t string) bool {
	if t == "" || len(t) > 128 || t[0] == '.' || t[0] == '-' {
		return false
	}
	for _, c := range t {
		if !isAlnum(c) && c != '_' && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

// validDigest: algorithm:hex, the algorithm [A-Za-z][A-Za-z0-9]* parts
// joined by one of "-_+.", the hex at least 32 digits.
func validDigest(d string) bool {
	alg, hex, ok := strings.Cut(d, ":")
	if !ok || len(hex) < 32 || strings.Trim(hex, "0123456789abcdefABCDEF") != "" {
		return false
	}
	start := true // the next character begins a part
	for _, c := range alg {
		switch {
		case start:
			if !isAlpha(c) {
				return false
			}
			start = false
		case strings.ContainsRune("-_+.", c):
			start = true
		case !isAlnum(c):
			return false
		}
	}
	return !start
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func isAlpha(c rune) bool      { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isAlnum(c rune) bool      { return isAlpha(c) || c >= '0' && c <= '9' }
func isLowerAlnum(c rune) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// Name is domain/path.
func (r imageRef) Name() string {
	if r.domain == "" {
		return r.path
	}
	return r.domain + "/" + r.path
}

// String is the full reference.
func (r imageRef) String() string { return r.Name() + r.suffix() }

func (r imageRef) suffix() string {
	s := ""
	if r.tag != "" {
		s += ":" + r.tag
	}
	if r.digest != "" {
		s += "@" + r.digest
	}
	return s
}

// FamiliarName is the name as Docker shows it: Docker Hub's docker.io/
// and library/ left out.
func (r imageRef) FamiliarName() string {
	if r.domain != dockerHub {
		return r.Name()
	}
	if p, ok := strings.CutPrefix(r.path, hubLibrary); ok && !strings.ContainsRune(p, '/') {
		return p
	}
	return r.path
}

// FamiliarString is FamiliarName with the tag and digest.
func (r imageRef) FamiliarString() string { return r.FamiliarName() + r.suffix() }

// NameOnly: neither tag nor digest.
func (r imageRef) NameOnly() bool { return r.tag == "" && r.digest == "" }

// WithDefaultTag gives a bare name the tag "latest".
func (r imageRef) WithDefaultTag() imageRef {
	if r.NameOnly() {
		r.tag = "latest"
	}
	return r
}
