package errdefs

import (
	"errors"
	"fmt"
	"testing"
)

func TestWord(t *testing.T) {
	flag := func(f string) string { return "--" + f }
	inner := Field("ip", `{field} "x" is not an IPv4 address`)
	err := fmt.Errorf("container %q: %w", "web", inner)
	if got := Word(err, flag); got != `container "web": --ip "x" is not an IPv4 address` {
		t.Errorf("Word = %q", got)
	}
	if got := err.Error(); got != `container "web": ip "x" is not an IPv4 address` {
		t.Errorf("Error = %q", got)
	}
	if !Is(err, Invalid) || Is(err, NotFound) || KindOf(errors.New("plain")) != 0 {
		t.Error("kinds")
	}
	nested := &Error{Kind: Conflict, Field: "subnet", Msg: "overlaps; pick another with {field}: " + inner.Error(), Err: inner}
	if got := Word(nested, flag); got != `overlaps; pick another with --subnet: --ip "x" is not an IPv4 address` {
		t.Errorf("nested = %q", got)
	}
	if got := Word(errors.New("plain"), flag); got != "plain" {
		t.Errorf("plain = %q", got)
	}
}
