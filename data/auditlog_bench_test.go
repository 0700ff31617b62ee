package data

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Benchmarks of the audit log: Append (the request path's share), the writer's commit of a
// batch, the record encoding alone, and the whole log under concurrent appenders.

// processCPU is the CPU time this process has used, every thread together: what a benchmark
// reports as cpu-ns/op, so that work done off the benchmark's goroutine (the writer, the
// garbage collector) is counted too.
func processCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkAuditAppend(b *testing.B) {
	r := fullAuditRecord()
	r.Time = time.Time{} // the usual case: Append stamps it
	b.Run("enqueue", func(b *testing.B) {
		// The request path alone: the writer never commits, and the queue is emptied behind
		// its back, off the clock, before it fills.
		s := openTest(b, "")
		const chunk = 1 << 14
		l := startAudit(b, s, AuditLogConfig{FlushInterval: time.Hour, FlushRecords: chunk + 1, QueueSize: chunk + 1})
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if i%chunk == chunk-1 {
				b.StopTimer()
				l.mu.Lock()
				clear(l.pending)
				l.pending = l.pending[:0]
				l.mu.Unlock()
				b.StartTimer()
			}
			l.Append(r)
		}
		b.StopTimer()
		if l.Dropped() != 0 {
			b.Fatalf("dropped %d", l.Dropped())
		}
	})
	b.Run("with-writer", func(b *testing.B) {
		// Defaults, with the writer committing (NoSync) as it goes: Append's cost while the
		// writer takes the lock to swap batches. When Append outruns the writer, the queue
		// fills and records are dropped (dropped/op), as they would be in production.
		s := openTest(b, "")
		l := startAudit(b, s, AuditLogConfig{})
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			l.Append(r)
		}
		b.StopTimer()
		b.ReportMetric(float64(l.Dropped())/float64(b.N), "dropped/op")
	})
	b.Run("parallel", func(b *testing.B) {
		s := openTest(b, "")
		l := startAudit(b, s, AuditLogConfig{})
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				l.Append(r)
			}
		})
		b.StopTimer()
		b.ReportMetric(float64(l.Dropped())/float64(b.N), "dropped/op")
	})
}

// BenchmarkAuditCommit is the writer's side: one op is one record, committed in batches of
// the given size with a real fsync per batch, so it bounds the records per second the log
// can store before Append starts dropping. cpu-ns/op leaves out the time spent waiting for
// the disk.
func BenchmarkAuditCommit(b *testing.B) {
	for _, size := range []int{512, 2048, 4096} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			s, err := Open(Config{Path: filepath.Join(b.TempDir(), "toolgate.db")})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			l := s.AuditLog(AuditLogConfig{})
			defer l.Close(context.Background())
			// The records of a default configuration: a digest of the arguments, not them.
			r := fullAuditRecord()
			r.Args = nil
			template := make([]AuditRecord, size)
			for i := range template {
				template[i] = r
			}
			batch := make([]AuditRecord, size)
			var sc auditScratch
			b.ReportAllocs()
			b.ResetTimer()
			cpu := processCPU(b)
			for done := 0; done < b.N; done += len(batch) {
				copy(batch, template) // commit sets Seq and Time
				if err := l.commit(batch[:min(len(batch), b.N-done)], &sc); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(processCPU(b)-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkAuditLog is the log as the proxy uses it, with its defaults: appenders on every P,
// the writer committing with a real fsync as it goes. One op is one record appended and
// committed.
// Appenders wait while the backlog is over half the queue, so nothing is dropped and ns/op is
// the rate the log sustains on this machine; cpu-ns/op is what a record costs every goroutine
// together (appenders, writer, garbage collector).
func BenchmarkAuditLog(b *testing.B) {
	r := fullAuditRecord()
	r.Time = time.Time{}
	r.Args = nil // the default: a digest, no arguments
	s, err := Open(Config{Path: filepath.Join(b.TempDir(), "toolgate.db")})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	l := s.AuditLog(AuditLogConfig{})
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU(b)
	b.RunParallel(func(pb *testing.PB) {
		for i := 0; pb.Next(); i++ {
			if i%64 == 0 {
				for l.backlog() > defaultAuditQueueSize/2 {
					time.Sleep(100 * time.Microsecond)
				}
			}
			l.Append(r)
		}
	})
	if err := l.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(processCPU(b)-cpu)/float64(b.N), "cpu-ns/op")
	if l.Dropped() != 0 {
		b.Fatalf("dropped %d of %d", l.Dropped(), b.N)
	}
}
