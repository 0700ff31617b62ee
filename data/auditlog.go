package data

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

const (
	defaultAuditFlushInterval = time.Second
	// defaultAuditFlushRecords: a commit has a fixed cost (the meta page, the branch pages,
	// an fsync) besides its records'. Batches of 2048 rather than 512 took a record's commit
	// from about 2.0 to 1.5 µs of CPU (BenchmarkAuditCommit); 4096 gained little more.
	defaultAuditFlushRecords  = 2048
	defaultAuditQueueSize     = 65536
	defaultAuditMaxAge        = 30 * 24 * time.Hour
	defaultAuditMaxRecords    = 1_000_000
	defaultAuditSubscriberBuf = 256

	// auditKeepCap is the largest batch buffer the writer keeps between batches; one grown by
	// a burst beyond it is let go, so a burst's memory is returned.
	auditKeepCap = 4096

	// auditInitialCap is the capacity the queue's buffers start with: they grow to a batch's
	// size only when traffic asks for it, so an idle server does not hold two buffers of
	// FlushRecords records (about 600 KiB each at the default).
	auditInitialCap = 256
)

// AuditLogConfig configures [Store.AuditLog]. Every field is read once, by AuditLog.
//
// Durability: [AuditLog.Append] only queues a record in memory; one writer goroutine commits
// the queue in batches, one write transaction (and so one fsync) per batch, never one per
// record. A crash (kill -9, power loss) loses exactly the records appended but not yet
// committed: in steady state those of the last FlushInterval plus the duration of one commit,
// and never more than QueueSize, which bounds the queue including the batch being committed.
// [AuditLog.Close] commits everything queued; after it returns nil, every record appended and
// not dropped is in the database.
type AuditLogConfig struct {
	// FlushInterval is the longest a record waits in the queue before its batch is committed.
	// Default (zero or negative) 1s.
	FlushInterval time.Duration

	// FlushRecords commits a batch as soon as this many records wait, without waiting for
	// FlushInterval. Default (zero or negative) 2048; at most QueueSize.
	FlushRecords int

	// QueueSize is the most records waiting to be committed, the batch being committed
	// included. When it is full, Append drops the record and counts it in Dropped rather than
	// block the request path. Default (zero or negative) 65536.
	QueueSize int

	// MaxAge is how long records are kept, enforced by [Store.RunSweeps] when its
	// SweepConfig.Audit is this log. Default (zero) 30 days; negative: no age limit.
	MaxAge time.Duration

	// MaxRecords is how many of the newest records are kept, enforced like MaxAge. Default
	// (zero) 1,000,000; negative: no count limit.
	MaxRecords int

	// Now is the clock that stamps records appended with a zero Time. Default time.Now.
	Now func() time.Time

	// Logger receives failed commits and records stored without their invalid Args.
	// Default: the Store's Config.Logger.
	Logger *slog.Logger
}

// AuditLog queues audit records and commits them in batches to the Store's audit bucket. Its
// methods are safe for concurrent use. See [AuditLogConfig] for what a crash can lose.
type AuditLog struct {
	s   *Store
	cfg AuditLogConfig

	// mu guards pending, inflight and closed: Append's whole critical section is an append
	// to pending, which the writer swaps for an empty buffer when it takes a batch.
	mu       sync.Mutex
	pending  []AuditRecord
	inflight int // records in the batch being committed; they count against QueueSize
	closed   bool

	wake chan struct{} // buffered 1: pending reached FlushRecords
	stop chan struct{} // closed by Close
	done chan struct{} // closed by the writer when it has flushed and stopped

	dropped, failed, missed atomic.Uint64
	firstErr                error // the first failed commit; written by the writer, read after done

	subMu sync.Mutex
	subs  map[*auditSubscriber]struct{} // nil once the writer has stopped
}

type auditSubscriber struct{ ch chan AuditRecord }

