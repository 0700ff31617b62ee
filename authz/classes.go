package authz

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// MaxTools is how many tools one tunnel's [Tools] remembers. A server that lists more has the
// rest ignored (they are then unknown, hence destructive), and [Tools.Learn] says how many.
const MaxTools = 10000

// MaxToolName is the longest tool name, in bytes, that [Tools] remembers (the MCP
// specification suggests at most 128 characters); a tool with a longer name stays unknown,
// hence destructive.
const MaxToolName = 1024

// ErrTooManyTools is wrapped by the error [Tools.Learn] returns when a listing goes over
// [MaxTools] (or has names over [MaxToolName]); what fit was learned.
var ErrTooManyTools = errors.New("authz: too many tools")

// ErrStaleListing is returned by [Tools.LearnSince] when [Tools.Forget] was called after the
// listing's request went out: nothing was learned.
var ErrStaleListing = errors.New("authz: tools/list answer older than the server's last tools/list_changed")

// ErrBadToolList is wrapped by the errors for tools/list results that cannot be read
// unambiguously: not JSON, duplicate keys ("tools" twice, in any letter case), "tools" not an
// array.
var ErrBadToolList = errors.New("authz: malformed tools/list result")

// ClassOf applies the MCP specification's defaults to a tool's annotations: readOnlyHint true
// gives [Read]; otherwise destructiveHint false gives [Write]; otherwise [Destructive] (a tool
// without hints is destructive).
//
// Only the exact keys "readOnlyHint" and "destructiveHint" with JSON booleans count.
// Anything ambiguous fails closed to [Destructive]: annotations that are not a JSON object, or
// a hint key present twice (in any letter case, since some JSON decoders match keys without
// regard to case).
func ClassOf(annotations json.RawMessage) Class {
	if !json.Valid(annotations) {
		return Destructive
	}
	return classOfValid(annotations)
}

// classOfValid is ClassOf for bytes already known to be valid JSON.
func classOfValid(b []byte) Class {
	i := jscanWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return Destructive
	}
	var (
		ro, de     []byte // the hints' values
		nRO, nDE   int    // keys that match a hint in any letter case
		exRO, exDE bool   // the matching key was exact
	)
	members := jscanMembers{b: b, i: i}
	for {
		key, vs, ve, ok := members.next()
		if !ok {
			break
		}
		if matched, exact := jscanKey(key, jkeyReadOnly, "readOnlyHint"); matched {
			nRO++
			exRO = exact
			ro = b[vs:ve]
		} else if matched, exact := jscanKey(key, jkeyDestructive, "destructiveHint"); matched {
			nDE++
			exDE = exact
			de = b[vs:ve]
		}
	}
	if nRO > 1 || nDE > 1 {
		return Destructive
	}
	if nRO == 1 && exRO && string(ro) == "true" {
		return Read
	}
	if nDE == 1 && exDE && string(de) == "false" {
		return Write
	}
	return Destructive
}

// classMax returns the more restrictive of two classes (unknown classes count as
// destructive).
func classMax(a, b Class) Class {
	rank := func(c Class) int {
		switch c {
		case Read:
			return 0
		case Write:
			return 1
		}
		return 2
	}
	if rank(a) >= rank(b) {
		return a
	}
	return b
}

// Tools is one tunnel's tools as its server last listed them, with their classes. Safe for
// concurrent use; [Tools.Class] takes no lock.
//
// Names are exact: no case folding or Unicode normalisation, so "Delete_File" and
// "delete_file" are different tools and a look-alike name never gets another tool's class.
// A name listed twice (in one listing, or across pages of one) gets the more restrictive
// class.
type Tools struct {
	mu  sync.Mutex                       // serialises writers
	m   atomic.Pointer[map[string]Class] // immutable once published
	gen atomic.Uint64                    // Forgets so far; written under mu
}

// NewTools returns an empty Tools: every tool is unknown, hence destructive.
func NewTools() *Tools { return &Tools{} }

// Learn records a tools/list result (the JSON-RPC "result" object:
// {"tools":[{"name":…,"annotations":{…},…}],"nextCursor":…}). A first page (the request had
// no cursor: firstPage true) replaces what was known; a later page adds to it.
//
// Entries that are not objects, or have no string "name" (or more than one key that a
// case-insensitive decoder takes for "name"), are skipped. A listing that is not a JSON object
// with one "tools" array is refused with an error wrapping [ErrBadToolList] and changes
// nothing. Tools beyond [MaxTools], or with names over [MaxToolName] bytes, are ignored and
// the error, wrapping [ErrTooManyTools], says how many; the rest is learned. Learn does not
// retain result.
//
// Whether a listing is a first page is the client's to say (it sends the cursor), and either
// answer is safe: a later page taken for a first one forgets the tools of the earlier pages
// (they count as destructive until listed again), and a first page taken for a later one
// keeps earlier classes only where the page does not list the tool again, and where it does,
// the more restrictive class wins. Only a first page can make a known tool's class less
// restrictive, or forget a tool the server no longer lists.
func (t *Tools) Learn(result json.RawMessage, firstPage bool) error {
	return t.learn(result, firstPage, nil)
}

