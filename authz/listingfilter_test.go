package authz

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

// lstRun feeds stream to a listing filter in the given chunk sizes (the rest in one piece)
// with the given limit (0: the default), closes it, and returns what it wrote, how many
// events it dropped and the first error.
func lstRun(stream string, chunks []int, visible Visibility, limit int) (string, int, error) {
	var rec fltRecorder
	drops := 0
	f := NewListingFilter(&rec, visible, func(err error) {
		if !errors.Is(err, ErrBadResponse) {
			panic("dropped for " + err.Error())
		}
		drops++
	})
	if limit > 0 {
		f.SetLimit(limit)
	}
	p := []byte(stream)
	for _, n := range chunks {
		n = min(n, len(p))
		if _, err := f.Write(p[:n]); err != nil {
			return rec.String(), drops, err
		}
		p = p[n:]
	}
	if len(p) > 0 {
		if _, err := f.Write(p); err != nil {
			return rec.String(), drops, err
		}
	}
	err := f.Close()
	return rec.String(), drops, err
}

// lstChunkings are the ways a test feeds a stream: whole, byte by byte, and in random pieces.
func lstChunkings(r *rand.Rand, n int) [][]int {
	return [][]int{nil, fltOnes(n), fltRandomChunks(r, n), fltRandomChunks(r, n)}
}

