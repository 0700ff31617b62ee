package authz

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// This file filters a response body as the local server writes it: buffered whole for a JSON
// body, event by event for an event stream. What is filtered in each message is filter.go's.

// ResponseFilter filters the body of a response to a POST holding tools/list requests, as it
// is written (it wraps the http.ResponseWriter, or any io.Writer):
//
//   - application/json (and any type but text/event-stream): the body is buffered up to a
//     limit ([DefaultResponseLimit]; over it, Write fails with [ErrResponseTooLarge]) and
//     filtered on Close: a response, or each response of a batch, whose id is one of the
//     watched ids has its tools filtered as [FilterResponse] does. Nothing is written before
//     Close, so a failed filter can still become a 502; the caller must drop Content-Length.
//   - text/event-stream: events are parsed as they arrive (lines ended by "\r\n", "\n" or
//     "\r"; "data" fields joined with "\n"; an event ended by a blank line). An event whose
//     data is a response (or batch) to a watched id is rewritten with its tools filtered;
//     every other event, and comments between events (keep-alives), pass through unchanged,
//     byte for byte, in the same Write. An event is held only until its blank line (no SSE
//     client acts on an event before that), at most the limit. Data that is not JSON fails
//     the stream with [ErrBadResponse] unless the event has a type other than "message"
//     (clients take only message events for JSON-RPC).
//
// Ids compare as JSON values: strings by their decoded value, numbers numerically. Errors are
// sticky. learn is called (when not nil) with each watched result holding tools, and whether
// its request asked for a first page, before filtering; its errors do not stop the stream and
// are kept for [ResponseFilter.LearnErr].
//
// [NewListingFilter] makes one for an event stream that answers no one request, which matches
// responses by their shape instead (listingfilter.go).
type ResponseFilter struct {
	w     io.Writer
	sse   bool
	limit int
	f     filterer
	err   error  // sticky
	buf   []byte // JSON: the body; SSE: the current partial line
	out   []byte // SSE: what one Write passes on

	// SSE state.
	lineNo    int  // complete lines seen
	pendingCR bool // the last line ended with "\r"; a "\n" next belongs to it
	crHeld    bool // ... and that line is held in ev
	crSkipped bool // ... or was dropped with its event
	ev        sseEvent

	// Listing mode (NewListingFilter, listingfilter.go).
	byShape bool
	dropped func(error)
	unheld  *unheldEvent // made for the first event over the limit
}

// sseEvent is the event being received: its raw lines, held until its blank line.
type sseEvent struct {
	raw     []byte
	lines   []sseLine
	data    []byte // data fields joined with "\n"
	hasData bool
	typ     []byte // the event field's value
}

// sseLine is a line of raw: content raw[start:cend], terminator raw[cend:end].
type sseLine struct {
	start, cend, end int
	data             bool
}

// ListRequest is a tools/list request whose answer a [ResponseFilter] watches for.
type ListRequest struct {
	// ID is the request's id, as sent.
	ID json.RawMessage
	// FirstPage is true when the request had no cursor (see [Message.HasCursor]): its answer
	// replaces what [Tools] knew rather than adding to it.
	FirstPage bool
}

// NewResponseFilter returns a filter writing to w. contentType is the response's
// Content-Type; lists are the tools/list requests the response answers. Two requests with
// one id (a batch may have them) cannot be told apart by their answers: the id counts as a
// first page if either is, the side that forgets rather than keeps.
func NewResponseFilter(w io.Writer, contentType string, lists []ListRequest, visible Visibility, learn func(result json.RawMessage, firstPage bool) error) *ResponseFilter {
	r := &ResponseFilter{w: w, limit: DefaultResponseLimit}
	// The media type alone decides (clients differ on parameters; a malformed one must not
	// turn a stream into a body buffered to its end).
	mt, _, _ := strings.Cut(contentType, ";")
	r.sse = strings.EqualFold(strings.TrimSpace(mt), "text/event-stream")
	r.f = filterer{ids: make(map[string]bool, len(lists)), checkIDs: true, visible: visible, learn: learn}
	for _, l := range lists {
		if k, ok := rpcIDKey(l.ID); ok {
			r.f.ids[k] = r.f.ids[k] || l.FirstPage
		}
	}
	return r
}

