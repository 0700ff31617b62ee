package data

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func claim(t *testing.T, s *Store, c NameClaim) NameClaim {
	t.Helper()
	got, err := s.ClaimName(context.Background(), c)
	if err != nil {
		t.Fatalf("ClaimName(%+v): %v", c, err)
	}
	return got
}

func names(cs []NameClaim) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func TestClaimName(t *testing.T) {
	s := openTest(t, "")
	ctx := context.Background()
	c := claim(t, s, NameClaim{Name: "quiet-fox", Owner: "a", Kind: NameRandom, Hint: "h1", LastUsed: t0})
	if !c.ClaimedAt.Equal(t0) || c.Kind != NameRandom {
		t.Fatalf("new claim: %+v", c)
	}
	// Same owner: refresh, upgrade to requested, never downgrade.
	c = claim(t, s, NameClaim{Name: "quiet-fox", Owner: "a", Kind: NameRequested, Hint: "h2", LastUsed: t0.Add(time.Hour)})
	if c.Kind != NameRequested || c.Hint != "h2" || !c.ClaimedAt.Equal(t0) || !c.LastUsed.Equal(t0.Add(time.Hour)) {
		t.Fatalf("refresh: %+v", c)
	}
	c = claim(t, s, NameClaim{Name: "quiet-fox", Owner: "a", Kind: NameRandom, LastUsed: t0.Add(2 * time.Hour)})
	if c.Kind != NameRequested {
		t.Fatalf("kind downgraded to %s", c.Kind)
	}
	// Another owner: refused, record unchanged.
	if _, err := s.ClaimName(ctx, NameClaim{Name: "quiet-fox", Owner: "b", Kind: NameRequested, LastUsed: t0}); !errors.Is(err, ErrNameTaken) {
		t.Fatalf("other owner: %v, want ErrNameTaken", err)
	}
	got, err := s.GetName(ctx, "quiet-fox")
	if err != nil || got.Owner != "a" || !got.LastUsed.Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("after refused claim: %+v %v", got, err)
	}
	if _, err := s.GetName(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetName of an unclaimed name: %v", err)
	}
	// An expired claim of another owner is free.
	claim(t, s, NameClaim{Name: "old", Owner: "a", Kind: NameRandom, LastUsed: t0, ExpiresAt: t0.Add(time.Hour)})
	if _, err := s.ClaimName(ctx, NameClaim{Name: "old", Owner: "b", LastUsed: t0.Add(30 * time.Minute)}); !errors.Is(err, ErrNameTaken) {
		t.Fatalf("unexpired: %v", err)
	}
	c = claim(t, s, NameClaim{Name: "old", Owner: "b", Kind: NameRequested, LastUsed: t0.Add(2 * time.Hour)})
	if c.Owner != "b" || !c.ClaimedAt.Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("takeover of expired claim: %+v", c)
	}
	mine, _ := s.NamesByOwner(ctx, "a")
	if len(mine) != 1 || mine[0].Name != "quiet-fox" {
		t.Fatalf("a's names after losing an expired one: %v", names(mine))
	}
}

