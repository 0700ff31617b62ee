package authz

import (
	"bytes"
	"fmt"
	"io"
)

// This file is the listing mode of a [ResponseFilter]: a server's event stream that answers no
// one request, filtered by what its responses look like rather than by their ids.

// NewListingFilter returns a filter for a server's event stream (text/event-stream) that does
// not answer one POST whose tools/list requests could be watched by id: the GET stream, on
// which the 2024-11-05 HTTP+SSE transport sends every response (tools/list's included) and
// Streamable HTTP replays a POST's events after Last-Event-ID. Events are parsed, held and
// passed on as for a [NewResponseFilter] event stream, with these differences:
//
//   - Every response whose result is shaped like a tools/list result, an object with a "tools"
//     member that is an array, has its tools filtered as [FilterResponse] does, whatever its
//     id; so has each such element of a batch. Nothing is learned: a replay may be stale, and
//     which request a response answers is not known here.
//   - What cannot be read does not end the stream, which carries the session's every other
//     response: the event is dropped instead (all of its lines; its blank line passes, which
//     clients take as nothing) and dropped, when not nil, is called with an error wrapping
//     [ErrBadResponse]. So is an event of type "message" (or of no type) whose data is not JSON,
//     even at the end of the stream; one whose tools is not an array, or has "result" or
//     "tools" twice (in any letter case; other duplicate keys of a JSON-RPC message too); and a
//     batch with any such element. Events of another type whose data is not JSON (the legacy
//     transport's "endpoint") pass, as clients do not read them as JSON-RPC.
//   - An event over the limit is not an error either: the legacy transport carries big tool
//     results on this stream. Up to the limit it is held as any other; if no JSON string that
//     could be the key "tools" (in any letter case, escaped or not) has gone by, it is passed on
//     and the rest of it streams through unheld, watched for such a string; otherwise it is
//     dropped as above. Only if such a string turns up after the held part has gone does the
//     stream end, with an error wrapping [ErrBadResponse], the event passed on up to that
//     string's closing quote: a listing's tool names come after its key, so none of them has.
func NewListingFilter(w io.Writer, visible Visibility, dropped func(error)) *ResponseFilter {
	return &ResponseFilter{w: w, sse: true, limit: DefaultResponseLimit, byShape: true, dropped: dropped,
		f: filterer{visible: visible}}
}

// drop reports an event dropped in listing mode; nothing of it has been or will be passed on.
func (r *ResponseFilter) drop(err error) {
	if r.dropped != nil {
		r.dropped(err)
	}
}

// The modes of an unheld event.
const (
	unheldPass    = 1 + iota // passed on as it comes, watched for a tools key
	unheldSkip               // dropped up to its blank line
	unheldComment            // a comment between events: passed on up to its end
)

// unheldEvent is the state of an event over the limit.
type unheldEvent struct {
	mode  int
	line  sseLineHead
	tools toolsKeyWatch
}

// sseLineHead classifies a line from its first bytes, as they come: a "data" field's value is
// what follows "data:" (its optional leading space is JSON whitespace, so it can be left in).
type sseLineHead struct {
	n    int // bytes of the line so far
	head [5]byte
}

var dataPrefix = []byte("data:")

// add takes the next bytes of the line and returns those that are part of a data field's value.
func (h *sseLineHead) add(b []byte) []byte {
	for h.n < len(h.head) && len(b) > 0 {
		h.head[h.n] = b[0]
		h.n++
		b = b[1:]
	}
	h.n += len(b)
	if h.n >= len(h.head) && bytes.Equal(h.head[:], dataPrefix) {
		return b
	}
	return nil
}

// data reports whether the line, now ended, was a data field.
func (h *sseLineHead) data() bool {
	return bytes.Equal(h.head[:min(h.n, len(h.head))], dataPrefix) ||
		h.n == len("data") && bytes.Equal(h.head[:4], dataPrefix[:4])
}

var newline = []byte("\n")

// spill takes an event over the limit: what is held of it (r.ev) and its current line, a then
// b, ended by term (nil: the line goes on). It is decided on what fits in the limit, as if that
// had been held (so how the stream was split into writes does not matter): dropped if the data
// could hold a tools key so far; otherwise passed on, and the rest of it goes as it comes.
func (r *ResponseFilter) spill(a, b, term []byte) error {
	if r.unheld == nil {
		r.unheld = new(unheldEvent)
	}
	u := r.unheld
	*u = unheldEvent{}
	budget := r.limit - len(r.ev.raw)
	var first [3]byte
	if n := copy(first[:], a); r.lineNo == 0 && n+copy(first[n:], b) == len(first) && bytes.Equal(first[:], sseBOM) {
		// The stream's first line: a leading byte order mark is not part of it.
		r.out = append(r.out, sseBOM...)
		a, b = trimPrefix2(a, b, len(sseBOM))
		budget -= len(sseBOM)
	}
	if len(r.ev.lines) == 0 && (len(a) > 0 && a[0] == ':' || len(a) == 0 && len(b) > 0 && b[0] == ':') {
		// Not part of an event: it passes, as comments between events do, and ends there.
		u.mode = unheldComment
		r.out = append(r.out, a...)
		r.out = append(r.out, b...)
		if term != nil {
			r.unheldLineEnd(term)
		}
		return nil
	}
	budget = max(budget, 0)
	ha, hb := a[:min(len(a), budget)], b[:min(len(b), max(budget-len(a), 0))]
	a, b = trimPrefix2(a, b, len(ha)+len(hb))

	if r.ev.hasData {
		u.tools.write(r.ev.data)
		u.tools.write(newline)
	}
	u.tools.write(u.line.add(ha))
	u.tools.write(u.line.add(hb))
	if u.tools.found {
		u.mode = unheldSkip
		r.drop(fmt.Errorf("%w: an event over %d bytes that may list tools", ErrBadResponse, r.limit))
	} else {
		u.mode = unheldPass
		r.out = append(r.out, r.ev.raw...)
		r.out = append(r.out, ha...)
		r.out = append(r.out, hb...)
	}
	ev := &r.ev
	ev.raw, ev.lines, ev.data, ev.hasData, ev.typ = ev.raw[:0], ev.lines[:0], ev.data[:0], false, ev.typ[:0]
	r.crHeld = false
	if err := r.unheldSeg(a); err != nil {
		return err
	}
	if err := r.unheldSeg(b); err != nil {
		return err
	}
	if term != nil {
		r.unheldLineEnd(term)
	}
	return nil
}

