package data

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

func TestOAuthConsentLifecycle(t *testing.T) {
	t0 := epoch()
	s := openTest(t, "")
	ctx := context.Background()
	c := OAuthConsent{UserID: "u_1", ClientID: "c1", Resource: "https://a.example/mcp",
		Scopes: []string{"mcp", "admin", "mcp"}, CreatedAt: t0}
	got, err := s.PutOAuthConsent(ctx, c)
	if err != nil || !slices.Equal(got.Scopes, []string{"admin", "mcp"}) || !got.CreatedAt.Equal(t0) || !got.UpdatedAt.Equal(t0) {
		t.Fatalf("PutOAuthConsent = %+v, %v", got, err)
	}
	// An update keeps CreatedAt whatever the caller passes.
	got, err = s.PutOAuthConsent(ctx, OAuthConsent{UserID: "u_1", ClientID: "c1", Resource: c.Resource,
		Scopes: []string{"mcp"}, CreatedAt: t0.Add(time.Hour), UpdatedAt: t0.Add(2 * time.Hour)})
	if err != nil || !got.CreatedAt.Equal(t0) || !got.UpdatedAt.Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("update = %+v, %v", got, err)
	}
	stored, err := s.GetOAuthConsent(ctx, "u_1", "c1", c.Resource)
	if err != nil || !slices.Equal(stored.Scopes, []string{"mcp"}) || !stored.CreatedAt.Equal(t0) || stored.Resource != c.Resource {
		t.Fatalf("GetOAuthConsent = %+v, %v", stored, err)
	}
	for _, k := range []OAuthConsent{
		{UserID: "u_1", ClientID: "c1", Resource: ""}, // an empty resource is a resource
		{UserID: "u_1", ClientID: "c2", Resource: "https://b.example/mcp"},
		{UserID: "u_2", ClientID: "c1", Resource: c.Resource},
		{UserID: "u_10", ClientID: "c1", Resource: c.Resource}, // not a prefix match for u_1
	} {
		if _, err := s.PutOAuthConsent(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	byUser, err := s.OAuthConsentsByUser(ctx, "u_1")
	if err != nil || len(byUser) != 3 || byUser[0].Resource != "" || byUser[1].Resource != c.Resource || byUser[2].ClientID != "c2" {
		t.Fatalf("OAuthConsentsByUser = %+v, %v", byUser, err)
	}
	if none, err := s.OAuthConsentsByUser(ctx, "u_3"); err != nil || none == nil || len(none) != 0 {
		t.Errorf("OAuthConsentsByUser of a user without consents = %#v, %v", none, err)
	}
	if all, err := s.ListOAuthConsents(ctx); err != nil || len(all) != 5 {
		t.Fatalf("ListOAuthConsents = %+v, %v", all, err)
	}
	checkOAuthIndexes(t, s)

	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"get missing", func() error { _, err := s.GetOAuthConsent(ctx, "u_1", "c9", ""); return err }(), ErrNotFound},
		{"put empty user", func() error { _, err := s.PutOAuthConsent(ctx, OAuthConsent{ClientID: "c"}); return err }(), ErrInvalid},
		{"put empty client", func() error { _, err := s.PutOAuthConsent(ctx, OAuthConsent{UserID: "u"}); return err }(), ErrInvalid},
		{"put NUL resource", func() error {
			_, err := s.PutOAuthConsent(ctx, OAuthConsent{UserID: "u", ClientID: "c", Resource: "a\x00b"})
			return err
		}(), ErrInvalid},
		{"revoke missing", s.RevokeOAuthConsent(ctx, "u_1", "c9", ""), ErrNotFound},
		{"revoke NUL user", s.RevokeOAuthConsent(ctx, "u\x00", "c1", ""), ErrInvalid},
		{"cancelled", s.RevokeOAuthConsent(cancelledContext(), "u_1", "c1", ""), context.Canceled},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, tc.err, tc.want)
		}
	}
}

// seedGrantWorld makes a family for each of these (request id, client, user, resource) and a
// consent to match, and a pending code for the first.
var grantWorld = []struct{ req, client, user, resource string }{
	{"f1", "c1", "u_1", "ra"},
	{"f2", "c1", "u_1", "rb"},
	{"f3", "c2", "u_1", "ra"},
	{"f4", "c1", "u_2", "ra"},
	{"f5", "c1", "u_10", "ra"},
}

