package data

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
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

func TestAuditAppendCommitsWithinFlushInterval(t *testing.T) {
	s := openTest(t, "")
	const interval = 20 * time.Millisecond
	l := startAudit(t, s, AuditLogConfig{FlushInterval: interval})
	sub, _ := l.Subscribe(0)
	in := fullAuditRecord()
	start := time.Now()
	l.Append(in)
	var got []AuditRecord
	for time.Since(start) < 5*time.Second && len(got) == 0 {
		time.Sleep(interval / 4)
		var err error
		if got, err = s.QueryAudit(context.Background(), AuditQuery{}); err != nil {
			t.Fatal(err)
		}
	}
	// The bound is FlushInterval plus a commit; allow the scheduler plenty on top.
	if took := time.Since(start); len(got) != 1 || took > interval+time.Second {
		t.Fatalf("after %v: %d records, want 1 within %v", took, len(got), interval)
	}
	want := in
	want.Seq, want.Time = 1, in.Time.UTC()
	if !reflect.DeepEqual(got[0], want) {
		t.Errorf("stored\n%+v\nwant\n%+v", got[0], want)
	}
	if live := <-sub; !reflect.DeepEqual(live, want) {
		t.Errorf("subscriber got\n%+v\nwant\n%+v", live, want)
	}
}

func TestAuditAppendSetsTime(t *testing.T) {
	s := openTest(t, "")
	now := epoch()
	l := startAudit(t, s, AuditLogConfig{Now: func() time.Time { return now }})
	l.Append(AuditRecord{Kind: "sign_in"})
	closeAudit(t, l)
	got := allAudit(t, s)
	if len(got) != 1 || !got[0].Time.Equal(now) {
		t.Fatalf("got %+v, want one record at %v", got, now)
	}
}

func TestAuditInvalidArgsStoredWithoutThem(t *testing.T) {
	s := openTest(t, "")
	l := startAudit(t, s, AuditLogConfig{})
	r := fullAuditRecord()
	r.Args = json.RawMessage(`{"not json`)
	l.Append(r)
	closeAudit(t, l)
	got := allAudit(t, s)
	if len(got) != 1 || got[0].Args != nil || got[0].Tool != r.Tool {
		t.Fatalf("got %+v, want the record without Args", got)
	}
}

func TestAuditBatchesAreDenseAndOrdered(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  AuditLogConfig
	}{
		{"defaults", AuditLogConfig{}},
		{"small batches", AuditLogConfig{FlushRecords: 7, FlushInterval: time.Millisecond}},
		{"batch larger than the queue", AuditLogConfig{FlushRecords: 5000, QueueSize: 2000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, "")
			l := startAudit(t, s, tc.cfg)
			for i := range 1000 {
				l.Append(AuditRecord{Kind: "mcp", Detail: strconv.Itoa(i)})
			}
			closeAudit(t, l)
			if l.Dropped() != 0 || l.Failed() != 0 {
				t.Fatalf("dropped %d, failed %d", l.Dropped(), l.Failed())
			}
			checkDense(t, allAudit(t, s), 1, 1000)
		})
	}
}

func TestAuditQueueFullDrops(t *testing.T) {
	s := openTest(t, "")
	const size = 10
	l := startAudit(t, s, AuditLogConfig{QueueSize: size, FlushInterval: time.Hour})
	// Hold the write lock so that the writer cannot commit what it takes.
	tx, err := s.db.Begin(true)
	if err != nil {
		t.Fatal(err)
	}
	for i := range size + 5 {
		start := time.Now()
		l.Append(AuditRecord{Kind: "mcp", Detail: strconv.Itoa(i)})
		if took := time.Since(start); took > 100*time.Millisecond {
			t.Fatalf("Append %d blocked for %v", i, took)
		}
	}
	if got := l.Dropped(); got != 5 {
		t.Errorf("Dropped() = %d, want 5", got)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	closeAudit(t, l)
	checkDense(t, allAudit(t, s), 1, size)
}

func TestAuditCloseFlushesQueue(t *testing.T) {
	s := openTest(t, "")
	l := startAudit(t, s, AuditLogConfig{FlushInterval: time.Hour, FlushRecords: 1 << 20})
	for i := range 300 {
		l.Append(AuditRecord{Kind: "mcp", Detail: strconv.Itoa(i)})
	}
	closeAudit(t, l)
	checkDense(t, allAudit(t, s), 1, 300)
	// The guarantee: after Close, appended = stored + dropped.
	l.Append(AuditRecord{Kind: "mcp"})
	if l.Dropped() != 1 {
		t.Errorf("Append after Close: Dropped() = %d, want 1", l.Dropped())
	}
	if err := l.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if n := len(allAudit(t, s)); n != 300 {
		t.Errorf("%d records after a late Append, want 300", n)
	}
}

func TestAuditCloseHonoursContext(t *testing.T) {
	s := openTest(t, "")
	l := startAudit(t, s, AuditLogConfig{FlushInterval: time.Hour})
	tx, err := s.db.Begin(true) // the final flush waits for this
	if err != nil {
		t.Fatal(err)
	}
	l.Append(AuditRecord{Kind: "mcp"})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := l.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close = %v, want the deadline", err)
	}
	tx.Rollback()
	closeAudit(t, l) // waits for the writer, which finishes on its own
	if n := len(allAudit(t, s)); n != 1 {
		t.Errorf("%d records, want 1", n)
	}
}

