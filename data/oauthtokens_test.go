package data

import (
	"context"
	"errors"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ory/fosite"
	bolt "go.etcd.io/bbolt"
)

// testClients is a ClientSource and fosite.ClientManager over a map.
type testClients struct {
	mu sync.Mutex
	m  map[string]fosite.Client
}

func newTestClients(cs ...*fosite.DefaultClient) *testClients {
	tc := &testClients{m: map[string]fosite.Client{}}
	for _, c := range cs {
		tc.m[c.ID] = c
	}
	return tc
}

func (tc *testClients) GetClient(_ context.Context, id string) (fosite.Client, error) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if c, ok := tc.m[id]; ok {
		return c, nil
	}
	return nil, fosite.ErrNotFound
}

func (tc *testClients) remove(id string) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	delete(tc.m, id)
}

func (tc *testClients) ClientAssertionJWTValid(context.Context, string) error { return nil }

func (tc *testClients) SetClientAssertionJWT(context.Context, string, time.Time) error { return nil }

func testClient(id string) *fosite.DefaultClient {
	return &fosite.DefaultClient{ID: id, Public: true, RedirectURIs: []string{"http://127.0.0.1:8123/cb"},
		GrantTypes: []string{"authorization_code", "refresh_token"}, ResponseTypes: []string{"code"},
		Scopes: []string{"mcp", "profile"}, Audience: []string{"https://a.example/mcp", "https://b.example/mcp"}}
}

func newTokens(t testing.TB, clients ...string) (*Store, *OAuthTokens, *testClients) {
	t.Helper()
	s := openTest(t, "")
	tc := newTestClients()
	for _, id := range clients {
		tc.m[id] = testClient(id)
	}
	return s, s.OAuthTokens(tc), tc
}

// testRequest is a request as fosite stores it: a session with expiries, the lot.
func testRequest(tc *testClients, reqID, clientID, subject, resource string) *fosite.Request {
	now := time.Now().UTC().Round(time.Second)
	c, _ := tc.GetClient(context.Background(), clientID)
	return &fosite.Request{
		ID: reqID, RequestedAt: now.Add(-time.Minute), Client: c,
		RequestedScope: fosite.Arguments{"mcp", "profile"}, GrantedScope: fosite.Arguments{"mcp"},
		RequestedAudience: fosite.Arguments{resource}, GrantedAudience: fosite.Arguments{resource},
		Form: url.Values{"redirect_uri": {"http://127.0.0.1:8123/cb"}, "code_challenge": {"abc"}, "scope": {"mcp profile"}},
		Session: &fosite.DefaultSession{Subject: subject, Username: "ann", Extra: map[string]any{"k": "v"},
			ExpiresAt: map[fosite.TokenType]time.Time{
				fosite.AuthorizeCode: now.Add(10 * time.Minute),
				fosite.AccessToken:   now.Add(time.Hour),
				fosite.RefreshToken:  now.Add(24 * time.Hour),
			}},
	}
}

// tokenKinds drives the generic tests through each kind's fosite methods.
type tokenKind struct {
	name   string
	kind   byte
	create func(t *OAuthTokens, ctx context.Context, sig string, req fosite.Requester) error
	get    func(t *OAuthTokens, ctx context.Context, sig string, s fosite.Session) (fosite.Requester, error)
}

var tokenKindTable = []tokenKind{
	{"code", tokenCode, (*OAuthTokens).CreateAuthorizeCodeSession, (*OAuthTokens).GetAuthorizeCodeSession},
	{"pkce", tokenPKCE, (*OAuthTokens).CreatePKCERequestSession, (*OAuthTokens).GetPKCERequestSession},
	{"access", tokenAccess, (*OAuthTokens).CreateAccessTokenSession, (*OAuthTokens).GetAccessTokenSession},
	{"refresh", tokenRefresh, func(t *OAuthTokens, ctx context.Context, sig string, req fosite.Requester) error {
		return t.CreateRefreshTokenSession(ctx, sig, "at-"+sig, req)
	}, (*OAuthTokens).GetRefreshTokenSession},
}

