package topology

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"os/exec"
	"strings"
	"time"
)

// SVG lays t out with Graphviz's dot and writes one self-contained SVG.
// Graphviz runs as its own program: linking a layout engine into ctnet
// would make every command start slower and the binary 9 MB larger, for a
// picture only this command draws.
func SVG(ctx context.Context, w io.Writer, t *Topology) error {
	var src bytes.Buffer
	if err := WriteDOT(&src, t); err != nil {
		return err
	}
	dot, err := exec.LookPath("dot")
	if err != nil {
		return errors.New("--format svg and html need Graphviz's dot to lay the picture out: install it (apt-get install graphviz); --format dot prints the picture's source")
	}
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, dot, "-Tsvg")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = &src, &out, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("graphviz: layout: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	_, err = w.Write(out.Bytes())
	return err
}

// HTML writes one self-contained page: the picture (inline SVG), the drift
// and the text form, no script, no external resource.
func HTML(ctx context.Context, w io.Writer, t *Topology) error {
	var svg bytes.Buffer
	if err := SVG(ctx, &svg, t); err != nil {
		return err
	}
	var text bytes.Buffer
	if err := WriteText(&text, t); err != nil {
		return err
	}
	// Inline SVG must not carry the XML prolog and DOCTYPE of a file.
	inline := svg.String()
	if i := strings.Index(inline, "<svg"); i >= 0 {
		inline = inline[i:]
	}
	var b strings.Builder
	b.WriteString(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>ctnet topology</title>
<style>
body { font-family: Helvetica, Arial, sans-serif; margin: 16px; color: #222; background: #fff; }
h1 { font-size: 18px; margin: 0 0 4px 0; }
p.sub { margin: 0 0 12px 0; color: #555; font-size: 12px; }
.picture svg { max-width: 100%; height: auto; }
table.drift { border-collapse: collapse; margin: 8px 0; font-size: 12px; }
table.drift td, table.drift th { border: 1px solid #ccc; padding: 3px 6px; text-align: left; }
table.drift td.where { color: #c62828; font-weight: bold; }
pre { background: #f6f6f6; padding: 8px; font-size: 11px; overflow-x: auto; }
</style></head><body>
`)
	fmt.Fprintf(&b, "<h1>ctnet topology</h1>\n<p class=\"sub\">read from the kernel and ctnet's store at %s</p>\n",
		html.EscapeString(time.Now().UTC().Format(time.RFC3339)))
	b.WriteString(`<div class="picture">` + inline + "</div>\n")
	if len(t.Drift) > 0 {
		b.WriteString("<h2>Drift</h2>\n<table class=\"drift\"><tr><th>held by</th><th>object</th><th>what</th></tr>\n")
		for _, d := range t.Drift {
			fmt.Fprintf(&b, "<tr><td class=\"where\">%s</td><td>%s</td><td>%s</td></tr>\n",
				html.EscapeString(d.Where), html.EscapeString(d.Object), html.EscapeString(d.Problem))
		}
		b.WriteString("</table>\n")
	}
	b.WriteString("<h2>As text</h2>\n<pre>" + html.EscapeString(text.String()) + "</pre>\n</body></html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}