// Generation identifies what t knows between two calls of [Tools.Forget]. Read it before a
// tools/list request goes to the server, and pass it to [Tools.LearnSince] with the answer.
func (t *Tools) Generation() uint64 { return t.gen.Load() }

// LearnSince is [Tools.Learn], unless [Tools.Forget] was called after gen was read: then the
// answer may have been made before the change the server announced, and learning it could
// bring back a class the server has since changed (a tool that became destructive listed as
// read). Nothing is learned and the error is [ErrStaleListing]; the tools stay unknown until a
// listing asked for after the change, which clients send when told the list changed.
func (t *Tools) LearnSince(gen uint64, result json.RawMessage, firstPage bool) error {
	return t.learn(result, firstPage, &gen)
}

func (t *Tools) learn(result json.RawMessage, firstPage bool, gen *uint64) error {
	if !json.Valid(result) {
		return fmt.Errorf("%w: not JSON", ErrBadToolList)
	}
	ts, te, found, err := jscanFindTools(result)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("%w: no tools array", ErrBadToolList)
	}
	entries := jscanToolEntries(result[ts:te], nil)

	t.mu.Lock()
	defer t.mu.Unlock()
	if gen != nil && *gen != t.gen.Load() {
		return ErrStaleListing
	}
	var next map[string]Class
	if old := t.m.Load(); old != nil && !firstPage {
		next = make(map[string]Class, len(*old)+len(entries))
		for k, v := range *old {
			next[k] = v
		}
	} else {
		next = make(map[string]Class, min(len(entries), MaxTools))
	}
	ignored, long := 0, 0
	for _, e := range entries {
		if !e.ok {
			continue
		}
		if len(e.name) > MaxToolName {
			long++
			continue
		}
		if c, seen := next[e.name]; seen {
			next[e.name] = classMax(c, e.class)
			continue
		}
		if len(next) >= MaxTools {
			ignored++
			continue
		}
		next[e.name] = e.class
	}
	t.m.Store(&next)
	switch {
	case ignored > 0 && long > 0:
		return fmt.Errorf("%w: %d tools beyond the limit of %d per tunnel and %d with names over %d bytes ignored (they count as destructive)",
			ErrTooManyTools, ignored, MaxTools, long, MaxToolName)
	case ignored > 0:
		return fmt.Errorf("%w: %d tools beyond the limit of %d per tunnel ignored (they count as destructive)",
			ErrTooManyTools, ignored, MaxTools)
	case long > 0:
		return fmt.Errorf("%w: %d tools with names over %d bytes ignored (they count as destructive)",
			ErrTooManyTools, long, MaxToolName)
	}
	return nil
}

// Class returns the class of a tool by its exact name. A tool never listed is [Destructive]
// with known false.
func (t *Tools) Class(name string) (c Class, known bool) {
	if m := t.m.Load(); m != nil {
		if c, ok := (*m)[name]; ok {
			return c, true
		}
	}
	return Destructive, false
}

// Forget drops everything known (on notifications/tools/list_changed, or when the tunnel
// reconnects): every tool is unknown, hence destructive, until listed again. Listings asked
// for before Forget are not learned from (see [Tools.LearnSince]).
func (t *Tools) Forget() {
	t.mu.Lock()
	t.m.Store(nil)
	t.gen.Add(1)
	t.mu.Unlock()
}

