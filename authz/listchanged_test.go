package authz

import (
	"strings"
	"testing"
)

const lcNote = `{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}`

func TestIsToolsListChanged(t *testing.T) {
	for _, tc := range []struct {
		msg  string
		want bool
	}{
		{lcNote, true},
		{`{"method":"notifications/tools/list_changed","params":{"_meta":{"k":"v"}},"jsonrpc":"2.0"}`, true},
		{` {"jsonrpc":"2.0","method":"notifications\/tools\/list_changed"} `, true}, // '/' escaped, as PHP does
		{`{"jsonrpc":"2.0","method":"notifications/tools/list\u005fchanged"}`, true},
		{`[{"jsonrpc":"2.0","id":1,"result":{}},` + lcNote + `]`, true},
		{`{"jsonrpc":"2.0","Method":"notifications/tools/list_changed"}`, true}, // errs towards forgetting
		{`{"jsonrpc":"2.0","id":9,"method":"notifications/tools/list_changed"}`, true},

		{`{"jsonrpc":"2.0","method":"notifications/prompts/list_changed"}`, false},
		{`{"jsonrpc":"2.0","method":"notifications/tools/list_changed "}`, false},
		{`{"jsonrpc":"2.0","method":"Notifications/Tools/List_Changed"}`, false},
		{`{"jsonrpc":"2.0","method":["notifications/tools/list_changed"]}`, false},
		// The words as content, not as the message's method.
		{`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"notifications/tools/list_changed"}]}}`, false},
		{`{"jsonrpc":"2.0","id":1,"result":{"method":"notifications/tools/list_changed"}}`, false},
		{`{"jsonrpc":"2.0","method":"notifications/message","params":{"data":{"method":"notifications/tools/list_changed"}}}`, false},
		{`"notifications/tools/list_changed"`, false},
		{`[[` + lcNote + `]]`, false},
		{`{"jsonrpc":"2.0","method":"notifications/tools/list_changed"`, false}, // not JSON
		{``, false},
	} {
		if got := IsToolsListChanged([]byte(tc.msg)); got != tc.want {
			t.Errorf("IsToolsListChanged(%s) = %v, want %v", tc.msg, got, tc.want)
		}
	}
}

// TestListChangedScanner: the number of notifications noticed in a stream, whichever way the
// stream is cut into writes (every cut in two, and byte by byte).
func TestListChangedScanner(t *testing.T) {
	big := strings.Repeat("x", MaxNotificationEvent)
	for _, tc := range []struct {
		name, stream string
		want         int
	}{
		{"one event", "data: " + lcNote + "\n\n", 1},
		{"no space after the colon", "data:" + lcNote + "\n\n", 1},
		{"CRLF lines", "event: message\r\ndata: " + lcNote + "\r\n\r\n", 1},
		{"CR lines", "data: " + lcNote + "\r\r", 1},
		{"byte order mark first", "\xEF\xBB\xBFdata: " + lcNote + "\n\n", 1},
		{"data over several lines", "data: {\"jsonrpc\":\"2.0\",\ndata: \"method\":\"notifications/tools/list_changed\"}\n\n", 1},
		{"among other events", ": keep-alive\n\nid: 1\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n" +
			"id: 2\ndata: " + lcNote + "\nretry: 10\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n", 1},
		{"twice", "data: " + lcNote + "\n\ndata: " + lcNote + "\n\n", 2},
		{"after a big event", "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"x\":\"" + big + big + "\"}}\n\ndata: " + lcNote + "\n\n", 1},
		{"in a batch", "data: [" + lcNote + "]\n\n", 1},

		{"unfinished at the end", "data: " + lcNote + "\n", 0},
		{"no data", "event: message\n\n", 0},
		{"a comment", ": " + lcNote + "\n\n", 0},
		{"another field", "id: " + lcNote + "\n\n", 0},
		{"data lines joined with a newline are not one string", "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/\ndata: list_changed\"}\n\n", 0},
		{"the words in a result", "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"text\":\"notifications/tools/list_changed\"}}\n\n", 0},
		{"a padded notification is not read", "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\",\"params\":{\"_meta\":{\"p\":\"" + big + "\"}}}\n\n", 0},
		{"a byte order mark later is not skipped", "\n\xEF\xBB\xBFdata: " + lcNote + "\n\n", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cuts := [][]int{nil}
			for i := 1; i < len(tc.stream); i++ {
				if len(tc.stream) < 2000 || i%97 == 0 {
					cuts = append(cuts, []int{i})
				}
			}
			if len(tc.stream) < 2000 {
				var every []int
				for i := 1; i < len(tc.stream); i++ {
					every = append(every, i)
				}
				cuts = append(cuts, every)
			}
			for _, cut := range cuts {
				got := 0
				s := NewListChangedScanner(func() { got++ })
				prev := 0
				for _, c := range append(cut, len(tc.stream)) {
					if n, err := s.Write([]byte(tc.stream[prev:c])); n != c-prev || err != nil {
						t.Fatalf("Write = %d, %v", n, err)
					}
					prev = c
				}
				if got != tc.want {
					t.Fatalf("cut at %v: noticed %d, want %d", cut, got, tc.want)
				}
			}
		})
	}
}

// TestListChangedScannerNoticesOnTheCompletingWrite: a notification split across two writes
// is noticed during the write that ends its event, not before.
func TestListChangedScannerNoticesOnTheCompletingWrite(t *testing.T) {
	got := 0
	s := NewListChangedScanner(func() { got++ })
	s.Write([]byte("data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/li")) //nolint:errcheck
	if got != 0 {
		t.Fatal("noticed before the event was complete")
	}
	s.Write([]byte("st_changed\"}\n")) //nolint:errcheck
	if got != 0 {
		t.Fatal("noticed before the blank line ending the event")
	}
	s.Write([]byte("\n")) //nolint:errcheck
	if got != 1 {
		t.Fatalf("noticed %d times, want 1", got)
	}
}

func BenchmarkListChangedScanner(b *testing.B) {
	result := "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"" + strings.Repeat("lorem ipsum ", 5000) + "\"}]}}\n\n"
	small := "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":1,\"progress\":1}}\n\n"
	for _, bc := range []struct{ name, stream string }{{"60kB result", result}, {"progress", small}} {
		b.Run(bc.name, func(b *testing.B) {
			s := NewListChangedScanner(func() {})
			p := []byte(bc.stream)
			b.SetBytes(int64(len(p)))
			b.ReportAllocs()
			for b.Loop() {
				s.Write(p) //nolint:errcheck
			}
		})
	}
}

// FuzzListChangedScanner: never panics, and what it notices does not depend on how the stream
// is cut into writes.
func FuzzListChangedScanner(f *testing.F) {
	f.Add([]byte("data: "+lcNote+"\n\n"), uint8(7))
	f.Add([]byte("\xEF\xBB\xBFdata:"+lcNote+"\r\r: c\r\ndata: [1,"+lcNote+"]\r\n\r\n"), uint8(1))
	f.Fuzz(func(t *testing.T, stream []byte, step uint8) {
		whole := 0
		NewListChangedScanner(func() { whole++ }).Write(stream) //nolint:errcheck
		cut := 0
		s := NewListChangedScanner(func() { cut++ })
		n := int(step%16) + 1
		for p := stream; len(p) > 0; {
			k := min(n, len(p))
			s.Write(p[:k]) //nolint:errcheck
			p = p[k:]
		}
		if whole != cut {
			t.Fatalf("noticed %d times whole, %d times in chunks of %d", whole, cut, n)
		}
	})
}
