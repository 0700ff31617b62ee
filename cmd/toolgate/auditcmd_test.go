package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/toolgate/toolgate/data"
	"github.com/toolgate/toolgate/web"
)

// auditNow is the clock of the audit command tests; the records are placed before it.
var auditNow = time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC)

// auditTestEnv is a store holding five audit records (seqs 1 to 5, oldest first) and two
// users, and the adminEnv to query it.
func auditTestEnv(t *testing.T) adminEnv {
	t.Helper()
	ctx := context.Background()
	store, err := data.Open(data.Config{Path: filepath.Join(t.TempDir(), dbFileName)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	accounts, err := web.NewAccounts(web.AccountsConfig{Store: store, BaseURL: "https://example.test"})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []string{"ada@example.com", "bob@example.com"} {
		if _, err := accounts.AddUser(ctx, e, "", false); err != nil {
			t.Fatal(err)
		}
	}
	log := store.AuditLog(data.AuditLogConfig{FlushInterval: 10 * time.Millisecond})
	for _, r := range []data.AuditRecord{
		{Time: auditNow.Add(-3 * time.Hour), Kind: "sign_in", User: "ada@example.com", Decision: "allow",
			SourceIP: "192.0.2.1", Detail: "signed in with password"},
		{Time: auditNow.Add(-2 * time.Hour), Kind: "mcp", User: "ada@example.com", Client: "c-1", ClientName: "Claude",
			Tunnel: "notes", Owner: "ada@example.com", Method: "tools/call", Tool: "read_note", Class: "read",
			Decision: "allow", Rule: "owner-all", Status: 200, Latency: 1500 * time.Microsecond, Bytes: 321,
			ArgsDigest: "sha256:abc", Args: json.RawMessage(`{"id": 1, "q": "<b>"}`), SourceIP: "192.0.2.1"},
		{Time: auditNow.Add(-90 * time.Minute), Kind: "mcp", User: "bob@example.com", Client: "c-2",
			Tunnel: "notes", Owner: "ada@example.com", Method: "tools/call", Tool: "delete_note", Class: "destructive",
			Decision: "deny", Rule: "shared-read", Status: 200, Latency: 300 * time.Microsecond},
		{Time: auditNow.Add(-30 * time.Minute), Kind: "mcp", User: "bob@example.com", Client: "c-2",
			Tunnel: "files", Owner: "bob@example.com", Method: "tools/call", Tool: "wipe\x1b[2J\u202e", Class: "destructive",
			Decision: "step_up", Rule: "fresh-sign-in-for-destructive", Status: 403},
		{Time: auditNow.Add(-10 * time.Minute), Kind: "tunnel_open", User: "ada@example.com", Tunnel: "files",
			Owner: "ada@example.com"},
	} {
		log.Append(r)
	}
	if err := log.Close(ctx); err != nil {
		t.Fatal(err)
	}
	return adminEnv{store: store, accounts: accounts, now: func() time.Time { return auditNow }}
}

func runAudit(t *testing.T, env adminEnv, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	code = runAdminCommand(context.Background(), env, append([]string{"audit", "list"}, args...), &o, &e)
	return o.String(), e.String(), code
}

// auditSeqs runs `audit list --json ARGS` and returns the seqs printed, in order.
func auditSeqs(t *testing.T, env adminEnv, args ...string) []uint64 {
	t.Helper()
	out, errOut, code := runAudit(t, env, append(args, "--json")...)
	if code != 0 {
		t.Fatalf("audit list %q: exit %d: %s", args, code, errOut)
	}
	seqs := []uint64{}
	for line := range strings.Lines(out) {
		var r struct{ Seq uint64 }
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("audit list %q: line %q: %v", args, line, err)
		}
		seqs = append(seqs, r.Seq)
	}
	return seqs
}

func TestAuditListTable(t *testing.T) {
	env := auditTestEnv(t)
	out, errOut, code := runAudit(t, env)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 6 {
		t.Fatalf("want a header and 5 rows:\n%s", out)
	}
	if f := strings.Fields(lines[0]); strings.Join(f, " ") != "SEQ TIME KIND USER CLIENT TUNNEL METHOD TOOL CLASS DECISION RULE STATUS LATENCY" {
		t.Fatalf("header: %q", lines[0])
	}
	// Newest first.
	for i, row := range lines[1:] {
		if f := strings.Fields(row); f[0] != fmt.Sprint(5-i) {
			t.Fatalf("row %d is seq %s, want %d:\n%s", i, f[0], 5-i, out)
		}
	}
	for row, want := range map[int][]string{
		1: {"5", "2026-03-14T11:50:00Z", "tunnel_open", "ada@example.com", "-", "files", "-", "-", "-", "-", "-", "-", "-"},
		4: {"2", "2026-03-14T10:00:00Z", "mcp", "ada@example.com", "c-1", "notes", "tools/call", "read_note", "read", "allow", "owner-all", "200", "1.5ms"},
		3: {"3", "2026-03-14T10:30:00Z", "mcp", "bob@example.com", "c-2", "notes", "tools/call", "delete_note", "destructive", "deny", "shared-read", "200", "300µs"},
	} {
		if got := strings.Fields(lines[row]); !slices.Equal(got, want) {
			t.Errorf("row %d: %q, want %q", row, got, want)
		}
	}
	// A tool name from the network cannot reach the terminal as control sequences.
	if strings.ContainsAny(out, "\x1b\u202e") || !strings.Contains(lines[2], `"wipe\x1b[2J\u202e"`) {
		t.Errorf("escape sequences not neutralized: %q", lines[2])
	}
}

func TestAuditListJSON(t *testing.T) {
	env := auditTestEnv(t)
	out, errOut, code := runAudit(t, env, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("want 5 lines:\n%s", out)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(lines[3]), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"seq": 2.0, "time": "2026-03-14T10:00:00Z", "kind": "mcp", "user": "ada@example.com", "client": "c-1",
		"client_name": "Claude", "tunnel": "notes", "owner": "ada@example.com", "method": "tools/call",
		"tool": "read_note", "class": "read", "decision": "allow", "rule": "owner-all", "status": 200.0,
		"latency_ms": 1.5, "bytes": 321.0, "args_digest": "sha256:abc",
		"args": map[string]any{"id": 1.0, "q": "<b>"}, "source_ip": "192.0.2.1",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("record 2:\n got %v\nwant %v", got, want)
	}
	// Args stay raw JSON (as stored: compacted); unset fields are left out but for seq, time
	// and kind.
	if !strings.Contains(lines[3], `"args":{"id":1,"q":`) {
		t.Errorf("args: %s", lines[3])
	}
	if lines[0] != `{"seq":5,"time":"2026-03-14T11:50:00Z","kind":"tunnel_open","user":"ada@example.com","tunnel":"files","owner":"ada@example.com"}` {
		t.Errorf("record 5: %s", lines[0])
	}
	// Every record decodes back to what was stored.
	recs, err := env.store.QueryAudit(context.Background(), data.AuditQuery{Newest: true})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		b, err := auditJSON(r)
		if err != nil || string(b) != lines[i] {
			t.Errorf("auditJSON(%d) = %s, %v; audit list printed %s", r.Seq, b, err, lines[i])
		}
	}
}