func TestAuditFailedCommitIsReported(t *testing.T) {
	s := openTest(t, "")
	l := s.AuditLog(AuditLogConfig{FlushInterval: time.Hour})
	l.Append(AuditRecord{Kind: "mcp"})
	sub, _ := l.Subscribe(1)
	if err := s.Close(); err != nil { // wrong order: the log's final commit fails
		t.Fatal(err)
	}
	if err := l.Close(context.Background()); err == nil {
		t.Error("Close after the store closed returned nil")
	}
	if l.Failed() != 1 {
		t.Errorf("Failed() = %d, want 1", l.Failed())
	}
	if r, ok := <-sub; !ok || r.Seq != 0 || r.Kind != "mcp" {
		t.Errorf("subscriber got %+v, %v; want the lost record with Seq 0", r, ok)
	}
}

func TestAuditUnencodableRecordIsLostAlone(t *testing.T) {
	s := openTest(t, "")
	l := startAudit(t, s, AuditLogConfig{FlushInterval: time.Hour})
	l.Append(AuditRecord{Kind: "mcp", Detail: "0"})
	l.Append(AuditRecord{Kind: "mcp", Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)})
	l.Append(AuditRecord{Kind: "mcp", Detail: "1"})
	if err := l.Close(context.Background()); err == nil {
		t.Error("Close returned nil after losing a record")
	}
	if l.Failed() != 1 {
		t.Errorf("Failed() = %d, want 1", l.Failed())
	}
	checkDense(t, allAudit(t, s), 1, 2)
}

func TestAuditSubscribe(t *testing.T) {
	s := openTest(t, "")
	l := startAudit(t, s, AuditLogConfig{FlushInterval: 5 * time.Millisecond, FlushRecords: 16})
	fast, _ := l.Subscribe(1000)
	slow, _ := l.Subscribe(1) // never read until the end
	gone, cancel := l.Subscribe(10)
	cancel()
	cancel() // idempotent
	if _, ok := <-gone; ok {
		t.Error("a cancelled subscription's channel is open")
	}

	const n = 200
	done := make(chan struct{})
	go func() {
		for i := range n {
			l.Append(AuditRecord{Kind: "mcp", Detail: strconv.Itoa(i)})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Append blocked on a slow subscriber")
	}
	var got []AuditRecord
	for len(got) < n {
		select {
		case r := <-fast:
			got = append(got, r)
		case <-time.After(5 * time.Second):
			t.Fatalf("got %d live records, want %d", len(got), n)
		}
	}
	checkDense(t, got, 1, n)
	closeAudit(t, l)
	if _, ok := <-fast; ok {
		t.Error("fast subscriber: channel open after Close")
	}
	var slowGot []AuditRecord
	for r := range slow {
		slowGot = append(slowGot, r)
	}
	if len(slowGot) != 1 || slowGot[0].Seq != 1 {
		t.Errorf("slow subscriber got %d records, want just the first", len(slowGot))
	}
	if got := l.Missed(); got != n-1 {
		t.Errorf("Missed() = %d, want %d", got, n-1)
	}
	late, _ := l.Subscribe(1)
	if _, ok := <-late; ok {
		t.Error("Subscribe after Close: channel open")
	}
}

func TestAuditSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "toolgate.db")
	for run := range 2 {
		s, err := Open(Config{Path: path, NoSync: true, LockTimeout: testLockTimeout})
		if err != nil {
			t.Fatal(err)
		}
		l := s.AuditLog(AuditLogConfig{})
		for i := range 50 {
			l.Append(AuditRecord{Kind: "mcp", Detail: strconv.Itoa(run*50 + i)})
		}
		closeAudit(t, l)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	s := openTest(t, path)
	checkDense(t, allAudit(t, s), 1, 100) // the sequence carried on across the restart
}

