package authz

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// fltOnlyRead shows read tools.
func fltOnlyRead(_ string, c Class) bool { return c == Read }

func fltShowAll(string, Class) bool { return true }

const fltListResponse = `{"jsonrpc":"2.0", "id":7,"result":{ "tools" : [
  {"name":"get","description":"Reads.\n","inputSchema":{"type":"object","properties":{"k":{"type":"string"}}},"annotations":{"readOnlyHint":true}} ,
  {"name":"put","annotations":{"destructiveHint":false},"inputSchema":{"type":"object"}},
  {"name":"rm","inputSchema":{"type":"object"}},
  {"name":"both", "annotations":{"readOnlyHint":true,"destructiveHint":true}, "x":[1,2,{"y":"]}"}]}
], "nextCursor":"c2", "_meta":{"k":"v"}},"extra":{"a":[]}}
`

func TestFilterResponseJSON(t *testing.T) {
	ts := NewTools()
	var shown []string
	visible := func(name string, c Class) bool {
		shown = append(shown, name+":"+string(c))
		return c == Read
	}
	out, err := FilterResponse([]byte(fltListResponse), visible, func(r json.RawMessage) error { return ts.Learn(r, true) })
	if err != nil {
		t.Fatal(err)
	}
	want := `{"jsonrpc":"2.0", "id":7,"result":{ "tools" : [{"name":"get","description":"Reads.\n","inputSchema":{"type":"object","properties":{"k":{"type":"string"}}},"annotations":{"readOnlyHint":true}},{"name":"both", "annotations":{"readOnlyHint":true,"destructiveHint":true}, "x":[1,2,{"y":"]}"}]}], "nextCursor":"c2", "_meta":{"k":"v"}},"extra":{"a":[]}}
`
	if string(out) != want {
		t.Errorf("filtered:\n%s\nwant:\n%s", out, want)
	}
	if got := strings.Join(shown, " "); got != "get:read put:write rm:destructive both:read" {
		t.Errorf("visible saw %s", got)
	}
	clsWant(t, ts, "get", Read, true)
	clsWant(t, ts, "put", Write, true)
	clsWant(t, ts, "rm", Destructive, true)
	clsWant(t, ts, "both", Read, true)

	// Nothing to drop: the same bytes, not a copy.
	in := []byte(fltListResponse)
	out, err = FilterResponse(in, fltShowAll, nil)
	if err != nil || &out[0] != &in[0] || len(out) != len(in) {
		t.Errorf("all visible: changed (err %v)", err)
	}
	// Everything dropped.
	out, err = FilterResponse(in, func(string, Class) bool { return false }, nil)
	if err != nil || !strings.Contains(string(out), `"tools" : [], "nextCursor"`) {
		t.Errorf("none visible: %s (err %v)", out, err)
	}
	// nil shows everything.
	if out, err = FilterResponse(in, nil, nil); err != nil || string(out) != fltListResponse {
		t.Errorf("nil visibility: %s (err %v)", out, err)
	}
}

func TestFilterResponsePassesOthers(t *testing.T) {
	for _, msg := range []string{
		`{"jsonrpc":"2.0","id":7,"error":{"code":-32601,"message":"no tools"}}`,
		`{"jsonrpc":"2.0","id":7,"result":{}}`,
		`{"jsonrpc":"2.0","id":7,"result":{"resources":[{"name":"x"}]}}`,
		`{"jsonrpc":"2.0","id":7,"result":null}`,
		`{"jsonrpc":"2.0","id":7,"result":[{"tools":[{"name":"x"}]}]}`,
		`{"jsonrpc":"2.0","method":"notifications/progress","params":{"tools":[{"name":"x"}]}}`,
		`{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"{\"tools\":[{\"name\":\"x\"}]}"}]}}`,
		`[]`,
		`[1,"x",null]`,
	} {
		learned := false
		out, err := FilterResponse([]byte(msg), fltOnlyRead, func(json.RawMessage) error { learned = true; return nil })
		if err != nil || string(out) != msg || learned {
			t.Errorf("FilterResponse(%s) = %s, %v (learned %v); want it unchanged", msg, out, err, learned)
		}
	}
}