// trimPrefix2 removes the first n bytes of a then b.
func trimPrefix2(a, b []byte, n int) ([]byte, []byte) {
	k := min(len(a), n)
	return a[k:], b[min(len(b), n-k):]
}

// unheldWrite takes p[i:] for an unheld event, up to the end of its line; it returns where it
// stopped.
func (r *ResponseFilter) unheldWrite(p []byte, i int) (int, error) {
	j := sseLineEnd(p[i:])
	if j < 0 {
		return len(p), r.unheldSeg(p[i:])
	}
	if err := r.unheldSeg(p[i : i+j]); err != nil {
		return i, err
	}
	r.unheldLineEnd(p[i+j : i+j+1])
	return i + j + 1, nil
}

// unheldSeg takes part of a line of an unheld event: passed on, its data watched, or dropped.
func (r *ResponseFilter) unheldSeg(seg []byte) error {
	u := r.unheld
	if u.mode == unheldComment {
		r.out = append(r.out, seg...)
		return nil
	}
	v := u.line.add(seg)
	if u.mode != unheldPass {
		return nil
	}
	if at := u.tools.write(v); at >= 0 {
		// Up to the key's closing quote, as however the stream was split.
		r.out = append(r.out, seg[:len(seg)-len(v)+at]...)
		return fmt.Errorf("%w: an event over %d bytes turned out to have a tools key; its tools cannot be filtered", ErrBadResponse, r.limit)
	}
	r.out = append(r.out, seg...)
	return nil
}

// unheldLineEnd ends a line of an unheld event; a blank line ends the event, and passes.
func (r *ResponseFilter) unheldLineEnd(term []byte) {
	u := r.unheld
	r.lineNo++
	r.pendingCR = term[0] == '\r'
	r.crHeld, r.crSkipped = false, false
	switch {
	case u.line.n == 0 || u.mode == unheldComment:
		r.out = append(r.out, term...)
		u.mode = 0
	case u.mode == unheldPass:
		if u.line.data() {
			u.tools.write(newline) // data fields join with "\n"
		}
		r.out = append(r.out, term...)
	default:
		r.crSkipped = true
	}
	u.line = sseLineHead{}
}

// toolsKeyWatch watches JSON text go by, in pieces, for a string that a decoder could take for
// the key "tools": one that decodes to "tools" in any letter case (Unicode simple folding, as
// encoding/json matches keys). It does not parse the JSON: strings are told by their quotes and
// escapes, which is all it takes to find every string of valid JSON; for JSON that is not
// valid, clients find no listing either.
type toolsKeyWatch struct {
	in    bool // inside a string
	esc   bool // ... just after a backslash
	n     int  // raw bytes of the string so far
	raw   [32]byte
	found bool
}

// maxToolsKey is the most raw bytes a string decoding to "tools" can have: five escapes.
const maxToolsKey = 5 * len(`\u0074`)

// write takes the next piece of the text. When it finds a key it returns the offset in b of the
// quote that ends the key, and takes nothing more; otherwise -1.
func (k *toolsKeyWatch) write(b []byte) int {
	if k.found {
		return 0
	}
	for i := 0; i < len(b); {
		if !k.in {
			j := bytes.IndexByte(b[i:], '"')
			if j < 0 {
				return -1
			}
			k.in, k.esc, k.n = true, false, 0
			i += j + 1
			continue
		}
		if !k.esc && k.n > maxToolsKey {
			// Too long to be the key: only its end matters.
			j := bytes.IndexAny(b[i:], `"\`)
			if j < 0 {
				k.n += len(b) - i
				return -1
			}
			k.n += j
			i += j
		}
		c := b[i]
		switch {
		case k.esc:
			k.esc = false
		case c == '\\':
			k.esc = true
		case c == '"':
			k.in = false
			if k.n >= len("tools") && k.n <= maxToolsKey && k.isTools() {
				k.found = true
				return i
			}
			i++
			continue
		}
		if k.n < len(k.raw) {
			k.raw[k.n] = c
		}
		k.n++
		i++
	}
	return -1
}

// isTools reports whether the string just ended, of k.n <= maxToolsKey raw bytes, decodes to
// "tools" in some letter case.
func (k *toolsKeyWatch) isTools() bool {
	raw := k.raw[:k.n]
	if bytes.IndexByte(raw, '\\') < 0 {
		return bytes.EqualFold(raw, jkeyTools)
	}
	var q [maxToolsKey + 2]byte
	q[0] = '"'
	copy(q[1:], raw)
	q[k.n+1] = '"'
	m, _ := jscanKey(q[:k.n+2], jkeyTools, "tools")
	return m
}