func TestAuditListFilters(t *testing.T) {
	env := auditTestEnv(t)
	for _, tc := range []struct {
		args []string
		want []uint64
	}{
		{nil, []uint64{5, 4, 3, 2, 1}},
		{[]string{"--user", " ADA@Example.com "}, []uint64{5, 2, 1}},
		{[]string{"--user", "nobody@example.com"}, []uint64{}},
		{[]string{"--tunnel", "notes"}, []uint64{3, 2}},
		{[]string{"--tool", "read_note"}, []uint64{2}},
		{[]string{"--decision", "deny"}, []uint64{3}},
		{[]string{"--decision", "step_up"}, []uint64{4}},
		{[]string{"--decision", "unauthenticated"}, []uint64{}},
		{[]string{"--kind", "mcp"}, []uint64{4, 3, 2}},
		{[]string{"--kind", "mcp", "--user", "bob@example.com", "--tunnel", "files"}, []uint64{4}},
		{[]string{"--since", "1h"}, []uint64{5, 4}},
		{[]string{"--since", "90m"}, []uint64{5, 4, 3}}, // inclusive
		{[]string{"--since", "2026-03-14T10:15:00Z"}, []uint64{5, 4, 3}},
		{[]string{"--since", "2026-03-14T11:15:00+01:00"}, []uint64{5, 4, 3}},
		{[]string{"--until", "2026-03-14T10:30:00Z"}, []uint64{2, 1}}, // exclusive
		{[]string{"--until", "1h"}, []uint64{3, 2, 1}},
		{[]string{"--since", "2h", "--until", "1h"}, []uint64{3, 2}},
		{[]string{"--limit", "2"}, []uint64{5, 4}},
		{[]string{"--limit", "2", "--kind", "mcp"}, []uint64{4, 3}},
		// Paging forward: oldest first from after the seq given.
		{[]string{"--after", "0", "--limit", "2"}, []uint64{5, 4}}, // 0 is no bound
		{[]string{"--after", "1", "--limit", "2"}, []uint64{2, 3}},
		{[]string{"--after", "3", "--limit", "2"}, []uint64{4, 5}},
		{[]string{"--after", "5"}, []uint64{}},
		{[]string{"--after", "1", "--kind", "mcp"}, []uint64{2, 3, 4}},
		// Paging back: newest first before the seq given.
		{[]string{"--before", "4", "--limit", "2"}, []uint64{3, 2}},
		{[]string{"--after", "1", "--before", "4"}, []uint64{2, 3}},
	} {
		if got := auditSeqs(t, env, tc.args...); !slices.Equal(got, tc.want) {
			t.Errorf("audit list %q: seqs %v, want %v", tc.args, got, tc.want)
		}
	}
	// The table takes the same filters.
	out, _, _ := runAudit(t, env, "--tool", "read_note")
	if strings.Count(out, "\n") != 2 || !strings.Contains(out, "read_note") {
		t.Errorf("table with --tool:\n%s", out)
	}
}

