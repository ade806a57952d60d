package ocirt

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Exit statuses Docker's CLI uses when a container's process never ran.
const (
	ExitToolFailure  = 125 // the runtime (or ctnet) failed
	ExitCannotInvoke = 126 // the command is a directory or not executable
	ExitNotFound     = 127 // the command does not exist
)

// StartError is returned when the OCI runtime could not start the process of
// a container (Run, Start) or of an exec: Msg is the runtime's reason without
// its own prefixes and log formatting, Code the exit status Docker gives.
type StartError struct {
	ID   string
	Code int
	Msg  string
}

func (e *StartError) Error() string { return fmt.Sprintf("container %s: %s", e.ID, e.Msg) }

// ExitCode is the status a command line should exit with.
func (e *StartError) ExitCode() int { return e.Code }

// ExitCode is the status a command line should exit with after err: 0 for
// nil, the code an error carries (StartError), and 125 for every other
// failure, as Docker's CLI.
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	var c interface{ ExitCode() int }
	if errors.As(err, &c) {
		return c.ExitCode()
	}
	return ExitToolFailure
}

// startError classifies the runtime's message the way Docker does.
func startError(id, msg string) *StartError {
	msg = trimRuntimePrefixes(msg)
	code := ExitToolFailure
	// runc checks the command with Go's exec.LookPath before it executes it:
	// `exec: "cmd": executable file not found in $PATH`, `... permission denied`
	if rest, ok := strings.CutPrefix(msg, `exec: "`); ok {
		switch {
		case strings.Contains(rest, "executable file not found"), strings.Contains(rest, "no such file or directory"),
			strings.Contains(rest, "not a directory"):
			code = ExitNotFound
		case strings.Contains(rest, "permission denied"), strings.Contains(rest, "is a directory"):
			code = ExitCannotInvoke
		}
	}
	if code == ExitCannotInvoke && strings.HasSuffix(msg, "permission denied") {
		msg += " (a directory, or a file without execute permission)"
	}
	return &StartError{ID: id, Code: code, Msg: msg}
}

var runtimePrefixes = []string{
	"runc run failed: ", "runc create failed: ", "runc exec failed: ", "exec failed: ",
	"crun: ", "unable to start container process: ",
}

func trimRuntimePrefixes(msg string) string {
	msg = strings.TrimSpace(msg)
	for again := true; again; {
		again = false
		for _, p := range runtimePrefixes {
			if rest, ok := strings.CutPrefix(msg, p); ok {
				msg, again = rest, true
			}
		}
	}
	return msg
}

// runtimeMessage extracts the last error a runtime logged with --log-format
// json (one object per line); text that is not JSON is taken as it is.
func runtimeMessage(out []byte) string {
	var last, plain string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var entry struct{ Level, Msg string }
		if line[0] == '{' && json.Unmarshal(line, &entry) == nil {
			if entry.Level == "error" || entry.Level == "fatal" {
				last = entry.Msg
			}
			continue
		}
		plain = string(line)
	}
	if last != "" {
		return trimRuntimePrefixes(last)
	}
	return trimRuntimePrefixes(plain)
}

// runtimeLogMessage is runtimeMessage of a --log file.
func runtimeLogMessage(path string) string {
	b, _ := os.ReadFile(path)
	return runtimeMessage(b)
}
