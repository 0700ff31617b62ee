package data

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// AuditRecord is one MCP request or security event. Package data stores it as given: what
// the fields mean, which are set for which kind, and redacting the arguments belong to the
// caller.
type AuditRecord struct {
	// Seq is assigned by the log when the record is committed: dense, increasing, surviving
	// restarts, and the record's key. What the caller sets is ignored.
	Seq uint64

	// Time is when it happened. [AuditLog.Append] sets a zero Time to its clock's now.
	// Records come back in UTC.
	Time time.Time

	// Kind is "mcp" for a request; for events "sign_in", "key_link", "client_registered",
	// "consent", "token_issued", "token_refreshed", "token_revoked", "tunnel_open",
	// "tunnel_close", "policy_reload", "denial" and so on. Opaque to data.
	Kind string

	User, Client, ClientName, Tunnel, Owner string
	Method, Tool, Class, Decision, Rule     string

	Status  int           // upstream HTTP status
	Latency time.Duration // upstream latency
	Bytes   int64         // bytes relayed

	// ArgsDigest identifies the arguments without keeping them ("sha256:…"); the caller
	// computes it.
	ArgsDigest string

	// Args are the arguments themselves, only when the operator enabled it, already redacted
	// by the caller. They must be valid JSON: a record whose Args are not is stored without
	// them (and the log says so), rather than lost.
	Args json.RawMessage

	SourceIP string
	Detail   string
}

// auditRecord is an AuditRecord as stored; the seq is the key. appendAudit (auditenc.go)
// writes it by hand, byte for byte as json.Marshal would; decodeAudit reads it with
// encoding/json.
type auditRecord struct {
	V          int             `json:"v"`
	Time       time.Time       `json:"time"`
	Kind       string          `json:"kind"`
	User       string          `json:"user,omitempty"`
	Client     string          `json:"client,omitempty"`
	ClientName string          `json:"client_name,omitempty"`
	Tunnel     string          `json:"tunnel,omitempty"`
	Owner      string          `json:"owner,omitempty"`
	Method     string          `json:"method,omitempty"`
	Tool       string          `json:"tool,omitempty"`
	Class      string          `json:"class,omitempty"`
	Decision   string          `json:"decision,omitempty"`
	Rule       string          `json:"rule,omitempty"`
	Status     int             `json:"status,omitempty"`
	LatencyNS  int64           `json:"latency_ns,omitempty"`
	Bytes      int64           `json:"bytes,omitempty"`
	ArgsDigest string          `json:"args_digest,omitempty"`
	Args       json.RawMessage `json:"args,omitempty"`
	SourceIP   string          `json:"source_ip,omitempty"`
	Detail     string          `json:"detail,omitempty"`
}

func (r auditRecord) version() int { return r.V }

// decodeAudit decodes the audit bucket entry k, v. Keys other than 8 bytes are not this
// package's and are refused like a corrupt value.
func decodeAudit(k, v []byte) (AuditRecord, error) {
	if len(k) != 8 {
		return AuditRecord{}, fmt.Errorf("data: audit key %x is not a sequence number", k)
	}
	seq := binary.BigEndian.Uint64(k)
	r, err := decodeRecord[auditRecord]("audit", v)
	if err != nil {
		return AuditRecord{}, fmt.Errorf("data: audit record %d: %w", seq, err)
	}
	return AuditRecord{
		Seq: seq, Time: r.Time, Kind: r.Kind,
		User: r.User, Client: r.Client, ClientName: r.ClientName, Tunnel: r.Tunnel, Owner: r.Owner,
		Method: r.Method, Tool: r.Tool, Class: r.Class, Decision: r.Decision, Rule: r.Rule,
		Status: r.Status, Latency: time.Duration(r.LatencyNS), Bytes: r.Bytes,
		ArgsDigest: r.ArgsDigest, Args: r.Args, SourceIP: r.SourceIP, Detail: r.Detail,
	}, nil
}

func auditKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), seq) }

const (
	defaultAuditQueryLimit = 100
	maxAuditQueryLimit     = 10000

	// auditCtxEvery is how many records a scan reads between checks of its context.
	auditCtxEvery = 1024
	// auditSweepChunk is how many records one SweepAudit transaction deletes at most, so that
	// a large retention change does not hold the write lock (and the audit writer) for long.
	auditSweepChunk = 10000
)

// AuditQuery selects audit records for [Store.QueryAudit]. String fields match exactly and an
// empty one matches everything; all set fields must match.
type AuditQuery struct {
	User, Tunnel, Tool, Decision, Kind string

	// Since (inclusive) and Until (exclusive) bound the record's Time. Zero: no bound.
	Since, Until time.Time

	// AfterSeq and BeforeSeq bound Seq, both exclusive, for paging. Zero: no bound.
	AfterSeq, BeforeSeq uint64

	// Newest returns the newest matching records first (the last page, for a dashboard or
	// `toolgate audit`; page back with BeforeSeq = the last Seq returned). Default false:
	// oldest first (for export and paging forward with AfterSeq = the last Seq returned).
	Newest bool

	// Limit is the most records returned. Default (zero or negative) 100; at most 10000
	// (larger values are lowered to it).
	Limit int
}

func (q AuditQuery) match(r AuditRecord) bool {
	for _, f := range [...]struct{ want, got string }{
		{q.User, r.User}, {q.Tunnel, r.Tunnel}, {q.Tool, r.Tool}, {q.Decision, r.Decision}, {q.Kind, r.Kind},
	} {
		if f.want != "" && f.want != f.got {
			return false
		}
	}
	return (q.Since.IsZero() || !r.Time.Before(q.Since)) && (q.Until.IsZero() || r.Time.Before(q.Until))
}

