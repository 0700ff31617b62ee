package data

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/ory/fosite"
)

func sameOAuthClient(a, b OAuthClient) bool {
	return a.ID == b.ID && a.Kind == b.Kind && a.Name == b.Name && a.URI == b.URI && a.LogoURI == b.LogoURI &&
		slices.Equal(a.RedirectURIs, b.RedirectURIs) && slices.Equal(a.GrantTypes, b.GrantTypes) &&
		slices.Equal(a.ResponseTypes, b.ResponseTypes) && slices.Equal(a.Scopes, b.Scopes) &&
		a.ApplicationType == b.ApplicationType && a.TokenEndpointAuthMethod == b.TokenEndpointAuthMethod &&
		a.SecretHash == b.SecretHash && string(a.Metadata) == string(b.Metadata) &&
		a.CreatedAt.Equal(b.CreatedAt) && a.LastUsed.Equal(b.LastUsed) && a.ExpiresAt.Equal(b.ExpiresAt)
}

func TestOAuthClientLifecycle(t *testing.T) {
	t0 := epoch()
	s := openTest(t, "")
	ctx := context.Background()
	zone := time.FixedZone("X", 3600)
	c := OAuthClient{ID: "https://app.example/client.json", Kind: ClientMetadataDocument, Name: "App",
		URI: "https://app.example", LogoURI: "https://app.example/logo.png",
		RedirectURIs: []string{"http://127.0.0.1/cb"}, GrantTypes: []string{"authorization_code", "refresh_token"},
		ResponseTypes: []string{"code"}, Scopes: []string{"mcp"}, ApplicationType: "native",
		TokenEndpointAuthMethod: "none", Metadata: []byte(`{"client_name":"App"}`),
		CreatedAt: t0.In(zone), ExpiresAt: t0.Add(time.Hour).In(zone)}
	got, err := s.PutOAuthClient(ctx, c)
	if err != nil || !sameOAuthClient(got, c) || got.CreatedAt.Location() != time.UTC || got.ExpiresAt.Location() != time.UTC {
		t.Fatalf("PutOAuthClient = %+v, %v", got, err)
	}
	if got, err := s.GetOAuthClient(ctx, c.ID); err != nil || !sameOAuthClient(got, c) {
		t.Fatalf("GetOAuthClient = %+v, %v", got, err)
	}
	if now, err := s.PutOAuthClient(ctx, OAuthClient{ID: "static", Kind: ClientStatic}); err != nil || time.Since(now.CreatedAt) > time.Minute {
		t.Fatalf("PutOAuthClient with a zero CreatedAt = %+v, %v", now, err)
	}
	if cs, err := s.ListOAuthClients(ctx); err != nil || len(cs) != 2 || cs[0].ID != c.ID || cs[1].ID != "static" {
		t.Fatalf("ListOAuthClients = %+v, %v", cs, err)
	}
	if err := s.TouchOAuthClient(ctx, c.ID, t0.Add(time.Minute), t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	want := c
	want.LastUsed, want.ExpiresAt = t0.Add(time.Minute), t0.Add(2*time.Hour)
	if got, _ := s.GetOAuthClient(ctx, c.ID); !sameOAuthClient(got, want) {
		t.Errorf("after TouchOAuthClient = %+v, want %+v", got, want)
	}
	checkOAuthIndexes(t, s)

	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"put an empty id", func() error { _, err := s.PutOAuthClient(ctx, OAuthClient{}); return err }(), ErrInvalid},
		{"put a NUL id", func() error { _, err := s.PutOAuthClient(ctx, OAuthClient{ID: "a\x00"}); return err }(), ErrInvalid},
		{"get a missing client", func() error { _, err := s.GetOAuthClient(ctx, "nope"); return err }(), ErrNotFound},
		{"touch a missing client", s.TouchOAuthClient(ctx, "nope", t0, t0), ErrNotFound},
		{"delete a missing client", s.DeleteOAuthClient(ctx, "nope"), ErrNotFound},
		{"delete a NUL id", s.DeleteOAuthClient(ctx, "a\x00"), ErrInvalid},
		{"cancelled", s.DeleteOAuthClient(cancelledContext(), c.ID), context.Canceled},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, tc.err, tc.want)
		}
	}
	if err := s.DeleteOAuthClient(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetOAuthClient(ctx, c.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetOAuthClient after delete: %v", err)
	}
	checkOAuthIndexes(t, s)
}

