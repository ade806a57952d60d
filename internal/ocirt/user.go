package ocirt

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// maxUserDB bounds what is read of an image's /etc/passwd or /etc/group.
const maxUserDB = 4 << 20

// resolveUser turns "uid[:gid]" or "name[:group]" into ids as Docker does,
// reading the image's /etc/passwd and /etc/group inside its root (see
// inRoot): a user given by name (or a uid listed in /etc/passwd) gets its
// primary group and, unless a group is given, the groups that list it.
func resolveUser(rootfs, user string) (specs.User, error) {
	if user == "" {
		return specs.User{}, nil
	}
	u, g, hasGroup := strings.Cut(user, ":")
	if u == "" || (hasGroup && g == "") {
		return specs.User{}, fmt.Errorf("user %q: want NAME|UID[:GROUP|GID]", user)
	}
	root, err := openInRoot(rootfs)
	if err != nil {
		return specs.User{}, err
	}
	defer root.Close()
	fail := func(err error) (specs.User, error) { return specs.User{}, fmt.Errorf("user %q: %w", user, err) }

	var out specs.User
	name := ""
	uid, uidErr := parseID(u)
	passwd, err := readUserDB(root, "/etc/passwd")
	switch {
	case err != nil:
		return fail(err)
	case passwd == nil && uidErr != nil:
		return fail(errors.New("the image has no /etc/passwd to look the name up in; give a numeric uid"))
	}
	if e, ok := findEntry(passwd, u, uidErr == nil); ok {
		if out.UID, err = parseID(e[2]); err != nil {
			return fail(fmt.Errorf("/etc/passwd: %s has uid %q", e[0], e[2]))
		}
		if len(e) > 3 {
			out.GID, _ = parseID(e[3])
		}
		name = e[0]
	} else if uidErr == nil {
		out.UID = uid
	} else {
		return fail(fmt.Errorf("no user %q in the image's /etc/passwd", u))
	}

	if !hasGroup && name == "" {
		return out, nil
	}
	group, err := readUserDB(root, "/etc/group")
	if err != nil {
		return fail(err)
	}
	if hasGroup {
		gid, gidErr := parseID(g)
		if e, ok := findEntry(group, g, gidErr == nil); ok {
			if out.GID, err = parseID(e[2]); err != nil {
				return fail(fmt.Errorf("/etc/group: %s has gid %q", e[0], e[2]))
			}
		} else if gidErr == nil {
			out.GID = gid
		} else if group == nil {
			return fail(errors.New("the image has no /etc/group to look the group up in; give a numeric gid"))
		} else {
			return fail(fmt.Errorf("no group %q in the image's /etc/group", g))
		}
		return out, nil
	}
	// supplementary groups: those whose member list names the user
	for _, e := range entries(group) {
		if len(e) < 4 || e[3] == "" {
			continue
		}
		for _, m := range strings.Split(e[3], ",") {
			if strings.TrimSpace(m) != name {
				continue
			}
			if gid, err := parseID(e[2]); err == nil && gid != out.GID {
				out.AdditionalGids = append(out.AdditionalGids, gid)
			}
			break
		}
	}
	return out, nil
}

// readUserDB returns the content of file in the image, nil when it has none.
func readUserDB(root *inRoot, file string) ([]byte, error) {
	b, err := root.readFile(file, maxUserDB)
	switch {
	case err == nil:
		if b == nil {
			b = []byte{}
		}
		return b, nil
	case isNotExist(err):
		return nil, nil
	case errors.Is(err, errTooLarge):
		return nil, fmt.Errorf("the image's %s is larger than %d MiB; refusing to read it", file, maxUserDB>>20)
	default:
		return nil, fmt.Errorf("the image's %s cannot be read: %w", file, err)
	}
}

func isNotExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR)
}

// findEntry finds the line of a passwd/group file whose name is key or, if
// numeric, whose id (third field) is key.
func findEntry(db []byte, key string, numeric bool) ([]string, bool) {
	for _, e := range entries(db) {
		if e[0] == key {
			return e, true
		}
	}
	if numeric {
		for _, e := range entries(db) {
			if e[2] == key {
				return e, true
			}
		}
	}
	return nil, false
}

func entries(db []byte) [][]string {
	var out [][]string
	sc := bufio.NewScanner(bytes.NewReader(db))
	sc.Buffer(nil, maxUserDB+1)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		if f := strings.Split(line, ":"); len(f) >= 3 {
			out = append(out, f)
		}
	}
	return out
}

func parseID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err
}
