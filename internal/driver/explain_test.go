package driver

import (
	"os/exec"
	"testing"
)

func TestQuoteRoundTrips(t *testing.T) {
	for _, s := range []string{"", "plain", "br-0123", "{ \"veth1\" . 02:42:ac:11:00:02 }", "it's", "a b", "$HOME", "`x`", "\\", "*", "ctnet network web",
		"10.0.0.0/24", "--net=/proc/1/ns/net", "new\nline", "tab\there", "é", "!"} {
		out, err := exec.Command("sh", "-c", "printf %s "+Quote(s)).Output()
		if err != nil || string(out) != s {
			t.Errorf("Quote(%q) = %s: sh reads back %q (%v)", s, Quote(s), out, err)
		}
	}
	if got := (Command{Args: []string{"nft", "add", "element", "inet", "ctnet", "bridges", `{ "ctnet0" }`}}).Line(); got != `nft add element inet ctnet bridges '{ "ctnet0" }'` {
		t.Errorf("Line = %s", got)
	}
}
