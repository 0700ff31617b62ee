package data

import (
	"context"
	"slices"
	"testing"
	"time"
)

func TestMoveNames(t *testing.T) {
	t0 := epoch()
	const key, user = "SHA256:k", "u_alice"
	seed := []NameClaim{
		{Name: "k-random", Owner: key, Kind: NameRandom, Hint: "h1", LastUsed: t0, ExpiresAt: t0.Add(time.Hour)},
		{Name: "k-requested", Owner: key, Kind: NameRequested, LastUsed: t0.Add(time.Minute)},
		{Name: "k-expired", Owner: key, Kind: NameRandom, LastUsed: t0.Add(-2 * time.Hour), ExpiresAt: t0.Add(-time.Hour)},
		{Name: "kx-name", Owner: key + "x", LastUsed: t0}, // the prefix trap
		{Name: "u-name", Owner: user, LastUsed: t0.Add(2 * time.Minute)},
	}
	for _, tc := range []struct {
		name      string
		from, to  string
		wantN     int
		wantOwner map[string]string // name -> owner afterwards
	}{
		{"a key's names go to its user", key, user, 3, map[string]string{
			"k-random": user, "k-requested": user, "k-expired": user, "kx-name": key + "x", "u-name": user}},
		{"and can go to another key", key, "SHA256:other", 3, map[string]string{
			"k-random": "SHA256:other", "k-requested": "SHA256:other", "k-expired": "SHA256:other", "kx-name": key + "x", "u-name": user}},
		{"an owner without names moves nothing", "SHA256:none", user, 0, map[string]string{
			"k-random": key, "k-requested": key, "k-expired": key, "kx-name": key + "x", "u-name": user}},
		{"moving to oneself moves nothing", key, key, 0, map[string]string{
			"k-random": key, "k-requested": key, "k-expired": key, "kx-name": key + "x", "u-name": user}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, "")
			ctx := context.Background()
			before := map[string]NameClaim{}
			for _, c := range seed {
				before[c.Name] = claim(t, s, c)
			}
			n, err := s.MoveNames(ctx, tc.from, tc.to)
			if err != nil || n != tc.wantN {
				t.Fatalf("MoveNames(%s, %s) = %d, %v; want %d", tc.from, tc.to, n, err, tc.wantN)
			}
			checkIndexes(t, s)
			for name, owner := range tc.wantOwner {
				want := before[name]
				want.Owner = owner
				if got, err := s.GetName(ctx, name); err != nil || !sameClaim(got, want) {
					t.Errorf("%s after the move: %+v, %v; want %+v", name, got, err, want)
				}
			}
			if mine, err := s.NamesByOwner(ctx, tc.from); tc.wantN > 0 && (err != nil || len(mine) != 0) {
				t.Errorf("NamesByOwner(%s) after the move: %v, %v", tc.from, claimNames(mine), err)
			}
			var wantTo []string
			for name, owner := range tc.wantOwner {
				if owner == tc.to {
					wantTo = append(wantTo, name)
				}
			}
			got, err := s.NamesByOwner(ctx, tc.to)
			gotNames := claimNames(got)
			slices.Sort(gotNames)
			slices.Sort(wantTo)
			if err != nil || !slices.Equal(gotNames, wantTo) {
				t.Errorf("NamesByOwner(%s) = %v, %v; want %v", tc.to, gotNames, err, wantTo)
			}
			// The moved expired claim is still swept, under its new owner.
			if rel, err := s.SweepExpiredNames(ctx, t0, 0, nil); err != nil || !slices.Equal(rel, []string{"k-expired"}) {
				t.Errorf("sweep after the move released %v, %v; want [k-expired]", rel, err)
			}
			checkIndexes(t, s)
		})
	}
}
