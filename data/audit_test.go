package data

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// startAudit starts an audit log on s and closes it (before the store) when the test ends.
func startAudit(t testing.TB, s *Store, cfg AuditLogConfig) *AuditLog {
	t.Helper()
	l := s.AuditLog(cfg)
	t.Cleanup(func() { l.Close(context.Background()) })
	return l
}

// closeAudit closes l and fails the test if that fails.
func closeAudit(t testing.TB, l *AuditLog) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// allAudit returns every audit record, oldest first, paging through QueryAudit.
func allAudit(t testing.TB, s *Store) []AuditRecord {
	t.Helper()
	var all []AuditRecord
	for {
		after := uint64(0)
		if len(all) > 0 {
			after = all[len(all)-1].Seq
		}
		page, err := s.QueryAudit(context.Background(), AuditQuery{AfterSeq: after, Limit: maxAuditQueryLimit})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			return all
		}
		all = append(all, page...)
	}
}

// checkDense fails unless recs have seqs first, first+1, … and Detail strconv.Itoa(i) for the
// i-th appended record, in order.
func checkDense(t *testing.T, recs []AuditRecord, first uint64, n int) {
	t.Helper()
	if len(recs) != n {
		t.Fatalf("%d records, want %d", len(recs), n)
	}
	for i, r := range recs {
		if r.Seq != first+uint64(i) || r.Detail != strconv.Itoa(i) {
			t.Fatalf("record %d: seq %d detail %q, want seq %d detail %q", i, r.Seq, r.Detail, first+uint64(i), strconv.Itoa(i))
		}
	}
}

func fullAuditRecord() AuditRecord {
	return AuditRecord{
		Seq:  99, // ignored: the log assigns it
		Time: time.Date(2026, 11, 28, 12, 0, 0, 123456789, time.FixedZone("x", 3600)),
		Kind: "mcp", User: "u_1", Client: "c_1", ClientName: "Claude", Tunnel: "quiet-fox", Owner: "u_0",
		Method: "tools/call", Tool: "delete_repo", Class: "destructive", Decision: "deny", Rule: "default-deny",
		Status: 200, Latency: 1500 * time.Microsecond, Bytes: 4096,
		ArgsDigest: "sha256:abcd", Args: json.RawMessage(`{"repo":"x","token":"[redacted]"}`),
		SourceIP: "192.0.2.1", Detail: "shared user",
	}
}

// seedAudit stores recs through a log and returns them as stored.
func seedAudit(t *testing.T, s *Store, recs []AuditRecord) []AuditRecord {
	t.Helper()
	l := s.AuditLog(AuditLogConfig{})
	for _, r := range recs {
		l.Append(r)
	}
	closeAudit(t, l)
	return allAudit(t, s)
}