func sameRequest(t *testing.T, got fosite.Requester, want *fosite.Request) {
	t.Helper()
	if got == nil {
		t.Fatal("nil requester")
	}
	if got.GetID() != want.ID || !got.GetRequestedAt().Equal(want.RequestedAt) || got.GetClient() != want.Client ||
		!slices.Equal(got.GetRequestedScopes(), want.RequestedScope) || !slices.Equal(got.GetGrantedScopes(), want.GrantedScope) ||
		!slices.Equal(got.GetRequestedAudience(), want.RequestedAudience) || !slices.Equal(got.GetGrantedAudience(), want.GrantedAudience) ||
		got.GetRequestForm().Encode() != want.Form.Encode() {
		t.Errorf("request = %+v\nwant %+v", got, want)
	}
	gs, ws := got.GetSession().(*fosite.DefaultSession), want.Session.(*fosite.DefaultSession)
	if gs.Subject != ws.Subject || gs.Username != ws.Username || !maps.Equal(gs.Extra, ws.Extra) ||
		!maps.EqualFunc(gs.ExpiresAt, ws.ExpiresAt, time.Time.Equal) {
		t.Errorf("session = %+v, want %+v", gs, ws)
	}
}

func TestOAuthTokenRoundTrip(t *testing.T) {
	for _, k := range tokenKindTable {
		t.Run(k.name, func(t *testing.T) {
			s, tok, tc := newTokens(t, "c1")
			ctx := context.Background()
			req := testRequest(tc, "req-1", "c1", "u_1", "https://a.example/mcp")
			if err := k.create(tok, ctx, "sig1", req); err != nil {
				t.Fatal(err)
			}
			sess := &fosite.DefaultSession{}
			got, err := k.get(tok, ctx, "sig1", sess)
			if err != nil {
				t.Fatal(err)
			}
			sameRequest(t, got, req)
			if got.GetSession() != sess {
				t.Error("the session is not the template passed in")
			}
			// fosite's revocation handler passes no session template.
			if got, err := k.get(tok, ctx, "sig1", nil); err != nil || got.GetID() != "req-1" {
				t.Errorf("get without a session = %v, %v", got, err)
			}
			for _, sig := range []string{"other", "", "a\x00b"} {
				if _, err := k.get(tok, ctx, sig, &fosite.DefaultSession{}); !errors.Is(err, fosite.ErrNotFound) || !errors.Is(err, ErrNotFound) {
					t.Errorf("get %q: %v, want fosite.ErrNotFound and ErrNotFound", sig, err)
				}
			}
			tc.remove("c1")
			if _, err := k.get(tok, ctx, "sig1", &fosite.DefaultSession{}); !errors.Is(err, fosite.ErrNotFound) {
				t.Errorf("get with the client gone: %v, want fosite.ErrNotFound", err)
			}
			grants, _ := s.ListOAuthGrants(ctx)
			if wantGrant := k.kind == tokenAccess || k.kind == tokenRefresh; (len(grants) == 1) != wantGrant {
				t.Errorf("grants = %+v, want one: %v", grants, wantGrant)
			} else if wantGrant {
				g := grants[0]
				if g.RequestID != "req-1" || g.UserID != "u_1" || g.ClientID != "c1" ||
					!slices.Equal(g.Resources, []string{"https://a.example/mcp"}) || !slices.Equal(g.Scopes, []string{"mcp"}) {
					t.Errorf("grant = %+v", g)
				}
			}
			checkOAuthIndexes(t, s)
		})
	}
}

func TestOAuthTokenCreateInvalid(t *testing.T) {
	_, tok, tc := newTokens(t, "c1")
	ctx := context.Background()
	good := testRequest(tc, "req-1", "c1", "u_1", "r")
	noClient := testRequest(tc, "req-1", "c1", "u_1", "r")
	noClient.Client = nil
	for _, tcase := range []struct {
		name string
		sig  string
		req  fosite.Requester
	}{
		{"empty signature", "", good},
		{"NUL signature", "a\x00", good},
		{"no client", "s", noClient},
		{"NUL request id", "s", testRequest(tc, "a\x00b", "c1", "u_1", "r")},
		{"NUL subject", "s", testRequest(tc, "req", "c1", "u\x00", "r")},
	} {
		if err := tok.CreateAccessTokenSession(ctx, tcase.sig, tcase.req); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", tcase.name, err)
		}
	}
}

