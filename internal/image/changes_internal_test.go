package image

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestApplyChanges checks `import -c` against what Docker's BuildFromConfig
// makes of the same instructions.
func TestApplyChanges(t *testing.T) {
	for _, tc := range []struct {
		changes []string
		want    string // the config as JSON
	}{
		{[]string{"EXPOSE 80"}, `{"ExposedPorts":{"80/tcp":{}}}`},
		{[]string{"EXPOSE 80/udp 443 53/SCTP"}, `{"ExposedPorts":{"443/tcp":{},"53/sctp":{},"80/udp":{}}}`},
		{[]string{"EXPOSE 8000-8002"}, `{"ExposedPorts":{"8000/tcp":{},"8001/tcp":{},"8002/tcp":{}}}`},
		{[]string{"EXPOSE 5000:80", "EXPOSE 127.0.0.1:90:91/udp", "EXPOSE [::1]:1:2"}, `{"ExposedPorts":{"2/tcp":{},"80/tcp":{},"91/udp":{}}}`},
		{[]string{"ENV P=80 Q=81/udp", "EXPOSE $P ${Q}"}, `{"ExposedPorts":{"80/tcp":{},"81/udp":{}},"Env":["P=80","Q=81/udp"]}`},
		{[]string{"ENV PS=\"1 2\"", "EXPOSE $PS"}, `{"ExposedPorts":{"1/tcp":{},"2/tcp":{}},"Env":["PS=1 2"]}`},
		{[]string{`CMD ["sh"]`}, `{"Cmd":["sh"]}`},
		{[]string{`CMD ["sh", "-c", "echo \"hi\""]`}, `{"Cmd":["sh","-c","echo \"hi\""]}`},
		{[]string{"CMD echo hi"}, `{"Cmd":["/bin/sh","-c","echo hi"]}`},
		{[]string{`CMD ["sh"`}, `{"Cmd":["/bin/sh","-c","[\"sh\""]}`}, // not JSON: the shell form, as Docker reads it
		{[]string{"CMD sh", "CMD top"}, `{"Cmd":["/bin/sh","-c","top"]}`},
		{[]string{`ENTRYPOINT ["/bin/busybox"]`}, `{"Entrypoint":["/bin/busybox"]}`},
		{[]string{`CMD ["x"]`, `ENTRYPOINT ["/e"]`}, `{"Cmd":["x"],"Entrypoint":["/e"]}`},
		{[]string{`ENTRYPOINT ["/e"]`, `CMD ["x"]`}, `{"Cmd":["x"],"Entrypoint":["/e"]}`},
		{[]string{"ENTRYPOINT top -b"}, `{"Entrypoint":["/bin/sh","-c","top -b"]}`},
		{[]string{`ENTRYPOINT ["/e"]`, "ENTRYPOINT"}, `{}`}, // an empty ENTRYPOINT clears it
		{[]string{"ENV K=V"}, `{"Env":["K=V"]}`},
		{[]string{"ENV K V W"}, `{"Env":["K=V W"]}`}, // the legacy form
		{[]string{`ENV A=1 B="two words" C=three\ words`}, `{"Env":["A=1","B=two words","C=three words"]}`},
		{[]string{"ENV A=1", "ENV B=$A C=${A}x D='$A'"}, `{"Env":["A=1","B=1","C=1x","D=$A"]}`},
		{[]string{"ENV A=1", "ENV A=2"}, `{"Env":["A=2"]}`},
		{[]string{"ENV A=${UNSET:-dflt}"}, `{"Env":["A=dflt"]}`},
		{[]string{"ENV PATH=$PATH:/x"}, `{"Env":["PATH=:/x"]}`}, // an import starts from no environment
		{[]string{"WORKDIR /x"}, `{"WorkingDir":"/x"}`},
		{[]string{"WORKDIR /x", "WORKDIR y/../z"}, `{"WorkingDir":"/x/z"}`},
		{[]string{"WORKDIR rel"}, `{"WorkingDir":"/rel"}`},
		{[]string{"ENV D=/data", "WORKDIR $D/w"}, `{"Env":["D=/data"],"WorkingDir":"/data/w"}`},
		{[]string{"USER u"}, `{"User":"u"}`},
		{[]string{"USER 1000:1000"}, `{"User":"1000:1000"}`},
		{[]string{"ENV U=nobody", "USER $U"}, `{"User":"nobody","Env":["U=nobody"]}`},
		{[]string{"LABEL k=v"}, `{"Labels":{"k":"v"}}`},
		{[]string{`LABEL "a b"="c d" e=f`, "LABEL k=1", "LABEL k=2"}, `{"Labels":{"a b":"c d","e":"f","k":"2"}}`},
		{[]string{"LABEL k v"}, `{"Labels":{"k":"v"}}`},
		{[]string{"VOLUME /data"}, `{"Volumes":{"/data":{}}}`},
		{[]string{`VOLUME ["/a", "/b"]`}, `{"Volumes":{"/a":{},"/b":{}}}`},
		{[]string{"STOPSIGNAL SIGKILL"}, `{"StopSignal":"SIGKILL"}`},
		{[]string{"STOPSIGNAL 9"}, `{"StopSignal":"9"}`},
		{[]string{"STOPSIGNAL term"}, `{"StopSignal":"term"}`},
		{[]string{"STOPSIGNAL RTMIN+3"}, `{"StopSignal":"RTMIN+3"}`},
		{[]string{"HEALTHCHECK --interval=5s --retries=2 CMD true"}, `{"Healthcheck":{"Test":["CMD-SHELL","true"],"Interval":5000000000,"Retries":2}}`},
		{[]string{`HEALTHCHECK CMD ["wget", "-q", "localhost"]`}, `{"Healthcheck":{"Test":["CMD","wget","-q","localhost"]}}`},
		{[]string{"HEALTHCHECK NONE"}, `{"Healthcheck":{"Test":["NONE"]}}`},
		{[]string{"ONBUILD RUN echo x"}, `{"OnBuild":["RUN echo x"]}`},
		{[]string{"expose 80", "env a=b"}, `{"ExposedPorts":{"80/tcp":{}},"Env":["a=b"]}`}, // instructions in any case
		{[]string{"ENV A=1\nEXPOSE 80"}, `{"ExposedPorts":{"80/tcp":{}},"Env":["A=1"]}`},   // the changes are one Dockerfile
		{[]string{`ENV A=1 \`, "B=2"}, `{"Env":["A=1","B=2"]}`},
		{[]string{"# a comment", "EXPOSE 1"}, `{"ExposedPorts":{"1/tcp":{}}}`},
		{nil, `{}`},
	} {
		var cfg containerConfig
		if err := applyChanges(&cfg, tc.changes); err != nil {
			t.Errorf("%q: %v", tc.changes, err)
			continue
		}
		b, _ := json.Marshal(cfg)
		if string(b) != tc.want {
			t.Errorf("%q:\n got %s\nwant %s", tc.changes, b, tc.want)
		}
	}
}

// TestApplyChangesRefused: what Docker refuses, with its words, in one line
// that names the change.
func TestApplyChangesRefused(t *testing.T) {
	for _, tc := range []struct {
		changes []string
		want    string
	}{
		{[]string{"RUN echo"}, `change "RUN echo": RUN is not a valid change command`},
		{[]string{"EXPOSE 80", "FROM busybox"}, `change "FROM busybox": FROM is not a valid change command`},
		{[]string{"COPY a b"}, "COPY is not a valid change command"},
		{[]string{"ADD a b"}, "ADD is not a valid change command"},
		{[]string{"ARG x"}, "ARG is not a valid change command"},
		{[]string{`SHELL ["sh"]`}, "SHELL is not a valid change command"},
		{[]string{"MAINTAINER me"}, "MAINTAINER is not a valid change command"},
		{[]string{"FOO bar"}, `change "FOO bar": FOO is not a valid change command`},
		{[]string{"EXPOSE"}, "EXPOSE requires at least one argument"},
		{[]string{"EXPOSE 80/foo"}, "invalid proto: foo"},
		{[]string{"EXPOSE abc"}, "invalid containerPort: abc"},
		{[]string{"EXPOSE 70000"}, "invalid containerPort: 70000"},
		{[]string{"EXPOSE 90-80"}, "invalid containerPort: 90-80"},
		{[]string{"EXPOSE /tcp"}, "no port specified: /tcp<empty>"},
		{[]string{"EXPOSE bad:80:80"}, "invalid IP address"},
		{[]string{"EXPOSE x:80"}, "invalid hostPort: x"},
		{[]string{"EXPOSE 80-81:80-83"}, "invalid ranges specified for container and host Ports: 80-83 and 80-81"},
		{[]string{"ENV"}, "ENV requires at least one argument"},
		{[]string{"ENV =x"}, "ENV names can not be blank"},
		{[]string{"EXPOSE 1", "ENV A"}, `change "ENV A": ENV must have two arguments`},
		{[]string{`ENV A="x`}, "unexpected end of statement while looking for matching double-quote"},
		{[]string{"ENV A=${B"}, "unsupported modifier (end of text) in substitution"},
		{[]string{"WORKDIR"}, "WORKDIR requires exactly one argument"},
		{[]string{"USER"}, "USER requires exactly one argument"},
		{[]string{"LABEL"}, "LABEL requires at least one argument"},
		{[]string{"LABEL k"}, `change "LABEL k": LABEL must have two arguments`},
		{[]string{"STOPSIGNAL FOO"}, "Invalid signal: FOO"},
		{[]string{"STOPSIGNAL 0"}, "Invalid signal: 0"},
		{[]string{"STOPSIGNAL -1"}, "Invalid signal: -1"},
		{[]string{"STOPSIGNAL RTMIN+16"}, "Invalid signal: RTMIN+16"},
		{[]string{"STOPSIGNAL"}, "STOPSIGNAL requires exactly one argument"},
		{[]string{"HEALTHCHECK FOO"}, `Unknown type "FOO" in HEALTHCHECK (try CMD)`},
		{[]string{"HEALTHCHECK"}, "HEALTHCHECK requires at least one argument"},
		{[]string{"HEALTHCHECK CMD"}, "Missing command after HEALTHCHECK CMD"},
		{[]string{"HEALTHCHECK NONE x"}, "HEALTHCHECK NONE takes no arguments"},
		{[]string{"HEALTHCHECK --interval=x CMD true"}, `time: invalid duration "x"`},
		{[]string{"HEALTHCHECK --retries=-1 CMD true"}, "--retries cannot be negative (-1)"},
		{[]string{"HEALTHCHECK --bogus=1 CMD true"}, "unknown flag: --bogus"},
		{[]string{"ONBUILD ONBUILD x"}, "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"},
		{[]string{"ONBUILD FROM x"}, "FROM isn't allowed as an ONBUILD trigger"},
		{[]string{"ONBUILD"}, "ONBUILD requires at least one argument"},
		{[]string{`VOLUME [""]`}, "VOLUME specified can not be an empty string"},
		{[]string{"VOLUME"}, "VOLUME requires at least one argument"},
		{[]string{""}, "file with no instructions"},
		{[]string{"# only a comment"}, "file with no instructions"},
	} {
		var cfg containerConfig
		err := applyChanges(&cfg, tc.changes)
		if err == nil {
			t.Errorf("%q: accepted", tc.changes)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, tc.want) || strings.ContainsAny(msg, "\n\r") {
			t.Errorf("%q: error %q; want one line with %q", tc.changes, msg, tc.want)
		}
	}
}

func TestParseTimestamp(t *testing.T) {
	now := mustTime(t, "2024-06-01T12:00:00Z")
	for in, want := range map[string]string{
		"10m":                       "2024-06-01T11:50:00Z",
		"1h30m":                     "2024-06-01T10:30:00Z",
		"2024-01-02":                "2024-01-02T00:00:00Z",
		"2024-01-02T03:04:05Z":      "2024-01-02T03:04:05Z",
		"2024-01-02T03:04:05+02:00": "2024-01-02T01:04:05Z",
		"2024-01-02T03:04":          "2024-01-02T03:04:00Z",
		"2024-01-02T03":             "2024-01-02T03:00:00Z",
		"2024-01-02T03:04:05.5Z":    "2024-01-02T03:04:05.5Z",
		"1700000000":                "2023-11-14T22:13:20Z",
		"1700000000.25":             "2023-11-14T22:13:20.25Z",
		"0":                         "1970-01-01T00:00:00Z",
	} {
		got, err := parseTimestamp(in, now)
		if err != nil || !got.Equal(mustTime(t, want)) {
			t.Errorf("parseTimestamp(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"", " ", "yesterday", "2024-13-01", "1.x", "12:00", "1e9"} {
		if got, err := parseTimestamp(bad, now); err == nil {
			t.Errorf("parseTimestamp(%q) = %v; want an error", bad, got)
		}
	}
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// FuzzApplyChanges: any -c text is applied or refused in one line, never a panic.
func FuzzApplyChanges(f *testing.F) {
	for _, s := range []string{
		"EXPOSE 80", `CMD ["sh"]`, "ENV K=V", "ENTRYPOINT top", "WORKDIR /x", "USER u", "LABEL k=v", "RUN x", "",
		"HEALTHCHECK --interval=1s CMD true", "ONBUILD RUN x", "STOPSIGNAL SIGRTMIN+1", "VOLUME [\"/a\"]", "ENV A=${B:-c}",
		"EXPOSE 1-2/udp [::1]:3:4", "# escape=`\nENV A=`\nB", "ENV A=1 \\", "CMD [\"a\",", "LABEL \"k\"=\"v\" \\\n x=y",
	} {
		f.Add(s, "ENV B=$A")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		var cfg containerConfig
		if err := applyChanges(&cfg, []string{a, b}); err != nil && strings.ContainsAny(err.Error(), "\n\r") {
			t.Fatalf("error %q is not one line", err)
		}
	})
}
