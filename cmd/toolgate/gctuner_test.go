package main

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestGCPercentFor(t *testing.T) {
	const MiB = 1 << 20
	for _, tc := range []struct {
		name     string
		scanned  uint64
		headroom uint64
		want     int
	}{
		{"nothing scanned yet", 0, 32 * MiB, 200},
		{"small proxy heap keeps the ceiling", 8 * MiB, 32 * MiB, 200},
		{"exactly the ceiling", 16 * MiB, 32 * MiB, 200},
		{"between: rounded down to a step of 10", 20 * MiB, 32 * MiB, 160},
		{"between, just under a step", 21 * MiB, 32 * MiB, 150},
		{"exactly the floor", 32 * MiB, 32 * MiB, 100},
		{"1,000 idle tunnels: Go's default", 60 * MiB, 32 * MiB, 100},
		{"huge heap never goes under the floor", 10 << 30, 32 * MiB, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := gcPercentFor(tc.scanned, tc.headroom, 100, 200); got != tc.want {
				t.Errorf("gcPercentFor(%d MiB, %d MiB) = %d, want %d", tc.scanned/MiB, tc.headroom/MiB, got, tc.want)
			}
		})
	}
}

// The tuner sets GOGC from the runtime's own figures at start and again after collections, and
// stops re-tuning after stop.
func TestGCTunerFollowsTheHeap(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))

	// A headroom of 1 byte puts any real heap at the floor; a huge one at the ceiling.
	low := newGCTuner(100, 200, 1)
	low.start()
	if got := debug.SetGCPercent(-1); got != 100 {
		t.Errorf("GOGC with a tiny headroom = %d, want 100", got)
	}
	low.stop()
	runtime.GC() // lets the armed cleanup see stopped and end

	debug.SetGCPercent(150)
	high := newGCTuner(100, 200, 1<<40)
	high.arm() // no tune yet: only a collection may change GOGC now
	if got := debug.SetGCPercent(150); got != 150 {
		t.Fatalf("GOGC changed before any collection: %d", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for high.current.Load() != 200 {
		if time.Now().After(deadline) {
			t.Fatal("the tuner did not run after collections")
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if got := debug.SetGCPercent(200); got != 200 {
		t.Errorf("GOGC after a collection = %d, want 200", got)
	}
	high.stop()
	runtime.GC()
	time.Sleep(10 * time.Millisecond)
	// Stopped: a later collection leaves GOGC alone.
	debug.SetGCPercent(170)
	for range 3 {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if got := debug.SetGCPercent(100); got != 170 {
		t.Errorf("a stopped tuner changed GOGC to %d", got)
	}
}