func TestOAuthTokenDefaultExpiry(t *testing.T) {
	s, tok, tc := newTokens(t, "c1")
	ctx := context.Background()
	req := testRequest(tc, "req-1", "c1", "u_1", "r")
	req.Session = &fosite.DefaultSession{Subject: "u_1"} // no expiries at all
	for _, k := range tokenKindTable {
		if err := k.create(tok, ctx, k.name, req); err != nil {
			t.Fatal(err)
		}
	}
	before := time.Now()
	// Codes and PKCE requests get 24 hours; tokens without an expiry never expire.
	if n, err := s.SweepExpiredOAuthTokens(ctx, before.Add(23*time.Hour), 0); n != 0 || err != nil {
		t.Fatalf("sweep before 24h: %d, %v", n, err)
	}
	if n, err := s.SweepExpiredOAuthTokens(ctx, before.Add(25*time.Hour), 0); n != 2 || err != nil {
		t.Fatalf("sweep after 24h: %d, %v; want 2", n, err)
	}
	for _, k := range tokenKindTable {
		_, err := k.get(tok, ctx, k.name, &fosite.DefaultSession{})
		if gone := errors.Is(err, fosite.ErrNotFound); gone != (k.kind == tokenCode || k.kind == tokenPKCE) {
			t.Errorf("%s after the sweep: %v", k.name, err)
		}
	}
	checkOAuthIndexes(t, s)
}

func TestOAuthCodeInvalidation(t *testing.T) {
	s, tok, tc := newTokens(t, "c1")
	ctx := context.Background()
	req := testRequest(tc, "req-1", "c1", "u_1", "r")
	if err := tok.CreateAuthorizeCodeSession(ctx, "code", req); err != nil {
		t.Fatal(err)
	}
	if err := tok.InvalidateAuthorizeCodeSession(ctx, "code"); err != nil {
		t.Fatal(err)
	}
	got, err := tok.GetAuthorizeCodeSession(ctx, "code", &fosite.DefaultSession{})
	if !errors.Is(err, fosite.ErrInvalidatedAuthorizeCode) {
		t.Fatalf("get a used code: %v, want ErrInvalidatedAuthorizeCode", err)
	}
	sameRequest(t, got, req)
	if err := tok.InvalidateAuthorizeCodeSession(ctx, "missing"); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("invalidate a missing code: %v", err)
	}
	checkOAuthIndexes(t, s)
}

// seedFamily stores a code, an access token and a refresh token for one request id.
func seedFamily(t *testing.T, tok *OAuthTokens, req *fosite.Request) {
	t.Helper()
	ctx := context.Background()
	id := req.ID
	if err := tok.CreateAuthorizeCodeSession(ctx, id+"-code", req); err != nil {
		t.Fatal(err)
	}
	if err := tok.InvalidateAuthorizeCodeSession(ctx, id+"-code"); err != nil {
		t.Fatal(err)
	}
	if err := tok.CreateAccessTokenSession(ctx, id+"-at", req); err != nil {
		t.Fatal(err)
	}
	if err := tok.CreateRefreshTokenSession(ctx, id+"-rt", id+"-at", req); err != nil {
		t.Fatal(err)
	}
}

func accessOK(tok *OAuthTokens, sig string) bool {
	_, err := tok.GetAccessTokenSession(context.Background(), sig, &fosite.DefaultSession{})
	return err == nil
}

func refreshErr(tok *OAuthTokens, sig string) error {
	_, err := tok.GetRefreshTokenSession(context.Background(), sig, &fosite.DefaultSession{})
	return err
}