// TestListingFilter: on a stream that answers no one request, every response shaped like a
// tools/list answer is filtered, whatever its id; everything else passes byte for byte, and
// what cannot be read is dropped, alone, with the stream going on.
func TestListingFilter(t *testing.T) {
	progress := `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}`
	callResult := `{"jsonrpc":"2.0","id":4,"result":{"content":[{"type":"text","text":"{\"tools\":[{\"name\":\"w\"}]}"}]}}`
	after := "data: " + progress + "\n\n"
	cases := []struct {
		name, in, want string
		drops          int
	}{
		// The legacy transport's stream: the endpoint, then every response.
		{"legacy session",
			"event: endpoint\ndata: /message?sessionId=abc\n\n" +
				"event: message\ndata: " + fltToolsMsg("1") + "\n\n" +
				"event: message\ndata: " + callResult + "\n\n",
			"event: endpoint\ndata: /message?sessionId=abc\n\n" +
				"event: message\ndata: " + fltToolsMsgFiltered("1") + "\n\n" +
				"event: message\ndata: " + callResult + "\n\n", 0},
		{"any id", "data: " + fltToolsMsg(`"x-9"`) + "\n\ndata: " + fltToolsMsg("1e3") + "\n\n",
			"data: " + fltToolsMsgFiltered(`"x-9"`) + "\n\ndata: " + fltToolsMsgFiltered("1e3") + "\n\n", 0},
		{"no id", `data: {"jsonrpc":"2.0","result":{"tools":[` + clsTool("w", "") + `]}}` + "\n\n",
			`data: {"jsonrpc":"2.0","result":{"tools":[]}}` + "\n\n", 0},
		{"replayed with ids",
			"id: 1_0\nevent: message\ndata: " + fltToolsMsg("7") + "\n\nid: 1_1\ndata: " + progress + "\n\n",
			"id: 1_0\nevent: message\ndata: " + fltToolsMsgFiltered("7") + "\n\nid: 1_1\ndata: " + progress + "\n\n", 0},
		{"crlf", ": open\r\n\r\nevent: message\r\ndata: " + fltToolsMsg("7") + "\r\nid: e1\r\n\r\n" + after,
			": open\r\n\r\nevent: message\r\ndata: " + fltToolsMsgFiltered("7") + "\r\nid: e1\r\n\r\n" + after, 0},
		{"cr", "data:" + fltToolsMsg("7") + "\r\r", "data: " + fltToolsMsgFiltered("7") + "\r\r", 0},
		{"multi-line data",
			"data: {\"jsonrpc\":\"2.0\",\n: inside\ndata: \"id\":7,\"result\":{\"tools\":[\ndata: " +
				clsTool("w", `{"destructiveHint":false}`) + ",\ndata:" + clsTool("r", `{"readOnlyHint":true}`) + "\ndata: ]}}\n\n",
			"data: {\"jsonrpc\":\"2.0\",\ndata: \"id\":7,\"result\":{\"tools\":[" +
				clsTool("r", `{"readOnlyHint":true}`) + "]}}\n: inside\n\n", 0},
		{"batch", "data: [" + fltToolsMsg("7") + "," + progress + "," + fltToolsMsg("9") + "]\n\n",
			"data: [" + fltToolsMsgFiltered("7") + "," + progress + "," + fltToolsMsgFiltered("9") + "]\n\n", 0},
		{"byte order mark", "\xEF\xBB\xBFdata: " + fltToolsMsg("7") + "\n\n", "\xEF\xBB\xBFdata: " + fltToolsMsgFiltered("7") + "\n\n", 0},
		{"a listing in an event of another type", "event: other\ndata: " + fltToolsMsg("7") + "\n\n",
			"event: other\ndata: " + fltToolsMsgFiltered("7") + "\n\n", 0},
		{"trailing listing without its blank line", "data: " + fltToolsMsg("7"), "data: " + fltToolsMsgFiltered("7"), 0},

		// Not listings: byte for byte.
		{"other answers, requests, notifications, comments",
			": ping\n\n:\n\nretry: 1000\n\nid: p\ndata:\n\ndata: " + progress + "\n\ndata: " + callResult + "\n\n" +
				`data: {"jsonrpc":"2.0","id":7,"method":"sampling/createMessage","params":{"tools":[{"name":"w"}]}}` + "\n\n" +
				`data: {"jsonrpc":"2.0","method":"notifications/message","params":{"data":{"tools":[{"name":"w"}]}}}` + "\n\n" +
				`data: {"jsonrpc":"2.0","id":5,"result":{"resources":[{"name":"w","uri":"x:w"}]}}` + "\n\n" +
				`data: {"jsonrpc":"2.0","id":6,"result":[{"tools":[{"name":"w"}]}]}` + "\n\n" +
				"data: 12\n\n: bye\n\n",
			"", 0},
		{"error answers", `data: {"jsonrpc":"2.0","id":7,"error":{"code":-32601,"message":"no","data":{"tools":[{"name":"w"}]}}}` + "\n\n",
			"", 0},
		{"a trailing partial event that is not a listing", after + "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[]}}", "", 0},

		// Unreadable: the event is dropped, its blank line (and the stream) goes on.
		{"tools not an array", "id: 3\ndata: " + `{"jsonrpc":"2.0","id":7,"result":{"tools":{"w":` + clsTool("w", "") + `}}}` + "\n\n" + after,
			"\n" + after, 1},
		{"tools null", "data: " + `{"jsonrpc":"2.0","id":7,"result":{"tools":null}}` + "\r\n\r\n" + after, "\r\n" + after, 1},
		{"tools twice", "data: " + `{"id":7,"result":{"tools":[],"Tools":[` + clsTool("w", "") + `]}}` + "\n\n" + after, "\n" + after, 1},
		{"result twice", "data: " + `{"id":7,"result":{"tools":[]},"result":{"tools":[` + clsTool("w", "") + `]}}` + "\n\n" + after, "\n" + after, 1},
		{"a batch with a bad element", "data: [" + fltToolsMsg("7") + `,{"id":8,"result":{"tools":1}}]` + "\n\n" + after, "\n" + after, 1},
		{"a message whose data is not JSON",
			"event: message\ndata: {\"id\":7,\"result\":{\"tools\":[" + clsTool("w", "") + "]}} oops\n\n" + after, "\n" + after, 1},
		{"data that is not JSON, untyped", "data: " + fltToolsMsg("7")[:40] + "\n\n" + after, "\n" + after, 1},
		{"data that is not JSON at the end", after + "data: {\"id\":7,", after, 1},
		{"not JSON in an event of another type passes", "event: endpoint\ndata: /sse?tools=1\n\n" + after, "", 0},
	}
	r := rand.New(rand.NewPCG(3, 4))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := c.want
			if want == "" {
				want = c.in
			}
			for _, chunks := range lstChunkings(r, len(c.in)) {
				got, drops, err := lstRun(c.in, chunks, fltOnlyRead, 0)
				if err != nil || got != want || drops != c.drops {
					t.Fatalf("chunks %v:\ngot  %q (%v, %d dropped)\nwant %q (%d dropped)", chunks, got, err, drops, want, c.drops)
				}
			}
			// Everything visible: what is not dropped passes byte for byte.
			if c.drops == 0 {
				if got, _, err := lstRun(c.in, fltOnes(len(c.in)), fltShowAll, 0); err != nil || got != c.in {
					t.Errorf("fltShowAll: %q, %v", got, err)
				}
			}
		})
	}
}

