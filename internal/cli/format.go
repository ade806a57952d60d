package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"text/template"
)

var templateFuncs = template.FuncMap{
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
	"join":  strings.Join,
	"upper": strings.ToUpper,
	"lower": strings.ToLower,
	"title": func(s string) string {
		if s == "" {
			return s
		}
		return strings.ToUpper(s[:1]) + s[1:]
	},
}

// writeList prints rows the way Docker's --format does: "table TEMPLATE"
// gives aligned columns under headers, "json" one JSON object per line, and
// any other template one line per row.
func writeList[T any](w io.Writer, format string, headers map[string]string, rows []T) error {
	switch {
	case format == "json":
		for _, r := range rows {
			b, err := json.Marshal(r)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "%s\n", b)
		}
		return nil
	case strings.HasPrefix(format, "table"):
		body := strings.TrimSpace(strings.TrimPrefix(format, "table"))
		tmpl, err := parseTemplate(body)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(w, 10, 1, 3, ' ', 0)
		if err := tmpl.Execute(tw, headers); err != nil {
			return fmt.Errorf("--format: %w", err)
		}
		fmt.Fprintln(tw)
		for _, r := range rows {
			if err := tmpl.Execute(tw, r); err != nil {
				return fmt.Errorf("--format: %w", err)
			}
			fmt.Fprintln(tw)
		}
		return tw.Flush()
	default:
		tmpl, err := parseTemplate(format)
		if err != nil {
			return err
		}
		for _, r := range rows {
			if err := tmpl.Execute(w, r); err != nil {
				return fmt.Errorf("--format: %w", err)
			}
			fmt.Fprintln(w)
		}
		return nil
	}
}

func parseTemplate(s string) (*template.Template, error) {
	// Docker lets users type \t for a tab in --format.
	s = strings.ReplaceAll(s, `\t`, "\t")
	t, err := template.New("format").Funcs(templateFuncs).Option("missingkey=error").Parse(s)
	if err != nil {
		return nil, fmt.Errorf("--format: %w", err)
	}
	return t, nil
}

// writeInspect prints objects as an indented JSON array, or each through a
// --format template, as `docker inspect` does.
func writeInspect[T any](w io.Writer, format string, objs []T) error {
	if format == "" {
		if objs == nil {
			objs = []T{}
		}
		b, err := json.MarshalIndent(objs, "", "    ")
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%s\n", b)
		return nil
	}
	return writeList(w, format, nil, objs)
}