func seedGrantWorld(t *testing.T, s *Store, tok *OAuthTokens, tc *testClients) {
	t.Helper()
	ctx := context.Background()
	for _, w := range grantWorld {
		seedFamily(t, tok, testRequest(tc, w.req, w.client, w.user, w.resource))
		if _, err := s.PutOAuthConsent(ctx, OAuthConsent{UserID: w.user, ClientID: w.client, Resource: w.resource}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tok.CreateAuthorizeCodeSession(ctx, "pending", testRequest(tc, "f0", "c1", "u_1", "ra")); err != nil {
		t.Fatal(err)
	}
}

// families reports which of grantWorld's families (and "f0", the pending code) are alive.
func families(t *testing.T, tok *OAuthTokens) []string {
	t.Helper()
	var out []string
	if _, err := tok.GetAuthorizeCodeSession(context.Background(), "pending", nil); err == nil {
		out = append(out, "f0")
	}
	for _, w := range grantWorld {
		if accessOK(tok, w.req+"-at") {
			out = append(out, w.req)
		}
	}
	return out
}

func grantIDs(gs []OAuthGrant) []string {
	out := []string{}
	for _, g := range gs {
		out = append(out, g.RequestID)
	}
	slices.Sort(out)
	return out
}

func TestOAuthGrants(t *testing.T) {
	s, tok, tc := newTokens(t, "c1", "c2")
	ctx := context.Background()
	seedGrantWorld(t, s, tok, tc)
	byUser, err := s.OAuthGrantsByUser(ctx, "u_1")
	if err != nil || !slices.Equal(grantIDs(byUser), []string{"f1", "f2", "f3"}) {
		t.Fatalf("OAuthGrantsByUser(u_1) = %+v, %v", byUser, err)
	}
	if all, err := s.ListOAuthGrants(ctx); err != nil || len(all) != 5 {
		t.Fatalf("ListOAuthGrants = %+v, %v", all, err)
	}
	if _, err := s.OAuthGrantsByUser(ctx, ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("OAuthGrantsByUser(\"\"): %v", err)
	}

	for _, step := range []struct {
		user, client, resource string
		n                      int
		alive                  []string
	}{
		{"u_1", "c1", "rb", 1, []string{"f0", "f1", "f3", "f4", "f5"}},
		{"u_1", "c1", "rb", 0, []string{"f0", "f1", "f3", "f4", "f5"}},
		{"u_1", "", "ra", 2, []string{"f4", "f5"}}, // any client: f1, f3 and the pending f0
		{"u_9", "", "", 0, []string{"f4", "f5"}},
	} {
		n, err := s.RevokeOAuthGrants(ctx, step.user, step.client, step.resource)
		if err != nil || n != step.n {
			t.Fatalf("RevokeOAuthGrants(%q, %q, %q) = %d, %v; want %d", step.user, step.client, step.resource, n, err, step.n)
		}
		if got := families(t, tok); !slices.Equal(got, step.alive) {
			t.Fatalf("after RevokeOAuthGrants(%q, %q, %q) alive: %q, want %q", step.user, step.client, step.resource, got, step.alive)
		}
		checkOAuthIndexes(t, s)
	}
	if n, err := s.RevokeUserOAuthGrants(ctx, "u_2"); n != 1 || err != nil {
		t.Fatalf("RevokeUserOAuthGrants = %d, %v", n, err)
	}
	if got := families(t, tok); !slices.Equal(got, []string{"f5"}) {
		t.Fatalf("alive: %q", got)
	}
	// Revoking deletes the tokens outright: no replay detection needed for a family that is gone.
	if err := refreshErr(tok, "f1-rt"); !errors.Is(err, ErrNotFound) {
		t.Errorf("f1-rt: %v", err)
	}
	if cs, _ := s.ListOAuthConsents(ctx); len(cs) != len(grantWorld) {
		t.Errorf("RevokeOAuthGrants touched consents: %+v", cs)
	}
}

func TestRevokeOAuthConsent(t *testing.T) {
	s, tok, tc := newTokens(t, "c1", "c2")
	ctx := context.Background()
	seedGrantWorld(t, s, tok, tc)
	if err := s.RevokeOAuthConsent(ctx, "u_1", "c1", "ra"); err != nil {
		t.Fatal(err)
	}
	if got := families(t, tok); !slices.Equal(got, []string{"f2", "f3", "f4", "f5"}) {
		t.Errorf("alive after revoking u_1/c1/ra: %q", got)
	}
	if _, err := s.GetOAuthConsent(ctx, "u_1", "c1", "ra"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the consent survived: %v", err)
	}
	if cs, _ := s.ListOAuthConsents(ctx); len(cs) != len(grantWorld)-1 {
		t.Errorf("consents left: %+v", cs)
	}
	if err := s.RevokeOAuthConsent(ctx, "u_1", "c1", "ra"); !errors.Is(err, ErrNotFound) {
		t.Errorf("revoking twice: %v", err)
	}
	checkOAuthIndexes(t, s)
}