func TestFilterResponseRefuses(t *testing.T) {
	for _, msg := range []string{
		``, `{`, `nope`, `"str"`, `12`,
		`{"id":1,"result":{"tools":[]},"result":{"tools":[{"name":"x"}]}}`,
		`{"id":1,"result":{"tools":[]},"Result":{"tools":[{"name":"x"}]}}`,
		`{"id":1,"result":{"tools":[]},"r\u0065sult":{"tools":[{"name":"x"}]}}`,
		`{"id":1,"id":2,"result":{"tools":[]}}`,
		`{"id":1,"result":{"tools":[],"TOOLS":[{"name":"x"}]}}`,
		`{"id":1,"result":{"tools":{"name":"x"}}}`,
		`{"id":1,"result":{"tools":null}}`,
		`[{"id":1,"result":{"tools":[]}},{"id":2,"result":{"tools":1}}]`,
	} {
		out, err := FilterResponse([]byte(msg), fltOnlyRead, nil)
		if !errors.Is(err, ErrBadResponse) || out != nil {
			t.Errorf("FilterResponse(%s) = %s, %v; want ErrBadResponse", msg, out, err)
		}
	}
}

func TestFilterResponseJunkAndDuplicates(t *testing.T) {
	msg := `{"id":1,"result":{"tools":[` + strings.Join([]string{
		clsTool("a", `{"readOnlyHint":true}`),
		clsTool("a", ``), // a twice: destructive, both copies hidden
		`{"name":"b","NAME":"c","annotations":{"readOnlyHint":true}}`, // ambiguous name
		`{"Name":"d","annotations":{"readOnlyHint":true}}`,            // a case-insensitive decoder's name
		`{"name":1}`, `"e"`, `null`,
		clsTool("f", `{"readOnlyHint":true}`),
	}, ",") + `]}}`
	var seen []string
	out, err := FilterResponse([]byte(msg), func(n string, c Class) bool {
		seen = append(seen, n+":"+string(c))
		return c == Read
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":1,"result":{"tools":[{"Name":"d","annotations":{"readOnlyHint":true}},` + clsTool("f", `{"readOnlyHint":true}`) + `]}}`
	if string(out) != want {
		t.Errorf("got  %s\nwant %s", out, want)
	}
	if got := strings.Join(seen, " "); got != "a:destructive a:destructive d:read f:read" {
		t.Errorf("visible saw %s", got)
	}
}

func TestFilterResponseBatch(t *testing.T) {
	msg := ` [ {"jsonrpc":"2.0","id":1,"result":{"content":[]}} , ` +
		`{"jsonrpc":"2.0","id":2,"result":{"tools":[` + clsTool("r", `{"readOnlyHint":true}`) + `,` + clsTool("w", `{"destructiveHint":false}`) + `]}},` +
		`{"jsonrpc":"2.0","id":3,"error":{"code":1,"message":"x"}}] `
	out, err := FilterResponse([]byte(msg), fltOnlyRead, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := ` [{"jsonrpc":"2.0","id":1,"result":{"content":[]}},` +
		`{"jsonrpc":"2.0","id":2,"result":{"tools":[` + clsTool("r", `{"readOnlyHint":true}`) + `]}},` +
		`{"jsonrpc":"2.0","id":3,"error":{"code":1,"message":"x"}}] `
	if string(out) != want {
		t.Errorf("got  %s\nwant %s", out, want)
	}
}

func TestFilterResponseLearnError(t *testing.T) {
	boom := errors.New("boom")
	out, err := FilterResponse([]byte(fltListResponse), fltOnlyRead, func(json.RawMessage) error { return boom })
	if !errors.Is(err, ErrLearn) || !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(string(out), `"rm"`) || !strings.Contains(string(out), `"get"`) {
		t.Errorf("not filtered: %s", out)
	}
}

func TestIDKey(t *testing.T) {
	same := [][]string{
		{`1`, ` 1 `, `1.0`, `1e0`, `10e-1`},
		{`0`, `-0`, `0.0`},
		{`"1"`, `"\u0031"`},
		{`"a b"`, `"a\u0020b"`},
	}
	keys := map[string]int{}
	for g, ids := range same {
		for _, id := range ids {
			k, ok := rpcIDKey([]byte(id))
			if !ok {
				t.Fatalf("rpcIDKey(%s) not an id", id)
			}
			if prev, dup := keys[k]; dup && prev != g {
				t.Errorf("rpcIDKey(%s) collides with group %d", id, prev)
			}
			keys[k] = g
		}
	}
	if len(keys) != len(same) {
		t.Errorf("%d keys for %d ids: %v", len(keys), len(same), keys)
	}
	for _, id := range []string{``, `null`, `true`, `{}`, `[]`, `"x`} {
		if _, ok := rpcIDKey([]byte(id)); ok {
			t.Errorf("rpcIDKey(%s) is an id", id)
		}
	}
}

// fltRecorder is an io.Writer that keeps what it got and counts flushes.
type fltRecorder struct {
	bytes.Buffer
	flushes int
	fail    bool
}

func (r *fltRecorder) Write(p []byte) (int, error) {
	if r.fail {
		return 0, errors.New("write failed")
	}
	return r.Buffer.Write(p)
}

func (r *fltRecorder) Flush() { r.flushes++ }

var fltWatched = []ListRequest{{ID: json.RawMessage(`7`), FirstPage: true}, {ID: json.RawMessage(`"s-1"`), FirstPage: true}}

// fltRunSSE feeds stream in the given chunk sizes (the rest in one piece), closes the filter,
// and returns what it wrote and the first error.
func fltRunSSE(stream string, chunks []int, visible Visibility) (string, error) {
	var rec fltRecorder
	f := NewResponseFilter(&rec, "text/event-stream; charset=utf-8", fltWatched, visible, nil)
	p := []byte(stream)
	for _, n := range chunks {
		if n > len(p) {
			n = len(p)
		}
		if _, err := f.Write(p[:n]); err != nil {
			return rec.String(), err
		}
		p = p[n:]
	}
	if len(p) > 0 {
		if _, err := f.Write(p); err != nil {
			return rec.String(), err
		}
	}
	err := f.Close()
	return rec.String(), err
}

func fltOnes(n int) []int {
	c := make([]int, n)
	for i := range c {
		c[i] = 1
	}
	return c
}

func fltRandomChunks(r *rand.Rand, n int) []int {
	var c []int
	for n > 0 {
		k := 1 + r.IntN(min(n, 40))
		c = append(c, k)
		n -= k
	}
	return c
}

// fltToolsMsg is a tools/list response with id, showing r (read) and w (write) tools.
func fltToolsMsg(id string) string {
	return `{"jsonrpc":"2.0","id":` + id + `,"result":{"tools":[` + clsTool("r", `{"readOnlyHint":true}`) + `,` + clsTool("w", `{"destructiveHint":false}`) + `]}}`
}

func fltToolsMsgFiltered(id string) string {
	return `{"jsonrpc":"2.0","id":` + id + `,"result":{"tools":[` + clsTool("r", `{"readOnlyHint":true}`) + `]}}`
}

func TestFilterSSE(t *testing.T) {
	progress := `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}`
	cases := []struct{ name, in, want string }{
		{"plain",
			"event: message\nid: e1\ndata: " + fltToolsMsg("7") + "\n\n",
			"event: message\nid: e1\ndata: " + fltToolsMsgFiltered("7") + "\n\n"},
		{"crlf",
			": hi\r\n\r\nevent: message\r\ndata: " + fltToolsMsg("7") + "\r\nid: e1\r\n\r\n",
			": hi\r\n\r\nevent: message\r\ndata: " + fltToolsMsgFiltered("7") + "\r\nid: e1\r\n\r\n"},
		{"cr",
			"data:" + fltToolsMsg("7") + "\r\r",
			"data: " + fltToolsMsgFiltered("7") + "\r\r"},
		{"multi-line data",
			"data: {\"jsonrpc\":\"2.0\",\n: a comment inside\ndata: \"id\":7,\"result\":{\"tools\":[\ndata: " +
				clsTool("w", `{"destructiveHint":false}`) + ",\ndata:" + clsTool("r", `{"readOnlyHint":true}`) + "\ndata: ]}}\n\n",
			// The filtered data goes where the first data line was; other lines stay.
			"data: {\"jsonrpc\":\"2.0\",\ndata: \"id\":7,\"result\":{\"tools\":[" +
				clsTool("r", `{"readOnlyHint":true}`) + "]}}\n: a comment inside\n\n"},
		{"string id",
			"data: " + fltToolsMsg(`"s-1"`) + "\n\n",
			"data: " + fltToolsMsgFiltered(`"s-1"`) + "\n\n"},
		{"numerically equal id",
			"data: " + fltToolsMsg(`7.0`) + "\n\n",
			"data: " + fltToolsMsgFiltered(`7.0`) + "\n\n"},
		{"other ids pass",
			"data: " + fltToolsMsg("8") + "\n\ndata: " + fltToolsMsg(`"7"`) + "\n\n",
			"data: " + fltToolsMsg("8") + "\n\ndata: " + fltToolsMsg(`"7"`) + "\n\n"},
		{"a server request with the same id passes",
			`data: {"jsonrpc":"2.0","id":7,"method":"sampling/createMessage","params":{"tools":[{"name":"w"}]}}` + "\n\n",
			`data: {"jsonrpc":"2.0","id":7,"method":"sampling/createMessage","params":{"tools":[{"name":"w"}]}}` + "\n\n"},
		{"notifications and keepalives around",
			": ping\n\n:\n\nretry: 1000\n\nid: p\ndata:\n\nevent: message\ndata: " + progress + "\n\ndata: " + fltToolsMsg("7") + "\n\n: bye\n\n",
			": ping\n\n:\n\nretry: 1000\n\nid: p\ndata:\n\nevent: message\ndata: " + progress + "\n\ndata: " + fltToolsMsgFiltered("7") + "\n\n: bye\n\n"},
		{"batch",
			"data: [" + fltToolsMsg("7") + "," + progress + "," + fltToolsMsg("9") + "]\n\n",
			"data: [" + fltToolsMsgFiltered("7") + "," + progress + "," + fltToolsMsg("9") + "]\n\n"},
		{"other event types with non-JSON data",
			"event: endpoint\ndata: /messages?s=1\n\n",
			"event: endpoint\ndata: /messages?s=1\n\n"},
		{"byte order mark",
			"\xEF\xBB\xBFdata: " + fltToolsMsg("7") + "\n\n",
			"\xEF\xBB\xBFdata: " + fltToolsMsgFiltered("7") + "\n\n"},
		{"trailing partial event, not matching",
			"data: " + progress + "\n\nevent: message\ndata: {\"jsonrpc\":",
			"data: " + progress + "\n\nevent: message\ndata: {\"jsonrpc\":"},
		{"trailing event without its blank line, matching",
			"data: " + fltToolsMsg("7") + "\n",
			"data: " + fltToolsMsgFiltered("7") + "\n"},
		{"trailing line without its end, matching",
			"id: x\ndata: " + fltToolsMsg("7"),
			"id: x\ndata: " + fltToolsMsgFiltered("7")},
		{"trailing comment", "data: 1\n\n: x", "data: 1\n\n: x"},
		{"empty", "", ""},
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, chunks := range [][]int{nil, fltOnes(len(c.in)), fltRandomChunks(r, len(c.in)), fltRandomChunks(r, len(c.in))} {
				got, err := fltRunSSE(c.in, chunks, fltOnlyRead)
				if err != nil {
					t.Fatalf("chunks %v: %v", chunks, err)
				}
				if got != c.want {
					t.Fatalf("chunks %v:\ngot  %q\nwant %q", chunks, got, c.want)
				}
			}
			// Everything visible: byte for byte the same.
			if got, err := fltRunSSE(c.in, fltOnes(len(c.in)), fltShowAll); err != nil || got != c.in {
				t.Errorf("fltShowAll: %q, %v", got, err)
			}
		})
	}
}

func TestFilterSSERefuses(t *testing.T) {
	for _, in := range []string{
		"data: not json\n\n",
		"event: message\ndata: {\"id\":7\n\n",
		"data: " + `{"id":7,"result":{"tools":[]},"result":{"tools":[{"name":"w"}]}}` + "\n\n",
		"data: " + `{"id":7,"result":{"tools":{}}}` + "\n\n",
	} {
		for _, chunks := range [][]int{nil, fltOnes(len(in))} {
			got, err := fltRunSSE(": before\n\ndata: 1\n\n"+in+"data: 2\n\n", chunks, fltOnlyRead)
			if !errors.Is(err, ErrBadResponse) {
				t.Errorf("%q: err %v", in, err)
			}
			if got != ": before\n\ndata: 1\n\n" {
				t.Errorf("%q: wrote %q", in, got)
			}
		}
	}
}

// TestFilterSSEStreams checks that events pass as soon as they are complete, that flushes
// pass, and that only a partial line or an incomplete event is held.
func TestFilterSSEStreams(t *testing.T) {
	var rec fltRecorder
	f := NewResponseFilter(&rec, " Text/Event-Stream ;", fltWatched, fltOnlyRead, nil) // a malformed type still streams
	step := func(in, want string) {
		t.Helper()
		if _, err := f.Write([]byte(in)); err != nil {
			t.Fatal(err)
		}
		f.Flush()
		if rec.String() != want {
			t.Fatalf("after %q: wrote %q, want %q", in, rec.String(), want)
		}
	}
	prog := `{"jsonrpc":"2.0","method":"notifications/progress","params":{}}`
	step(": keep", "")
	step("alive\n", ": keepalive\n")
	step("\n", ": keepalive\n\n")
	step("event: message\ndata: "+prog, ": keepalive\n\n")
	step("\n", ": keepalive\n\n")
	step("\n", ": keepalive\n\nevent: message\ndata: "+prog+"\n\n")
	before := rec.String()
	step("data: "+fltToolsMsg("7")+"\n", before)
	step("\r", before+"data: "+fltToolsMsgFiltered("7")+"\n\r")
	step("\n", before+"data: "+fltToolsMsgFiltered("7")+"\n\r\n")
	if rec.flushes != 9 {
		t.Errorf("%d flushes passed, want 9", rec.flushes)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("x")); err == nil {
		t.Error("Write after Close succeeded")
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestFilterSSELimit(t *testing.T) {
	var rec fltRecorder
	f := NewResponseFilter(&rec, "text/event-stream", fltWatched, fltOnlyRead, nil)
	f.SetLimit(100)
	if _, err := f.Write([]byte("data: 1\n\n: " + strings.Repeat("x", 80) + "\n\n")); err != nil {
		t.Fatal(err)
	}
	_, err := f.Write([]byte("data: " + strings.Repeat("x", 60) + "\ndata: " + strings.Repeat("x", 60) + "\n"))
	if !errors.Is(err, ErrResponseTooLarge) {
		t.Fatalf("err %v", err)
	}
	if _, err := f.Write([]byte("\n")); !errors.Is(err, ErrResponseTooLarge) {
		t.Errorf("not sticky: %v", err)
	}
	if err := f.Close(); !errors.Is(err, ErrResponseTooLarge) {
		t.Errorf("Close: %v", err)
	}
	// A long partial line counts too.
	f = NewResponseFilter(&rec, "text/event-stream", fltWatched, fltOnlyRead, nil)
	f.SetLimit(100)
	for i := 0; ; i++ {
		if _, err := f.Write([]byte("xxxxxxxxxx")); err != nil {
			if !errors.Is(err, ErrResponseTooLarge) || i != 10 {
				t.Errorf("after %d writes: %v", i, err)
			}
			break
		}
	}
}

func TestFilterJSONBody(t *testing.T) {
	ts := NewTools()
	learn := func(r json.RawMessage, firstPage bool) error { return ts.Learn(r, firstPage) }
	for _, ct := range []string{"application/json", "application/json; charset=utf-8", ""} {
		var rec fltRecorder
		f := NewResponseFilter(&rec, ct, fltWatched, fltOnlyRead, learn)
		in := []byte(fltListResponse)
		for len(in) > 0 {
			n := min(len(in), 13)
			if _, err := f.Write(in[:n]); err != nil {
				t.Fatal(err)
			}
			f.Flush()
			in = in[n:]
		}
		if rec.Len() != 0 || rec.flushes != 0 {
			t.Fatalf("%q: wrote %q and flushed %d times before Close", ct, rec.String(), rec.flushes)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		got := rec.String()
		if strings.Contains(got, `"put"`) || strings.Contains(got, `"rm"`) || !strings.Contains(got, `"get"`) || !strings.Contains(got, `"both"`) {
			t.Errorf("%q: not filtered: %s", ct, got)
		}
		clsWant(t, ts, "put", Write, true)
	}

	// Ids: a batch has only its fltWatched elements filtered; an unwatched single response
	// passes.
	batch := `[` + fltToolsMsg("7") + `,` + fltToolsMsg("8") + `,` + fltToolsMsg(`"s-1"`) + `]`
	var rec fltRecorder
	f := NewResponseFilter(&rec, "application/json", fltWatched, fltOnlyRead, nil)
	f.Write([]byte(batch)) //nolint:errcheck
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if want := `[` + fltToolsMsgFiltered("7") + `,` + fltToolsMsg("8") + `,` + fltToolsMsgFiltered(`"s-1"`) + `]`; rec.String() != want {
		t.Errorf("batch:\ngot  %s\nwant %s", rec.String(), want)
	}
	rec.Reset()
	f = NewResponseFilter(&rec, "application/json", fltWatched, fltOnlyRead, nil)
	f.Write([]byte(fltToolsMsg("70"))) //nolint:errcheck
	if err := f.Close(); err != nil || rec.String() != fltToolsMsg("70") {
		t.Errorf("unwatched: %s, %v", rec.String(), err)
	}

	// Empty bodies pass; broken ones and big ones fail, writing nothing.
	rec.Reset()
	f = NewResponseFilter(&rec, "application/json", fltWatched, fltOnlyRead, nil)
	if err := f.Close(); err != nil || rec.Len() != 0 {
		t.Errorf("empty: %v", err)
	}
	for _, body := range []string{`{"id":7,"result":`, `{"id":7,"result":{"tools":[]},"result":{}}`, `text`} {
		f = NewResponseFilter(&rec, "application/json", fltWatched, fltOnlyRead, nil)
		f.Write([]byte(body)) //nolint:errcheck
		if err := f.Close(); !errors.Is(err, ErrBadResponse) || rec.Len() != 0 {
			t.Errorf("%s: %v, wrote %q", body, err, rec.String())
		}
	}
	f = NewResponseFilter(&rec, "application/json", fltWatched, fltOnlyRead, nil)
	f.SetLimit(10)
	f.Write([]byte("[1,2,3,")) //nolint:errcheck
	if _, err := f.Write([]byte("4,5]")); !errors.Is(err, ErrResponseTooLarge) {
		t.Errorf("over the limit: %v", err)
	}
	if err := f.Close(); !errors.Is(err, ErrResponseTooLarge) || rec.Len() != 0 {
		t.Errorf("Close over the limit: %v", err)
	}

	// Learn errors are kept, not fatal.
	rec.Reset()
	f = NewResponseFilter(&rec, "application/json", fltWatched, fltOnlyRead, func(json.RawMessage, bool) error { return errors.New("boom") })
	f.Write([]byte(fltToolsMsg("7"))) //nolint:errcheck
	if err := f.Close(); err != nil || rec.String() != fltToolsMsgFiltered("7") || !errors.Is(f.LearnErr(), ErrLearn) {
		t.Errorf("learn error: %v, %q, %v", err, rec.String(), f.LearnErr())
	}
}

func TestFilterWriteError(t *testing.T) {
	rec := fltRecorder{fail: true}
	f := NewResponseFilter(&rec, "text/event-stream", fltWatched, fltOnlyRead, nil)
	if _, err := f.Write([]byte("data: 1\n\n")); err == nil {
		t.Error("write error lost")
	}
	if _, err := f.Write([]byte("data: 1\n\n")); err == nil {
		t.Error("write error not sticky")
	}
}

// fltBigListing is a tools/list response with n tools, each with a schema and a description.
func fltBigListing(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"jsonrpc":"2.0","id":7,"result":{"tools":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		ann := `{"readOnlyHint":true,"title":"Tool"}`
		if i%2 == 1 {
			ann = `{"destructiveHint":false,"idempotentHint":true}`
		}
		fmt.Fprintf(&b, `{"name":"tool_%03d","title":"Tool %d","description":"Does thing number %d to the repository, carefully.",`+
			`"inputSchema":{"type":"object","properties":{"path":{"type":"string","description":"Where."},"limit":{"type":"integer"}},"required":["path"]},`+
			`"annotations":%s}`, i, i, i, ann)
	}
	b.WriteString(`]}}`)
	return []byte(b.String())
}

func BenchmarkFilterResponse100(b *testing.B) {
	msg := fltBigListing(100)
	b.Run("filter", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(msg)))
		for b.Loop() {
			if _, err := FilterResponse(msg, fltOnlyRead, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("filter+learn", func(b *testing.B) {
		ts := NewTools()
		learn := func(r json.RawMessage) error { return ts.Learn(r, true) }
		b.ReportAllocs()
		b.SetBytes(int64(len(msg)))
		for b.Loop() {
			if _, err := FilterResponse(msg, fltOnlyRead, learn); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sse", func(b *testing.B) {
		stream := append(append([]byte("event: message\ndata: "), msg...), "\n\n"...)
		var rec fltRecorder
		b.ReportAllocs()
		b.SetBytes(int64(len(stream)))
		for b.Loop() {
			rec.Reset()
			f := NewResponseFilter(&rec, "text/event-stream", fltWatched, fltOnlyRead, nil)
			f.Write(stream) //nolint:errcheck
			if err := f.Close(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestResponseFilterFirstPages: learn is told, per answer, whether its request asked for a
// first page; answers to ids nobody watched are not learned from. An id used by both a first
// page and a later page counts as a first page.
func TestResponseFilterFirstPages(t *testing.T) {
	lists := []ListRequest{
		{ID: json.RawMessage(`1`), FirstPage: true},
		{ID: json.RawMessage(`"next"`), FirstPage: false},
		{ID: json.RawMessage(`3`), FirstPage: false}, {ID: json.RawMessage(`3.0`), FirstPage: true},
	}
	// Each answer lists one tool, named after its id, to tell the learn calls apart.
	msg := func(id, tool string) string {
		return `{"jsonrpc":"2.0","id":` + id + `,"result":{"tools":[` + clsTool(tool, ``) + `]}}`
	}
	for _, tc := range []struct {
		name, ct, body string
		want           []string // "tool:firstPage" per learn call, in order
	}{
		{"JSON batch", "application/json",
			`[` + msg(`"next"`, "next") + `,` + msg(`1e0`, "one") + `,` + msg(`3`, "three") + `,` + msg(`99`, "unwatched") + `]`,
			[]string{"next:false", "one:true", "three:true"}},
		{"JSON single later page", "application/json", msg(`"next"`, "next"), []string{"next:false"}},
		{"event stream", "text/event-stream",
			"event: message\ndata: " + msg(`1`, "one") + "\n\nevent: message\ndata: " + msg(`"next"`, "next") + "\n\n",
			[]string{"one:true", "next:false"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			learn := func(result json.RawMessage, firstPage bool) error {
				var r struct{ Tools []struct{ Name string } }
				if err := json.Unmarshal(result, &r); err != nil || len(r.Tools) != 1 {
					t.Fatalf("learn got %s", result)
				}
				got = append(got, fmt.Sprintf("%s:%v", r.Tools[0].Name, firstPage))
				return nil
			}
			var rec fltRecorder
			f := NewResponseFilter(&rec, tc.ct, lists, fltShowAll, learn)
			if _, err := f.Write([]byte(tc.body)); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("learn calls %v, want %v", got, tc.want)
			}
		})
	}
}