// Streaming reports whether the body is an event stream, filtered and passed on event by
// event; otherwise it is buffered and nothing reaches the writer before Close.
func (r *ResponseFilter) Streaming() bool { return r.sse }

// SetLimit changes the limit on what the filter holds (a JSON body, one SSE event).
func (r *ResponseFilter) SetLimit(n int) { r.limit = n }

// LearnErr returns the first error learn returned, if any.
func (r *ResponseFilter) LearnErr() error { return r.f.learnErr }

// Flush passes a flush on to the writer (if it has a Flush method) for event streams; for a
// JSON body, which is written only on Close, it does nothing.
func (r *ResponseFilter) Flush() {
	if !r.sse || r.err != nil {
		return
	}
	if fl, ok := r.w.(interface{ Flush() }); ok {
		fl.Flush()
	}
}

// Write takes the next part of the body.
func (r *ResponseFilter) Write(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if !r.sse {
		if len(r.buf)+len(p) > r.limit {
			r.err = ErrResponseTooLarge
			r.buf = nil
			return 0, r.err
		}
		r.buf = append(r.buf, p...)
		return len(p), nil
	}
	r.out = r.out[:0]
	for i := 0; i < len(p); {
		if r.pendingCR {
			r.pendingCR = false
			if p[i] == '\n' {
				switch {
				case r.crHeld:
					r.ev.raw = append(r.ev.raw, '\n')
					r.ev.lines[len(r.ev.lines)-1].end++
				case r.crSkipped:
					// dropped with its line
				default:
					r.out = append(r.out, '\n')
				}
				i++
				continue
			}
		}
		if r.unheld != nil && r.unheld.mode != 0 {
			// An event of a listing filter that went over the limit.
			var err error
			if i, err = r.unheldWrite(p, i); err != nil {
				return r.fail(err)
			}
			continue
		}
		j := bytes.IndexAny(p[i:], "\r\n")
		if j < 0 {
			if len(r.buf)+len(p)-i+len(r.ev.raw) > r.limit {
				if r.byShape {
					err := r.spill(r.buf, p[i:], nil)
					r.buf = r.buf[:0]
					if err != nil {
						return r.fail(err)
					}
					break
				}
				return r.fail(ErrResponseTooLarge)
			}
			r.buf = append(r.buf, p[i:]...)
			break
		}
		content := p[i : i+j]
		if len(r.buf) > 0 {
			r.buf = append(r.buf, content...)
			content = r.buf
		}
		term := p[i+j : i+j+1]
		i += j + 1
		if len(content)+len(r.ev.raw) > r.limit {
			if r.byShape {
				err := r.spill(content, nil, term)
				r.buf = r.buf[:0]
				if err != nil {
					return r.fail(err)
				}
				continue
			}
			return r.fail(ErrResponseTooLarge)
		}
		if err := r.line(content, term, false); err != nil {
			return r.fail(err)
		}
		r.buf = r.buf[:0]
		r.pendingCR = term[0] == '\r'
	}
	if len(r.out) > 0 {
		if _, err := r.w.Write(r.out); err != nil {
			r.err = err
			return 0, err
		}
	}
	return len(p), nil
}

// fail makes err sticky, first passing on what was already cleared to go.
func (r *ResponseFilter) fail(err error) (int, error) {
	if len(r.out) > 0 {
		r.w.Write(r.out) //nolint:errcheck // the stream is failing anyway
		r.out = r.out[:0]
	}
	r.err = err
	r.buf, r.ev = nil, sseEvent{}
	return 0, err
}

var sseBOM = []byte("\xEF\xBB\xBF")

