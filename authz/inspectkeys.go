package authz

// Objects under the scanner of inspectscan.go: reading an object's members, folding each key the
// way encoding/json matches keys to struct fields, and refusing a key that folds equal to one
// the object already has.

import (
	"bytes"
	"fmt"
	"hash/maphash"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// inspKey is a key of an open object: where its raw string is in the body (for messages)
// and its folded form (for comparing).
type inspKey struct {
	start, end int32 // the raw key in data, with its quotes
	// the folded key, in arena if foldArena, else in data
	foldStart, foldEnd int32
	foldArena          bool
}

// foldOf returns a key's folded form.
func (s *inspScanner) foldOf(k inspKey) []byte {
	if k.foldArena {
		return s.arena[k.foldStart:k.foldEnd]
	}
	return s.data[k.foldStart:k.foldEnd]
}

// inspFold appends key folded so that two keys fold equal exactly when encoding/json would
// match them to the same struct field (bytes.EqualFold): ASCII letters to lower case, other
// runes to the smallest rune of their simple-folding orbit (lower-cased if that is an ASCII
// letter, as for the Kelvin sign and the long s).
func inspFold(dst, key []byte) []byte {
	for i := 0; i < len(key); {
		c := key[i]
		if c < utf8.RuneSelf {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			dst = append(dst, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(key[i:])
		i += n
		for {
			r2 := unicode.SimpleFold(r)
			if r2 <= r {
				r = r2
				break
			}
			r = r2
		}
		if 'A' <= r && r <= 'Z' {
			r += 'a' - 'A'
		}
		dst = utf8.AppendRune(dst, r)
	}
	return dst
}

// inspNeedsFold reports whether a key has bytes inspFold would change or might.
func inspNeedsFold(key []byte) bool {
	for _, c := range key {
		if c >= utf8.RuneSelf || ('A' <= c && c <= 'Z') {
			return true
		}
	}
	return false
}

// inspObject is an open object being read by member.
type inspObject struct {
	base, arena int
	n           int
	// m maps the hash of a folded key to the index in keys of the first key with that hash,
	// once the object has many keys.
	m map[uint64]int32
}

// inspLinear is how many keys an object may have before duplicates are looked up in a map.
const inspLinear = 16

func (s *inspScanner) open() (inspObject, *ParseError) {
	s.depth++
	if s.depth > inspMaxDepth {
		return inspObject{}, s.invalidHere(fmt.Sprintf("nesting deeper than %d", inspMaxDepth))
	}
	s.pos++ // '{'
	return inspObject{base: len(s.keys), arena: len(s.arena)}, nil
}

// member reads the next member's key and its colon, returning the key (unescaped) and its
// folded form, or more == false at the end of the object.
func (s *inspScanner) member(o *inspObject) (key, fold []byte, more bool, err *ParseError) {
	s.ws()
	if s.pos >= len(s.data) {
		return nil, nil, false, s.syntax("unexpected end in an object")
	}
	c := s.data[s.pos]
	if c == '}' {
		s.pos++
		s.depth--
		s.keys = s.keys[:o.base]
		s.arena = s.arena[:o.arena]
		return nil, nil, false, nil
	}
	if o.n > 0 {
		if c != ',' {
			return nil, nil, false, s.syntax("expected ',' or '}'")
		}
		s.pos++
		s.ws()
	}
	start := s.pos
	if s.pos >= len(s.data) || s.data[s.pos] != '"' {
		return nil, nil, false, s.syntax("expected a key")
	}
	escaped, err := s.str()
	if err != nil {
		return nil, nil, false, err
	}
	end := s.pos
	if escaped {
		a := len(s.arena)
		s.arena = inspUnescape(s.arena, s.data[start:end])
		key = s.arena[a:len(s.arena):len(s.arena)]
	} else {
		key = s.data[start+1 : end-1]
	}
	k := inspKey{start: int32(start), end: int32(end)}
	switch {
	case inspNeedsFold(key):
		a := len(s.arena)
		s.arena = inspFold(s.arena, key)
		fold = s.arena[a:len(s.arena):len(s.arena)]
		k.foldStart, k.foldEnd, k.foldArena = int32(a), int32(len(s.arena)), true
	case escaped: // key (unescaped) is in arena
		fold = key
		k.foldStart, k.foldEnd, k.foldArena = int32(len(s.arena)-len(key)), int32(len(s.arena)), true
	default:
		fold = key
		k.foldStart, k.foldEnd = int32(start+1), int32(end-1)
	}
	if err := s.unique(o, k, key, fold); err != nil {
		return nil, nil, false, err
	}
	o.n++
	s.ws()
	if s.pos >= len(s.data) || s.data[s.pos] != ':' {
		return nil, nil, false, s.syntax("expected ':'")
	}
	s.pos++
	return key, fold, true, nil
}

// unique refuses a key equal (folded) to one the object already has, and records it.
func (s *inspScanner) unique(o *inspObject, k inspKey, key, fold []byte) *ParseError {
	dup := -1
	var hash uint64
	if o.m != nil {
		hash = maphash.Bytes(s.seed, fold)
		if i, ok := o.m[hash]; ok {
			dup = int(i)
			if !bytes.Equal(s.foldOf(s.keys[dup]), fold) { // a hash collision: look at them all
				dup = s.linear(o, fold)
			}
		}
	} else {
		dup = s.linear(o, fold)
	}
	if dup >= 0 {
		prev := s.keys[dup]
		pk := inspUnescape(nil, s.data[prev.start:prev.end])
		s.pos = int(k.start)
		if bytes.Equal(pk, key) {
			return s.invalidHere("duplicate key " + strconv.Quote(string(key)))
		}
		return s.invalidHere(fmt.Sprintf("duplicate key %q (same as %q ignoring case)", key, pk))
	}
	s.keys = append(s.keys, k)
	switch {
	case o.m != nil:
		if _, ok := o.m[hash]; !ok {
			o.m[hash] = int32(len(s.keys) - 1)
		}
	case len(s.keys)-o.base > inspLinear:
		if s.seed == (maphash.Seed{}) {
			s.seed = maphash.MakeSeed()
		}
		o.m = make(map[uint64]int32, 4*inspLinear)
		for i := len(s.keys) - 1; i >= o.base; i-- { // backwards: the first of equal hashes stays
			o.m[maphash.Bytes(s.seed, s.foldOf(s.keys[i]))] = int32(i)
		}
	}
	return nil
}

// linear returns the index in keys of the object's key that folds to fold, or -1.
func (s *inspScanner) linear(o *inspObject, fold []byte) int {
	for i := o.base; i < len(s.keys); i++ {
		if bytes.Equal(s.foldOf(s.keys[i]), fold) {
			return i
		}
	}
	return -1
}