func TestOAuthRefreshRotation(t *testing.T) {
	s, tok, tc := newTokens(t, "c1")
	ctx := context.Background()
	req := testRequest(tc, "f1", "c1", "u_1", "r")
	seedFamily(t, tok, req)
	seedFamily(t, tok, testRequest(tc, "f2", "c1", "u_1", "r"))
	if err := tok.RotateRefreshToken(ctx, "f2", "f1-rt"); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("rotate with another request id: %v", err)
	}
	if err := tok.RotateRefreshToken(ctx, "f1", "f1-rt"); err != nil {
		t.Fatal(err)
	}
	got, err := tok.GetRefreshTokenSession(ctx, "f1-rt", &fosite.DefaultSession{})
	if !errors.Is(err, fosite.ErrInactiveToken) {
		t.Fatalf("get a rotated token: %v, want ErrInactiveToken", err)
	}
	sameRequest(t, got, req)
	if err := tok.RotateRefreshToken(ctx, "f1", "f1-rt"); !errors.Is(err, fosite.ErrInactiveToken) {
		t.Errorf("second rotation: %v, want ErrInactiveToken", err)
	}
	if err := tok.RotateRefreshToken(ctx, "f1", "missing"); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("rotate a missing token: %v, want ErrNotFound", err)
	}
	if accessOK(tok, "f1-at") || !accessOK(tok, "f2-at") || refreshErr(tok, "f2-rt") != nil {
		t.Error("rotation must delete its family's access tokens and nothing else")
	}
	// The grant stays across a rotation: fosite stores the new pair next.
	if gs, _ := s.OAuthGrantsByUser(ctx, "u_1"); len(gs) != 2 {
		t.Errorf("grants after rotation = %+v", gs)
	}

	// The grace-window record.
	if err := tok.SetRefreshSuccessor(ctx, "f2-rt", []byte("x")); !errors.Is(err, ErrInvalid) {
		t.Errorf("successor of an active token: %v, want ErrInvalid", err)
	}
	if at, sealed, err := tok.RefreshSuccessor(ctx, "f1-rt"); err != nil || at.IsZero() || sealed != nil {
		t.Errorf("RefreshSuccessor before Set = %v, %q, %v", at, sealed, err)
	}
	if err := tok.SetRefreshSuccessor(ctx, "f1-rt", []byte("sealed pair")); err != nil {
		t.Fatal(err)
	}
	if at, sealed, err := tok.RefreshSuccessor(ctx, "f1-rt"); err != nil || time.Since(at) > time.Minute || string(sealed) != "sealed pair" {
		t.Errorf("RefreshSuccessor = %v, %q, %v", at, sealed, err)
	}
	if _, _, err := tok.RefreshSuccessor(ctx, "missing"); !errors.Is(err, ErrNotFound) || !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("RefreshSuccessor of a missing token: %v", err)
	}
	if err := tok.SetRefreshSuccessor(ctx, "missing", nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetRefreshSuccessor of a missing token: %v", err)
	}
	// A revoked family has no grace.
	if err := tok.RevokeRefreshToken(ctx, "f1"); err != nil {
		t.Fatal(err)
	}
	if at, sealed, err := tok.RefreshSuccessor(ctx, "f1-rt"); err != nil || !at.IsZero() || sealed != nil {
		t.Errorf("RefreshSuccessor after revocation = %v, %q, %v", at, sealed, err)
	}
	checkOAuthIndexes(t, s)
}