// Names returns the known tools' names, sorted.
func (t *Tools) Names() []string {
	m := t.m.Load()
	if m == nil {
		return nil
	}
	names := make([]string, 0, len(*m))
	for k := range *m {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// toolEntry is one element of a tools array: where it is, and what it says.
type toolEntry struct {
	start, end int // the element's bytes in the array
	name       string
	class      Class
	ok         bool // an object with exactly one name key holding a string
}

var (
	jkeyTools       = []byte("tools")
	jkeyName        = []byte("name")
	jkeyAnnotations = []byte("annotations")
	jkeyReadOnly    = []byte("readOnlyHint")
	jkeyDestructive = []byte("destructiveHint")
)

// jscanFindTools finds the "tools" member of a tools/list result (valid JSON). found is false
// when result is an object without one; err (wrapping ErrBadToolList) when result is not an
// object, has more than one key that a case-insensitive decoder would take for "tools", or
// its tools is not an array.
func jscanFindTools(result []byte) (ts, te int, found bool, err error) {
	i := jscanWS(result, 0)
	if i >= len(result) || result[i] != '{' {
		return 0, 0, false, fmt.Errorf("%w: result is not an object", ErrBadToolList)
	}
	members := jscanMembers{b: result, i: i}
	n := 0
	for {
		key, vs, ve, ok := members.next()
		if !ok {
			break
		}
		if m, _ := jscanKey(key, jkeyTools, "tools"); m {
			n++
			ts, te = vs, ve
		}
	}
	switch {
	case n == 0:
		return 0, 0, false, nil
	case n > 1:
		return 0, 0, false, fmt.Errorf("%w: duplicate tools key", ErrBadToolList)
	case result[ts] != '[':
		return 0, 0, false, fmt.Errorf("%w: tools is not an array", ErrBadToolList)
	}
	return ts, te, true, nil
}

// jscanToolEntries reads the elements of a tools array (valid JSON, b[0] == '['), appending
// to dst.
func jscanToolEntries(b []byte, dst []toolEntry) []toolEntry {
	i := jscanWS(b, 1)
	if i >= len(b) || b[i] == ']' {
		return dst
	}
	for {
		var te toolEntry
		if b[i] == '{' {
			te = jscanTool(b, i)
		} else {
			te = toolEntry{start: i, end: jscanValueEnd(b, i), class: Destructive}
		}
		dst = append(dst, te)
		i = jscanWS(b, te.end)
		if i >= len(b) || b[i] != ',' {
			return dst
		}
		i = jscanWS(b, i+1)
	}
}

// jscanTool reads the object at b[s] in a tools array.
func jscanTool(b []byte, s int) toolEntry {
	te := toolEntry{start: s, class: Destructive}
	var (
		nName, nAnn int
		nameRaw     []byte
		annRaw      []byte
		annExact    bool
	)
	members := jscanMembers{b: b, i: s}
	for {
		key, vs, ve, ok := members.next()
		if !ok {
			break
		}
		if m, _ := jscanKey(key, jkeyName, "name"); m {
			nName++
			nameRaw = b[vs:ve]
		} else if m, exact := jscanKey(key, jkeyAnnotations, "annotations"); m {
			nAnn++
			annExact = exact
			annRaw = b[vs:ve]
		}
	}
	te.end = members.i + 1 // past '}'
	if nName != 1 || nameRaw[0] != '"' {
		return te
	}
	te.name, te.ok = jscanString(nameRaw), true
	if nAnn == 1 && annExact {
		te.class = classOfValid(annRaw)
	}
	return te
}

// The scanner below walks JSON already checked with json.Valid, finding members and elements
// by their byte offsets so that what is kept can be copied byte for byte.

// jscanWS skips JSON whitespace from i.
func jscanWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// jscanStringEnd returns the end of the string starting at b[i] == '"' (just after its closing
// quote).
func jscanStringEnd(b []byte, i int) int {
	i++
	for {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return len(b)
		}
		i += j
		// The quote ends the string unless an odd number of backslashes escapes it.
		k := i - 1
		for b[k] == '\\' {
			k--
		}
		i++
		if (i-2-k)%2 == 0 {
			return i
		}
	}
}

// jscanValueEnd returns the end of the value starting at b[i].
func jscanValueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return jscanStringEnd(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = jscanStringEnd(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return len(b)
	default: // number, true, false, null
		for i < len(b) {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
			i++
		}
		return len(b)
	}
}

// jscanMembers iterates over the members of the object starting at b[i] == '{'.
type jscanMembers struct {
	b       []byte
	i       int
	started bool
}

// next returns the next member's raw key (with its quotes) and value offsets.
func (m *jscanMembers) next() (key []byte, vs, ve int, ok bool) {
	b := m.b
	if !m.started {
		m.started = true
		m.i = jscanWS(b, m.i+1)
	} else {
		if m.i >= len(b) || b[m.i] != ',' {
			return nil, 0, 0, false
		}
		m.i = jscanWS(b, m.i+1)
	}
	if m.i >= len(b) || b[m.i] != '"' {
		return nil, 0, 0, false
	}
	ks := m.i
	ke := jscanStringEnd(b, ks)
	i := jscanWS(b, ke)
	i = jscanWS(b, i+1) // past ':'
	vs = i
	ve = jscanValueEnd(b, i)
	m.i = jscanWS(b, ve)
	return b[ks:ke], vs, ve, true
}

// jscanElems iterates over the elements of the array starting at b[i] == '['.
type jscanElems struct {
	b       []byte
	i       int
	started bool
}

// next returns the next element's offsets.
func (a *jscanElems) next() (s, e int, ok bool) {
	b := a.b
	if !a.started {
		a.started = true
		a.i = jscanWS(b, a.i+1)
		if a.i >= len(b) || b[a.i] == ']' {
			return 0, 0, false
		}
	} else {
		if a.i >= len(b) || b[a.i] != ',' {
			return 0, 0, false
		}
		a.i = jscanWS(b, a.i+1)
	}
	s = a.i
	e = jscanValueEnd(b, s)
	a.i = jscanWS(b, e)
	return s, e, true
}

// jscanKey reports whether a raw key (with quotes) names name the way a case-insensitive
// decoder such as encoding/json would take it (Unicode simple folding, escapes decoded), and
// whether it is exactly name. lit is []byte(name).
func jscanKey(raw, lit []byte, name string) (matched, exact bool) {
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		if bytes.Equal(inner, lit) {
			return true, true
		}
		return bytes.EqualFold(inner, lit), false
	}
	s := jscanString(raw)
	if s == name {
		return true, true
	}
	return strings.EqualFold(s, name), false
}

// jscanString decodes a JSON string (valid, with its quotes) the way encoding/json does
// (invalid UTF-8 and lone surrogates become U+FFFD).
func jscanString(raw []byte) string {
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		return string(inner)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "\uFFFD" // unreachable for valid JSON
	}
	return s
}
