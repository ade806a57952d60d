package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/ctnet/ctnet/internal/dockertest"
	"github.com/ctnet/ctnet/internal/sandbox"
)

// The differential suite runs the same command sequences against a real
// dockerd (Debian's docker.io, in a sandbox of its own) and against ctnet (in
// another, identical sandbox), normalises what differs by nature (ids,
// timestamps, durations, the program's name) and compares exit status,
// stdout and stderr (stderr matches when ctnet's message contains Docker's,
// so that scripts grepping Docker's words find them). Each difference must
// be listed, with the reason, in intendedDiffs (ctnet differs on purpose)
// or missingDiffs (ctnet lacks it yet); a listed difference that no longer
// happens fails the test too, so the lists stay the truth.
//
//	go test ./e2e -run TestDifferential -v       # every case, side by side
//	CTNET_DIFF_REPORT=FILE go test ./e2e -run TestDifferential   # the report

// diffCase is one command sequence. Setup commands run on both sides and
// must succeed; steps are compared.
type diffCase struct {
	name  string
	setup [][]string
	steps [][]string
}

// sideResult is what one command did on one side.
type sideResult struct {
	code           int
	stdout, stderr string
}

type diffSide struct {
	name string
	run  func(args ...string) sideResult
	// canon names the addresses of Docker's default pool (172.16.0.0/12)
	// and the MACs derived from them in the order they first appear in a
	// case: a side's earlier cases leave its allocators elsewhere (Docker
	// hands out subnets round robin, ctnet addresses), which a fresh host
	// would not. Addresses in subnets a case gives stay as they are.
	canon map[string]string
}

var canonRE = regexp.MustCompile(`\b172\.(1[6-9]|2\d|3[01])\.\d{1,3}\.\d{1,3}\b|\b02:42:[0-9a-f]{2}(:[0-9a-f]{2}){3}\b`)

func (d *diffSide) canonical(s string) string {
	return canonRE.ReplaceAllStringFunc(s, func(m string) string {
		if _, ok := d.canon[m]; !ok {
			kind := "IP"
			if strings.Contains(m, ":") {
				kind = "MAC"
			}
			d.canon[m] = fmt.Sprintf("<%s%d>", kind, len(d.canon)+1)
		}
		return d.canon[m]
	})
}

func (d *diffSide) step(args ...string) sideResult {
	r := d.run(args...)
	r.stdout, r.stderr = d.canonical(r.stdout), d.canonical(r.stderr)
	return r
}

func TestDifferential(t *testing.T) {
	if err := dockertest.Installed(); err != nil {
		t.Skip(err)
	}
	t.Parallel()
	ds := sandbox.New(t)
	ds.ServeDNS(nil)
	d := dockertest.New(t, ds)
	d.Start()
	d.ImportBusybox("busybox")
	cs := sandbox.New(t)
	cs.ServeDNS(nil)
	withBusybox(t, cs)
	removeContainersAtEnd(t, cs)

	docker := &diffSide{name: "docker", run: func(args ...string) sideResult {
		o, e, err := d.Docker(args...)
		return sideResult{exitCode(err), o, e}
	}}
	ctnet := &diffSide{name: "ctnet", run: func(args ...string) sideResult {
		o, e, err := cs.Ctnet(args...)
		return sideResult{exitCode(err), o, e}
	}}

	seen := map[string]bool{}
	var matched, total int
	counts := map[string]int{}
	var unexpected, stale, report []string
	for _, c := range diffCases() {
		for _, side := range []*diffSide{docker, ctnet} {
			resetSide(side)
			side.canon = map[string]string{}
		}
		// Setup steps may fail on purpose (a container that exits 3), the
		// same way on both sides.
		setupFailed := ""
		for _, args := range c.setup {
			dr, cr := docker.step(args...), ctnet.step(args...)
			if dr.code != cr.code && setupFailed == "" {
				setupFailed = fmt.Sprintf("setup %s: exit docker %d, ctnet %d: %s", strings.Join(args, " "), dr.code, cr.code, strings.TrimSpace(dr.stderr+cr.stderr))
			}
		}
		for i, args := range c.steps {
			key := fmt.Sprintf("%s#%d", c.name, i+1)
			if seen[key] {
				t.Fatalf("case %s twice", key)
			}
			seen[key] = true
			total++
			diff := setupFailed
			if diff == "" {
				diff = compareSides(docker.step(args...), ctnet.step(args...))
			}
			label := "intended"
			reason, listed := intendedDiffs[key]
			if r, ok := missingDiffs[key]; ok {
				label, reason, listed = "missing", r, true
			}
			line := fmt.Sprintf("%-28s %s", key, strings.Join(args, " "))
			switch {
			case diff == "" && listed:
				stale = append(stale, fmt.Sprintf("%s: listed as an intended difference (%s) but now matches: remove it from intendedDiffs", line, reason))
				matched++
			case diff == "":
				matched++
				report = append(report, "match     "+line)
			case listed:
				counts[label]++
				report = append(report, fmt.Sprintf("%-9s %s\n          why: %s\n%s", label, line, reason, indent(diff)))
			default:
				unexpected = append(unexpected, line+"\n"+indent(diff))
				report = append(report, "DIFFERS   "+line+"\n"+indent(diff))
			}
		}
	}
	for _, m := range []map[string]string{intendedDiffs, missingDiffs} {
		for k := range m {
			if !seen[k] {
				stale = append(stale, k+": listed as a difference but no such step")
			}
		}
	}
	sort.Strings(stale)
	summary := fmt.Sprintf("differential suite: %d steps in %d cases: %d match, %d intended differences, %d missing in ctnet (listed), %d unexpected", total, len(diffCases()), matched, counts["intended"], counts["missing"], len(unexpected))
	t.Log(summary)
	if f := os.Getenv("CTNET_DIFF_REPORT"); f != "" {
		body := summary + "\n\n" + strings.Join(report, "\n") + "\n"
		if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
			t.Error(err)
		}
	}
	for _, u := range unexpected {
		t.Errorf("differs from Docker:\n%s", u)
	}
	for _, s := range stale {
		t.Error(s)
	}
}