// QueryAudit returns up to q.Limit records matching q, in Seq order: oldest first, or newest
// first if q.Newest. Seq order is the order records were committed, which is their Time order
// except for records appended concurrently or with a caller-set Time.
//
// There is no index: the query reads records from the AfterSeq (or BeforeSeq, if Newest) end
// until it has Limit matches, so a selective filter over a large log costs a scan of it (a
// JSON decode per record), in one read transaction that does not block writers. A
// record that cannot be decoded fails the query with an error naming its Seq.
func (s *Store) QueryAudit(ctx context.Context, q AuditQuery) ([]AuditRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if q.Limit <= 0 {
		q.Limit = defaultAuditQueryLimit
	}
	q.Limit = min(q.Limit, maxAuditQueryLimit)
	var out []AuditRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		out = out[:0]
		c := tx.Bucket([]byte(bucketAudit)).Cursor()
		var k, v []byte
		var step func() ([]byte, []byte)
		if q.Newest {
			step = c.Prev
			if q.BeforeSeq == 0 {
				k, v = c.Last()
			} else {
				// Seek lands on BeforeSeq or the first key past it (or nothing): both are
				// out of range, so step back once either way.
				if k, _ = c.Seek(auditKey(q.BeforeSeq)); k == nil {
					k, v = c.Last()
				} else {
					k, v = c.Prev()
				}
			}
		} else {
			step = c.Next
			k, v = c.Seek(auditKey(q.AfterSeq))
			if bytes.Equal(k, auditKey(q.AfterSeq)) {
				k, v = c.Next()
			}
		}
		for n := 0; k != nil && len(out) < q.Limit; k, v = step() {
			if len(k) == 8 {
				seq := binary.BigEndian.Uint64(k)
				if (q.AfterSeq != 0 && seq <= q.AfterSeq) || (q.BeforeSeq != 0 && seq >= q.BeforeSeq) {
					break // the cursor has left the range
				}
			}
			if n++; n%auditCtxEvery == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			r, err := decodeAudit(k, v)
			if err != nil {
				return err
			}
			if q.match(r) {
				out = append(out, r)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SweepAudit deletes audit records from the oldest on: those whose Time is before
// now-maxAge, and those beyond the newest maxRecords. maxAge <= 0 and maxRecords <= 0 mean no
// limit of that kind. It returns how many it deleted.
//
// Age is read from the records in Seq order and the sweep stops at the first record young
// enough, so a record committed after a younger one (see QueryAudit) may outlive maxAge by
// that difference. A record whose time cannot be decoded stops the age sweep with an error
// (the count limit still applies: it reads no values). Deletions run in transactions of at
// most 10000 records, so the audit writer is never kept waiting for long.
func (s *Store) SweepAudit(ctx context.Context, now time.Time, maxAge time.Duration, maxRecords int) (int, error) {
	cutoff := time.Time{}
	if maxAge > 0 {
		cutoff = now.Add(-maxAge)
	}
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n, err := s.sweepAuditChunk(cutoff, maxRecords)
		total += n
		if err != nil || n < auditSweepChunk {
			return total, err
		}
	}
}

// sweepAuditChunk is one transaction of SweepAudit: it deletes up to auditSweepChunk records
// from the front that are older than cutoff (zero: none by age) or beyond maxRecords.
func (s *Store) sweepAuditChunk(cutoff time.Time, maxRecords int) (int, error) {
	// A sweep with nothing to do costs a read transaction, not a commit.
	var todo bool
	if err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		_, todo, err = auditDue(tx.Bucket([]byte(bucketAudit)), cutoff, maxRecords, 1)
		return err
	}); err != nil || !todo {
		return 0, err
	}
	var n int
	var walkErr error
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketAudit))
		var due [][]byte
		// Records found due before a corrupt one are still due: delete them, then report.
		due, _, walkErr = auditDue(b, cutoff, maxRecords, auditSweepChunk)
		for _, k := range due {
			if err := b.Delete(k); err != nil {
				return fmt.Errorf("data: delete audit record: %w", err)
			}
		}
		n = len(due)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, walkErr
}

// auditDue returns the keys of up to limit records at the front of the audit bucket b that
// are due, and whether there is any. The count is the last seq minus the first plus one: seqs
// are dense and records are only ever deleted from the front, so that is exact without
// walking the bucket.
func auditDue(b *bolt.Bucket, cutoff time.Time, maxRecords, limit int) (due [][]byte, any bool, err error) {
	c := b.Cursor()
	first, _ := c.First()
	last, _ := c.Last()
	if first == nil {
		return nil, false, nil
	}
	over := uint64(0)
	if maxRecords > 0 && len(first) == 8 && len(last) == 8 {
		if count := binary.BigEndian.Uint64(last) - binary.BigEndian.Uint64(first) + 1; count > uint64(maxRecords) {
			over = count - uint64(maxRecords)
		}
	}
	for k, v := c.First(); k != nil && len(due) < limit; k, v = c.Next() {
		if uint64(len(due)) >= over {
			if cutoff.IsZero() {
				break
			}
			r, err := decodeAudit(k, v)
			if err != nil {
				return due, len(due) > 0, err
			}
			if !r.Time.Before(cutoff) {
				break // Seq order is time order: everything further is younger
			}
		}
		// Keys live in bbolt's memory map only as long as the transaction, and the page
		// under them changes with the first delete: copy.
		due = append(due, bytes.Clone(k))
	}
	return due, len(due) > 0, nil
}
