package data

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// marshalAuditReference is how records were encoded before appendAudit: json.Marshal of
// auditRecord. appendAudit must produce the same bytes, so that old and new records are one
// format.
func marshalAuditReference(r AuditRecord) (b []byte, argsDropped bool, err error) {
	args := r.Args
	if len(args) > 0 && !json.Valid(args) {
		args, argsDropped = nil, true
	}
	b, err = json.Marshal(auditRecord{
		V: recordVersion, Time: r.Time.UTC(), Kind: r.Kind,
		User: r.User, Client: r.Client, ClientName: r.ClientName, Tunnel: r.Tunnel, Owner: r.Owner,
		Method: r.Method, Tool: r.Tool, Class: r.Class, Decision: r.Decision, Rule: r.Rule,
		Status: r.Status, LatencyNS: int64(r.Latency), Bytes: r.Bytes,
		ArgsDigest: r.ArgsDigest, Args: args, SourceIP: r.SourceIP, Detail: r.Detail,
	})
	return b, argsDropped, err
}

// checkAppendAudit fails unless appendAudit encodes r exactly as json.Marshal did, after a
// prefix it must leave alone, and decodes back to it.
func checkAppendAudit(t *testing.T, r AuditRecord) {
	t.Helper()
	want, wantDropped, wantErr := marshalAuditReference(r)
	prefix := []byte("prefix")
	got, dropped, err := appendAudit(bytes.Clone(prefix), r)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("appendAudit error %v, json.Marshal error %v", err, wantErr)
	}
	if err != nil {
		if !bytes.Equal(got, prefix) {
			t.Fatalf("appendAudit failed but changed dst: %q", got)
		}
		return
	}
	if !bytes.HasPrefix(got, prefix) || !bytes.Equal(got[len(prefix):], want) || dropped != wantDropped {
		t.Fatalf("appendAudit:\n%s (args dropped %v)\njson.Marshal:\n%s (args dropped %v)", got, dropped, want, wantDropped)
	}
	if _, err := decodeAudit(auditKey(1), got[len(prefix):]); err != nil {
		t.Fatalf("decode: %v", err)
	}
}

func TestAppendAuditMatchesMarshal(t *testing.T) {
	full := fullAuditRecord()
	for _, tc := range []struct {
		name string
		edit func(r *AuditRecord)
	}{
		{"full", func(*AuditRecord) {}},
		{"empty", func(r *AuditRecord) { *r = AuditRecord{} }},
		{"kind only", func(r *AuditRecord) { *r = AuditRecord{Kind: "sign_in", Time: epoch()} }},
		{"no args", func(r *AuditRecord) { r.Args = nil }},
		{"negative numbers", func(r *AuditRecord) { r.Status, r.Latency, r.Bytes = -1, -time.Second, -5 }},
		{"escapes", func(r *AuditRecord) { r.Detail = "quote\" back\\ \b\f\n\r\t \x00\x1f \x7f" }},
		{"html", func(r *AuditRecord) { r.Tool = "<script>&amp;</script>" }},
		{"unicode", func(r *AuditRecord) { r.User = "ünïcødé 日本 🎉 \u2028\u2029 \ufffd" }},
		{"invalid utf-8", func(r *AuditRecord) { r.ClientName = "a\xffb\xc3(c\xe2\x80" }},
		{"args with spaces", func(r *AuditRecord) { r.Args = json.RawMessage(" {\n \"a\" : [1, 2 ],\t\"b\":{} } ") }},
		{"args with html", func(r *AuditRecord) { r.Args = json.RawMessage(`{"q":"<b>&</b>","s":"\u2028 x"}`) }},
		{"args with raw U+2028", func(r *AuditRecord) { r.Args = json.RawMessage("{\"s\":\"a\u2028b\u2029\"}") }},
		{"args not JSON", func(r *AuditRecord) { r.Args = json.RawMessage(`{"not json`) }},
		{"args two values", func(r *AuditRecord) { r.Args = json.RawMessage(`{} {}`) }},
		{"args scalar", func(r *AuditRecord) { r.Args = json.RawMessage(`42`) }},
		{"time without nanos", func(r *AuditRecord) { r.Time = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }},
		{"time with trailing zeros", func(r *AuditRecord) { r.Time = time.Date(2026, 1, 2, 3, 4, 5, 120000000, time.UTC) }},
		{"time in a zone", func(r *AuditRecord) { r.Time = time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("x", -9000)) }},
		{"zero time", func(r *AuditRecord) { r.Time = time.Time{} }},
		{"year 9999", func(r *AuditRecord) { r.Time = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC) }},
		{"year 10000", func(r *AuditRecord) { r.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"year -1", func(r *AuditRecord) { r.Time = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"year 9999 in a zone behind UTC", func(r *AuditRecord) {
			r.Time = time.Date(9999, 12, 31, 23, 0, 0, 0, time.FixedZone("x", -7200))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := full
			tc.edit(&r)
			checkAppendAudit(t, r)
		})
	}
}

func FuzzAppendAudit(f *testing.F) {
	f.Add("mcp", "ada@example.com", "tools/call", "<>&\u2028", `{"a":1}`, int64(123456789), int64(1500))
	f.Add("", "\xff\x00", "", "\"\\", ` [ 1 , "<" ] `, int64(-1), int64(0))
	f.Fuzz(func(t *testing.T, kind, user, tool, detail, args string, nanos, latency int64) {
		r := AuditRecord{
			Time: time.Unix(0, nanos), Kind: kind, User: user, Tool: tool, Detail: detail,
			Latency: time.Duration(latency), Status: int(latency % 600), Args: json.RawMessage(args),
		}
		checkAppendAudit(t, r)
	})
}

// BenchmarkAuditEncode is one record's encoding, the way the writer did it (json.Marshal) and
// does it (appendAudit into a reused buffer).
func BenchmarkAuditEncode(b *testing.B) {
	for _, args := range []bool{false, true} {
		r := fullAuditRecord()
		if !args {
			r.Args = nil
		}
		b.Run(fmt.Sprintf("marshal/args=%v", args), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := marshalAuditReference(r); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("append/args=%v", args), func(b *testing.B) {
			b.ReportAllocs()
			var buf []byte
			for b.Loop() {
				var err error
				if buf, _, err = appendAudit(buf[:0], r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
