#!/usr/bin/env bash
# Every test toolgate has: formatting, vet, staticcheck, then all packages under the race
# detector (end-to-end tests included; they build and run the real binary). This is the
# README's test command, and exactly what CI runs.
set -euo pipefail
cd "$(dirname "$0")"

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './e2e/interop/*'))
if [ -n "$unformatted" ]; then
  echo "gofmt needed on:" $unformatted >&2
  exit 1
fi
go vet ./...
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
go test -race -count=1 -timeout 20m ./...
