package authz

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

// fltRefEvent is an event as an SSE client dispatches it.
type fltRefEvent struct{ typ, data, id string }

// fltRefParse is the WHATWG event-stream parsing algorithm, written plainly: what a client sees
// in a stream (an unterminated last line, or an event without its blank line, is never
// dispatched).
func fltRefParse(s string) []fltRefEvent {
	s = strings.TrimPrefix(s, "\xEF\xBB\xBF")
	var (
		evs         []fltRefEvent
		typ, lastID string
		data        strings.Builder
	)
	for {
		i := strings.IndexAny(s, "\r\n")
		if i < 0 {
			return evs
		}
		line := s[:i]
		if s[i] == '\r' && i+1 < len(s) && s[i+1] == '\n' {
			s = s[i+2:]
		} else {
			s = s[i+1:]
		}
		if line == "" {
			if data.Len() > 0 {
				d := strings.TrimSuffix(data.String(), "\n")
				t := typ
				if t == "" {
					t = "message"
				}
				evs = append(evs, fltRefEvent{t, d, lastID})
			}
			data.Reset()
			typ = ""
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value := line, ""
		if c := strings.IndexByte(line, ':'); c >= 0 {
			field, value = line[:c], strings.TrimPrefix(line[c+1:], " ")
		}
		switch field {
		case "event":
			typ = value
		case "data":
			data.WriteString(value)
			data.WriteByte('\n')
		case "id":
			if !strings.Contains(value, "\x00") {
				lastID = value
			}
		}
	}
}

// chunked splits n bytes into chunks chosen by seed.
func fltChunked(seed uint64, n int) []int {
	r := rand.New(rand.NewPCG(seed, seed>>32|1))
	var c []int
	for n > 0 {
		k := 1 + r.IntN(min(n, 1+int(seed%64)))
		c = append(c, k)
		n -= k
	}
	return c
}

// fltErrKind names an error's kind for comparing runs.
func fltErrKind(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrResponseTooLarge):
		return "too large"
	case errors.Is(err, ErrBadResponse):
		return "bad"
	}
	return err.Error()
}

