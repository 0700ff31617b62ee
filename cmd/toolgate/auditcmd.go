package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/toolgate/toolgate/authz"
	"github.com/toolgate/toolgate/data"
	"github.com/toolgate/toolgate/web"
)

// `toolgate audit list`: the durable audit log (data.AuditRecord), filtered, as a table or as
// JSON lines. It runs inside a running server over the admin socket, or on the database file
// when none runs, like the other admin commands.
//
// Filters match exactly, as data.AuditQuery does. A record's User is the user's email as the
// server recorded it (lower case, since emails are normalized when accounts are created), so
// --user takes an email and matches it lower-cased, without looking the account up: records
// outlive accounts, and a failed sign-in names an address that has none.

// auditListLimit is how many records `audit list` prints unless told otherwise.
const auditListLimit = 100

func auditList(ctx context.Context, env adminEnv, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("audit list", flag.ContinueOnError)
	user := fs.String("user", "", "only records of this user (email)")
	tunnel := fs.String("tunnel", "", "only records of this tunnel")
	tool := fs.String("tool", "", "only records of this tool")
	decision := fs.String("decision", "", "only this decision: allow, deny, step_up, unauthenticated or error")
	kind := fs.String("kind", "", "only this kind: mcp, sign_in, tunnel_open, denial, …")
	since := fs.String("since", "", "only records at or after this time: a duration back from now (1h) or RFC 3339")
	until := fs.String("until", "", "only records before this time: RFC 3339 or a duration back from now")
	after := fs.Uint64("after", 0, "only records after this sequence number, oldest first (paging forward)")
	before := fs.Uint64("before", 0, "only records before this sequence number (paging back)")
	limit := fs.Int("limit", auditListLimit, "the most records to print (at most 10000)")
	asJSON := fs.Bool("json", false, "print one JSON object per line")
	if _, err := parseCommand(fs, args, 0, "flags only"); err != nil {
		return err
	}
	q := data.AuditQuery{
		User:   strings.ToLower(strings.TrimSpace(*user)),
		Tunnel: *tunnel, Tool: *tool, Kind: *kind, Decision: *decision,
		AfterSeq: *after, BeforeSeq: *before,
		// The latest records, unless paging forward from a known one.
		Newest: *after == 0,
		Limit:  *limit,
	}
	switch q.Decision {
	case "", string(authz.Allow), string(authz.Deny), string(authz.StepUp), web.DecisionUnauthenticated, web.DecisionError:
	default:
		return usageError{fmt.Sprintf("audit list: --decision %q: want allow, deny, step_up, unauthenticated or error", q.Decision)}
	}
	if *limit <= 0 {
		return usageError{"audit list: --limit must be positive"}
	}
	if *after != 0 && *before != 0 && *before <= *after+1 {
		return usageError{"audit list: --before must be greater than --after + 1"}
	}
	now := env.now()
	var err error
	if q.Since, err = parseAuditTime("since", *since, now); err != nil {
		return err
	}
	if q.Until, err = parseAuditTime("until", *until, now); err != nil {
		return err
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Until.After(q.Since) {
		return usageError{"audit list: --until must be later than --since"}
	}
	recs, err := env.store.QueryAudit(ctx, q)
	if err != nil {
		return err
	}
	if *asJSON {
		var buf bytes.Buffer
		for _, r := range recs {
			b, err := auditJSON(r)
			if err != nil {
				return fmt.Errorf("audit record %d: %w", r.Seq, err)
			}
			buf.Write(b)
			buf.WriteByte('\n')
		}
		_, err := out.Write(buf.Bytes())
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tKIND\tUSER\tCLIENT\tTUNNEL\tMETHOD\tTOOL\tCLASS\tDECISION\tRULE\tSTATUS\tLATENCY")
	for _, r := range recs {
		status := "-"
		if r.Status != 0 {
			status = strconv.Itoa(r.Status)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Seq,
			r.Time.UTC().Format(time.RFC3339), cell(r.Kind), cell(r.User), cell(r.Client), cell(r.Tunnel),
			cell(r.Method), cell(r.Tool), cell(r.Class), cell(r.Decision), cell(r.Rule), status, latency(r.Latency))
	}
	return tw.Flush()
}

// parseAuditTime reads --since or --until: empty (no bound), a positive duration back from
// now, or an RFC 3339 time.
func parseAuditTime(name, v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(v); err == nil {
		if d <= 0 {
			return time.Time{}, usageError{fmt.Sprintf("audit list: --%s %s: a duration must be positive (how long ago)", name, v)}
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, usageError{fmt.Sprintf("audit list: --%s %q: want a duration (1h, 30m) or an RFC 3339 time (2006-01-02T15:04:05Z)", name, v)}
	}
	return t, nil
}

// cell is a table cell: "-" for nothing, and a value that could move the cursor or fool the
// eye (control characters, bidi overrides, invalid UTF-8, tabs that would break the table)
// quoted with its escapes visible. Tool names, client ids and users come from the network.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	if !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return strconv.QuoteToASCII(s)
	}
	return s
}

// latency is an upstream latency to three or four significant digits: 850µs, 1.5ms, 123.5ms,
// 2.346s.
func latency(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	unit := time.Microsecond
	for d >= 1000*unit && unit < time.Millisecond {
		unit *= 10
	}
	return d.Round(unit).String()
}

// auditLine is an audit record as `audit list --json` prints it and the JSON lines export
// writes it: stable snake_case keys; seq, time and kind always present, the rest when set.
// Seq 0 marks a record the database failed to store (only the export sees those).
type auditLine struct {
	Seq        uint64          `json:"seq"`
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
	LatencyMS  float64         `json:"latency_ms,omitempty"`
	Bytes      int64           `json:"bytes,omitempty"`
	ArgsDigest string          `json:"args_digest,omitempty"`
	Args       json.RawMessage `json:"args,omitempty"`
	SourceIP   string          `json:"source_ip,omitempty"`
	Detail     string          `json:"detail,omitempty"`
}

// auditJSON encodes r as one JSON object, without a trailing newline. Latency is in
// milliseconds with microsecond precision. Args that are not valid JSON are left out, as the
// database leaves them out (a live record reaches the export before that).
func auditJSON(r data.AuditRecord) ([]byte, error) {
	args := r.Args
	if len(args) > 0 && !json.Valid(args) {
		args = nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	err := enc.Encode(auditLine{
		Seq: r.Seq, Time: r.Time.UTC(), Kind: r.Kind,
		User: r.User, Client: r.Client, ClientName: r.ClientName, Tunnel: r.Tunnel, Owner: r.Owner,
		Method: r.Method, Tool: r.Tool, Class: r.Class, Decision: r.Decision, Rule: r.Rule,
		Status: r.Status, LatencyMS: float64(r.Latency.Microseconds()) / 1000, Bytes: r.Bytes,
		ArgsDigest: r.ArgsDigest, Args: args, SourceIP: r.SourceIP, Detail: r.Detail,
	})
	if err != nil {
		return nil, fmt.Errorf("encode audit record: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'}), nil
}
