package web

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/toolgate/toolgate/authz"
	"github.com/toolgate/toolgate/data"
)

// What the tunnel path leaves behind for each request (serveTunnel's finish): the line on the
// owner's terminal and the audit record. Both are built for every request, so they are built
// by appending to buffers rather than with fmt: a line is one allocation (the string handed
// to the terminal), a record's strings are the ones the request already had.

// requestInfo is what the token and policy steps learned about a request, for its line and
// record.
type requestInfo struct {
	user, client   string // the token's user (email when known) and client name
	clientID       string
	method, tool   string // the first JSON-RPC request of the body
	class          string
	decision, rule string          // "" when no policy decided
	more           int             // further requests in a batch
	args           json.RawMessage // the first tools/call's arguments, as sent (aliases the body)
	// refused is set when the token step, or the origin check, refused the request: decision
	// and rule say why.
	refused bool
	// origin is the browser origin the origin check refused, for the record's detail.
	origin string
}

// Decisions recorded for requests the token step refuses, besides "deny" (403: a valid token
// whose user may not use a tunnel without a policy), with the reason as the rule. A token's
// contents never go into a record: only that it was missing, invalid, or for another
// resource.
const (
	// DecisionUnauthenticated (401): no token, or one that is not valid here; the rule is
	// no_token, invalid_token or wrong_resource.
	DecisionUnauthenticated = "unauthenticated"
	// DecisionError (500): the token could not be checked; the rule is token_check.
	DecisionError = "error"
)

// audit records a request that reached the token step: who, which client, which tunnel, what
// was asked and decided, and how it went. Arguments are kept as a digest, or redacted when
// the operator asked for them. Requests refused for their token go through the refusal gate,
// which coalesces floods of them (frontrefusal.go).
func (f *Front) audit(tr *tunnelRequest, r *http.Request, elapsed time.Duration) {
	info := &tr.info
	if f.cfg.Audit == nil || (info.user == "" && !info.refused) {
		return
	}
	status := tr.rec.status
	if status == 0 {
		status = 499
	}
	ar := data.AuditRecord{
		Time: tr.start, Kind: "mcp", User: info.user, Client: info.clientID, ClientName: info.client,
		Tunnel: tr.t.Name(), Owner: tr.t.Owner(), Method: info.method, Tool: info.tool, Class: info.class,
		Decision: info.decision, Rule: info.rule, Status: status, Latency: elapsed, Bytes: tr.rec.bytes,
		SourceIP: tr.source,
	}
	if info.refused {
		// What was asked, since no body was read: the HTTP method and path (never the query,
		// where a misguided client may have put its token).
		ar.Detail = refusedDetail(r)
		if info.origin != "" {
			ar.Detail += " from origin " + printableCut(info.origin, 200)
		}
		f.refusals.record(ar, tr.source)
		return
	}
	ar.ArgsDigest = authz.ArgumentsDigest(info.args)
	if f.cfg.AuditArgs {
		ar.Args = authz.RedactArguments(info.args)
	}
	if info.more > 0 {
		ar.Detail = "batch of " + strconv.Itoa(info.more+1) + " requests"
	}
	f.cfg.Audit.Append(ar)
}

// refusedDetail is "METHOD /path" for a refused request's record: printable, the path
// escaped and cut at 200 bytes.
func refusedDetail(r *http.Request) string {
	var buf [256]byte
	b := appendPrintable(buf[:0], r.Method)
	b = append(b, ' ')
	path := r.URL.EscapedPath()
	if len(path) > 200 {
		path = path[:197] + "..."
	}
	return string(appendPrintable(b, path))
}

// printableCut is s made printable and cut to about max bytes, for text from a request that
// goes into a record.
func printableCut(s string, max int) string {
	if len(s) > max {
		s = s[:max-3] + "..."
	}
	return string(appendPrintable(nil, s))
}

// sourceAddr parses a request's RemoteAddr: the address for the proxy, and the IP as text
// (IPv4-mapped addresses unmapped) for the policy and the audit record. The text is the
// RemoteAddr's own host part when that is already the canonical form, which it is for
// addresses the kernel gave, so it costs no allocation.
func sourceAddr(remote string) (netip.AddrPort, string) {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return ap, ""
	}
	var buf [64]byte
	text := ap.Addr().Unmap().AppendTo(buf[:0])
	host := remote
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = strings.TrimSuffix(strings.TrimPrefix(host[:i], "["), "]")
	}
	if host == string(text) {
		return ap, host
	}
	return ap, string(text)
}

// requestLine is what the owner's terminal shows for one request: for an MCP request the
// user, client, method, tool and class and the decision, with denials in capitals; then the
// status, time and size.
func requestLine(start time.Time, r *http.Request, rec *recorder, info *requestInfo) string {
	var buf [256]byte
	return string(appendRequestLine(buf[:0], start, time.Since(start), r, rec, info))
}

