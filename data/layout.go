package data

import "encoding/binary"

// The database layout. Every bucket is top level and created by Open.
//
//	bucket           key                                  value
//	meta             "schema"                             uint32 big-endian schema version
//	secrets          secret name ("ssh-host-key", …)      raw bytes (PEM)
//	names            name label                           JSON nameRecord
//	names_by_owner   owner || 0x00 || name                empty (index for NamesByOwner)
//	names_by_expiry  uint64 BE unix nanos || name         empty (index for the expiry sweep)
//	certmagic        certmagic key ("certificates/…")     uint64 BE unix-nano mtime || payload
//
// The 0x00 separator keeps owner "a" from matching owner "ab" in a prefix scan: owners are key
// fingerprints or user ids and never contain NUL. Big-endian numbers sort numerically, so an
// expiry cursor walks from the oldest deadline and stops at the first one in the future.
var (
	bucketMeta          = []byte("meta")
	bucketSecrets       = []byte("secrets")
	bucketNames         = []byte("names")
	bucketNamesByOwner  = []byte("names_by_owner")
	bucketNamesByExpiry = []byte("names_by_expiry")
	bucketCertmagic     = []byte("certmagic")

	allBuckets = [][]byte{bucketSecrets, bucketNames, bucketNamesByOwner, bucketNamesByExpiry, bucketCertmagic}

	keySchema = []byte("schema")
)

// schemaVersion is the layout above. Bump it when a change needs a migration; a binary refuses
// files with a higher version than its own.
const schemaVersion uint32 = 1

var be = binary.BigEndian