func TestOAuthRevokeFamily(t *testing.T) {
	s, tok, tc := newTokens(t, "c1")
	ctx := context.Background()
	req := testRequest(tc, "f1", "c1", "u_1", "r")
	seedFamily(t, tok, req)
	// A second pair in the same family, as after a refresh that kept the old access token.
	if err := tok.CreateAccessTokenSession(ctx, "f1-at2", req); err != nil {
		t.Fatal(err)
	}
	if err := tok.CreateRefreshTokenSession(ctx, "f1-rt2", "f1-at2", req); err != nil {
		t.Fatal(err)
	}
	seedFamily(t, tok, testRequest(tc, "f2", "c1", "u_1", "r"))

	if err := tok.RevokeRefreshToken(ctx, "f1"); err != nil {
		t.Fatal(err)
	}
	for _, sig := range []string{"f1-rt", "f1-rt2"} {
		if err := refreshErr(tok, sig); !errors.Is(err, fosite.ErrInactiveToken) {
			t.Errorf("%s after RevokeRefreshToken: %v", sig, err)
		}
	}
	if !accessOK(tok, "f1-at") || !accessOK(tok, "f1-at2") {
		t.Error("RevokeRefreshToken deleted access tokens")
	}
	if err := tok.RevokeAccessToken(ctx, "f1"); err != nil {
		t.Fatal(err)
	}
	if accessOK(tok, "f1-at") || accessOK(tok, "f1-at2") {
		t.Error("RevokeAccessToken left an access token")
	}
	if !accessOK(tok, "f2-at") || refreshErr(tok, "f2-rt") != nil {
		t.Error("revoking f1 touched f2")
	}
	// f1 has no live token left: its grant is gone, its inactive tokens stay for replay detection.
	if gs, _ := s.ListOAuthGrants(ctx); len(gs) != 1 || gs[0].RequestID != "f2" {
		t.Errorf("grants = %+v, want f2 only", gs)
	}
	if _, err := tok.GetAuthorizeCodeSession(ctx, "f1-code", nil); !errors.Is(err, fosite.ErrInvalidatedAuthorizeCode) {
		t.Errorf("the used code after revocation: %v", err)
	}
	for _, f := range []func(context.Context, string) error{tok.RevokeAccessToken, tok.RevokeRefreshToken} {
		if err := f(ctx, "no-such-family"); err != nil {
			t.Errorf("revoke a missing family: %v", err)
		}
	}
	// Deleting the last tokens drops the family's index entries.
	for _, f := range []func(context.Context, string) error{tok.DeleteRefreshTokenSession, tok.DeleteAccessTokenSession, tok.DeletePKCERequestSession} {
		if err := f(ctx, "missing"); err != nil {
			t.Errorf("delete a missing token: %v", err)
		}
	}
	for _, sig := range []string{"f1-rt", "f1-rt2"} {
		if err := tok.DeleteRefreshTokenSession(ctx, sig); err != nil {
			t.Fatal(err)
		}
	}
	checkOAuthIndexes(t, s)
}

func TestOAuthRotateRace(t *testing.T) {
	_, tok, tc := newTokens(t, "c1")
	ctx := context.Background()
	seedFamily(t, tok, testRequest(tc, "f1", "c1", "u_1", "r"))
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = tok.RotateRefreshToken(ctx, "f1", "f1-rt")
		}()
	}
	close(start)
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, fosite.ErrInactiveToken):
			t.Errorf("a losing rotation: %v, want ErrInactiveToken", err)
		}
	}
	if won != 1 {
		t.Errorf("%d rotations succeeded, want exactly 1", won)
	}
}

func TestSweepExpiredOAuthTokens(t *testing.T) {
	s, tok, tc := newTokens(t, "c1")
	ctx := context.Background()
	now := time.Now()
	req := testRequest(tc, "f1", "c1", "u_1", "r") // code +10m, access +1h, refresh +24h
	seedFamily(t, tok, req)
	if err := tok.CreatePKCERequestSession(ctx, "f1-pkce", req); err != nil {
		t.Fatal(err)
	}
	seedFamily(t, tok, testRequest(tc, "f2", "c1", "u_2", "r"))
	if err := tok.RotateRefreshToken(ctx, "f2", "f2-rt"); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		at     time.Duration
		want   int
		grants []string
	}{
		{time.Minute, 0, []string{"f1", "f2"}},
		{20 * time.Minute, 3, []string{"f1", "f2"}}, // codes and the PKCE request
		{2 * time.Hour, 1, []string{"f1", "f2"}},    // f1's access token; f2's went with the rotation
		{23 * time.Hour, 0, []string{"f1", "f2"}},   // the rotated f2-rt is kept until its own expiry
		{25 * time.Hour, 2, []string{}},             // both refresh tokens
		{48 * time.Hour, 0, []string{}},
	} {
		n, err := s.SweepExpiredOAuthTokens(ctx, now.Add(step.at), 0)
		if err != nil || n != step.want {
			t.Fatalf("sweep at +%v: %d, %v; want %d", step.at, n, err, step.want)
		}
		gs, _ := s.ListOAuthGrants(ctx)
		var ids []string
		for _, g := range gs {
			ids = append(ids, g.RequestID)
		}
		if slices.Sort(ids); !slices.Equal(ids, step.grants) && len(ids)+len(step.grants) > 0 {
			t.Errorf("grants after the sweep at +%v = %q, want %q", step.at, ids, step.grants)
		}
		checkOAuthIndexes(t, s)
	}
	if err := refreshErr(tok, "f2-rt"); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("f2-rt after its expiry: %v", err)
	}
	for b, m := range dump(t, s) {
		if len(m) > 0 && b != bucketMeta {
			t.Errorf("bucket %s is left with %q", b, m)
		}
	}
}