func FuzzResponseFilterSSE(f *testing.F) {
	prog := `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}`
	for _, s := range []string{
		"event: message\nid: e1\ndata: " + fltToolsMsg("7") + "\n\n",
		": hi\r\n\r\nevent: message\r\ndata: " + fltToolsMsg("7") + "\r\nid: e1\r\n\r\n",
		"data:" + fltToolsMsg(`"s-1"`) + "\r\r: x\r",
		"data: {\"jsonrpc\":\"2.0\",\n: c\ndata: \"id\":7,\"result\":{\"tools\":[\ndata: " +
			clsTool("w", `{"destructiveHint":false}`) + ",\ndata:" + `"junk",{"name":1}` + "\ndata: ]}}\n\n",
		": ping\n\n:\n\nretry: 1000\n\nid: p\ndata:\n\nevent: message\ndata: " + prog + "\n\n",
		"data: [" + fltToolsMsg("7") + "," + prog + "," + fltToolsMsg("9") + "]\n\n",
		"event: endpoint\ndata: /messages?s=1\n\n",
		"\xEF\xBB\xBFdata: " + fltToolsMsg("7.0") + "\n\n",
		"id: x\ndata: " + fltToolsMsg("7"),
		"data: not json\n\n",
		`data: {"id":7,"result":{"tools":[{"name":"a","NAME":"b"},{"Name":"c"},null]}}` + "\n\n",
		// For the listing filter (a legacy transport's GET stream): the endpoint, answers to
		// any id, and what it drops.
		"event: endpoint\ndata: /message?sessionId=abc\n\nevent: message\ndata: " + fltToolsMsg("1") +
			"\n\nevent: message\ndata: " + prog + "\n\n",
		"id: 1_0\r\ndata: " + fltToolsMsg(`"x"`) + "\r\n\r\n: ping\r\n\r\n",
		`data: {"jsonrpc":"2.0","id":7,"result":{"tools":{"w":{"name":"w"}}}}` + "\n\ndata: 1\n\n",
		`data: [{"id":1,"result":{"tools":[]}},{"id":2,"result":{"TOOLS":1}}]` + "\r\rdata: 2\r\r",
		`data: {"id":7,"error":{"code":1,"message":"m","data":{"tools":[{"name":"w"}]}}}` + "\n\n",
		"data: {\"id\":7,\"result\":{\"tools\":[" + clsTool("w", "") + "]}} x\n\ndata: 1\n\n",
		// Events over the small limit the fuzz target also runs the listing filter with.
		`data: {"id":4,"result":{"content":[{"type":"text","text":"` + strings.Repeat("x", 80) + `"}]}}` + "\n\n" + "data: " + fltToolsMsg("8") + "\n\n",
		`data: {"id":4,"result":{"content":[{"type":"text","text":"` + strings.Repeat("x", 80) + `"}],"tools":[{"name":"w"}]}}` + "\n\n",
		"data: {\"id\":1,\"result\":{\"\\u0074ools\":[" + clsTool("w", `{"description":"`+strings.Repeat("y", 80)+`"}`) + "]}}\r\n\r\ndata: 1\r\n\r\n",
		"\xEF\xBB\xBF: " + strings.Repeat("\"", 80) + "\n\ndata: " + fltToolsMsg("1") + "\n\n",
	} {
		f.Add([]byte(s), uint64(1))
		f.Add([]byte(s), uint64(0x9e3779b97f4a7c15))
	}
	f.Fuzz(func(t *testing.T, stream []byte, seed uint64) {
		in := string(stream)
		whole, errWhole := fltRunSSE(in, nil, fltOnlyRead)
		bytewise, errBytewise := fltRunSSE(in, fltOnes(len(in)), fltOnlyRead)
		some, errSome := fltRunSSE(in, fltChunked(seed, len(in)), fltOnlyRead)
		if whole != bytewise || whole != some || fltErrKind(errWhole) != fltErrKind(errBytewise) || fltErrKind(errWhole) != fltErrKind(errSome) {
			t.Fatalf("chunking changed the output:\nwhole    %q %v\nbytewise %q %v\nchunked  %q %v",
				whole, errWhole, bytewise, errBytewise, some, errSome)
		}
		if errWhole == nil {
			// Whatever is shown is visible: filtering again changes nothing.
			again, err := fltRunSSE(whole, fltChunked(seed+1, len(whole)), fltOnlyRead)
			if err != nil || again != whole {
				t.Fatalf("filtering again:\nin   %q\nout  %q\nagain %q %v", in, whole, again, err)
			}
		}

		fuzzListingFilter(t, in, seed)

		// With every tool visible, clients see the same events; data changes only by the
		// JSON filter's own rule (entries no client could call are dropped).
		all, err := fltRunSSE(in, fltChunked(seed, len(in)), fltShowAll)
		if err != nil {
			if fltErrKind(err) != fltErrKind(errWhole) {
				t.Fatalf("fltShowAll failed (%v) where fltOnlyRead gave %v", err, errWhole)
			}
			return
		}
		want, got := fltRefParse(in), fltRefParse(all)
		if len(want) != len(got) {
			t.Fatalf("%d events in, %d out:\nin  %q\nout %q", len(want), len(got), in, all)
		}
		for k := range want {
			w, g := want[k], got[k]
			if w.typ != g.typ || w.id != g.id {
				t.Fatalf("event %d: %+v became %+v", k, w, g)
			}
			if w.data == g.data {
				continue
			}
			fl := filterer{ids: map[string]bool{}, checkIDs: true, visible: fltShowAll}
			for _, l := range fltWatched {
				k, _ := rpcIDKey(l.ID)
				fl.ids[k] = l.FirstPage
			}
			ref, changed, err := fl.value([]byte(w.data), false)
			if err != nil || !changed || string(ref) != g.data {
				t.Fatalf("event %d: data %q became %q (filter: %q, %v)", k, w.data, g.data, ref, err)
			}
		}
	})
}

