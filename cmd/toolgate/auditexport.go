package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"

	"github.com/toolgate/toolgate/data"
)

const (
	// auditExportBuf is the export's subscription buffer: records committed while the writer
	// is busy wait here, and beyond it are missed rather than hold up the audit log.
	auditExportBuf = 8192
	// auditExportChunk is the most bytes gathered into one write.
	auditExportChunk = 64 << 10
)

// auditExporter writes every record an audit log commits as a JSON line (auditJSON, the
// shape of `toolgate audit list --json`) to a file or stdout, for a log shipper. It reads
// from a subscription (data.AuditLog.Subscribe), so a slow or failing destination never
// holds up the log or the requests that append to it: when the subscription's buffer is full
// the log drops records for this export, and the export counts them from the gaps in Seq.
// Lines arrive in Seq order; a record whose commit failed is still exported, with seq 0.
type auditExporter struct {
	ch     <-chan data.AuditRecord
	cancel func() // ends the subscription
	w      io.Writer
	closer io.Closer // the file; nil for stdout
	log    *slog.Logger
	name   string
	done   chan struct{}

	// Written by the goroutine only, read after done.
	written, missed, failed uint64
}

// startAuditExport exports log's records from now on to path, opened for appending (created
// 0600) — or to stdout if path is "-" — until stop is called, ctx ends or the log is closed.
// stop ends the subscription, writes the records already received, closes the file and
// returns once that is done; it logs how many records were written and missed. stop may be
// called more than once. Close the log after stop, or stop after the log's Close to export
// everything the log committed on its way down.
func startAuditExport(ctx context.Context, log *data.AuditLog, path string, logger *slog.Logger) (stop func(), err error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var w io.Writer = os.Stdout
	var closer io.Closer
	name := "stdout"
	if path != "-" {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("audit export: %w", err)
		}
		w, closer, name = f, f, path
	}
	return newAuditExporter(log, w, closer, name, logger).start(ctx), nil
}

func newAuditExporter(log *data.AuditLog, w io.Writer, closer io.Closer, name string, logger *slog.Logger) *auditExporter {
	ch, cancel := log.Subscribe(auditExportBuf)
	return &auditExporter{ch: ch, cancel: cancel, w: w, closer: closer, log: logger, name: name, done: make(chan struct{})}
}

// start runs the export until the returned stop is called, ctx ends or the log is closed.
func (e *auditExporter) start(ctx context.Context) (stop func()) {
	go e.run(ctx)
	var once sync.Once
	return func() {
		once.Do(e.cancel)
		<-e.done
	}
}

// run writes lines until the subscription's channel is closed (by stop, by ctx through
// cancel, or by the log's Close), then closes the destination and reports.
func (e *auditExporter) run(ctx context.Context) {
	defer close(e.done)
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-ctx.Done():
			e.cancel()
		case <-stopped:
		}
	}()

	var (
		buf      []byte
		lines    uint64 // in buf
		lastSeq  uint64
		writeErr error
	)
	flush := func() {
		if len(buf) == 0 {
			return
		}
		if _, err := e.w.Write(buf); err != nil {
			// The lines are lost; the next write may succeed (a full disk freed).
			e.failed += lines
			if writeErr == nil {
				e.log.Error("audit export: write failed; records lost until it succeeds", "to", e.name, "err", err)
			}
			writeErr = err
		} else {
			e.written += lines
			if writeErr != nil {
				e.log.Info("audit export: writing again", "to", e.name)
			}
			writeErr = nil
		}
		buf, lines = buf[:0], 0
		if cap(buf) > 4*auditExportChunk {
			buf = nil
		}
	}
	for r := range e.ch {
		if r.Seq != 0 {
			if lastSeq != 0 && r.Seq > lastSeq+1 {
				if e.missed == 0 {
					e.log.Warn("audit export: the destination is too slow; records missed", "to", e.name, "after_seq", lastSeq, "next_seq", r.Seq)
				}
				e.missed += r.Seq - lastSeq - 1
			}
			lastSeq = r.Seq
		}
		b, err := auditJSON(r)
		if err != nil {
			e.failed++
			e.log.Error("audit export: record not exported", "seq", r.Seq, "err", err)
			continue
		}
		buf = append(append(buf, b...), '\n')
		lines++
		// Gather what is already waiting into one write; write as soon as nothing is.
		if len(e.ch) == 0 || len(buf) >= auditExportChunk {
			flush()
		}
	}
	flush()
	if e.closer != nil {
		if err := e.closer.Close(); err != nil {
			e.log.Error("audit export: close", "to", e.name, "err", err)
		}
	}
	e.log.Info("audit export stopped", "to", e.name, "written", e.written, "missed", e.missed, "failed", e.failed)
}
