package authz

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
)

// ArgumentsDigest identifies a call's arguments without keeping them: "sha256:" and the hex
// SHA-256 of the arguments as sent. Two calls with the same digest had byte-identical
// arguments; the digest says nothing else about them.
func ArgumentsDigest(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	sum := sha256.Sum256(raw)
	// Built in one buffer: one allocation (the string) per audited request, not three.
	const prefix = "sha256:"
	var b [len(prefix) + 2*sha256.Size]byte
	copy(b[:], prefix)
	hex.Encode(b[len(prefix):], sum[:])
	return string(b[:])
}

// secretWords are parts of argument names whose values are replaced by RedactArguments.
var secretWords = []string{"pass", "secret", "token", "key", "auth", "credential", "cookie", "session", "private", "signature"}

// RedactArguments returns the arguments with the value of every key that looks like it
// holds a secret (password, api_key, accessToken, Authorization, …) replaced by "[redacted]",
// at any depth, for an audit log that keeps arguments. Arguments that are not a JSON object
// come back as nil: an audit record keeps what it can read, never a raw body.
func RedactArguments(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v map[string]any
	if err := dec.Decode(&v); err != nil {
		return nil
	}
	out, err := json.Marshal(redact(v))
	if err != nil {
		return nil
	}
	return out
}

func redact(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if secretName(k) {
				x[k] = "[redacted]"
			} else {
				x[k] = redact(val)
			}
		}
		return x
	case []any:
		for i := range x {
			x[i] = redact(x[i])
		}
		return x
	}
	return v
}

func secretName(k string) bool {
	k = strings.ToLower(k)
	for _, w := range secretWords {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}
