#!/bin/sh
# Runs every test of ctnet. As root, the kernel tests run too, each in its own
# sandbox namespaces; nothing touches this machine's own network namespace.
set -eu
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] && ./scripts/deps.sh
export PATH="$PATH:/usr/local/go/bin"
export PATH="$PATH:$(go env GOPATH)/bin"
command -v staticcheck >/dev/null || go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
go vet ./...
staticcheck ./...
go test -count=1 -timeout 40m "$@" ./...