// appendRequestLine appends requestLine's line, for a request that took elapsed.
func appendRequestLine(b []byte, start time.Time, elapsed time.Duration, r *http.Request, rec *recorder, info *requestInfo) []byte {
	status := rec.status
	if status == 0 {
		status = 499 // the client went away before any response
	}
	note := ""
	switch {
	case rec.upgraded:
		note = "  upgraded"
	case status >= 500:
		note = "  <- check your local server"
	}
	if info != nil && info.method != "" {
		// What comes from the request (names from the body) is made printable before the
		// status goes on.
		from := len(b)
		b = start.AppendFormat(b, "15:04:05")
		b = append(b, "  "...)
		b = append(b, info.user...)
		if info.client != "" {
			b = strconv.AppendQuote(append(b, " via "...), info.client)
		}
		b = append(append(b, "  "...), info.method...)
		if info.tool != "" {
			b = append(append(b, ' '), info.tool...)
		}
		if info.class != "" {
			b = append(append(append(b, " ["...), info.class...), ']')
		}
		if info.more > 0 {
			b = strconv.AppendInt(append(b, " (+"...), int64(info.more), 10)
			b = append(b, " in batch)"...)
		}
		b = append(b, "  "...)
		switch info.decision {
		case "deny":
			b = strconv.AppendQuote(append(b, "DENIED by "...), info.rule)
		case "step_up":
			b = strconv.AppendQuote(append(b, "STEP-UP by "...), info.rule)
		default:
			b = append(b, info.decision...)
		}
		for i := from; i < len(b); i++ {
			if b[i] < 0x20 || b[i] > 0x7e {
				b[i] = '?'
			}
		}
		// The rest is ours, and the duration may say "µs".
		b = strconv.AppendInt(append(b, "  "...), int64(status), 10)
		b = appendDuration(append(b, "  "...), roundDuration(elapsed))
		b = appendSize(append(b, "  "...), rec.bytes)
		return append(b, note...)
	}
	b = start.AppendFormat(b, "15:04:05")
	b = append(b, "  "...)
	n := len(b)
	b = appendPrintable(b, r.Method)
	b = appendPad(b, 6-(len(b)-n))
	b = append(b, ' ')
	// The escaped form: a decoded path could carry terminal escape sequences from anyone on
	// the internet straight onto the developer's screen.
	n = len(b)
	b = appendPrintable(b, r.URL.EscapedPath())
	if len(b)-n > 60 {
		b = append(b[:n+57], "..."...)
	}
	b = appendPad(b, 24-(len(b)-n))
	b = strconv.AppendInt(append(b, ' '), int64(status), 10)
	b = append(b, "  "...)
	n = len(b)
	b = appendDuration(b, roundDuration(elapsed))
	if w := utf8.RuneCount(b[n:]); w < 7 {
		// Right-aligned in 7 columns: insert the padding before the duration.
		pad := 7 - w
		b = appendPad(b, pad)
		copy(b[n+pad:], b[n:len(b)-pad])
		for i := n; i < n+pad; i++ {
			b[i] = ' '
		}
	}
	b = appendSize(append(b, "  "...), rec.bytes)
	if info != nil && info.refused && info.decision == "deny" {
		b = strconv.AppendQuote(append(b, "  DENIED by "...), info.rule)
	}
	return append(b, note...)
}

// appendPrintable appends s with anything outside printable ASCII replaced by '?'.
func appendPrintable(b []byte, s string) []byte {
	n := len(b)
	b = append(b, s...)
	for i := n; i < len(b); i++ {
		if b[i] < 0x20 || b[i] > 0x7e {
			b[i] = '?'
		}
	}
	return b
}

func appendPad(b []byte, n int) []byte {
	for ; n > 0; n-- {
		b = append(b, ' ')
	}
	return b
}

func roundDuration(d time.Duration) time.Duration {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond)
	case d < time.Second:
		return d.Round(100 * time.Microsecond)
	}
	return d.Round(time.Millisecond)
}

// appendDuration appends d as d.String() does, without its allocation for the durations under
// a minute that a request line shows; longer ones (streams) take String's.
func appendDuration(b []byte, d time.Duration) []byte {
	switch {
	case d < 0 || d >= time.Minute:
		return append(b, d.String()...)
	case d == 0:
		return append(b, "0s"...)
	case d < time.Microsecond:
		return append(strconv.AppendInt(b, int64(d), 10), "ns"...)
	case d < time.Millisecond:
		return append(appendFrac(b, int64(d), 1e3), "µs"...)
	case d < time.Second:
		return append(appendFrac(b, int64(d), 1e6), "ms"...)
	}
	return append(appendFrac(b, int64(d), 1e9), 's')
}

// appendFrac appends v/unit with its fraction, trailing zeros (and a bare point) left out.
func appendFrac(b []byte, v, unit int64) []byte {
	b = strconv.AppendInt(b, v/unit, 10)
	frac := v % unit
	if frac == 0 {
		return b
	}
	b = append(b, '.')
	for unit /= 10; frac > 0; unit /= 10 {
		b = append(b, byte('0'+frac/unit))
		frac %= unit
	}
	return b
}

func appendSize(b []byte, n int64) []byte {
	switch {
	case n < 1000:
		return append(strconv.AppendInt(b, n, 10), " B"...)
	case n < 1000*1000:
		return append(strconv.AppendFloat(b, float64(n)/1000, 'f', 1, 64), " kB"...)
	}
	return append(strconv.AppendFloat(b, float64(n)/1e6, 'f', 1, 64), " MB"...)
}