func TestAuditConcurrentAppend(t *testing.T) {
	s := openTest(t, "")
	l := startAudit(t, s, AuditLogConfig{FlushInterval: time.Millisecond, FlushRecords: 64})
	const workers, each = 8, 500
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				l.Append(AuditRecord{Kind: "mcp", User: strconv.Itoa(w), Detail: strconv.Itoa(i)})
			}
		})
	}
	wg.Wait()
	closeAudit(t, l)
	recs := allAudit(t, s)
	if len(recs) != workers*each || l.Dropped() != 0 {
		t.Fatalf("%d records, %d dropped; want %d, 0", len(recs), l.Dropped(), workers*each)
	}
	next := make([]int, workers) // each worker's records come in its own order
	for i, r := range recs {
		w, _ := strconv.Atoi(r.User)
		if r.Seq != uint64(i+1) || r.Detail != strconv.Itoa(next[w]) {
			t.Fatalf("record %d: seq %d, worker %d detail %s; want seq %d detail %d", i, r.Seq, w, r.Detail, i+1, next[w])
		}
		next[w]++
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

// The crash test. The parent re-runs the test binary as a child that appends records as fast
// as it can and prints each one it appended (with whether it was dropped), kills it with
// SIGKILL mid-stream, and checks the database against what the child acknowledged: the
// stored records are exactly the first acknowledged ones, no more than QueueSize are missing,
// and none acknowledged well before the kill is missing.

const (
	crashChildEnv      = "TOOLGATE_AUDIT_CRASH_CHILD"
	crashPaceEnv       = "TOOLGATE_AUDIT_CRASH_PACE" // records per millisecond; 0: flat out
	crashQueueSize     = 500
	crashFlushInterval = 20 * time.Millisecond
)

func TestAuditCrashChild(t *testing.T) {
	path := os.Getenv(crashChildEnv)
	if path == "" {
		t.Skip("run by TestAuditCrashLosesAtMostTheQueue")
	}
	s, err := Open(Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	l := s.AuditLog(AuditLogConfig{FlushInterval: crashFlushInterval, QueueSize: crashQueueSize, FlushRecords: 100})
	pace, _ := strconv.Atoi(os.Getenv(crashPaceEnv))
	w := bufio.NewWriter(os.Stdout)
	deadline := time.Now().Add(30 * time.Second) // in case the parent dies
	for i := 0; time.Now().Before(deadline); i++ {
		if pace > 0 && i%pace == 0 {
			time.Sleep(time.Millisecond)
		}
		before := l.Dropped()
		l.Append(AuditRecord{Kind: "mcp", Detail: strconv.Itoa(i)})
		fmt.Fprintf(w, "%d %d\n", i, l.Dropped()-before)
		w.Flush() // acknowledged only once the parent can read it
	}
}

func TestAuditCrashLosesAtMostTheQueue(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process")
	}
	for _, tc := range []struct {
		name string
		pace int // records per millisecond
		acks int // kill after this many
	}{
		{"flat out", 0, 20000},
		{"paced", 10, 3000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "toolgate.db")
			cmd := exec.Command(os.Args[0], "-test.run=^TestAuditCrashChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), crashChildEnv+"="+path, crashPaceEnv+"="+strconv.Itoa(tc.pace))
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			type ack struct {
				dropped bool
				at      time.Time
			}
			var acks []ack
			var killedAt time.Time
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				f := strings.Fields(sc.Text())
				if len(f) != 2 || f[0] != strconv.Itoa(len(acks)) {
					continue // test framework output
				}
				acks = append(acks, ack{dropped: f[1] == "1", at: time.Now()})
				if killedAt.IsZero() && len(acks) >= tc.acks {
					killedAt = time.Now()
					if err := cmd.Process.Kill(); err != nil {
						t.Fatal(err)
					}
				}
			}
			cmd.Wait()
			if killedAt.IsZero() {
				t.Fatalf("the child stopped after %d records", len(acks))
			}

			s := openTest(t, path)
			stored := allAudit(t, s)
			// A single appender, so what is stored is the first non-dropped records, in order.
			var kept []int // indexes of acknowledged records not dropped
			for i, a := range acks {
				if !a.dropped {
					kept = append(kept, i)
				}
			}
			// The child may have appended one more record before it could say so.
			want := append(kept[:len(kept):len(kept)], len(acks))
			for j, r := range stored {
				if j >= len(want) || r.Seq != uint64(j+1) || r.Detail != strconv.Itoa(want[j]) {
					t.Fatalf("stored record %d (seq %d, detail %s) is not the next acknowledged record", j, r.Seq, r.Detail)
				}
			}
			lost := len(kept) - min(len(stored), len(kept))
			t.Logf("acknowledged %d, dropped %d, stored %d, lost %d", len(acks), len(acks)-len(kept), len(stored), lost)
			if lost > crashQueueSize {
				t.Errorf("lost %d records, more than QueueSize %d", lost, crashQueueSize)
			}
			// FlushInterval plus a commit, with a generous margin for a loaded machine.
			for _, i := range kept[len(kept)-lost:] {
				if killedAt.Sub(acks[i].at) > crashFlushInterval+2*time.Second {
					t.Errorf("record %d acknowledged %v before the kill was lost", i, killedAt.Sub(acks[i].at))
					break
				}
			}
		})
	}
}