// checkOAuthIndexes fails the test unless every OAuth index holds exactly the entries its
// records imply, and every grant belongs to a family with a live token (see settleFamily).
func checkOAuthIndexes(t *testing.T, s *Store) {
	t.Helper()
	idx := []string{bucketOAuthClientsByExpiry, bucketOAuthTokensByRequest, bucketOAuthTokensByExpiry,
		bucketOAuthFamiliesByClient, bucketOAuthGrantsByUser, bucketOAuthConsentsByClient}
	want := map[string]map[string]string{}
	for _, b := range idx {
		want[b] = map[string]string{}
	}
	live := map[string]bool{}
	err := s.db.View(func(tx *bolt.Tx) error {
		err := tx.Bucket([]byte(bucketOAuthClients)).ForEach(func(k, v []byte) error {
			c, err := decodeOAuthClient(string(k), v)
			if err == nil && !c.ExpiresAt.IsZero() {
				want[bucketOAuthClientsByExpiry][string(expiryKey(c.ExpiresAt, c.ID))] = ""
			}
			return err
		})
		if err != nil {
			return err
		}
		err = tx.Bucket([]byte(bucketOAuthTokens)).ForEach(func(k, v []byte) error {
			r, err := decodeRecord[oauthTokenRecord]("token", v)
			if err != nil {
				return err
			}
			want[bucketOAuthTokensByRequest][string(ownerKey(r.RequestID, string(k)))] = ""
			want[bucketOAuthFamiliesByClient][string(ownerKey(r.ClientID, r.RequestID))] = ""
			if !r.ExpiresAt.IsZero() {
				want[bucketOAuthTokensByExpiry][string(expiryKey(r.ExpiresAt, string(k)))] = ""
			}
			if k[0] == tokenAccess || (k[0] == tokenRefresh && (r.Active || !r.RotatedAt.IsZero())) {
				live[r.RequestID] = true
			}
			return nil
		})
		if err != nil {
			return err
		}
		err = tx.Bucket([]byte(bucketOAuthGrants)).ForEach(func(k, v []byte) error {
			g, err := decodeGrant(string(k), v)
			if err != nil {
				return err
			}
			want[bucketOAuthGrantsByUser][string(grantUserKey(g))] = ""
			if !live[g.RequestID] {
				t.Errorf("grant %s has no live token", g.RequestID)
			}
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket([]byte(bucketOAuthConsents)).ForEach(func(k, v []byte) error {
			p := bytesSplit3(t, k)
			want[bucketOAuthConsentsByClient][string(joinKey(p[1], p[0], p[2]))] = ""
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	got := dump(t, s)
	for b, w := range want {
		if !maps.Equal(got[b], w) {
			t.Errorf("index %s = %q, want %q", b, got[b], w)
		}
	}
}

func bytesSplit3(t *testing.T, k []byte) []string {
	var out []string
	start := 0
	for i, c := range k {
		if c == ownerSep {
			out, start = append(out, string(k[start:i])), i+1
		}
	}
	out = append(out, string(k[start:]))
	if len(out) != 3 {
		t.Fatalf("key %q has %d parts", k, len(out))
	}
	return out
}

func TestOAuthCorruptRecords(t *testing.T) {
	s, tok, tc := newTokens(t, "c1")
	ctx := context.Background()
	seedFamily(t, tok, testRequest(tc, "f1", "c1", "u_1", "r"))
	if _, err := s.PutOAuthClient(ctx, OAuthClient{ID: "c1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutOAuthConsent(ctx, OAuthConsent{UserID: "u_1", ClientID: "c1"}); err != nil {
		t.Fatal(err)
	}
	for _, tcase := range []struct {
		name   string
		value  string
		wantIs error
	}{
		{"garbage", "{not json", nil},
		{"newer version", `{"v":99}`, ErrSchemaTooNew},
		{"bad form", `{"v":1,"request_id":"f1","client_id":"c1","form":"%zz","active":true}`, nil},
		{"bad session", `{"v":1,"request_id":"f1","client_id":"c1","session":[1],"active":true}`, nil},
	} {
		t.Run(tcase.name, func(t *testing.T) {
			err := s.db.Update(func(tx *bolt.Tx) error {
				for _, kv := range []struct{ b, k string }{
					{bucketOAuthTokens, tokenKey(tokenAccess, "f1-at")},
					{bucketOAuthClients, "c1"},
					{bucketOAuthGrants, "f1"},
					{bucketOAuthConsents, string(joinKey("u_1", "c1", ""))},
				} {
					if err := tx.Bucket([]byte(kv.b)).Put([]byte(kv.k), []byte(tcase.value)); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			check := func(what string, err error) {
				if err == nil || (tcase.wantIs != nil && !errors.Is(err, tcase.wantIs)) {
					t.Errorf("%s: %v, want an error (%v)", what, err, tcase.wantIs)
				}
			}
			_, err = tok.GetAccessTokenSession(ctx, "f1-at", &fosite.DefaultSession{})
			check("GetAccessTokenSession", err)
			if strings.HasPrefix(tcase.value, `{"v":1`) {
				return // the other records decode; only the token is wrong
			}
			_, err = s.GetOAuthClient(ctx, "c1")
			check("GetOAuthClient", err)
			_, err = s.ListOAuthGrants(ctx)
			check("ListOAuthGrants", err)
			_, err = s.OAuthConsentsByUser(ctx, "u_1")
			check("OAuthConsentsByUser", err)
			check("RevokeAccessToken", tok.RevokeAccessToken(ctx, "f1"))
			_, err = s.RevokeUserOAuthGrants(ctx, "u_1")
			check("RevokeUserOAuthGrants", err)
		})
	}
}

// TestOAuthGenerationMoves: every change that can end an access token early moves the
// generation, so that a cache of validated tokens drops it.
func TestOAuthGenerationMoves(t *testing.T) {
	s := openTest(t, "")
	ctx := context.Background()
	u, err := s.CreateUser(ctx, User{Email: "gen@test"})
	if err != nil {
		t.Fatal(err)
	}
	tokens := s.OAuthTokens(nil)
	steps := []struct {
		name string
		do   func() error
	}{
		{"delete access token", func() error { return tokens.DeleteAccessTokenSession(ctx, "sig") }},
		{"revoke family access tokens", func() error { return tokens.RevokeAccessToken(ctx, "req") }},
		{"rotate refresh token", func() error { _ = tokens.RotateRefreshToken(ctx, "req", "sig"); return nil }},
		{"revoke grants", func() error { _, err := s.RevokeOAuthGrants(ctx, u.ID, "", ""); return err }},
		{"revoke consent", func() error { _ = s.RevokeOAuthConsent(ctx, u.ID, "c", "r"); return nil }},
		{"update user", func() error {
			_, err := s.UpdateUser(ctx, u.ID, func(u *User) error { u.Disabled = true; return nil })
			return err
		}},
	}
	for _, st := range steps {
		before := s.OAuthGeneration()
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if s.OAuthGeneration() == before {
			t.Errorf("%s did not move the generation", st.name)
		}
	}
}
