// Package data is toolgate's storage layer. It owns the one bbolt file: opening and locking it,
// every bucket and key layout in it (see layout.go), the schema version, and the expiry sweeps
// that release unused names and delete lapsed key links, sessions, tickets and OAuth records.
// It is the only package that imports bbolt; the rest of toolgate holds records through the
// methods of [Store] and never sees a transaction.
//
// It knows what it stores but not why. Which names are valid or reserved, how long a claim
// lasts and which names are live belong to package tunnel; what a secret contains belongs to its
// caller; certificate policy belongs to package web, which gets certmagic storage from
// [Store.CertStorage]. Likewise for identity (see identity.go): data keeps users, the SSH keys
// linked to them, browser sessions and one-time tickets, with their uniqueness and indexes, but
// hashing passwords and tokens, session lifetimes and who may sign in belong to the callers.
// For OAuth (see oauth.go) data keeps clients, users' consents, and fosite's codes and tokens
// ([Store.OAuthTokens] is fosite's token storage) grouped into families with grant records;
// which clients may register, token lifetimes and what a consent covers belong to package
// oauth. Saved shares (see shares.go) are whom a tunnel name's owner shares it with; data
// checks their syntax and ties them to the claim, and what sharing allows belongs to the
// policy. The audit log (see audit.go) commits queued records in batches, one fsync per batch
// rather than per request, so a crash loses at most the records of the last
// AuditLogConfig.FlushInterval plus one commit, and never more than its QueueSize.
// Package data imports no other toolgate package.
//
// bbolt allows one process per file, so the in-process locks here are all the coordination
// there is. A backend for several nodes would implement the same methods with leases.
package data
