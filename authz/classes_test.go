package authz

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestClassOf(t *testing.T) {
	cases := []struct {
		ann  string
		want Class
	}{
		{``, Destructive},
		{`null`, Destructive},
		{`{}`, Destructive},
		{`[]`, Destructive},
		{`"readOnlyHint"`, Destructive},
		{`{"title":"x"}`, Destructive},
		{`{"readOnlyHint":true}`, Read},
		{`{"readOnlyHint":false}`, Destructive},
		{`{"destructiveHint":false}`, Write},
		{`{"destructiveHint":true}`, Destructive},
		{`{"readOnlyHint":false,"destructiveHint":false}`, Write},
		{`{"readOnlyHint":true,"destructiveHint":true}`, Read},
		{`{"readOnlyHint":true,"destructiveHint":false}`, Read},
		{` { "readOnlyHint" : true } `, Read},
		{`{"readOnlyHint":"true"}`, Destructive},
		{`{"readOnlyHint":1}`, Destructive},
		{`{"destructiveHint":null}`, Destructive},
		{`{"destructiveHint":0}`, Destructive},
		{`{"readOnlyHint":true`, Destructive}, // not JSON
		// Only exact keys count; a key twice (in any letter case) is ambiguous.
		{`{"ReadOnlyHint":true}`, Destructive},
		{`{"readonlyhint":true}`, Destructive},
		{`{"DestructiveHint":false}`, Destructive},
		{`{"readOnlyHint":true,"readOnlyHint":true}`, Destructive},
		{`{"readOnlyHint":true,"READONLYHINT":false}`, Destructive},
		{`{"destructiveHint":false,"destructiveHint":false}`, Destructive},
		{`{"destructiveHint":false,"destructiveHinT":true}`, Destructive},
		{`{"read\u004FnlyHint":true}`, Read}, // escapes decode to the exact key
		{`{"nested":{"readOnlyHint":true}}`, Destructive},
		{`{"x":"{\"readOnlyHint\":true}"}`, Destructive},
	}
	for _, c := range cases {
		if got := ClassOf(json.RawMessage(c.ann)); got != c.want {
			t.Errorf("ClassOf(%s) = %s, want %s", c.ann, got, c.want)
		}
	}
}

func clsListing(tools ...string) json.RawMessage {
	return json.RawMessage(`{"tools":[` + strings.Join(tools, ",") + `]}`)
}

func clsTool(name, ann string) string {
	b, _ := json.Marshal(name)
	if ann == "" {
		return fmt.Sprintf(`{"name":%s,"inputSchema":{"type":"object"}}`, b)
	}
	return fmt.Sprintf(`{"name":%s,"inputSchema":{"type":"object"},"annotations":%s}`, b, ann)
}

func clsWant(t *testing.T, ts *Tools, name string, want Class, wantKnown bool) {
	t.Helper()
	c, known := ts.Class(name)
	if c != want || known != wantKnown {
		t.Errorf("Class(%q) = %s, %v; want %s, %v", name, c, known, want, wantKnown)
	}
}

func TestToolsLearn(t *testing.T) {
	ts := NewTools()
	clsWant(t, ts, "anything", Destructive, false)
	if ts.Names() != nil {
		t.Errorf("Names of nothing = %v", ts.Names())
	}
	err := ts.Learn(clsListing(
		clsTool("get", `{"readOnlyHint":true}`),
		clsTool("put", `{"destructiveHint":false}`),
		clsTool("rm", ``),
		clsTool("both", `{"readOnlyHint":true,"destructiveHint":true}`),
	), true)
	if err != nil {
		t.Fatal(err)
	}
	clsWant(t, ts, "get", Read, true)
	clsWant(t, ts, "put", Write, true)
	clsWant(t, ts, "rm", Destructive, true)
	clsWant(t, ts, "both", Read, true)
	clsWant(t, ts, "missing", Destructive, false)
	if got := ts.Names(); !slices.Equal(got, []string{"both", "get", "put", "rm"}) {
		t.Errorf("Names = %v", got)
	}

	// A later page adds.
	if err := ts.Learn(json.RawMessage(`{"tools":[`+clsTool("list", `{"readOnlyHint":true}`)+`],"nextCursor":"x"}`), false); err != nil {
		t.Fatal(err)
	}
	clsWant(t, ts, "get", Read, true)
	clsWant(t, ts, "list", Read, true)

	// A first page replaces.
	if err := ts.Learn(clsListing(clsTool("get", ``)), true); err != nil {
		t.Fatal(err)
	}
	clsWant(t, ts, "get", Destructive, true)
	clsWant(t, ts, "list", Destructive, false)
	clsWant(t, ts, "put", Destructive, false)

	ts.Forget()
	clsWant(t, ts, "get", Destructive, false)
	if ts.Names() != nil {
		t.Errorf("Names after Forget = %v", ts.Names())
	}
}