func TestQueryAudit(t *testing.T) {
	s := openTest(t, "")
	t0 := epoch()
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	seeded := seedAudit(t, s, []AuditRecord{
		{Time: at(0), Kind: "sign_in", User: "alice"},                                               // 1
		{Time: at(1), Kind: "mcp", User: "alice", Tunnel: "fox", Tool: "read", Decision: "allow"},   // 2
		{Time: at(2), Kind: "mcp", User: "bob", Tunnel: "fox", Tool: "write", Decision: "deny"},     // 3
		{Time: at(3), Kind: "mcp", User: "alice", Tunnel: "owl", Tool: "write", Decision: "allow"},  // 4
		{Time: at(4), Kind: "denial", User: "bob", Tunnel: "owl", Tool: "delete", Decision: "deny"}, // 5
		{Time: at(5), Kind: "tunnel_close", User: "alice", Tunnel: "fox"},                           // 6
		{Time: at(6), Kind: "mcp", User: "carol", Tunnel: "fox", Tool: "read", Decision: "step_up"}, // 7
		{Time: at(7), Kind: "mcp", User: "alice", Tunnel: "fox", Tool: "read", Decision: "allow"},   // 8
	})
	if len(seeded) != 8 {
		t.Fatalf("seeded %d records", len(seeded))
	}
	for _, tc := range []struct {
		name string
		q    AuditQuery
		want []uint64
	}{
		{"everything", AuditQuery{}, []uint64{1, 2, 3, 4, 5, 6, 7, 8}},
		{"user", AuditQuery{User: "bob"}, []uint64{3, 5}},
		{"tunnel", AuditQuery{Tunnel: "owl"}, []uint64{4, 5}},
		{"tool", AuditQuery{Tool: "read"}, []uint64{2, 7, 8}},
		{"decision", AuditQuery{Decision: "deny"}, []uint64{3, 5}},
		{"kind", AuditQuery{Kind: "mcp"}, []uint64{2, 3, 4, 7, 8}},
		{"fields combine", AuditQuery{User: "alice", Tunnel: "fox", Kind: "mcp"}, []uint64{2, 8}},
		{"no match", AuditQuery{User: "mallory"}, nil},
		{"since inclusive", AuditQuery{Since: at(6)}, []uint64{7, 8}},
		{"until exclusive", AuditQuery{Until: at(2)}, []uint64{1, 2}},
		{"time range", AuditQuery{Since: at(2), Until: at(5)}, []uint64{3, 4, 5}},
		{"after seq", AuditQuery{AfterSeq: 5}, []uint64{6, 7, 8}},
		{"after the last seq", AuditQuery{AfterSeq: 8}, nil},
		{"after a seq past the end", AuditQuery{AfterSeq: 100}, nil},
		{"before seq", AuditQuery{BeforeSeq: 3}, []uint64{1, 2}},
		{"seq range", AuditQuery{AfterSeq: 2, BeforeSeq: 6}, []uint64{3, 4, 5}},
		{"limit", AuditQuery{Limit: 3}, []uint64{1, 2, 3}},
		{"limit counts matches", AuditQuery{User: "alice", Limit: 2}, []uint64{1, 2}},
		{"next page", AuditQuery{User: "alice", AfterSeq: 2, Limit: 2}, []uint64{4, 6}},
		{"newest", AuditQuery{Newest: true, Limit: 3}, []uint64{8, 7, 6}},
		{"newest filtered", AuditQuery{Newest: true, Decision: "deny"}, []uint64{5, 3}},
		{"newest page back", AuditQuery{Newest: true, BeforeSeq: 6, Limit: 2}, []uint64{5, 4}},
		{"newest before a seq past the end", AuditQuery{Newest: true, BeforeSeq: 100, Limit: 1}, []uint64{8}},
		{"newest in a seq range", AuditQuery{Newest: true, AfterSeq: 2, BeforeSeq: 6}, []uint64{5, 4, 3}},
		{"newest before the first", AuditQuery{Newest: true, BeforeSeq: 1}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.QueryAudit(context.Background(), tc.q)
			if err != nil {
				t.Fatal(err)
			}
			var seqs []uint64
			for _, r := range got {
				seqs = append(seqs, r.Seq)
			}
			if !reflect.DeepEqual(seqs, tc.want) {
				t.Errorf("seqs %v, want %v", seqs, tc.want)
			}
		})
	}
}

