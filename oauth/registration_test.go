package oauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ory/fosite"

	"github.com/toolgate/toolgate/data"
)

// regTest is a registration endpoint over an in-memory store with a settable clock.
type regTest struct {
	h       http.Handler
	clients *memClients
	now     time.Time
	logs    *bytes.Buffer
}

func newRegTest(t *testing.T, mod func(*RegistrationConfig)) *regTest {
	t.Helper()
	rt := &regTest{clients: newMemClients(), now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), logs: new(bytes.Buffer)}
	cfg := RegistrationConfig{
		Clients: rt.clients,
		Scopes:  testScopes,
		Hasher:  &fosite.BCrypt{Config: &fosite.Config{HashCost: 4}},
		Now:     func() time.Time { return rt.now },
		Logger:  slog.New(slog.NewTextHandler(rt.logs, nil)),
	}
	if mod != nil {
		mod(&cfg)
	}
	h, err := NewRegistration(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rt.h = h
	return rt
}

func (rt *regTest) do(method, contentType, body, remote string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "https://auth.example/oauth/register", strings.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	if remote != "" {
		r.RemoteAddr = remote
	}
	w := httptest.NewRecorder()
	rt.h.ServeHTTP(w, r)
	return w
}

func (rt *regTest) post(body string) *httptest.ResponseRecorder {
	return rt.do(http.MethodPost, "application/json", body, "")
}

var clientIDPattern = regexp.MustCompile(`^tgc_[A-Za-z0-9_-]{22}$`)

func TestRegistrationPublicClient(t *testing.T) {
	rt := newRegTest(t, nil)
	// What mcp-remote sends, plus a client_id and client_secret it must not get to choose.
	w := rt.post(`{"client_name":"MCP CLI Proxy","redirect_uris":["http://localhost:3334/oauth/callback"],
		"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"token_endpoint_auth_method":"none",
		"client_uri":"https://github.com/modelcontextprotocol/mcp-cli","software_id":"2e6dc280-f3c3-4e01-99a7-8181dbd1d23d",
		"software_version":"0.1.29","logo_uri":"","scope":"mcp","client_id":"chosen","client_secret":"chosen-secret"}`)
	if w.Code != http.StatusCreated {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if cc := w.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q", cc)
	}
	var resp map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	id, _ := resp["client_id"].(string)
	if !clientIDPattern.MatchString(id) {
		t.Errorf("client_id = %q", id)
	}
	if resp["client_id_issued_at"] != float64(rt.now.Unix()) {
		t.Errorf("client_id_issued_at = %v", resp["client_id_issued_at"])
	}
	uris, _ := resp["redirect_uris"].([]any)
	if len(uris) != 1 || uris[0] != "http://localhost:3334/oauth/callback" {
		t.Errorf("redirect_uris = %v", resp["redirect_uris"])
	}
	for k, want := range map[string]any{
		"client_name": "MCP CLI Proxy", "token_endpoint_auth_method": "none", "application_type": "native",
		"scope": "mcp mcp:admin offline_access", "software_version": "0.1.29",
	} {
		if resp[k] != want {
			t.Errorf("%s = %v, want %v", k, resp[k], want)
		}
	}
	for _, k := range []string{"client_secret", "client_secret_expires_at", "logo_uri"} {
		if _, ok := resp[k]; ok {
			t.Errorf("response has %s: %s", k, w.Body)
		}
	}
	if g, _ := resp["grant_types"].([]any); len(g) != 2 {
		t.Errorf("grant_types = %v", resp["grant_types"])
	}

	rec, ok := rt.clients.get(id)
	if !ok {
		t.Fatalf("client %s not stored", id)
	}
	if rec.Kind != data.ClientDynamic || rec.Name != "MCP CLI Proxy" || rec.SecretHash != "" ||
		!rec.CreatedAt.Equal(rt.now) || !rec.ExpiresAt.Equal(rt.now.Add(24*time.Hour)) || !rec.LastUsed.IsZero() {
		t.Errorf("stored record = %+v", rec)
	}
	if strings.Join(rec.Scopes, " ") != "mcp mcp:admin offline_access" {
		t.Errorf("stored scopes = %q", rec.Scopes)
	}
	if bytes.Contains(rec.Metadata, []byte("chosen")) {
		t.Errorf("stored metadata keeps the client's chosen id or secret: %s", rec.Metadata)
	}
	logs := rt.logs.String()
	if !strings.Contains(logs, id) || !strings.Contains(logs, "localhost:3334") || !strings.Contains(logs, "192.0.2.1") {
		t.Errorf("log line lacks client id, redirect host or remote IP: %s", logs)
	}
}