func TestAuditListUsage(t *testing.T) {
	env := auditTestEnv(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--decision", "maybe"}, `--decision "maybe": want allow, deny, step_up, unauthenticated or error`},
		{[]string{"--limit", "0"}, "--limit must be positive"},
		{[]string{"--limit", "x"}, `invalid value "x" for flag -limit`},
		{[]string{"--after", "-1"}, "invalid value"},
		{[]string{"--since", "-1h"}, "a duration must be positive"},
		{[]string{"--since", "yesterday"}, `--since "yesterday": want a duration`},
		{[]string{"--until", "2026-03-14"}, `--until "2026-03-14": want a duration`},
		{[]string{"--since", "1h", "--until", "2h"}, "--until must be later than --since"},
		{[]string{"--after", "3", "--before", "4"}, "--before must be greater"},
		{[]string{"--frobnicate"}, "flag provided but not defined: -frobnicate"},
		{[]string{"--user"}, "flag needs an argument: -user"},
		{[]string{"ada@example.com"}, "audit list: expected flags only"},
	} {
		out, errOut, code := runAudit(t, env, tc.args...)
		if code != 2 || out != "" || !strings.Contains(errOut, tc.want) || !strings.Contains(errOut, "toolgate audit list [--user EMAIL]") {
			t.Errorf("audit list %q: exit %d, stdout %q, stderr %q; want exit 2 and %q with the usage", tc.args, code, out, errOut, tc.want)
		}
	}
	var o, e bytes.Buffer
	if code := runAdminCommand(context.Background(), env, []string{"audit", "frobnicate"}, &o, &e); code != 2 || !strings.Contains(e.String(), `unknown command "audit frobnicate"`) {
		t.Errorf("audit frobnicate: %d %q", code, e.String())
	}
	o.Reset()
	if code := runAdminCommand(context.Background(), env, []string{"audit", "help"}, &o, &e); code != 0 || !strings.Contains(o.String(), "toolgate audit list") {
		t.Errorf("audit help: %d %q", code, o.String())
	}
}

