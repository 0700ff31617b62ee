package main

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
)

// gcTuner chooses the garbage collector's target (GOGC) after every collection, between
// Go's default of 100 and maxPercent, so that the garbage allowed to pile up between two
// collections is at most headroom bytes unless that would mean collecting more often than
// Go's default does.
//
// Why: a tunnel moving bulk data allocates every SSH packet afresh inside x/crypto/ssh (32 KiB
// and more each), so a proxy with a small live heap would be collected hundreds of times a
// second at GOGC=100; 200 measured +21% bulk throughput (docs/PERFORMANCE.md). But GOGC scales
// the allowance with everything the collector scans, live heap plus goroutine stacks, and a
// server holding 1,000 idle tunnels scans about 60 MB: at 200 it may keep 120 MB of garbage
// resident, about 120 KiB per idle tunnel on top of the tunnels' own 60. With a fixed
// allowance the small-heap case keeps its high percent and the large-heap case falls back to
// 100, where the collector already runs rarely because its heap is large.
//
// The collector's pacer sets the heap goal to live heap + (live heap + stacks + globals) ×
// GOGC/100 (the Go GC guide), so the percent giving an allowance of headroom is
// headroom × 100 / (live heap + stacks + globals).
type gcTuner struct {
	minPercent, maxPercent int
	headroom               uint64

	current atomic.Int64 // the percent last set, for tests and the debug log
	stopped atomic.Bool
	samples []metrics.Sample
}

// gcSentinel is allocated and dropped once per tune; its cleanup runs after the collection
// that frees it. It holds a pointer so it is never a tiny allocation (the runtime does not
// promise cleanups on those).
type gcSentinel struct {
	_ *int
	_ [16]byte
}

func newGCTuner(minPercent, maxPercent int, headroom uint64) *gcTuner {
	return &gcTuner{
		minPercent: minPercent,
		maxPercent: maxPercent,
		headroom:   headroom,
		samples: []metrics.Sample{
			{Name: "/gc/heap/live:bytes"},
			{Name: "/gc/scan/stack:bytes"},
			{Name: "/gc/scan/globals:bytes"},
		},
	}
}

// start sets the percent for the current heap and re-tunes after every collection until stop.
// The process-wide GOGC belongs to the caller from then on: call it at most once, and only when
// the operator has not set GOGC.
func (t *gcTuner) start() {
	t.tune()
	t.arm()
}

// stop ends re-tuning after the next collection; the last percent set stays.
func (t *gcTuner) stop() { t.stopped.Store(true) }

func (t *gcTuner) arm() {
	runtime.AddCleanup(&gcSentinel{}, func(t *gcTuner) {
		if t.stopped.Load() {
			return
		}
		t.tune()
		t.arm()
	}, t)
}

// tune runs on the runtime's cleanup goroutine, never concurrently with itself: each run arms
// the next.
func (t *gcTuner) tune() {
	metrics.Read(t.samples)
	var scanned uint64
	for _, s := range t.samples {
		if s.Value.Kind() == metrics.KindUint64 {
			scanned += s.Value.Uint64()
		}
	}
	p := gcPercentFor(scanned, t.headroom, t.minPercent, t.maxPercent)
	if int64(p) != t.current.Load() {
		debug.SetGCPercent(p)
		t.current.Store(int64(p))
	}
}

// gcPercentFor is the percent that lets headroom bytes of garbage accumulate over scanned bytes
// of live heap, stacks and globals, within [minPercent, maxPercent]. It moves in steps of 10 so
// that a heap that wobbles around one size does not reset the pacer after every collection.
func gcPercentFor(scanned, headroom uint64, minPercent, maxPercent int) int {
	if scanned == 0 {
		return maxPercent
	}
	p := headroom * 100 / scanned
	if p >= uint64(maxPercent) {
		return maxPercent
	}
	if p <= uint64(minPercent) {
		return minPercent
	}
	return max(minPercent, int(p)/10*10)
}
