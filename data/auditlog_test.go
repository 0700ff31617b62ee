package data

import (
	"strconv"
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
