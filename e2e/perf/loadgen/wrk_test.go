package main

import "testing"

// A report as wrk 4.1 prints it with --latency, with both kinds of error line.
const wrkReport = `Running 2s test @ https://x.toolgate.localhost:8443/mcp
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.12ms    1.99ms  56.93ms   89.68%
    Req/Sec     7.62k     1.23k    8.62k    96.67%
  Latency Distribution
     50%  812.00us
     75%    4.68ms
     90%    5.71ms
     99%    1.02s
  45600 requests in 3.01s, 8.78MB read
  Socket errors: connect 1, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:  15141.69
Transfer/sec:      2.92MB
`

func TestParseWrk(t *testing.T) {
	w, err := parseWrk(wrkReport)
	if err != nil {
		t.Fatal(err)
	}
	want := wrkResult{rps: 15141.69, p50: 0.812, p99: 1020, requests: 45600, errors: 13}
	if w != want {
		t.Fatalf("parseWrk = %+v, want %+v", w, want)
	}
	if _, err := parseWrk("unable to connect to 127.0.0.1:1 Connection refused\n"); err == nil {
		t.Fatal("a report without figures parsed")
	}
}

func TestParseWrkDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		ms   float64
		fail bool
	}{
		{in: "812.00us", ms: 0.812},
		{in: "3.83ms", ms: 3.83},
		{in: "1.02s", ms: 1020},
		{in: "1.50m", ms: 90000},
		{in: "3.83", fail: true},
		{in: "xms", fail: true},
	} {
		got, err := parseWrkDuration(tc.in)
		if (err != nil) != tc.fail || (!tc.fail && got != tc.ms) {
			t.Errorf("parseWrkDuration(%q) = %v, %v; want %v (fail %v)", tc.in, got, err, tc.ms, tc.fail)
		}
	}
}