func TestNamesByOwnerOrderAndIsolation(t *testing.T) {
	s := openTest(t, "")
	ctx := context.Background()
	claim(t, s, NameClaim{Name: "n1", Owner: "a", LastUsed: t0})
	claim(t, s, NameClaim{Name: "n2", Owner: "a", LastUsed: t0.Add(2 * time.Minute)})
	claim(t, s, NameClaim{Name: "n3", Owner: "a", LastUsed: t0.Add(time.Minute)})
	// "ab" starts with "a": the index must not mix them up.
	claim(t, s, NameClaim{Name: "n4", Owner: "ab", LastUsed: t0.Add(time.Hour)})
	got, err := s.NamesByOwner(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if g := names(got); len(g) != 3 || g[0] != "n2" || g[1] != "n3" || g[2] != "n1" {
		t.Fatalf("NamesByOwner(a) = %v, want [n2 n3 n1]", g)
	}
	got, _ = s.NamesByOwner(ctx, "ab")
	if g := names(got); len(g) != 1 || g[0] != "n4" {
		t.Fatalf("NamesByOwner(ab) = %v", g)
	}
	if got, _ := s.NamesByOwner(ctx, "nobody"); len(got) != 0 {
		t.Fatalf("NamesByOwner(nobody) = %v", names(got))
	}
}

func TestTouchAndRelease(t *testing.T) {
	s := openTest(t, "")
	ctx := context.Background()
	claim(t, s, NameClaim{Name: "x1", Owner: "a", LastUsed: t0, ExpiresAt: t0.Add(time.Hour)})
	if err := s.TouchName(ctx, "x1", "b", t0, "", time.Time{}); !errors.Is(err, ErrNameTaken) {
		t.Fatalf("touch by another owner: %v", err)
	}
	if err := s.TouchName(ctx, "zz", "a", t0, "", time.Time{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("touch of a free name: %v", err)
	}
	if err := s.TouchName(ctx, "x1", "a", t0.Add(time.Minute), "h", time.Time{}); err != nil {
		t.Fatal(err)
	}
	// No expiry any more: a sweep far in the future keeps it.
	if rel, _ := s.SweepExpiredNames(ctx, t0.Add(1000*time.Hour), 0, nil); len(rel) != 0 {
		t.Fatalf("sweep released %v after the expiry was cleared", rel)
	}
	if err := s.ReleaseName(ctx, "x1", "b"); !errors.Is(err, ErrNameTaken) {
		t.Fatalf("release by another owner: %v", err)
	}
	if err := s.ReleaseName(ctx, "x1", ""); err != nil {
		t.Fatalf("admin release: %v", err)
	}
	if err := s.ReleaseName(ctx, "x1", ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second release: %v", err)
	}
	if got, _ := s.NamesByOwner(ctx, "a"); len(got) != 0 {
		t.Fatalf("owner index keeps a released name: %v", names(got))
	}
}

func TestSweepExpiredNames(t *testing.T) {
	s := openTest(t, "")
	ctx := context.Background()
	for i, n := range []string{"e1", "e2", "e3", "live", "later"} {
		exp := t0.Add(time.Duration(i) * time.Minute)
		if n == "later" {
			exp = t0.Add(time.Hour)
		}
		claim(t, s, NameClaim{Name: n, Owner: "a", LastUsed: t0.Add(-time.Hour), ExpiresAt: exp})
	}
	inUse := func(n string) bool { return n == "live" }
	rel, err := s.SweepExpiredNames(ctx, t0.Add(10*time.Minute), 2, inUse)
	if err != nil {
		t.Fatal(err)
	}
	if len(rel) != 2 || rel[0] != "e1" || rel[1] != "e2" {
		t.Fatalf("first sweep (limit 2) released %v, want [e1 e2]", rel)
	}
	rel, _ = s.SweepExpiredNames(ctx, t0.Add(10*time.Minute), 0, inUse)
	if len(rel) != 1 || rel[0] != "e3" {
		t.Fatalf("second sweep released %v, want [e3]", rel)
	}
	left, _ := s.NamesByOwner(ctx, "a")
	if g := names(left); len(g) != 2 {
		t.Fatalf("left after sweeps: %v, want live and later", g)
	}
	// A released name is claimable by someone else.
	claim(t, s, NameClaim{Name: "e1", Owner: "b", LastUsed: t0})
}

func TestRunSweeps(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "db"))
	claim(t, s, NameClaim{Name: "gone", Owner: "a", LastUsed: t0, ExpiresAt: time.Now().Add(-time.Second)})
	claim(t, s, NameClaim{Name: "kept", Owner: "a", LastUsed: t0, ExpiresAt: time.Now().Add(-time.Second)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		s.RunSweeps(ctx, SweepConfig{Interval: 20 * time.Millisecond, NamesInUse: func(n string) bool { return n == "kept" }})
		close(done)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := s.GetName(context.Background(), "gone"); errors.Is(err, ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("RunSweeps did not release an expired name")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := s.GetName(context.Background(), "kept"); err != nil {
		t.Fatalf("a name in use was released: %v", err)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("RunSweeps did not stop when its context ended")
	}
}