// seedClientWorld gives clients c1 and c2 a family and a consent each, for u_1.
func seedClientWorld(t *testing.T, s *Store, tok *OAuthTokens, tc *testClients) {
	t.Helper()
	ctx := context.Background()
	for _, id := range []string{"c1", "c2"} {
		if _, err := s.PutOAuthConsent(ctx, OAuthConsent{UserID: "u_1", ClientID: id, Resource: "r", Scopes: []string{"mcp"}}); err != nil {
			t.Fatal(err)
		}
		seedFamily(t, tok, testRequest(tc, "f-"+id, id, "u_1", "r"))
		if err := tok.CreateAuthorizeCodeSession(ctx, "pending-"+id, testRequest(tc, "p-"+id, id, "u_1", "r")); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDeleteOAuthClientTakesItsTokens(t *testing.T) {
	s, tok, tc := newTokens(t, "c1", "c2")
	ctx := context.Background()
	for _, id := range []string{"c1", "c2"} {
		if _, err := s.PutOAuthClient(ctx, OAuthClient{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	seedClientWorld(t, s, tok, tc)
	if err := s.DeleteOAuthClient(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	checkClientWorld(t, s, tok, "c1", "c2")
}

// checkClientWorld checks that seedClientWorld's records of client gone are gone, and those
// of kept are there.
func checkClientWorld(t *testing.T, s *Store, tok *OAuthTokens, gone, kept string) {
	t.Helper()
	ctx := context.Background()
	if accessOK(tok, "f-"+gone+"-at") || !errors.Is(refreshErr(tok, "f-"+gone+"-rt"), fosite.ErrNotFound) {
		t.Errorf("%s's tokens survived", gone)
	}
	if _, err := tok.GetAuthorizeCodeSession(ctx, "pending-"+gone, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("%s's pending code survived: %v", gone, err)
	}
	if !accessOK(tok, "f-"+kept+"-at") || refreshErr(tok, "f-"+kept+"-rt") != nil {
		t.Errorf("%s's tokens are gone", kept)
	}
	if _, err := tok.GetAuthorizeCodeSession(ctx, "pending-"+kept, nil); err != nil {
		t.Errorf("%s's pending code: %v", kept, err)
	}
	cs, _ := s.ListOAuthConsents(ctx)
	if len(cs) != 1 || cs[0].ClientID != kept {
		t.Errorf("consents = %+v, want %s's only", cs, kept)
	}
	gs, _ := s.ListOAuthGrants(ctx)
	if len(gs) != 1 || gs[0].ClientID != kept {
		t.Errorf("grants = %+v, want %s's only", gs, kept)
	}
	checkOAuthIndexes(t, s)
}

func TestSweepExpiredOAuthClients(t *testing.T) {
	t0 := epoch()
	s, tok, tc := newTokens(t, "c1", "c2")
	ctx := context.Background()
	for _, c := range []OAuthClient{
		{ID: "c1", ExpiresAt: t0.Add(time.Minute)},
		{ID: "c2", ExpiresAt: t0.Add(time.Hour)},
		{ID: "static"},
		{ID: "touched", ExpiresAt: t0.Add(time.Minute)},
	} {
		if _, err := s.PutOAuthClient(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.TouchOAuthClient(ctx, "touched", t0, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	seedClientWorld(t, s, tok, tc)
	if n, err := s.SweepExpiredOAuthClients(ctx, t0, 0); n != 0 || err != nil {
		t.Fatalf("early sweep: %d, %v", n, err)
	}
	if n, err := s.SweepExpiredOAuthClients(ctx, t0.Add(time.Minute), 0); n != 1 || err != nil {
		t.Fatalf("sweep: %d, %v; want 1", n, err)
	}
	checkClientWorld(t, s, tok, "c1", "c2")
	cs, _ := s.ListOAuthClients(ctx)
	if len(cs) != 3 || cs[0].ID != "c2" {
		t.Errorf("clients left: %+v", cs)
	}
}

// sweepOnce, RunSweeps' tick, includes OAuth clients and tokens.
func TestSweepOnceOAuth(t *testing.T) {
	s, tok, tc := newTokens(t, "c1", "c2")
	ctx := context.Background()
	now := time.Now()
	if _, err := s.PutOAuthClient(ctx, OAuthClient{ID: "c1", ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutOAuthClient(ctx, OAuthClient{ID: "c2"}); err != nil {
		t.Fatal(err)
	}
	seedClientWorld(t, s, tok, tc) // c2's tokens: code +10m, access +1h, refresh +24h
	s.sweepOnce(ctx, SweepConfig{Now: func() time.Time { return now.Add(2 * time.Hour) }, Logger: s.log})
	if _, err := s.GetOAuthClient(ctx, "c1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the expired client survived: %v", err)
	}
	if accessOK(tok, "f-c2-at") || refreshErr(tok, "f-c2-rt") != nil {
		t.Error("c2's expired access token survived, or its live refresh token did not")
	}
	checkOAuthIndexes(t, s)
}