// TestListingFilterStreams: each event goes as soon as its blank line arrives, flushes pass,
// and nothing else is held.
func TestListingFilterStreams(t *testing.T) {
	var rec fltRecorder
	f := NewListingFilter(&rec, fltOnlyRead, nil)
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
	step("event: endpoint\ndata: /message?sessionId=1\n", "")
	step("\n", "event: endpoint\ndata: /message?sessionId=1\n\n")
	before := rec.String()
	step(": keepalive\n", before+": keepalive\n")
	before = rec.String()
	step("event: message\ndata: "+fltToolsMsg("1")+"\n", before)
	step("\n", before+"event: message\ndata: "+fltToolsMsgFiltered("1")+"\n\n")
	if rec.flushes != 5 {
		t.Errorf("%d flushes passed, want 5", rec.flushes)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestListingFilterOverLimit: an event over the limit (a big tool result, on the legacy
// transport's stream) passes unheld when what was held of it has no tools key; is dropped when
// it has; and ends the stream when such a key comes after the held part went, before any
// tool of it does.
func TestListingFilterOverLimit(t *testing.T) {
	const limit = 400
	big := strings.Repeat("x", 3*limit)
	text := `{"jsonrpc":"2.0","id":4,"result":{"content":[{"type":"text","text":"` + big + `"}]}}`
	after := "data: " + fltToolsMsg("8") + "\n\n"
	afterFiltered := "data: " + fltToolsMsgFiltered("8") + "\n\n"
	cases := []struct {
		name, in, want string
		drops          int
		fails          bool
	}{
		{"a big result passes", "event: message\ndata: " + text + "\n\n" + after,
			"event: message\ndata: " + text + "\n\n" + afterFiltered, 0, false},
		{"a big result over several lines and a comment",
			"id: 9\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":4,\r\n: a \"comment\r\ndata: \"result\":{\"content\":[{\"type\":\"text\",\"text\":\"" + big + "\"}]}}\r\n\r\n" + after,
			"id: 9\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":4,\r\n: a \"comment\r\ndata: \"result\":{\"content\":[{\"type\":\"text\",\"text\":\"" + big + "\"}]}}\r\n\r\n" + afterFiltered, 0, false},
		{"quoted words in a big text are not keys",
			"data: " + `{"id":4,"result":{"content":[{"type":"text","text":"say \"tools\" ` + big + `"}]}}` + "\n\n" + after,
			"data: " + `{"id":4,"result":{"content":[{"type":"text","text":"say \"tools\" ` + big + `"}]}}` + "\n\n" + afterFiltered, 0, false},
		{"a big first line after a byte order mark", "\xEF\xBB\xBFdata: " + text + "\n\n" + after,
			"\xEF\xBB\xBFdata: " + text + "\n\n" + afterFiltered, 0, false},
		{"a big comment", ": " + big + "\n\n" + after, ": " + big + "\n\n" + afterFiltered, 0, false},
		{"a big comment right before an event", ": " + big + "\r\n" + after, ": " + big + "\r\n" + afterFiltered, 0, false},
		{"a big comment inside an event", "id: 1\n: " + big + "\n" + after, "id: 1\n: " + big + "\ndata: " + `{"jsonrpc":"2.0","id":8,"result":{"tools`, 0, true},

		{"a big listing is dropped", "data: " + `{"jsonrpc":"2.0","id":1,"result":{"tools":[` + clsTool("w", `{"description":"`+big+`"}`) + `]}}` + "\r\n\r\n" + after,
			"\r\n" + afterFiltered, 1, false},
		{"an escaped key counts", "data: " + `{"id":1,"result":{"TOO\u004cs":[` + clsTool("w", `{"description":"`+big+`"}`) + `]}}` + "\n\n" + after,
			"\n" + afterFiltered, 1, false},
		{"a big listing over several lines", "id: 1\ndata: {\"id\":1,\"result\":{\"tools\":[\ndata: " + clsTool("w", `{"description":"`+big+`"}`) + "\ndata: ]}}\n\n" + after,
			"\n" + afterFiltered, 1, false},

		// The key after the limit: the stream ends before it.
		{"a key after the held part",
			"data: " + `{"id":4,"result":{"content":[{"type":"text","text":"` + big + `"}],"tools":[` + clsTool("w", "") + `]}}` + "\n\n" + after,
			"data: " + `{"id":4,"result":{"content":[{"type":"text","text":"` + big + `"}],"tools`, 0, true},
	}
	r := rand.New(rand.NewPCG(5, 6))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, chunks := range lstChunkings(r, len(c.in)) {
				got, drops, err := lstRun(c.in, chunks, fltOnlyRead, limit)
				if c.fails {
					if !errors.Is(err, ErrBadResponse) || got != c.want {
						t.Fatalf("chunks %v: %v, wrote %q", chunks, err, got)
					}
					continue
				}
				if err != nil || got != c.want || drops != c.drops {
					t.Fatalf("chunks %v:\ngot  %q (%v, %d dropped)\nwant %q (%d dropped)", chunks, got, err, drops, c.want, c.drops)
				}
			}
		})
	}

	// A big event streams: what was held goes when the limit is passed, the rest as it comes.
	var rec fltRecorder
	f := NewListingFilter(&rec, fltOnlyRead, nil)
	f.SetLimit(limit)
	head := ("data: " + text)[:limit]
	if _, err := f.Write([]byte(head)); err != nil || rec.Len() != 0 {
		t.Fatalf("up to the limit: wrote %q, %v", rec.String(), err)
	}
	next := ("data: " + text)[limit : limit+10]
	if _, err := f.Write([]byte(next)); err != nil || rec.String() != head+next {
		t.Fatalf("past the limit: wrote %q, %v", rec.String(), err)
	}
}

