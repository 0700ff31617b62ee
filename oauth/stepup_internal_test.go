package oauth

import (
	"strconv"
	"testing"
	"time"
)

// The marks stay bounded: expired marks make room first, then the one expiring first.
func TestStepUpMarksBounded(t *testing.T) {
	var m stepUpMarks
	now := time.Unix(1_800_000_000, 0)
	for i := range maxStepUpMarks {
		// Marks 0..9 expire within the minute; the rest later, the later the higher i.
		until := now.Add(time.Hour + time.Duration(i)*time.Second)
		if i < 10 {
			until = now.Add(time.Duration(i+1) * time.Second)
		}
		m.mark("g"+strconv.Itoa(i), stepUpMark{at: now, until: until})
	}
	if len(m.m) != maxStepUpMarks {
		t.Fatalf("%d marks, want %d", len(m.m), maxStepUpMarks)
	}

	later := now.Add(time.Minute)
	m.mark("new", stepUpMark{at: later, until: later.Add(time.Hour)})
	if len(m.m) != maxStepUpMarks-10+1 {
		t.Fatalf("%d marks after the expired ones went, want %d", len(m.m), maxStepUpMarks-9)
	}
	for i := range 10 {
		if _, ok := m.m["g"+strconv.Itoa(i)]; ok {
			t.Fatalf("expired mark g%d kept", i)
		}
	}

	// Full of live marks: the one expiring first (g10) makes room.
	for i := 0; len(m.m) < maxStepUpMarks; i++ {
		m.mark("fill"+strconv.Itoa(i), stepUpMark{at: later, until: later.Add(2 * time.Hour)})
	}
	m.mark("newer", stepUpMark{at: later, until: later.Add(time.Hour)})
	if len(m.m) != maxStepUpMarks {
		t.Fatalf("%d marks, want %d", len(m.m), maxStepUpMarks)
	}
	if _, ok := m.m["g10"]; ok {
		t.Error("the mark expiring first was kept")
	}
	for _, g := range []string{"g11", "new", "newer"} {
		if _, ok := m.active(g, later); !ok {
			t.Errorf("mark %s lost", g)
		}
	}
	// Re-marking a grant already there never evicts another.
	m.mark("g11", stepUpMark{at: later, until: later.Add(3 * time.Hour)})
	if len(m.m) != maxStepUpMarks {
		t.Errorf("%d marks after re-marking, want %d", len(m.m), maxStepUpMarks)
	}
	// An expired mark is forgotten when asked about.
	if _, ok := m.active("g11", later.Add(4*time.Hour)); ok || len(m.m) != maxStepUpMarks-1 {
		t.Errorf("expired mark reported active or kept (%d marks)", len(m.m))
	}
}
