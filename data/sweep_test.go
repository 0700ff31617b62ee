package data

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestSweepExpiredNames(t *testing.T) {
	t0 := epoch()
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	// Deadlines: e1..e4 and live have passed by at(10), exactly-now is due at it, later and
	// forever are not. ancient lies before 1970, which the index clamps to 0.
	seed := []NameClaim{
		{Name: "e3", ExpiresAt: at(3)},
		{Name: "e1", ExpiresAt: at(1)},
		{Name: "live", ExpiresAt: at(2)},
		{Name: "e2", ExpiresAt: at(2)},
		{Name: "e4", ExpiresAt: at(4)},
		{Name: "exactly-now", ExpiresAt: at(10)},
		{Name: "later", ExpiresAt: at(11)},
		{Name: "forever"},
		{Name: "ancient", ExpiresAt: time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	inUse := func(n string) bool { return n == "live" }
	for _, tc := range []struct {
		name   string
		limit  int
		inUse  func(string) bool
		sweeps [][]string // released by each successive sweep at at(10)
	}{
		{"no limit", 0, inUse, [][]string{{"ancient", "e1", "e2", "e3", "e4", "exactly-now"}, nil}},
		{"limit 2, oldest first", 2, inUse, [][]string{{"ancient", "e1"}, {"e2", "e3"}, {"e4", "exactly-now"}, nil}},
		{"nil inUse releases live too", 0, nil, [][]string{{"ancient", "e1", "e2", "live", "e3", "e4", "exactly-now"}, nil}},
		{"limit 1 skips in-use names without counting them", 1, func(n string) bool { return n != "e4" }, [][]string{{"e4"}, nil}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, "")
			ctx := context.Background()
			for _, c := range seed {
				c.Owner, c.LastUsed = "a", at(-60)
				claim(t, s, c)
			}
			var all []string
			for i, want := range tc.sweeps {
				got, err := s.SweepExpiredNames(ctx, at(10), tc.limit, tc.inUse)
				if err != nil || !slices.Equal(got, want) {
					t.Fatalf("sweep %d released %q, %v; want %q", i+1, got, err, want)
				}
				checkIndexes(t, s)
				all = append(all, got...)
			}
			left, err := s.NamesByOwner(ctx, "a")
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range all {
				if slices.Contains(claimNames(left), n) {
					t.Errorf("NamesByOwner still lists released %q", n)
				}
				if _, err := s.GetName(ctx, n); !errors.Is(err, ErrNotFound) {
					t.Errorf("GetName(%q) after release: %v", n, err)
				}
				// Free for anyone now.
				claim(t, s, NameClaim{Name: n, Owner: "b", LastUsed: at(10)})
			}
			if len(left)+len(all) != len(seed) {
				t.Errorf("%d left + %d released != %d claimed", len(left), len(all), len(seed))
			}
			checkIndexes(t, s)
		})
	}
}

// inUse runs outside the sweep's transactions, so it may use the Store, and a claim it
// refreshes meanwhile is kept.
func TestSweepInUseMayUseTheStore(t *testing.T) {
	t0 := epoch()
	s := openTest(t, "")
	ctx := context.Background()
	for _, n := range []string{"a1", "a2"} {
		claim(t, s, NameClaim{Name: n, Owner: "o", LastUsed: t0, ExpiresAt: t0.Add(time.Minute)})
	}
	inUse := func(name string) bool {
		if name == "a1" {
			// A reconnecting client refreshes a2 while the sweep is deciding.
			if err := s.TouchName(ctx, "a2", "o", t0.Add(2*time.Minute), "", t0.Add(time.Hour)); err != nil {
				t.Error(err)
			}
		}
		return false
	}
	done := make(chan struct{})
	var got []string
	var err error
	go func() {
		defer close(done)
		got, err = s.SweepExpiredNames(ctx, t0.Add(2*time.Minute), 0, inUse)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("SweepExpiredNames deadlocked on an inUse that uses the store")
	}
	if err != nil || !slices.Equal(got, []string{"a1"}) {
		t.Fatalf("released %q, %v; want [a1]", got, err)
	}
	if _, err := s.GetName(ctx, "a2"); err != nil {
		t.Fatalf("the refreshed claim was released: %v", err)
	}
	checkIndexes(t, s)
}

func TestSweepDropsStaleIndexEntries(t *testing.T) {
	t0 := epoch()
	s := openTest(t, "")
	ctx := context.Background()
	claim(t, s, NameClaim{Name: "real", Owner: "o", LastUsed: t0, ExpiresAt: t0.Add(time.Minute)})
	// An entry with no record behind it, as a bug or a torn future migration might leave.
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketNamesByExpiry)).Put(expiryKey(t0, "ghost"), nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.SweepExpiredNames(ctx, t0.Add(time.Hour), 0, nil)
	if err != nil || !slices.Equal(got, []string{"real"}) {
		t.Fatalf("released %q, %v; want [real]", got, err)
	}
	checkIndexes(t, s)
}

func TestRunSweeps(t *testing.T) {
	t0 := epoch()
	s := openTest(t, "")
	claim(t, s, NameClaim{Name: "gone", Owner: "a", LastUsed: t0, ExpiresAt: t0.Add(time.Hour)})
	claim(t, s, NameClaim{Name: "kept", Owner: "a", LastUsed: t0, ExpiresAt: t0.Add(time.Hour)})
	claim(t, s, NameClaim{Name: "future", Owner: "a", LastUsed: t0, ExpiresAt: t0.Add(3 * time.Hour)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	const interval = 20 * time.Millisecond
	start := time.Now()
	go func() {
		defer close(done)
		s.RunSweeps(ctx, SweepConfig{
			Interval:   interval,
			NamesInUse: func(n string) bool { return n == "kept" },
			Now:        func() time.Time { return t0.Add(2 * time.Hour) },
		})
	}()
	// "A couple of intervals", with room for a loaded machine under -race.
	deadline := time.Now().Add(100 * interval)
	for {
		if _, err := s.GetName(context.Background(), "gone"); errors.Is(err, ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("RunSweeps did not release an expired name")
		}
		time.Sleep(interval / 4)
	}
	t.Logf("released after %s", time.Since(start).Round(time.Millisecond))
	for _, n := range []string{"kept", "future"} {
		if _, err := s.GetName(context.Background(), n); err != nil {
			t.Errorf("%s was released: %v", n, err)
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("RunSweeps did not return when its context was cancelled")
	}
}