// resetSide removes every container and user network: each case starts as a
// fresh host does.
func resetSide(side *diffSide) {
	if ids := strings.Fields(side.run("ps", "-aq").stdout); len(ids) > 0 {
		side.run(append([]string{"rm", "-f"}, ids...)...)
	}
	side.run("network", "prune", "-f")
	for _, img := range strings.Fields(side.run("images", "--format", "{{.Repository}}:{{.Tag}}").stdout) {
		if img != "busybox:latest" {
			side.run("rmi", img)
		}
	}
}

func compareSides(d, c sideResult) string {
	var out []string
	if d.code != c.code {
		out = append(out, fmt.Sprintf("exit: docker %d, ctnet %d", d.code, c.code))
	}
	if dn, cn := normOut(d.stdout), normOut(c.stdout); dn != cn {
		out = append(out, fmt.Sprintf("stdout:\n  docker: %q\n  ctnet:  %q", dn, cn))
	}
	if dn, cn := normErr(d.stderr), normErr(c.stderr); dn != cn && (dn == "" || !strings.Contains(cn, dn)) {
		out = append(out, fmt.Sprintf("stderr:\n  docker: %q\n  ctnet:  %q", dn, cn))
	}
	return strings.Join(out, "\n")
}

var norms = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`sha256:[0-9a-f]{64}`), "<DIGEST>"},
	{regexp.MustCompile(`\b[0-9a-f]{64}\b`), "<ID>"},
	{regexp.MustCompile(`\b[0-9a-f]{12}\b`), "<SHORT>"},
	{regexp.MustCompile(`\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)?( [+-]\d{4} UTC)?`), "<TIME>"},
	{regexp.MustCompile(`(Less than a|About a|About an|\d+) (second|minute|hour)s?`), "<DUR>"},
	{regexp.MustCompile(`time=[0-9.]+ ms`), "time=<T> ms"},
	{regexp.MustCompile(`min/avg/max = [0-9./]+ ms`), "min/avg/max = <T> ms"},
	{regexp.MustCompile(`\bdocker\b`), "ctnet"},
	// table columns are as wide as their (normalised) cells were
	{regexp.MustCompile(`  +`), "  "},
}

func normOut(s string) string {
	for _, n := range norms {
		s = n.re.ReplaceAllString(s, n.with)
	}
	return s
}

// normErr drops the wrapping each program puts around a message: Docker's
// "docker: Error response from daemon: …" and "See 'docker run --help'.",
// ctnet's "Error: …".
func normErr(s string) string {
	var keep []string
	for _, l := range strings.Split(normOut(s), "\n") {
		// The docker client logs its own wait errors as time="…" lines.
		if strings.HasPrefix(l, "See 'ctnet ") || strings.HasPrefix(l, "Run 'ctnet ") || strings.HasPrefix(l, `time="`) || strings.TrimSpace(l) == "" {
			continue
		}
		for _, p := range []string{"ctnet: ", "Error response from daemon: ", "Error: "} {
			l = strings.TrimPrefix(l, p)
		}
		keep = append(keep, strings.TrimSuffix(strings.TrimSpace(l), "."))
	}
	return strings.Join(keep, "\n")
}

func indent(s string) string {
	return "          " + strings.ReplaceAll(s, "\n", "\n          ")
}

// exitCode is a command's exit status: 0, its code, or -1 when it did not
// run to an exit.
func exitCode(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	return -1
}