// AuditLog starts an audit log writing to this Store and its writer goroutine. Stop it with
// [AuditLog.Close] before closing the Store. One Store should have one AuditLog: two would
// each be correct but would share the write lock for nothing.
func (s *Store) AuditLog(cfg AuditLogConfig) *AuditLog {
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = defaultAuditFlushInterval
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = defaultAuditQueueSize
	}
	if cfg.FlushRecords <= 0 {
		cfg.FlushRecords = defaultAuditFlushRecords
	}
	cfg.FlushRecords = min(cfg.FlushRecords, cfg.QueueSize)
	if cfg.MaxAge == 0 {
		cfg.MaxAge = defaultAuditMaxAge
	}
	if cfg.MaxRecords == 0 {
		cfg.MaxRecords = defaultAuditMaxRecords
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = s.log
	}
	l := &AuditLog{
		s: s, cfg: cfg,
		pending: make([]AuditRecord, 0, min(cfg.FlushRecords, auditInitialCap)),
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		subs:    make(map[*auditSubscriber]struct{}),
	}
	go l.run()
	return l
}

// Append queues r to be committed within FlushInterval, setting a zero Time to now. It never
// blocks on the database: when the queue is full, or the log is closed, it drops r and counts
// it in Dropped. The cost is a lock and a copy of r.
func (l *AuditLog) Append(r AuditRecord) {
	if r.Time.IsZero() {
		r.Time = l.cfg.Now()
	}
	l.mu.Lock()
	if l.closed || len(l.pending)+l.inflight >= l.cfg.QueueSize {
		l.mu.Unlock()
		l.dropped.Add(1)
		return
	}
	l.pending = append(l.pending, r)
	full := len(l.pending) == l.cfg.FlushRecords
	l.mu.Unlock()
	if full {
		select {
		case l.wake <- struct{}{}:
		default: // the writer has been woken already
		}
	}
}

// Dropped is how many records Append dropped because the queue was full or the log closed.
func (l *AuditLog) Dropped() uint64 { return l.dropped.Load() }

// Failed is how many records were lost because they could not be stored: their batch's
// commit failed (the database closed under the log, a full disk), or the record itself could
// not be encoded. Each failure is logged.
func (l *AuditLog) Failed() uint64 { return l.failed.Load() }

// Missed is how many records subscribers missed, summed over all of them, because their
// channel was full.
func (l *AuditLog) Missed() uint64 { return l.missed.Load() }

// Close commits everything queued, stops the writer and closes the subscribers' channels.
// Records appended from now on are dropped. It returns ctx's error if ctx ends first (the
// writer still finishes on its own), else the first commit that failed since the log started,
// if any: nil means every record appended and not dropped was stored. Later calls wait for
// the writer the same way and return nil.
func (l *AuditLog) Close(ctx context.Context) error {
	l.mu.Lock()
	first := !l.closed
	l.closed = true
	l.mu.Unlock()
	if first {
		close(l.stop)
	}
	select {
	case <-l.done:
	case <-ctx.Done():
		return fmt.Errorf("data: close audit log: %w", ctx.Err())
	}
	if first {
		return l.firstErr
	}
	return nil
}

// Subscribe returns a live stream of the records committed from now on, for an owner's
// terminal or a JSON lines export, and a function that ends the subscription and closes the
// channel. Records arrive in Seq order once their batch is committed, so at most about
// FlushInterval after Append. A record whose batch failed to commit is delivered too, with
// Seq 0.
//
// buf is the channel's capacity (default, zero or negative, 256). A subscriber whose channel
// is full misses the record, counted in Missed, rather than holding up the writer; a jump in
// Seq shows where. The channel is also closed when the log is.
func (l *AuditLog) Subscribe(buf int) (<-chan AuditRecord, func()) {
	if buf <= 0 {
		buf = defaultAuditSubscriberBuf
	}
	sub := &auditSubscriber{ch: make(chan AuditRecord, buf)}
	l.subMu.Lock()
	defer l.subMu.Unlock()
	if l.subs == nil {
		close(sub.ch)
		return sub.ch, func() {}
	}
	l.subs[sub] = struct{}{}
	return sub.ch, func() {
		l.subMu.Lock()
		defer l.subMu.Unlock()
		if _, ok := l.subs[sub]; ok {
			delete(l.subs, sub)
			close(sub.ch)
		}
	}
}

