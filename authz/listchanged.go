package authz

import (
	"bytes"
	"encoding/json"
)

// This file notices notifications/tools/list_changed in a server's event streams as they pass,
// so that the classes learned from an earlier listing are not trusted after the server said
// its tools changed (see [Tools.Forget]).

// MethodToolsListChanged is the notification a server sends when its tools change.
const MethodToolsListChanged = "notifications/tools/list_changed"

// MaxNotificationEvent bounds the data of an event a [ListChangedScanner] reads. The
// notification is some 70 bytes (plus _meta, if any); bigger events are tool results and
// other answers, passed over without being held or parsed. A server that pads its own
// notification past this bound is not heard, which only costs it the refresh of its own
// tools' classes: the server is the source of those classes anyway.
const MaxNotificationEvent = 8 << 10

var listChangedLit = []byte(MethodToolsListChanged)

// IsToolsListChanged reports whether msg, the data of one event from a server, is a
// notifications/tools/list_changed: a JSON object whose "method" is that (a batch, a JSON
// array, counts if any element is). Only the message's own method counts: the same words
// inside a tool's result or a log message's text are content, not the server's notification.
//
// It errs towards yes, the side that forgets: a key that a case-insensitive decoder takes for
// "method", and a message with an id (a request, which servers do not send with this method),
// count too.
func IsToolsListChanged(msg []byte) bool {
	// Without a backslash anywhere, the method can only be spelled literally: most events
	// (answers with no escapes in them) are passed over without parsing.
	if bytes.IndexByte(msg, '\\') < 0 && !bytes.Contains(msg, listChangedLit) {
		return false
	}
	if !json.Valid(msg) {
		return false // clients drop such events too
	}
	i := jscanWS(msg, 0)
	switch {
	case i < len(msg) && msg[i] == '{':
		return isListChangedObject(msg, i)
	case i < len(msg) && msg[i] == '[':
		elems := jscanElems{b: msg, i: i}
		for {
			s, _, ok := elems.next()
			if !ok {
				return false
			}
			if msg[s] == '{' && isListChangedObject(msg, s) {
				return true
			}
		}
	}
	return false
}

// isListChangedObject looks at the members of the object at b[s] (valid JSON).
func isListChangedObject(b []byte, s int) bool {
	members := jscanMembers{b: b[:jscanValueEnd(b, s)], i: s}
	for {
		key, vs, ve, ok := members.next()
		if !ok {
			return false
		}
		if m, _ := jscanKey(key, jkeyMethod, "method"); m && b[vs] == '"' && jscanString(b[vs:ve]) == MethodToolsListChanged {
			return true
		}
	}
}

// ListChangedScanner reads an event stream (text/event-stream) as it passes and calls changed
// for each event that [IsToolsListChanged]. It holds nothing of the stream but the event being
// received, and of that only up to [MaxNotificationEvent] bytes of data: it is a witness, the
// bytes themselves go on unchanged and undelayed (the caller passes each chunk on after Write
// returns, so changed has run before the client can act on the notification).
//
// Events are parsed as SSE clients parse them: lines ended by "\r\n", "\n" or "\r", split
// anywhere across writes; "data" fields joined with "\n"; an event ended by a blank line; a
// byte order mark at the start ignored. An event left unfinished when the stream ends is
// dropped by clients, and never counts here. The event type is not looked at: clients take
// JSON-RPC from message events, and one of another type only makes the tools forgotten when
// no client will relist them, which the server alone can cause.
type ListChangedScanner struct {
	changed func()

	bom       int  // bytes of a leading byte order mark matched so far; -1 once past it
	pendingCR bool // the last line ended with "\r": a "\n" next belongs to it
	line      []byte
	lineOver  bool // line holds only the first MaxNotificationEvent bytes of the line
	data      []byte
	hasData   bool
	dataOver  bool // the event's data is over MaxNotificationEvent: not looked at
}

// NewListChangedScanner returns a scanner calling changed (synchronously, from Write).
func NewListChangedScanner(changed func()) *ListChangedScanner {
	return &ListChangedScanner{changed: changed}
}

var sseBOMBytes = []byte("\xEF\xBB\xBF")

// Write takes the next bytes of the stream. It never fails.
func (s *ListChangedScanner) Write(p []byte) (int, error) {
	n := len(p)
	for s.bom >= 0 && len(p) > 0 {
		if p[0] != sseBOMBytes[s.bom] {
			// Not a byte order mark after all: what matched of it is part of the line.
			s.addToLine(sseBOMBytes[:s.bom])
			s.bom = -1
			break
		}
		p = p[1:]
		if s.bom++; s.bom == len(sseBOMBytes) {
			s.bom = -1
		}
	}
	for len(p) > 0 {
		if s.pendingCR {
			s.pendingCR = false
			if p[0] == '\n' {
				p = p[1:]
				continue
			}
		}
		end := sseLineEnd(p)
		if end < 0 {
			s.addToLine(p)
			break
		}
		s.addToLine(p[:end])
		s.pendingCR = p[end] == '\r'
		p = p[end+1:]
		s.endLine()
	}
	return n, nil
}

// sseLineEnd returns the index of the first "\r" or "\n" in p, or -1. Two byte searches are
// faster than a search for either byte over the long lines of big answers.
func sseLineEnd(p []byte) int {
	lf := bytes.IndexByte(p, '\n')
	seg := p
	if lf >= 0 {
		seg = p[:lf]
	}
	if cr := bytes.IndexByte(seg, '\r'); cr >= 0 {
		return cr
	}
	return lf
}

// addToLine adds to the current line what fits: a field name and a notification's data do.
func (s *ListChangedScanner) addToLine(b []byte) {
	if s.lineOver || len(b) == 0 {
		return
	}
	if room := MaxNotificationEvent + len("data: ") - len(s.line); len(b) > room {
		b, s.lineOver = b[:room], true
	}
	s.line = append(s.line, b...)
}

// endLine takes the line just ended.
func (s *ListChangedScanner) endLine() {
	line, over := s.line, s.lineOver
	s.line, s.lineOver = s.line[:0], false
	if len(line) == 0 {
		s.dispatch()
		return
	}
	field, value := line, []byte(nil)
	if c := bytes.IndexByte(line, ':'); c >= 0 {
		field, value = line[:c], line[c+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	if string(field) != "data" || s.dataOver {
		return // comments, event types, ids, retry: nothing to see
	}
	if s.hasData {
		s.data = append(s.data, '\n')
	}
	s.hasData = true
	if over || len(s.data)+len(value) > MaxNotificationEvent {
		s.dataOver, s.data = true, s.data[:0]
		return
	}
	s.data = append(s.data, value...)
}

// dispatch ends the event at its blank line.
func (s *ListChangedScanner) dispatch() {
	if s.hasData && !s.dataOver && IsToolsListChanged(s.data) {
		s.changed()
	}
	s.data, s.hasData, s.dataOver = s.data[:0], false, false
}