// TestAuditListCLI: `toolgate audit list` is dispatched like the other admin commands and,
// with no server running, reads the database file itself.
func TestAuditListCLI(t *testing.T) {
	dir := t.TempDir()
	store, err := data.Open(data.Config{Path: filepath.Join(dir, dbFileName)})
	if err != nil {
		t.Fatal(err)
	}
	log := store.AuditLog(data.AuditLogConfig{FlushInterval: 10 * time.Millisecond})
	log.Append(data.AuditRecord{Kind: "policy_reload", Detail: "3 rules"})
	if err := log.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	store.Close()
	out, errOut, code := cli(t, dir, "audit", "list", "--json")
	if code != 0 || !strings.Contains(out, `"seq":1,`) || !strings.Contains(out, `"kind":"policy_reload"`) || !strings.Contains(out, `"detail":"3 rules"`) {
		t.Fatalf("audit list: %d %q %q", code, out, errOut)
	}
	if _, errOut, code = cli(t, dir, "audit", "list", "--limit", "-3"); code != 2 || !strings.Contains(errOut, "--limit must be positive") {
		t.Fatalf("audit list --limit -3: %d %q", code, errOut)
	}
}

// readAuditLines reads a JSON lines file back.
func readAuditLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for line := range strings.Lines(string(b)) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func TestAuditExport(t *testing.T) {
	ctx := context.Background()
	store, err := data.Open(data.Config{Path: filepath.Join(t.TempDir(), dbFileName)})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	alog := store.AuditLog(data.AuditLogConfig{FlushInterval: 10 * time.Millisecond})
	defer alog.Close(ctx)

	path := filepath.Join(t.TempDir(), "audit.jsonl")
	// The file is appended to, never truncated.
	if err := os.WriteFile(path, []byte(`{"seq":0,"kind":"earlier"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	stop, err := startAuditExport(ctx, alog, path, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		alog.Append(data.AuditRecord{Kind: "mcp", Tool: fmt.Sprint("t", i)})
	}
	// Lines appear while the export runs, once their batch is committed.
	deadline := time.Now().Add(5 * time.Second)
	for len(readAuditLines(t, path)) < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("lines not written while running: %v", readAuditLines(t, path))
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Args that are not JSON are left out, as the database leaves them out; the rest stays.
	alog.Append(data.AuditRecord{Kind: "mcp", Tool: "bad-args", Args: json.RawMessage(`{"unterminated`)})
	for i := 3; i < 50; i++ {
		alog.Append(data.AuditRecord{Kind: "mcp", Tool: fmt.Sprint("t", i)})
	}
	// Closing the log commits the rest; stop writes what was delivered, and waits for it.
	if err := alog.Close(ctx); err != nil {
		t.Fatal(err)
	}
	stop()
	stop() // again: nothing more to do

	lines := readAuditLines(t, path)
	if len(lines) != 52 || lines[0]["kind"] != "earlier" {
		t.Fatalf("%d lines, first %v", len(lines), lines[0])
	}
	lines = lines[1:]
	for i, l := range lines {
		if l["seq"] != float64(i+1) {
			t.Fatalf("line %d: seq %v, want %d (in order)", i, l["seq"], i+1)
		}
	}
	if l := lines[3]; l["tool"] != "bad-args" || l["args"] != nil {
		t.Errorf("record with invalid args: %v", l)
	}
	if lines[50]["tool"] != "t49" {
		t.Errorf("last line: %v", lines[50])
	}
	// The same shape as audit list --json.
	recs, err := store.QueryAudit(ctx, data.AuditQuery{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	for _, r := range recs {
		j, _ := auditJSON(r)
		if !bytes.Contains(b, append(j, '\n')) {
			t.Errorf("record %d not exported as %s", r.Seq, j)
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("export file mode: %v %v", fi.Mode(), err)
	}
	if !strings.Contains(logs.String(), "audit export stopped") || !strings.Contains(logs.String(), "written=51 missed=0 failed=0") {
		t.Errorf("log: %s", logs.String())
	}

	// A new file is created 0600; an unwritable path fails at start.
	newPath := filepath.Join(t.TempDir(), "new.jsonl")
	stop, err = startAuditExport(ctx, alog, newPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop()
	if fi, err := os.Stat(newPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("new export file: %v %v", fi, err)
	}
	if _, err := startAuditExport(ctx, alog, filepath.Join(t.TempDir(), "no", "such", "dir"), nil); err == nil {
		t.Error("export to a missing directory started")
	}
}

// TestAuditExportStopsWithContext: the export ends with its context, writing what it has.
func TestAuditExportStopsWithContext(t *testing.T) {
	store, err := data.Open(data.Config{Path: filepath.Join(t.TempDir(), dbFileName)})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	alog := store.AuditLog(data.AuditLogConfig{FlushInterval: 10 * time.Millisecond})
	defer alog.Close(context.Background())
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	ctx, cancel := context.WithCancel(context.Background())
	stop, err := startAuditExport(ctx, alog, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	alog.Append(data.AuditRecord{Kind: "tunnel_open"})
	deadline := time.Now().Add(5 * time.Second)
	for len(readAuditLines(t, path)) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("line not written")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	stop() // returns once the context has ended the export
	alog.Append(data.AuditRecord{Kind: "tunnel_close"})
	if err := alog.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if lines := readAuditLines(t, path); len(lines) != 1 || lines[0]["kind"] != "tunnel_open" {
		t.Fatalf("lines after the context ended: %v", lines)
	}
}

// blockingWriter blocks every Write until released.
type blockingWriter struct {
	release chan struct{}
	mu      sync.Mutex
	buf     bytes.Buffer
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	<-w.release
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *blockingWriter) lines() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Count(w.buf.Bytes(), []byte{'\n'})
}

// TestAuditExportSlowWriter: a destination that does not keep up never holds up the log;
// the export misses records and says how many.
func TestAuditExportSlowWriter(t *testing.T) {
	ctx := context.Background()
	store, err := data.Open(data.Config{Path: filepath.Join(t.TempDir(), dbFileName)})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	alog := store.AuditLog(data.AuditLogConfig{FlushInterval: 10 * time.Millisecond})
	defer alog.Close(ctx)
	w := &blockingWriter{release: make(chan struct{})}
	var logs bytes.Buffer
	e := newAuditExporter(alog, w, nil, "test", slog.New(slog.NewTextHandler(&logs, nil)))
	stop := e.start(ctx)

	n := auditExportBuf + 5000 // beyond the buffer and what one write gathers
	for range n {
		alog.Append(data.AuditRecord{Kind: "mcp"})
	}
	// The log keeps committing while the export is stuck.
	deadline := time.Now().Add(10 * time.Second)
	for alog.Missed() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the log never got past the stuck export")
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(w.release)
	// Once every record is written or missed, one more shows the export the gap.
	for uint64(w.lines())+alog.Missed() != uint64(n) {
		if time.Now().After(deadline) {
			t.Fatalf("%d lines written, %d missed, of %d", w.lines(), alog.Missed(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	alog.Append(data.AuditRecord{Kind: "mcp", Tool: "last"})
	if err := alog.Close(ctx); err != nil {
		t.Fatal(err)
	}
	stop()
	if alog.Dropped() != 0 {
		t.Fatalf("the log dropped %d records", alog.Dropped())
	}
	if e.missed == 0 || e.missed != alog.Missed() || e.written+e.missed != uint64(n+1) {
		t.Fatalf("written %d, missed %d (log: %d), of %d", e.written, e.missed, alog.Missed(), n+1)
	}
	if lines := strings.Count(w.buf.String(), "\n"); uint64(lines) != e.written || !strings.HasSuffix(w.buf.String(), `"tool":"last"}`+"\n") {
		t.Fatalf("%d lines written, %d counted", lines, e.written)
	}
	if !strings.Contains(logs.String(), "records missed") || !strings.Contains(logs.String(), fmt.Sprintf("missed=%d", e.missed)) {
		t.Fatalf("log: %s", logs.String())
	}
}