func TestToolsNamesExact(t *testing.T) {
	ts := NewTools()
	if err := ts.Learn(clsListing(
		clsTool("delete_file", `{"readOnlyHint":true}`), // a server may lie; we only look names up exactly
		clsTool("Delete_File", ``),
		clsTool("café", `{"readOnlyHint":true}`), // precomposed é
	), true); err != nil {
		t.Fatal(err)
	}
	clsWant(t, ts, "delete_file", Read, true)
	clsWant(t, ts, "Delete_File", Destructive, true)
	clsWant(t, ts, "DELETE_FILE", Destructive, false)
	clsWant(t, ts, "delete_fіle", Destructive, false) // Cyrillic і
	clsWant(t, ts, "delete_file ", Destructive, false)
	clsWant(t, ts, "café", Read, true)
	clsWant(t, ts, "cafe\u0301", Destructive, false) // decomposed: another name
	clsWant(t, ts, "cafe", Destructive, false)
}

func TestToolsDuplicatesAndJunk(t *testing.T) {
	ts := NewTools()
	err := ts.Learn(clsListing(
		clsTool("x", `{"readOnlyHint":true}`),
		clsTool("x", `{"destructiveHint":false}`),                           // the same name again: the more restrictive wins
		`{"name":"y","annotations":{"readOnlyHint":true},"Annotations":{}}`, // ambiguous annotations
		`{"name":"z","NAME":"w","annotations":{"readOnlyHint":true}}`,       // ambiguous name: skipped
		`{"name":5}`, `"str"`, `null`, `[]`, `{}`,
		`{"name":"e\u0301","annotations":{"readOnlyHint":true}}`,
	), true)
	if err != nil {
		t.Fatal(err)
	}
	clsWant(t, ts, "x", Write, true)
	clsWant(t, ts, "y", Destructive, true)
	clsWant(t, ts, "z", Destructive, false)
	clsWant(t, ts, "w", Destructive, false)
	clsWant(t, ts, "e\u0301", Read, true)
	if got := ts.Names(); !slices.Equal(got, []string{"e\u0301", "x", "y"}) {
		t.Errorf("Names = %q", got)
	}

	// Across pages too.
	if err := ts.Learn(clsListing(clsTool("x", `{"readOnlyHint":true}`)), false); err != nil {
		t.Fatal(err)
	}
	clsWant(t, ts, "x", Write, true)
}

func TestToolsLearnRefusesMalformed(t *testing.T) {
	ts := NewTools()
	if err := ts.Learn(clsListing(clsTool("a", `{"readOnlyHint":true}`)), true); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		``, `not json`, `[]`, `{}`, `{"tools":null}`, `{"tools":{}}`, `{"tools":"x"}`,
		`{"tools":[],"tools":[]}`, `{"tools":[],"Tools":[]}`, `{"tools":[],"toolſ":[]}`, // ſ folds to s
		`{"tools":[` + clsTool("b", ``) + `]`,
	} {
		err := ts.Learn(json.RawMessage(bad), true)
		if !errors.Is(err, ErrBadToolList) {
			t.Errorf("Learn(%s) = %v, want ErrBadToolList", bad, err)
		}
	}
	clsWant(t, ts, "a", Read, true) // unchanged
}

