// Package e2e drives the ctnet binary the way a user does, each test inside
// its own sandbox host (see internal/sandbox).
package e2e

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMain(m *testing.M) {
	code := m.Run()
	// The binary is built once per run into a temp dir; remove it.
	if p := os.Getenv("CTNET_TEST_BINARY"); p == "" {
		matches, _ := filepath.Glob(filepath.Join(os.TempDir(), "ctnet-bin-*"))
		for _, d := range matches {
			os.RemoveAll(d)
		}
	}
	os.Exit(code)
}
