package authz

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// Visibility decides whether a tool may be shown to the caller: given its name and class, true
// shows it. The class passed is the one the listing's annotations give (the most restrictive
// if the name is listed twice); a policy override is the Visibility's business.
type Visibility func(name string, class Class) bool

// DefaultResponseLimit bounds what a [ResponseFilter] holds: a whole JSON body, or one SSE
// event.
const DefaultResponseLimit = 8 << 20

var (
	// ErrResponseTooLarge is returned by a [ResponseFilter] when a JSON body or one SSE event
	// goes over its limit. The caller answers 502 (or ends the stream).
	ErrResponseTooLarge = errors.New("authz: tools/list response over the size limit")
	// ErrBadResponse is wrapped by the errors for responses that cannot be filtered
	// unambiguously: not JSON, duplicate keys ("result" twice, in any letter case), a result
	// whose tools is not an array. Nothing of such a response is passed on; the caller
	// answers 502 (or ends the stream).
	ErrBadResponse = errors.New("authz: malformed tools/list response")
	// ErrLearn is wrapped by the error [FilterResponse] returns when learn failed; the
	// filtered message returned with it is still correct to send.
	ErrLearn = errors.New("authz: learning tools failed")
)

// FilterResponse rewrites one JSON-RPC response (a whole message,
// {"jsonrpc":"2.0","id":…,"result":{"tools":[…],…}}), dropping the tools that visible does
// not show. Everything else is kept byte for byte: other members, and each kept tool's own
// JSON. A message with nothing to drop is returned as is (the same slice), as is one without
// a result holding tools (an error response, for one). A JSON array (a 2025-03-26 batch of
// responses) has each of its elements filtered. Ids are not looked at: see
// [ResponseFilter].
//
// Before filtering, learn (when not nil) is called with each result holding tools; it must not
// retain the slice. Its error does not stop the filtering: FilterResponse returns the filtered
// message with an error wrapping [ErrLearn] and learn's. Any other error wraps
// [ErrBadResponse] and comes with a nil message: fail closed, send nothing of it. Tool
// entries that are not objects, or have no string name, or have the name key twice (in any
// letter case), are dropped.
func FilterResponse(msg []byte, visible Visibility, learn func(result json.RawMessage) error) ([]byte, error) {
	if !json.Valid(msg) {
		return nil, fmt.Errorf("%w: not JSON", ErrBadResponse)
	}
	f := filterer{visible: visible}
	if learn != nil {
		f.learn = func(result json.RawMessage, _ bool) error { return learn(result) }
	}
	out, _, err := f.value(msg, true)
	if err != nil {
		return nil, err
	}
	if f.learnErr != nil {
		return out, f.learnErr
	}
	return out, nil
}

// filterer filters JSON-RPC responses (valid JSON).
type filterer struct {
	ids      map[string]bool // canonical ids watched (see rpcIDKey): whether a first page
	checkIDs bool            // only responses whose id is in ids are filtered
	visible  Visibility
	learn    func(result json.RawMessage, firstPage bool) error
	learnErr error       // the first error learn returned
	entries  []toolEntry // scratch
}

// value filters a message: an object, or an array of them. strict refuses anything else.
func (f *filterer) value(b []byte, strict bool) (out []byte, changed bool, err error) {
	i := jscanWS(b, 0)
	switch {
	case i < len(b) && b[i] == '{':
		e := jscanValueEnd(b, i)
		obj, changed, err := f.object(b, i, e)
		if err != nil || !changed {
			return obj, changed, err
		}
		out := make([]byte, 0, i+len(obj)+len(b)-e)
		out = append(out, b[:i]...)
		out = append(out, obj...)
		return append(out, b[e:]...), true, nil
	case i < len(b) && b[i] == '[':
		return f.batch(b, i)
	case strict:
		return nil, false, fmt.Errorf("%w: not a JSON-RPC message", ErrBadResponse)
	}
	return b, false, nil
}

// batch filters the object elements of the array at b[s].
func (f *filterer) batch(b []byte, s int) ([]byte, bool, error) {
	type part struct {
		s, e int
		out  []byte // nil: unchanged
	}
	var parts []part
	anyChanged := false
	elems := jscanElems{b: b, i: s}
	for {
		es, ee, ok := elems.next()
		if !ok {
			break
		}
		p := part{s: es, e: ee}
		if b[es] == '{' {
			out, changed, err := f.object(b, es, ee)
			if err != nil {
				return nil, false, err
			}
			if changed {
				p.out, anyChanged = out, true
			}
		}
		parts = append(parts, p)
	}
	if !anyChanged {
		return b, false, nil
	}
	ae := jscanValueEnd(b, s)
	out := make([]byte, 0, len(b))
	out = append(out, b[:s]...)
	out = append(out, '[')
	for k, p := range parts {
		if k > 0 {
			out = append(out, ',')
		}
		if p.out != nil {
			out = append(out, p.out...)
		} else {
			out = append(out, b[p.s:p.e]...)
		}
	}
	out = append(out, ']')
	out = append(out, b[ae:]...)
	return out, true, nil
}

