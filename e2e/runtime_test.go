package e2e

import "testing"

// Unless the operator set GOGC, toolgate tunes the GC target itself, up to 400 for a small heap
// (docs/PERFORMANCE.md has the measurements behind it); an explicit GOGC wins.
func TestGCPercent(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want float64
	}{
		{"", 400}, // the GC tuner's ceiling: a fresh server's heap is small
		{"75", 75},
	} {
		t.Run("GOGC="+tc.env, func(t *testing.T) {
			t.Setenv("GOGC", tc.env)
			in := startToolgate(t)
			if got := in.metric("go_gc_gogc_percent"); got != tc.want {
				t.Errorf("go_gc_gogc_percent = %v, want %v", got, tc.want)
			}
		})
	}
}