func TestToolsLimit(t *testing.T) {
	ts := NewTools()
	var b strings.Builder
	b.WriteString(`{"tools":[`)
	for i := range MaxTools + 5 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"name":"t%d","annotations":{"readOnlyHint":true}}`, i)
	}
	b.WriteString(`]}`)
	err := ts.Learn(json.RawMessage(b.String()), true)
	if !errors.Is(err, ErrTooManyTools) || !strings.Contains(err.Error(), "5 tools") {
		t.Fatalf("Learn = %v, want ErrTooManyTools counting 5", err)
	}
	clsWant(t, ts, "t0", Read, true)
	clsWant(t, ts, fmt.Sprint("t", MaxTools-1), Read, true)
	clsWant(t, ts, fmt.Sprint("t", MaxTools), Destructive, false)
	if n := len(ts.Names()); n != MaxTools {
		t.Errorf("%d names, want %d", n, MaxTools)
	}
	// Further pages add nothing new, but known tools are still updated.
	err = ts.Learn(clsListing(clsTool("new", ``), clsTool("t0", ``)), false)
	if !errors.Is(err, ErrTooManyTools) {
		t.Errorf("Learn over the limit = %v", err)
	}
	clsWant(t, ts, "new", Destructive, false)
	clsWant(t, ts, "t0", Destructive, true)
}

func TestToolsLongNames(t *testing.T) {
	ts := NewTools()
	long := strings.Repeat("x", MaxToolName+1)
	err := ts.Learn(clsListing(clsTool(long, `{"readOnlyHint":true}`), clsTool(long[1:], `{"readOnlyHint":true}`)), true)
	if !errors.Is(err, ErrTooManyTools) || !strings.Contains(err.Error(), "1 tools with names over") {
		t.Fatalf("Learn = %v", err)
	}
	clsWant(t, ts, long, Destructive, false)
	clsWant(t, ts, long[1:], Read, true)
}

func TestToolsConcurrent(t *testing.T) {
	ts := NewTools()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				switch i % 4 {
				case 0:
					ts.Learn(clsListing(clsTool("a", `{"readOnlyHint":true}`), clsTool(fmt.Sprint("g", g), ``)), true) //nolint:errcheck
				case 1:
					ts.Learn(clsListing(clsTool("b", `{"destructiveHint":false}`)), false) //nolint:errcheck
				case 2:
					ts.Forget()
				case 3:
					ts.Names()
				}
				if c, known := ts.Class("a"); known && c != Read {
					t.Errorf("a is %s", c)
				}
			}
		}()
	}
	wg.Wait()
}

// TestToolsRelist: how a sequence of listings (first pages and later pages) and Forgets leaves
// a tunnel's classes. A first page replaces, so a tool the server re-annotated or dropped does
// not keep an older, possibly more permissive class; a later page only adds, never loosening a
// class it lists again.
func TestToolsRelist(t *testing.T) {
	const (
		read  = `{"readOnlyHint":true}`
		write = `{"destructiveHint":false}`
		none  = ``
	)
	type step struct {
		tools     []string // clsTool pairs: name, annotations; nil: Forget
		firstPage bool
	}
	type want struct {
		name  string
		class Class
		known bool
	}
	page := func(first bool, nameAnn ...string) step {
		var tools []string
		for i := 0; i+1 < len(nameAnn); i += 2 {
			tools = append(tools, clsTool(nameAnn[i], nameAnn[i+1]))
		}
		return step{tools: tools, firstPage: first}
	}
	forget := step{}
	for _, tc := range []struct {
		name  string
		steps []step
		want  []want
	}{
		{"read became destructive, relisted",
			[]step{page(true, "notes", read), page(true, "notes", none)},
			[]want{{"notes", Destructive, true}}},
		{"write became read, relisted",
			[]step{page(true, "save", write), page(true, "save", read)},
			[]want{{"save", Read, true}}},
		{"a dropped tool is forgotten by a first page",
			[]step{page(true, "a", read, "b", read), page(true, "a", read)},
			[]want{{"a", Read, true}, {"b", Destructive, false}}},
		{"a later page adds",
			[]step{page(true, "a", read), page(false, "b", write)},
			[]want{{"a", Read, true}, {"b", Write, true}}},
		{"a later page does not forget",
			[]step{page(true, "a", read, "b", read), page(false, "c", read)},
			[]want{{"a", Read, true}, {"b", Read, true}, {"c", Read, true}}},
		{"a later page makes a class stricter, never looser",
			[]step{page(true, "a", read, "b", none), page(false, "a", none, "b", read)},
			[]want{{"a", Destructive, true}, {"b", Destructive, true}}},
		{"a first page after later pages starts over",
			[]step{page(true, "a", read), page(false, "b", read), page(true, "c", read)},
			[]want{{"a", Destructive, false}, {"b", Destructive, false}, {"c", Read, true}}},
		{"forget, then a first page restores",
			[]step{page(true, "a", read, "b", write), forget, page(true, "a", read)},
			[]want{{"a", Read, true}, {"b", Destructive, false}}},
		{"forget, then a later page adds to nothing",
			[]step{page(true, "a", read), forget, page(false, "b", read)},
			[]want{{"a", Destructive, false}, {"b", Read, true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := NewTools()
			for _, s := range tc.steps {
				if s.tools == nil {
					ts.Forget()
					continue
				}
				if err := ts.Learn(clsListing(s.tools...), s.firstPage); err != nil {
					t.Fatal(err)
				}
			}
			for _, w := range tc.want {
				clsWant(t, ts, w.name, w.class, w.known)
			}
		})
	}
}

// TestToolsLearnSince: a listing asked for before a Forget (a tools/list_changed from the
// server) is not learned from, first page or not: it may describe the tools as they were before
// the change. One asked for after the Forget is.
func TestToolsLearnSince(t *testing.T) {
	ts := NewTools()
	before := ts.Generation()
	if err := ts.LearnSince(before, clsListing(clsTool("a", `{"readOnlyHint":true}`)), true); err != nil {
		t.Fatal(err)
	}
	clsWant(t, ts, "a", Read, true)

	inFlight := ts.Generation()
	ts.Forget()
	if ts.Generation() == inFlight {
		t.Fatal("Forget did not move the generation")
	}
	for _, firstPage := range []bool{true, false} {
		err := ts.LearnSince(inFlight, clsListing(clsTool("a", `{"readOnlyHint":true}`)), firstPage)
		if !errors.Is(err, ErrStaleListing) {
			t.Errorf("LearnSince with an old generation (first page %v) = %v, want ErrStaleListing", firstPage, err)
		}
		clsWant(t, ts, "a", Destructive, false)
	}

	after := ts.Generation()
	if err := ts.LearnSince(after, clsListing(clsTool("a", ``)), true); err != nil {
		t.Fatal(err)
	}
	clsWant(t, ts, "a", Destructive, true)
	// Learn itself does not look at generations.
	if err := ts.Learn(clsListing(clsTool("a", `{"readOnlyHint":true}`)), true); err != nil {
		t.Fatal(err)
	}
	clsWant(t, ts, "a", Read, true)
}