var (
	jkeyID     = []byte("id")
	jkeyResult = []byte("result")
	jkeyError  = []byte("error")
	jkeyMethod = []byte("method")
)

// object filters the response b[s:e] (an object). out is b itself unless changed; when
// changed, out is the whole object alone (b[s:e] rewritten), not the rest of b.
func (f *filterer) object(b []byte, s, e int) (out []byte, changed bool, err error) {
	var (
		nID, nResult, nError, nMethod int
		id                            []byte
		rs, re                        int
	)
	members := jscanMembers{b: b[:e], i: s}
	for {
		key, vs, ve, ok := members.next()
		if !ok {
			break
		}
		if m, _ := jscanKey(key, jkeyID, "id"); m {
			nID++
			id = b[vs:ve]
		} else if m, _ := jscanKey(key, jkeyResult, "result"); m {
			nResult++
			rs, re = vs, ve
		} else if m, _ := jscanKey(key, jkeyError, "error"); m {
			nError++
		} else if m, _ := jscanKey(key, jkeyMethod, "method"); m {
			nMethod++
		}
	}
	if nID > 1 || nResult > 1 || nError > 1 || nMethod > 1 {
		return nil, false, fmt.Errorf("%w: duplicate keys in a JSON-RPC message", ErrBadResponse)
	}
	if nResult == 0 || b[rs] != '{' {
		return b, false, nil
	}
	firstPage := true
	if f.checkIDs {
		if nID == 0 {
			return b, false, nil
		}
		k, ok := rpcIDKey(id)
		if !ok {
			return b, false, nil
		}
		if firstPage, ok = f.ids[k]; !ok {
			return b, false, nil
		}
	}
	result := b[rs:re]
	ts, te, found, err := jscanFindTools(result)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %w", ErrBadResponse, err)
	}
	if !found {
		return b, false, nil
	}
	if f.learn != nil {
		if err := f.learn(result, firstPage); err != nil && f.learnErr == nil {
			f.learnErr = fmt.Errorf("%w: %w", ErrLearn, err)
		}
	}
	tools := result[ts:te]
	f.entries = jscanToolEntries(tools, f.entries[:0])
	entries := f.entries

	// A name listed twice gets its most restrictive class (as Tools.Learn records it).
	var merged map[string]Class
	if dupNames(entries) {
		merged = make(map[string]Class, len(entries))
		for _, en := range entries {
			if !en.ok {
				continue
			}
			if c, ok := merged[en.name]; ok {
				merged[en.name] = classMax(c, en.class)
			} else {
				merged[en.name] = en.class
			}
		}
	}

	keep := 0
	for k := range entries {
		en := &entries[k]
		if !en.ok {
			continue
		}
		c := en.class
		if merged != nil {
			c = merged[en.name]
		}
		if f.visible == nil || f.visible(en.name, c) {
			keep++
		} else {
			en.ok = false
		}
	}
	if keep == len(entries) {
		return b, false, nil
	}

	// Splice: the object up to its tools array, the kept tools, the rest of the object.
	abs := rs + ts // the array's offset in b
	out = make([]byte, 0, e-s)
	out = append(out, b[s:abs]...)
	out = append(out, '[')
	first := true
	for _, en := range entries {
		if !en.ok {
			continue
		}
		if !first {
			out = append(out, ',')
		}
		first = false
		out = append(out, tools[en.start:en.end]...)
	}
	out = append(out, ']')
	out = append(out, b[rs+te:e]...)
	return out, true, nil
}

// dupNames reports whether a name is listed twice.
func dupNames(entries []toolEntry) bool {
	if len(entries) <= 32 {
		for k := range entries {
			for l := k + 1; l < len(entries); l++ {
				if entries[k].ok && entries[l].ok && entries[k].name == entries[l].name {
					return true
				}
			}
		}
		return false
	}
	seen := make(map[string]struct{}, len(entries))
	for _, en := range entries {
		if !en.ok {
			continue
		}
		if _, dup := seen[en.name]; dup {
			return true
		}
		seen[en.name] = struct{}{}
	}
	return false
}

// rpcIDKey is a JSON-RPC id's canonical form for matching: a string by its decoded value, a
// number by its float64 value (so 1, 1.0 and 1e0 are one id, as a JavaScript client takes
// them; matching more widely only filters more). Other JSON values are not ids.
func rpcIDKey(raw []byte) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", false
	}
	switch c := raw[0]; {
	case c == '"':
		if !json.Valid(raw) {
			return "", false
		}
		return "s" + jscanString(raw), true
	case c == '-' || (c >= '0' && c <= '9'):
		v, err := strconv.ParseFloat(string(raw), 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return "", false
		}
		if v == 0 {
			v = 0 // -0 is 0
		}
		return "n" + strconv.FormatFloat(v, 'g', -1, 64), true
	}
	return "", false
}
