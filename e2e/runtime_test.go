package e2e

import "testing"

// toolgate runs the GC at GOGC=200 unless the operator set GOGC (docs/PERFORMANCE.md has the
// measurements behind the default); an explicit GOGC wins.
func TestGCPercent(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want float64
	}{
		{"", 200},
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
