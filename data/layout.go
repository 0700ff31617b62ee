package data

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"time"
)

// The on-disk format: every bucket, key and value toolgate writes. All buckets are top level
// and created by Open.
//
//	bucket           key                                  value
//	meta             "schema"                             uint32 big-endian schema version (1)
//	secrets          secret name ("ssh-host-key", …)      JSON secretRecord {"v":1,"value":base64,"created_at"}
//	names            name label ("quiet-fox-7h3k2q")      JSON nameRecord {"v":1,"owner","kind","hint",
//	                                                      "claimed_at","last_used","expires_at"}
//	names_by_owner   owner || 0x00 || name                empty (index for NamesByOwner)
//	names_by_expiry  uint64 BE unix nanos || name         empty (index for SweepExpiredNames)
//	certmagic        certmagic key ("certificates/…")     uint64 BE unix-nano mtime || payload
//
// Times in JSON are RFC 3339 in UTC. The two name indexes are derived from the names bucket and
// rewritten in the same transaction as the record they point at; readers still re-check the
// record, so a stale index entry can hide nothing and release nothing.
//
// The 0x00 separator keeps owner "a" from matching owner "ab" in a prefix scan; owners are key
// fingerprints or user ids, and ClaimName refuses an owner containing NUL. Big-endian numbers
// sort numerically, so an expiry cursor walks from the oldest deadline and stops at the first
// one in the future. Deadlines before 1970 are stored as 0 (and after 2262 as the maximum), so
// that unsigned ordering matches time ordering.
//
// certmagic values keep a fixed binary header instead of JSON: they are opaque payloads of their
// own (PEM, JSON), and the header holds the only metadata certmagic asks for (Stat's Modified).
const (
	bucketMeta          = "meta"
	bucketSecrets       = "secrets"
	bucketNames         = "names"
	bucketNamesByOwner  = "names_by_owner"
	bucketNamesByExpiry = "names_by_expiry"
	bucketCertmagic     = "certmagic"

	keySchema = "schema"

	// schemaVersion is the layout above. Bump it when a change needs a migration; a binary
	// refuses files with a higher version than its own.
	schemaVersion uint32 = 1

	// recordVersion is the "v" of the JSON records above. A record with a higher version was
	// written by a newer toolgate and is refused rather than half-read.
	recordVersion = 1

	ownerSep       = 0x00
	certHeaderSize = 8
)

// allBuckets lists every bucket Open creates.
func allBuckets() []string {
	return []string{bucketMeta, bucketSecrets, bucketNames, bucketNamesByOwner, bucketNamesByExpiry, bucketCertmagic}
}

func encodeSchema(v uint32) []byte {
	return binary.BigEndian.AppendUint32(nil, v)
}

// ownerKey is the names_by_owner key; ownerKey(owner, "") is the prefix of all of owner's keys.
func ownerKey(owner, name string) []byte {
	k := make([]byte, 0, len(owner)+1+len(name))
	k = append(k, owner...)
	k = append(k, ownerSep)
	return append(k, name...)
}

// expiryNanos maps a deadline to the index's unsigned order, clamping what int64 nanoseconds
// cannot represent.
func expiryNanos(t time.Time) uint64 {
	switch {
	case t.Before(time.Unix(0, 0)):
		return 0
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return uint64(t.UnixNano())
}

// expiryKey is the names_by_expiry key.
func expiryKey(at time.Time, name string) []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(name)), expiryNanos(at))
	return append(k, name...)
}

// secretRecord is a stored secret. CreatedAt is informational today; it is there for rotation.
type secretRecord struct {
	V         int       `json:"v"`
	Value     []byte    `json:"value"` // base64 in JSON
	CreatedAt time.Time `json:"created_at"`
}

// nameRecord is a NameClaim as stored; the name itself is the key.
type nameRecord struct {
	V         int       `json:"v"`
	Owner     string    `json:"owner"`
	Kind      NameKind  `json:"kind"`
	Hint      string    `json:"hint,omitempty"`
	ClaimedAt time.Time `json:"claimed_at"`
	LastUsed  time.Time `json:"last_used"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

func encodeSecret(value []byte, createdAt time.Time) ([]byte, error) {
	return json.Marshal(secretRecord{V: recordVersion, Value: value, CreatedAt: createdAt.UTC()})
}

func decodeSecret(b []byte) (secretRecord, error) {
	var r secretRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("decode secret record: %w", err)
	}
	return r, checkRecordVersion(r.V)
}

func encodeName(c NameClaim) ([]byte, error) {
	return json.Marshal(nameRecord{
		V: recordVersion, Owner: c.Owner, Kind: c.Kind, Hint: c.Hint,
		ClaimedAt: c.ClaimedAt.UTC(), LastUsed: c.LastUsed.UTC(), ExpiresAt: c.ExpiresAt.UTC(),
	})
}

func decodeName(name string, b []byte) (NameClaim, error) {
	var r nameRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return NameClaim{}, fmt.Errorf("decode name record: %w", err)
	}
	if err := checkRecordVersion(r.V); err != nil {
		return NameClaim{}, err
	}
	return NameClaim{Name: name, Owner: r.Owner, Kind: r.Kind, Hint: r.Hint,
		ClaimedAt: r.ClaimedAt, LastUsed: r.LastUsed, ExpiresAt: r.ExpiresAt}, nil
}

func checkRecordVersion(v int) error {
	if v > recordVersion {
		return fmt.Errorf("%w: record version %d, this build knows %d", ErrSchemaTooNew, v, recordVersion)
	}
	return nil
}

// certValue prefixes a certmagic payload with its modification time.
func certValue(mtime time.Time, payload []byte) []byte {
	v := binary.BigEndian.AppendUint64(make([]byte, 0, certHeaderSize+len(payload)), uint64(mtime.UnixNano()))
	return append(v, payload...)
}

// splitCertValue is certValue's inverse; ok is false for a value too short to have a header.
func splitCertValue(v []byte) (mtime time.Time, payload []byte, ok bool) {
	if len(v) < certHeaderSize {
		return time.Time{}, nil, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(v))).UTC(), v[certHeaderSize:], true
}
