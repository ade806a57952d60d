// Package e2e drives the ctnet binary the way a user does, each test inside
// its own sandbox host (see internal/sandbox).
package e2e

import (
	"os"
	"testing"

	"github.com/ctnet/ctnet/internal/sandbox"
)

func TestMain(m *testing.M) {
	code := m.Run()
	sandbox.RemoveBinary()
	os.Exit(code)
}