// run is the writer goroutine.
func (l *AuditLog) run() {
	defer close(l.done)
	t := time.NewTicker(l.cfg.FlushInterval)
	defer t.Stop()
	spare := make([]AuditRecord, 0, min(l.cfg.FlushRecords, auditInitialCap))
	var sc auditScratch
	for {
		select {
		case <-t.C:
		case <-l.wake:
		case <-l.stop:
			// Append refuses records now, so this drains the queue.
			l.flushAll(spare, &sc)
			l.subMu.Lock()
			for sub := range l.subs {
				close(sub.ch)
			}
			l.subs = nil
			l.subMu.Unlock()
			return
		}
		spare = l.flushFull(spare, &sc)
	}
}

// flushFull commits the pending records, and again as long as a full batch (FlushRecords)
// has built up during the commit, and returns the spare buffer. A smaller rest waits for the
// next tick or wake-up, which keeps the crash bound (FlushInterval plus one commit): committing
// it at once would cost a whole commit, fsync and all, for a handful of records, after every
// full batch.
func (l *AuditLog) flushFull(spare []AuditRecord, sc *auditScratch) []AuditRecord {
	for {
		// The flush takes everything pending, so it answers any wake-up sent so far.
		select {
		case <-l.wake:
		default:
		}
		spare, _ = l.flush(spare, sc)
		if l.backlog() < l.cfg.FlushRecords {
			return spare
		}
	}
}

// backlog is how many records wait to be committed, the batch being committed included.
func (l *AuditLog) backlog() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.pending) + l.inflight
}

// flushAll flushes batches until there is nothing left, and returns the spare buffer.
func (l *AuditLog) flushAll(spare []AuditRecord, sc *auditScratch) []AuditRecord {
	for {
		var got int
		if spare, got = l.flush(spare, sc); got == 0 {
			return spare
		}
	}
}

// flush takes the pending records as one batch, leaving buf (emptied) in their place, commits
// them and hands them to the subscribers. It returns the buffer to pass next time and the
// batch's size.
func (l *AuditLog) flush(buf []AuditRecord, sc *auditScratch) ([]AuditRecord, int) {
	l.mu.Lock()
	batch := l.pending
	l.pending = buf[:0]
	l.inflight = len(batch)
	l.mu.Unlock()
	if len(batch) == 0 {
		return batch, 0
	}
	if err := l.commit(batch, sc); err != nil {
		if l.firstErr == nil {
			l.firstErr = err
		}
		l.cfg.Logger.Error("audit records lost", "err", err)
	}
	l.publish(batch)
	l.mu.Lock()
	l.inflight = 0
	l.mu.Unlock()
	n := len(batch)
	if cap(batch) > max(auditKeepCap, 2*l.cfg.FlushRecords) {
		// Let a burst's buffer go. The new one is allocated here, not by Append.
		return make([]AuditRecord, 0, min(l.cfg.FlushRecords, auditInitialCap)), n
	}
	clear(batch) // drop references to the records' strings and Args
	return batch[:0], n
}

// auditScratch is the writer's memory for committing a batch, kept from one batch to the next
// so that a record costs no allocation of its own: the encoded values, their keys, and the seqs
// they got. bbolt holds on to the keys and values it is given until the transaction ends, so
// they are reused only once commit has returned.
type auditScratch struct {
	enc  []byte // the batch's encoded values, one after another
	keys []byte // 8 bytes per record
	vals [][]byte
	seqs []uint64
	avg  int // bytes per record in the last batch, to size enc once for the next
}

// auditKeepBytes is the largest encoding buffer the writer keeps between batches; one grown
// past it by large arguments is let go, like a burst's queue (auditKeepCap).
const auditKeepBytes = 4 << 20