// line takes one complete line (at Close, the unterminated last one: term empty, atEnd).
func (r *ResponseFilter) line(content, term []byte, atEnd bool) error {
	if r.lineNo == 0 && bytes.HasPrefix(content, sseBOM) {
		// A leading byte order mark is not part of the first line (the SSE parsing rules).
		r.out = append(r.out, sseBOM...)
		content = content[len(sseBOM):]
	}
	r.lineNo++
	r.crHeld, r.crSkipped = false, false
	ev := &r.ev
	if len(ev.lines) == 0 && (len(content) == 0 || content[0] == ':') {
		// A blank line or a comment between events: nothing to hold.
		r.out = append(r.out, content...)
		r.out = append(r.out, term...)
		return nil
	}
	if len(content) == 0 {
		// The blank line ending the event.
		if err := r.dispatch(false); err != nil {
			return err
		}
		r.out = append(r.out, term...)
		return nil
	}
	ln := sseLine{start: len(ev.raw)}
	ev.raw = append(ev.raw, content...)
	ln.cend = len(ev.raw)
	ev.raw = append(ev.raw, term...)
	ln.end = len(ev.raw)
	field, value := content, []byte(nil)
	if c := bytes.IndexByte(content, ':'); c >= 0 {
		field, value = content[:c], content[c+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	switch string(field) {
	case "data":
		ln.data = true
		if ev.hasData {
			ev.data = append(ev.data, '\n')
		}
		ev.data = append(ev.data, value...)
		ev.hasData = true
	case "event":
		ev.typ = append(ev.typ[:0], value...)
	}
	ev.lines = append(ev.lines, ln)
	r.crHeld = true
	if atEnd {
		return r.dispatch(true)
	}
	return nil
}

// dispatch passes the held event on, rewritten if it answers a watched tools/list; the
// caller writes the blank line ending it. atEnd: the stream ended without one.
func (r *ResponseFilter) dispatch(atEnd bool) error {
	ev := &r.ev
	defer func() {
		ev.raw, ev.lines, ev.data, ev.hasData, ev.typ = ev.raw[:0], ev.lines[:0], ev.data[:0], false, ev.typ[:0]
		r.crHeld = false
	}()
	if !ev.hasData || len(bytes.TrimSpace(ev.data)) == 0 {
		r.out = append(r.out, ev.raw...)
		return nil
	}
	if !json.Valid(ev.data) {
		if len(ev.typ) > 0 && string(ev.typ) != "message" || atEnd && !r.byShape {
			r.out = append(r.out, ev.raw...)
			return nil
		}
		err := fmt.Errorf("%w: event data is not JSON", ErrBadResponse)
		if r.byShape {
			r.drop(err)
			return nil
		}
		return err
	}
	data, changed, err := r.f.value(ev.data, false)
	if err != nil {
		if r.byShape {
			r.drop(err)
			return nil
		}
		return err
	}
	if !changed {
		r.out = append(r.out, ev.raw...)
		return nil
	}
	first := true
	for _, ln := range ev.lines {
		if !ln.data {
			r.out = append(r.out, ev.raw[ln.start:ln.end]...)
			continue
		}
		if !first {
			continue
		}
		first = false
		term := ev.raw[ln.cend:ln.end]
		sep := term
		if len(sep) == 0 {
			sep = []byte("\n")
		}
		for {
			r.out = append(r.out, "data: "...)
			k := bytes.IndexByte(data, '\n')
			if k < 0 {
				r.out = append(r.out, data...)
				r.out = append(r.out, term...)
				break
			}
			r.out = append(r.out, data[:k]...)
			r.out = append(r.out, sep...)
			data = data[k+1:]
		}
	}
	return nil
}

// Close ends the body: a JSON body is filtered and written; for an event stream, a trailing
// event without its blank line is passed on (filtered if it answers a watched tools/list).
// Close does not close the underlying writer; closing again does nothing.
func (r *ResponseFilter) Close() error {
	if r.err == errClosed {
		return nil
	}
	if r.err != nil {
		return r.err
	}
	if !r.sse {
		body := r.buf
		r.buf = nil
		if len(bytes.TrimSpace(body)) == 0 {
			if len(body) > 0 {
				_, err := r.w.Write(body)
				return err
			}
			return nil
		}
		if !json.Valid(body) {
			r.err = fmt.Errorf("%w: not JSON", ErrBadResponse)
			return r.err
		}
		out, _, err := r.f.value(body, true)
		if err != nil {
			r.err = err
			return err
		}
		r.err = errClosed
		_, err = r.w.Write(out)
		return err
	}
	r.out = r.out[:0]
	if len(r.buf) > 0 {
		if err := r.line(r.buf, nil, true); err != nil {
			_, err := r.fail(err)
			return err
		}
	} else if len(r.ev.lines) > 0 {
		if err := r.dispatch(true); err != nil {
			_, err := r.fail(err)
			return err
		}
	}
	r.buf = nil
	r.err = errClosed
	if len(r.out) > 0 {
		if _, err := r.w.Write(r.out); err != nil {
			return err
		}
	}
	return nil
}

var errClosed = errors.New("authz: response filter closed")