func TestRegistrationConfidentialClient(t *testing.T) {
	for _, method := range []string{"client_secret_basic", "client_secret_post"} {
		t.Run(method, func(t *testing.T) {
			rt := newRegTest(t, func(c *RegistrationConfig) { c.UnusedTTL = time.Hour })
			w := rt.post(`{"redirect_uris":["https://app.example/cb"],"token_endpoint_auth_method":"` + method + `","client_secret":"mine"}`)
			if w.Code != http.StatusCreated {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			var resp struct {
				ClientID              string `json:"client_id"`
				ClientSecret          string `json:"client_secret"`
				ClientSecretExpiresAt *int64 `json:"client_secret_expires_at"`
				ApplicationType       string `json:"application_type"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
				t.Fatal(err)
			}
			if len(resp.ClientSecret) != 43 || resp.ClientSecret == "mine" {
				t.Errorf("client_secret = %q, want 43 base64url characters", resp.ClientSecret)
			}
			if resp.ClientSecretExpiresAt == nil || *resp.ClientSecretExpiresAt != 0 {
				t.Errorf("client_secret_expires_at = %v, want 0", resp.ClientSecretExpiresAt)
			}
			if resp.ApplicationType != "web" {
				t.Errorf("application_type = %q", resp.ApplicationType)
			}
			rec, _ := rt.clients.get(resp.ClientID)
			if rec.SecretHash == "" || strings.Contains(rec.SecretHash, resp.ClientSecret) || bytes.Contains(rec.Metadata, []byte(resp.ClientSecret)) {
				t.Fatalf("secret not stored as a hash only: %+v", rec)
			}
			if err := (&fosite.BCrypt{Config: &fosite.Config{}}).Compare(context.Background(), []byte(rec.SecretHash), []byte(resp.ClientSecret)); err != nil {
				t.Errorf("stored hash does not match the secret: %v", err)
			}
			if !rec.ExpiresAt.Equal(rt.now.Add(time.Hour)) {
				t.Errorf("ExpiresAt = %v", rec.ExpiresAt)
			}
			if strings.Contains(rt.logs.String(), resp.ClientSecret) {
				t.Error("the secret was logged")
			}
		})
	}
}

func TestRegistrationUniqueIDs(t *testing.T) {
	rt := newRegTest(t, func(c *RegistrationConfig) { c.RatePerMinute = -1 })
	for range 50 {
		if w := rt.post(`{"redirect_uris":["http://127.0.0.1/cb"]}`); w.Code != http.StatusCreated {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
	if n := rt.clients.count(); n != 50 {
		t.Errorf("%d clients stored, want 50", n)
	}
}

func TestRegistrationErrors(t *testing.T) {
	tests := []struct {
		name        string
		method      string
		contentType string
		body        string
		status      int
		code        string
	}{
		{"GET", http.MethodGet, "", "", http.StatusMethodNotAllowed, "invalid_request"},
		{"PUT", http.MethodPut, "application/json", `{}`, http.StatusMethodNotAllowed, "invalid_request"},
		{"no content type", http.MethodPost, "", `{"redirect_uris":["https://a/cb"]}`, http.StatusBadRequest, errInvalidClientMetadata},
		{"form", http.MethodPost, "application/x-www-form-urlencoded", `redirect_uris=https://a/cb`, http.StatusBadRequest, errInvalidClientMetadata},
		{"text/plain JSON", http.MethodPost, "text/plain", `{"redirect_uris":["https://a/cb"]}`, http.StatusBadRequest, errInvalidClientMetadata},
		{"malformed", http.MethodPost, "application/json", `{"redirect_uris":`, http.StatusBadRequest, errInvalidClientMetadata},
		{"wrong type", http.MethodPost, "application/json", `{"redirect_uris":"https://a/cb"}`, http.StatusBadRequest, errInvalidClientMetadata},
		{"no redirect", http.MethodPost, "application/json", `{"client_name":"x"}`, http.StatusBadRequest, errInvalidRedirectURI},
		{"http redirect", http.MethodPost, "application/json", `{"redirect_uris":["http://evil.example/cb?scope=mcp"]}`, http.StatusBadRequest, errInvalidRedirectURI},
		{"unknown scope", http.MethodPost, "application/json", `{"redirect_uris":["https://a/cb"],"scope":"admin"}`, http.StatusBadRequest, errInvalidClientMetadata},
		{"too large", http.MethodPost, "application/json", `{"redirect_uris":["https://a/cb"],"x":"` + strings.Repeat("a", MaxMetadataBytes) + `"}`, http.StatusRequestEntityTooLarge, errInvalidClientMetadata},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := newRegTest(t, nil)
			w := rt.do(tt.method, tt.contentType, tt.body, "")
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.status, w.Body)
			}
			if tt.status == http.StatusMethodNotAllowed && w.Header().Get("Allow") != http.MethodPost {
				t.Errorf("Allow = %q", w.Header().Get("Allow"))
			}
			var e struct {
				Error       string `json:"error"`
				Description string `json:"error_description"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
				t.Fatalf("body %q: %v", w.Body, err)
			}
			if e.Error != tt.code || e.Description == "" {
				t.Errorf("error = %q (%q), want %q", e.Error, e.Description, tt.code)
			}
			if strings.Contains(e.Description, "scope=") || strings.Contains(e.Description, "resource_metadata=") {
				t.Errorf("description %q contains a challenge parameter", e.Description)
			}
			if n := rt.clients.count(); n != 0 {
				t.Errorf("%d clients stored after an error", n)
			}
		})
	}
}

func TestRegistrationStoreFailure(t *testing.T) {
	rt := newRegTest(t, nil)
	rt.clients.failPut = errors.New("disk full")
	w := rt.post(`{"redirect_uris":["https://a/cb"]}`)
	if w.Code != http.StatusInternalServerError || !strings.Contains(w.Body.String(), "server_error") {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if strings.Contains(w.Body.String(), "disk full") {
		t.Error("internal error leaked to the client")
	}
}

func TestRegistrationRateLimit(t *testing.T) {
	rt := newRegTest(t, func(c *RegistrationConfig) { c.RatePerMinute = 3 })
	reg := func(remote string) *httptest.ResponseRecorder {
		return rt.do(http.MethodPost, "application/json", `{"redirect_uris":["http://127.0.0.1/cb"]}`, remote)
	}
	for i := range 3 {
		if w := reg("203.0.113.7:1234"); w.Code != http.StatusCreated {
			t.Fatalf("registration %d: status %d", i, w.Code)
		}
	}
	w := reg("203.0.113.7:5678")
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("4th registration: status %d, want 429", w.Code)
	}
	ra, err := strconv.Atoi(w.Header().Get("Retry-After"))
	if err != nil || ra < 1 || ra > 20 {
		t.Errorf("Retry-After = %q, want about 20s", w.Header().Get("Retry-After"))
	}
	if !strings.Contains(w.Body.String(), `"error"`) {
		t.Errorf("429 body = %s", w.Body)
	}
	// Other addresses are not affected; one IPv6 /64 is one bucket.
	if w := reg("203.0.113.8:1"); w.Code != http.StatusCreated {
		t.Errorf("other IPv4 address: status %d", w.Code)
	}
	for i := range 3 {
		reg("[2001:db8:1:2::" + strconv.Itoa(i+1) + "]:1")
	}
	if w := reg("[2001:db8:1:2::99]:1"); w.Code != http.StatusTooManyRequests {
		t.Errorf("same /64: status %d, want 429", w.Code)
	}
	if w := reg("[2001:db8:1:3::1]:1"); w.Code != http.StatusCreated {
		t.Errorf("other /64: status %d", w.Code)
	}
	// Tokens come back with time.
	rt.now = rt.now.Add(time.Duration(ra) * time.Second)
	if w := reg("203.0.113.7:1"); w.Code != http.StatusCreated {
		t.Errorf("after Retry-After: status %d", w.Code)
	}
}

func TestRegistrationConfig(t *testing.T) {
	if _, err := NewRegistration(RegistrationConfig{Scopes: testScopes}); err == nil {
		t.Error("no Clients: no error")
	}
	if _, err := NewRegistration(RegistrationConfig{Clients: newMemClients()}); err == nil {
		t.Error("no Scopes: no error")
	}
	// Defaults: the real bcrypt hasher, and a working handler with no logger.
	h, err := NewRegistration(RegistrationConfig{Clients: newMemClients(), Scopes: testScopes})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{"redirect_uris":["https://a/cb"]}`))
	r.Header.Set("Content-Type", "application/json; charset=utf-8")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusCreated {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	b, _ := io.ReadAll(w.Body)
	if !bytes.Contains(b, []byte(`"redirect_uris":["https://a/cb"]`)) {
		t.Errorf("body = %s", b)
	}
}