// commit stores batch in one write transaction and sets each record's Seq (0 if it was not
// stored) and its Time to UTC, as QueryAudit would return them. Values are encoded before the
// transaction, to hold the write lock only for the puts. A record that cannot be encoded (a
// Time past year 9999, say) is lost alone, not with its batch; the error reports it.
func (l *AuditLog) commit(batch []AuditRecord, sc *auditScratch) error {
	var errs []error
	// Growing enc record by record through a burst's batch would copy it over and over.
	sc.enc = slices.Grow(sc.enc[:0], len(batch)*max(sc.avg, 256)*9/8)
	sc.vals, sc.seqs = sc.vals[:0], sc.seqs[:0]
	for _, r := range batch {
		start := len(sc.enc)
		var argsDropped bool
		var err error
		sc.enc, argsDropped, err = appendAudit(sc.enc, r)
		switch {
		case err != nil:
			l.failed.Add(1)
			errs = append(errs, err)
		case argsDropped:
			l.cfg.Logger.Warn("audit record stored without its Args: not valid JSON", "kind", r.Kind, "tool", r.Tool)
		}
		// A value points into whichever array enc had when it was appended: one that enc
		// outgrows later stays alive, unchanged, for as long as the value refers to it.
		var v []byte
		if err == nil {
			v = sc.enc[start:len(sc.enc):len(sc.enc)]
		}
		sc.vals = append(sc.vals, v)
		sc.seqs = append(sc.seqs, 0)
	}
	if need := 8 * len(batch); cap(sc.keys) < need {
		sc.keys = make([]byte, need)
	} else {
		sc.keys = sc.keys[:need]
	}
	err := l.s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketAudit))
		// Keys only ever grow, so full pages suit: bbolt's default leaves half of each page
		// empty for inserts in the middle that never come.
		b.FillPercent = 1.0
		// The bucket's sequence, read once and set once: what NextSequence per record did.
		seq := b.Sequence()
		for i, v := range sc.vals {
			if v == nil {
				continue
			}
			seq++
			k := sc.keys[8*i : 8*i+8 : 8*i+8]
			binary.BigEndian.PutUint64(k, seq)
			if err := b.Put(k, v); err != nil {
				return fmt.Errorf("put audit record %d: %w", seq, err)
			}
			sc.seqs[i] = seq
		}
		if err := b.SetSequence(seq); err != nil {
			return fmt.Errorf("set audit sequence: %w", err)
		}
		return nil
	})
	if err != nil {
		clear(sc.seqs)
		for _, v := range sc.vals {
			if v != nil {
				l.failed.Add(1)
			}
		}
		errs = append(errs, err)
	}
	for i := range batch {
		batch[i].Seq = sc.seqs[i]
		batch[i].Time = batch[i].Time.UTC()
	}
	if len(batch) > 0 {
		sc.avg = len(sc.enc) / len(batch)
	}
	clear(sc.vals) // the values must not keep an outgrown buffer alive until the next batch
	if cap(sc.enc) > auditKeepBytes {
		sc.enc = nil
	}
	if len(errs) > 0 {
		return fmt.Errorf("data: commit audit records: %w", errors.Join(errs...))
	}
	return nil
}

// publish hands batch to every subscriber that has room.
func (l *AuditLog) publish(batch []AuditRecord) {
	l.subMu.Lock()
	defer l.subMu.Unlock()
	for sub := range l.subs {
		for _, r := range batch {
			select {
			case sub.ch <- r:
			default:
				l.missed.Add(1)
			}
		}
	}
}

// retention is what SweepConfig.Audit asks the sweep to enforce: maxAge and maxRecords as
// SweepAudit takes them (zero or negative: no limit).
func (l *AuditLog) retention() (maxAge time.Duration, maxRecords int) {
	return max(l.cfg.MaxAge, 0), max(l.cfg.MaxRecords, 0)
}