// TestToolsKeyWatch: strings that decode to "tools" in any letter case are found, however the
// text is split; words inside other strings are not.
func TestToolsKeyWatch(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{`{"tools":[]}`, true},
		{`{"TOOLS":1}`, true},
		{`{"\u0074ools":1}`, true},
		{`{"tool\u0073":1}`, true},
		{`{"\u0054\u004f\u004f\u004c\u0053":1}`, true},
		{`{"tooſ":1}`, false}, // four letters
		{`{"toolſ":1}`, true}, // U+017F folds to s
		{`["a","tools"]`, true},
		{`{"tool":1,"s":2}`, false},
		{`{"xtools":1}`, false},
		{`{"tools ":1}`, false},
		{`{"text":"the \"tools\" key"}`, false},
		{`{"text":"\\"}` + `,"tools":1`, true},
		{`{"t":"` + strings.Repeat("a", 100) + `\"tools\""}`, false},
		{`{"t":"` + strings.Repeat("\\\\", 40) + `","tools":1}`, true},
		{`tools`, false},
	} {
		for _, chunks := range [][]int{{len(tc.in)}, fltOnes(len(tc.in))} {
			var k toolsKeyWatch
			p := tc.in
			for _, n := range chunks {
				k.write([]byte(p[:n]))
				p = p[n:]
			}
			if k.found != tc.want {
				t.Errorf("%s (chunks of %d): found %v, want %v", tc.in, chunks[0], k.found, tc.want)
			}
		}
	}
}