func TestQueryAuditLimits(t *testing.T) {
	s := openTest(t, "")
	recs := make([]AuditRecord, maxAuditQueryLimit+5)
	for i := range recs {
		recs[i] = AuditRecord{Kind: "mcp", Detail: strconv.Itoa(i)}
	}
	seedAudit(t, s, recs)
	for _, tc := range []struct {
		limit, want int
	}{
		{0, defaultAuditQueryLimit},
		{-1, defaultAuditQueryLimit},
		{7, 7},
		{maxAuditQueryLimit + 1, maxAuditQueryLimit},
	} {
		got, err := s.QueryAudit(context.Background(), AuditQuery{Limit: tc.limit})
		if err != nil || len(got) != tc.want {
			t.Errorf("Limit %d: %d records, %v; want %d", tc.limit, len(got), err, tc.want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.QueryAudit(ctx, AuditQuery{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled query: %v", err)
	}
}

func TestSweepAudit(t *testing.T) {
	t0 := epoch()
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	for _, tc := range []struct {
		name       string
		maxAge     time.Duration
		maxRecords int
		wantFirst  uint64 // first seq left of 10, at(0) … at(9)
	}{
		{"no limits", 0, 0, 1},
		{"age", 5 * time.Minute, 0, 6}, // now at(10): at(5) is exactly maxAge old and kept
		{"age keeps everything young", time.Hour, 0, 1},
		{"age deletes everything", time.Second, 0, 11},
		{"count", 0, 3, 8},
		{"count above the size", 0, 100, 1},
		{"count exact", 0, 10, 1},
		{"stricter of both: count", 8 * time.Minute, 2, 9},
		{"stricter of both: age", 2 * time.Minute, 5, 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, "")
			recs := make([]AuditRecord, 10)
			for i := range recs {
				recs[i] = AuditRecord{Time: at(i), Kind: "mcp", Detail: strconv.Itoa(i)}
			}
			seedAudit(t, s, recs)
			n, err := s.SweepAudit(context.Background(), at(10), tc.maxAge, tc.maxRecords)
			if err != nil || n != int(tc.wantFirst-1) {
				t.Fatalf("SweepAudit = %d, %v; want %d", n, err, tc.wantFirst-1)
			}
			left := allAudit(t, s)
			if len(left) != 11-int(tc.wantFirst) || (len(left) > 0 && left[0].Seq != tc.wantFirst) {
				t.Fatalf("left %d records from seq %v, want from %d", len(left), left, tc.wantFirst)
			}
			if n, err := s.SweepAudit(context.Background(), at(10), tc.maxAge, tc.maxRecords); n != 0 || err != nil {
				t.Errorf("second sweep = %d, %v; want 0", n, err)
			}
		})
	}
}

func TestSweepAuditInChunks(t *testing.T) {
	s := openTest(t, "")
	recs := make([]AuditRecord, auditSweepChunk*2+3)
	for i := range recs {
		recs[i] = AuditRecord{Time: epoch(), Kind: "mcp", Detail: strconv.Itoa(i)}
	}
	seedAudit(t, s, recs)
	n, err := s.SweepAudit(context.Background(), epoch(), 0, 1)
	if err != nil || n != len(recs)-1 {
		t.Fatalf("SweepAudit = %d, %v; want %d", n, err, len(recs)-1)
	}
	if left := allAudit(t, s); len(left) != 1 || left[0].Seq != uint64(len(recs)) {
		t.Fatalf("left %v, want the newest", left)
	}
}

func TestRunSweepsEnforcesAuditRetention(t *testing.T) {
	s := openTest(t, "")
	t0 := epoch()
	l := startAudit(t, s, AuditLogConfig{MaxAge: time.Hour, MaxRecords: 3})
	for i := range 5 {
		l.Append(AuditRecord{Time: t0.Add(time.Duration(i) * time.Minute), Kind: "mcp", Detail: strconv.Itoa(i)})
	}
	closeAudit(t, l) // retention still applies to a closed log's records
	s.sweepOnce(context.Background(), SweepConfig{Audit: l, Now: func() time.Time { return t0.Add(time.Hour + 90*time.Second) }, Logger: s.log})
	// Seqs 1..5 are at t0+0m..4m. The count keeps 3..5; the age cutoff (t0+1m30s) would only
	// have taken 1 and 2.
	got := allAudit(t, s)
	if len(got) != 3 || got[0].Seq != 3 {
		t.Fatalf("left %+v, want seqs 3..5", got)
	}
	s.sweepOnce(context.Background(), SweepConfig{Audit: l, Now: func() time.Time { return t0.Add(time.Hour + 150*time.Second) }, Logger: s.log})
	if got := allAudit(t, s); len(got) != 2 || got[0].Seq != 4 {
		t.Fatalf("left %+v, want seqs 4..5", got)
	}
}

func TestAuditCorruptRecords(t *testing.T) {
	for _, tc := range []struct {
		name  string
		key   []byte
		value string
		isErr error // nil: any error
	}{
		{"not JSON", auditKey(2), "{", nil},
		{"wrong type", auditKey(2), `{"v":1,"time":"yesterday"}`, nil},
		{"newer version", auditKey(2), `{"v":2,"time":"2026-11-28T12:00:00Z"}`, ErrSchemaTooNew},
		{"short key", []byte("xx"), `{"v":1,"time":"2026-11-28T12:00:00Z"}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "toolgate.db")
			s := openTest(t, path)
			seedAudit(t, s, []AuditRecord{{Time: epoch(), Kind: "mcp"}})
			s.Close()
			rawUpdate(t, path, func(tx *bolt.Tx) error {
				return tx.Bucket([]byte(bucketAudit)).Put(tc.key, []byte(tc.value))
			})
			s = openTest(t, path)
			ctx := context.Background()
			_, err := s.QueryAudit(ctx, AuditQuery{})
			if err == nil || (tc.isErr != nil && !errors.Is(err, tc.isErr)) {
				t.Errorf("QueryAudit: %v, want an error (%v)", err, tc.isErr)
			}
			// The age sweep deletes what is due before the bad record, then reports it.
			n, err := s.SweepAudit(ctx, epoch().Add(time.Hour), time.Minute, 0)
			if err == nil || n > 1 {
				t.Errorf("SweepAudit by age = %d, %v; want an error", n, err)
			}
			if _, err := s.QueryAudit(ctx, AuditQuery{}); err == nil {
				t.Errorf("the bad record was swept by age")
			}
		})
	}
}

func TestAuditCorruptRecordSweptByCount(t *testing.T) {
	path := filepath.Join(t.TempDir(), "toolgate.db")
	s := openTest(t, path)
	seedAudit(t, s, []AuditRecord{{Kind: "mcp"}, {Kind: "mcp"}})
	s.Close()
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketAudit)).Put(auditKey(1), []byte("garbage"))
	})
	s = openTest(t, path)
	if n, err := s.SweepAudit(context.Background(), epoch(), 0, 1); n != 1 || err != nil {
		t.Fatalf("SweepAudit by count = %d, %v; want 1", n, err)
	}
	if got := allAudit(t, s); len(got) != 1 || got[0].Seq != 2 {
		t.Fatalf("left %+v", got)
	}
}
