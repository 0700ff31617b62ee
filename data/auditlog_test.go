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
)

// TestAuditRestWaitsAfterFullBatch: after a full batch, what built up during its commit is
// committed at once only if it is a full batch too; a handful of records waits for the next
// tick rather than cost a commit of its own.
func TestAuditRestWaitsAfterFullBatch(t *testing.T) {
	for _, tc := range []struct {
		name      string
		rest      int // appended while the first batch is being committed
		committed int // right after that commit
	}{
		{"a few", 30, 100},
		{"a full batch", 120, 220},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, "")
			l := startAudit(t, s, AuditLogConfig{FlushInterval: time.Hour, FlushRecords: 100})
			tx, err := s.db.Begin(true) // holds the writer in its first commit
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			appendN := func(k int) {
				for range k {
					l.Append(AuditRecord{Kind: "mcp", Detail: strconv.Itoa(n)})
					n++
				}
			}
			appendN(100)
			waitFor(t, func() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.inflight == 100 })
			appendN(tc.rest)
			if err := tx.Rollback(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool { return len(allAudit(t, s)) >= tc.committed })
			time.Sleep(100 * time.Millisecond) // time for a commit that should not happen
			if got := len(allAudit(t, s)); got != tc.committed {
				t.Fatalf("%d records committed, want %d", got, tc.committed)
			}
			closeAudit(t, l)
			checkDense(t, allAudit(t, s), 1, n)
		})
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for start := time.Now(); !cond(); time.Sleep(time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatal("timed out")
		}
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
