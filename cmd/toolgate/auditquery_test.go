package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// GET /audit on the admin socket answers what `audit list --json` prints for the same flags,
// and refuses what the command refuses, with the command's message.
func TestAuditQueryOverSocket(t *testing.T) {
	env := auditTestEnv(t)
	dir := t.TempDir()
	l, err := listenAdminSocket(dir)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: adminSocketHandler(func() adminEnv { return env })}
	go srv.Serve(l)
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", filepath.Join(dir, adminSocketName))
	}}}
	get := func(method, query string) (int, string, string) {
		t.Helper()
		req, err := http.NewRequest(method, "http://toolgate/audit"+query, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, res.Header.Get("Content-Type"), string(b)
	}

	for _, tc := range []struct {
		query string
		flags []string // the same query as `audit list` flags
	}{
		{"", nil},
		{"?tunnel=notes", []string{"--tunnel", "notes"}},
		{"?decision=deny", []string{"--decision", "deny"}},
		{"?since=1h", []string{"--since", "1h"}},
		{"?user=ADA@example.com&kind=mcp", []string{"--user", "ADA@example.com", "--kind", "mcp"}},
		{"?after=2&limit=2", []string{"--after", "2", "--limit", "2"}},
		{"?tool=wipe%1B%5B2J%E2%80%AE", []string{"--tool", "wipe\x1b[2J\u202e"}},
	} {
		code, ct, body := get("GET", tc.query)
		if code != http.StatusOK || ct != "application/x-ndjson" {
			t.Fatalf("GET /audit%s: %d %q: %s", tc.query, code, ct, body)
		}
		var got []uint64
		for line := range strings.Lines(body) {
			var r struct{ Seq uint64 }
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("GET /audit%s: line %q: %v", tc.query, line, err)
			}
			got = append(got, r.Seq)
		}
		if want := auditSeqs(t, env, tc.flags...); !slices.Equal(got, want) || len(want) == 0 {
			t.Errorf("GET /audit%s: seqs %v; audit list %q gives %v", tc.query, got, tc.flags, want)
		}
	}

	for _, tc := range []struct {
		method, query string
		code          int
		want          string
	}{
		{"GET", "?decision=nope", 400, "--decision"},
		{"GET", "?since=yesterday", 400, "--since"},
		{"GET", "?limit=0", 400, "--limit"},
		{"GET", "?secret=1", 400, "unknown parameter secret"},
		{"GET", "?json=true", 400, "unknown parameter json"},
		{"GET", "?tunnel=a&tunnel=b", 400, "more than once"},
		{"POST", "", 405, "GET /audit"},
	} {
		code, _, body := get(tc.method, tc.query)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s /audit%s: %d %q; want %d and %q", tc.method, tc.query, code, body, tc.code, tc.want)
		}
	}
}