// fuzzListingFilter holds the listing filter (NewListingFilter) to what it promises for any
// stream, at the default limit and a small one: how the stream is split into writes changes
// nothing (output, error, events dropped); what it shows is visible (filtering it again
// changes nothing and drops nothing); and with every tool visible and nothing dropped,
// clients see the same events, whose data changes only by the JSON filter's own rule.
func fuzzListingFilter(t *testing.T, in string, seed uint64) {
	for _, limit := range []int{0, 64} {
		whole, dWhole, errWhole := lstRun(in, nil, fltOnlyRead, limit)
		bytewise, dBytewise, errBytewise := lstRun(in, fltOnes(len(in)), fltOnlyRead, limit)
		some, dSome, errSome := lstRun(in, fltChunked(seed, len(in)), fltOnlyRead, limit)
		if whole != bytewise || whole != some || dWhole != dBytewise || dWhole != dSome ||
			fltErrKind(errWhole) != fltErrKind(errBytewise) || fltErrKind(errWhole) != fltErrKind(errSome) {
			t.Fatalf("listing filter, limit %d: chunking changed the output:\nwhole    %q %v %d\nbytewise %q %v %d\nchunked  %q %v %d",
				limit, whole, errWhole, dWhole, bytewise, errBytewise, dBytewise, some, errSome, dSome)
		}
		if errWhole != nil {
			if !errors.Is(errWhole, ErrBadResponse) || limit == 0 {
				t.Fatalf("listing filter, limit %d: %v", limit, errWhole)
			}
			continue
		}
		if again, drops, err := lstRun(whole, fltChunked(seed+1, len(whole)), fltOnlyRead, limit); err != nil || again != whole || drops != 0 {
			t.Fatalf("listing filter, limit %d, filtering again:\nin    %q\nout   %q\nagain %q %v %d", limit, in, whole, again, err, drops)
		}
		all, drops, err := lstRun(in, fltChunked(seed, len(in)), fltShowAll, limit)
		if err != nil || drops != 0 {
			continue
		}
		want, got := fltRefParse(in), fltRefParse(all)
		if len(want) != len(got) {
			t.Fatalf("listing filter: %d events in, %d out:\nin  %q\nout %q", len(want), len(got), in, all)
		}
		for k := range want {
			w, g := want[k], got[k]
			if w.typ != g.typ || w.id != g.id {
				t.Fatalf("listing filter: event %d: %+v became %+v", k, w, g)
			}
			if w.data == g.data {
				continue
			}
			fl := filterer{visible: fltShowAll}
			ref, changed, err := fl.value([]byte(w.data), false)
			if err != nil || !changed || string(ref) != g.data {
				t.Fatalf("listing filter: event %d: data %q became %q (filter: %q, %v)", k, w.data, g.data, ref, err)
			}
		}
	}
}

// FuzzFilterResponse: never panics; what comes out is JSON, keeps only visible tools, and
// filtering it again changes nothing.
func FuzzFilterResponse(f *testing.F) {
	f.Add([]byte(fltListResponse))
	f.Add([]byte(`[` + fltToolsMsg("7") + `,` + fltToolsMsg(`"x"`) + `]`))
	f.Add([]byte(`{"id":1,"result":{"tools":[{"name":"a","NAME":"b"},{"Name":"c","annotations":{"readOnlyHint":true}},null]}}`))
	f.Fuzz(func(t *testing.T, msg []byte) {
		var learned [][]byte
		out, err := FilterResponse(msg, fltOnlyRead, func(r json.RawMessage) error {
			learned = append(learned, bytes.Clone(r))
			return NewTools().Learn(r, true)
		})
		if err != nil {
			if !errors.Is(err, ErrBadResponse) && !errors.Is(err, ErrLearn) {
				t.Fatalf("unexpected error %v", err)
			}
			if errors.Is(err, ErrBadResponse) {
				return
			}
		}
		if !json.Valid(out) {
			t.Fatalf("output not JSON: %q", out)
		}
		again, err := FilterResponse(out, fltOnlyRead, nil)
		if err != nil && !errors.Is(err, ErrLearn) {
			t.Fatalf("filtering again: %v", err)
		}
		if !bytes.Equal(again, out) {
			t.Fatalf("not idempotent:\n%q\n%q", out, again)
		}
		// Every tool left is shown as read, judged by a plain decoder.
		var v any
		if json.Unmarshal(out, &v) != nil {
			return
		}
		msgs, ok := v.([]any)
		if !ok {
			msgs = []any{v}
		}
		for _, m := range msgs {
			obj, _ := m.(map[string]any)
			res, _ := obj["result"].(map[string]any)
			tools, _ := res["tools"].([]any)
			for _, tl := range tools {
				to, _ := tl.(map[string]any)
				ann, _ := json.Marshal(to["annotations"])
				if _, hasAnn := to["annotations"]; !hasAnn || ClassOf(ann) != Read {
					// A case-variant "Annotations" may be what a plain decoder missed; the
					// filter counted only the exact key, so the tool must then have one.
					t.Fatalf("tool %v kept but not read", to)
				}
			}
		}
	})
}
