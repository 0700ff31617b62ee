package oauth

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/toolgate/toolgate/data"
)

// testClock is a settable clock safe for concurrent use.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// docServer is an https server of metadata documents.
type docServer struct {
	srv      *httptest.Server
	requests atomic.Int64
	// handle serves a request for a path; default serves a valid document.
	mu     sync.Mutex
	handle func(w http.ResponseWriter, r *http.Request, clientID string)
}

func newDocServer(t *testing.T) *docServer {
	t.Helper()
	ds := &docServer{}
	ds.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ds.requests.Add(1)
		if r.Header.Get("Accept") != "application/json" {
			http.Error(w, "bad Accept", http.StatusNotAcceptable)
			return
		}
		ds.mu.Lock()
		h := ds.handle
		ds.mu.Unlock()
		id := ds.srv.URL + r.URL.RequestURI()
		if h == nil {
			h = serveDoc("", "")
		}
		h(w, r, id)
	}))
	ds.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused certificates make noise
	ds.srv.StartTLS()
	t.Cleanup(ds.srv.Close)
	return ds
}

func (ds *docServer) setHandler(h func(w http.ResponseWriter, r *http.Request, clientID string)) {
	ds.mu.Lock()
	ds.handle = h
	ds.mu.Unlock()
}

func (ds *docServer) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ds.srv.Certificate())
	return p
}

// validDoc is a document for clientID in the shape Claude Code publishes.
func validDoc(clientID string) string {
	return fmt.Sprintf(`{"client_id":%q,"client_name":"Claude Code","client_uri":"https://claude.ai",
		"redirect_uris":["http://localhost/callback","http://127.0.0.1/callback"],
		"grant_types":["authorization_code","refresh_token"],"response_types":["code"],
		"token_endpoint_auth_method":"none"}`, clientID)
}

// serveDoc serves validDoc with a Cache-Control header (none if empty) and an extra header.
func serveDoc(cacheControl, expires string) func(http.ResponseWriter, *http.Request, string) {
	return func(w http.ResponseWriter, r *http.Request, id string) {
		w.Header().Set("Content-Type", "application/json")
		if cacheControl != "" {
			w.Header().Set("Cache-Control", cacheControl)
		}
		if expires != "" {
			w.Header().Set("Expires", expires)
		}
		fmt.Fprint(w, validDoc(id))
	}
}

type cimdTest struct {
	ds      *docServer
	docs    *MetadataDocuments
	clients *memClients
	clock   *testClock
}

func newCIMDTest(t *testing.T, mod func(*MetadataDocumentsConfig)) *cimdTest {
	t.Helper()
	ct := &cimdTest{ds: newDocServer(t), clients: newMemClients(), clock: &testClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}}
	cfg := MetadataDocumentsConfig{
		Clients:  ct.clients,
		Scopes:   testScopes,
		Outbound: OutboundConfig{AllowPrivate: true, RootCAs: ct.ds.pool()},
		Now:      ct.clock.Now,
	}
	if mod != nil {
		mod(&cfg)
	}
	docs, err := NewMetadataDocuments(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ct.docs = docs
	return ct
}

func (ct *cimdTest) url(path string) string { return ct.ds.srv.URL + path }

func TestCIMDFetchAndCache(t *testing.T) {
	ct := newCIMDTest(t, nil)
	id := ct.url("/oauth/client-metadata.json")
	start := ct.clock.Now()
	rec, err := ct.docs.Client(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if rec.ID != id || rec.Kind != data.ClientMetadataDocument || rec.Name != "Claude Code" || rec.URI != "https://claude.ai" ||
		rec.ApplicationType != "native" || rec.TokenEndpointAuthMethod != "none" || rec.SecretHash != "" {
		t.Errorf("record = %+v", rec)
	}
	if strings.Join(rec.Scopes, " ") != strings.Join(testScopes, " ") {
		t.Errorf("scopes = %q", rec.Scopes)
	}
	if !rec.CreatedAt.Equal(start) || !rec.FreshUntil.Equal(start.Add(time.Hour)) {
		t.Errorf("CreatedAt %v FreshUntil %v, want %v and +1h (the default TTL)", rec.CreatedAt, rec.FreshUntil, start)
	}
	// The client outlives its cache: it is kept as long as an unused registered client.
	if !rec.ExpiresAt.Equal(start.Add(24 * time.Hour)) {
		t.Errorf("ExpiresAt %v, want %v (UnusedTTL, not the cache lifetime)", rec.ExpiresAt, start.Add(24*time.Hour))
	}
	if stored, ok := ct.clients.get(id); !ok || !stored.FreshUntil.Equal(rec.FreshUntil) {
		t.Errorf("stored record = %+v", stored)
	}

	// Within the TTL: the cached record, no request.
	ct.clock.Add(59 * time.Minute)
	if _, err := ct.docs.Client(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if n := ct.ds.requests.Load(); n != 1 {
		t.Fatalf("%d requests within the TTL, want 1", n)
	}

	// Past it: fetched again; CreatedAt is kept.
	ct.clock.Add(2 * time.Minute)
	rec2, err := ct.docs.Client(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if n := ct.ds.requests.Load(); n != 2 {
		t.Fatalf("%d requests after the TTL, want 2", n)
	}
	if !rec2.CreatedAt.Equal(start) || !rec2.FreshUntil.Equal(ct.clock.Now().Add(time.Hour)) {
		t.Errorf("refetched: CreatedAt %v FreshUntil %v", rec2.CreatedAt, rec2.FreshUntil)
	}
}

func TestCIMDCacheLifetime(t *testing.T) {
	tests := []struct {
		name    string
		header  func(now time.Time) (cacheControl, expires string)
		extra   map[string]string
		wantTTL time.Duration
	}{
		{"none", func(time.Time) (string, string) { return "", "" }, nil, time.Hour},
		{"max-age", func(time.Time) (string, string) { return "public, max-age=600", "" }, nil, 10 * time.Minute},
		{"max-age quoted", func(time.Time) (string, string) { return `max-age="900"`, "" }, nil, 15 * time.Minute},
		{"max-age clamped up", func(time.Time) (string, string) { return "max-age=60", "" }, nil, 5 * time.Minute},
		{"max-age zero", func(time.Time) (string, string) { return "max-age=0", "" }, nil, 5 * time.Minute},
		{"max-age clamped down", func(time.Time) (string, string) { return "max-age=31536000", "" }, nil, 24 * time.Hour},
		{"max-age huge", func(time.Time) (string, string) { return "max-age=99999999999999999999", "" }, nil, time.Hour},
		{"max-age minus Age", func(time.Time) (string, string) { return "max-age=3600", "" }, map[string]string{"Age": "1200"}, 40 * time.Minute},
		{"no-store", func(time.Time) (string, string) { return "no-store", "" }, nil, 5 * time.Minute},
		{"no-cache wins over max-age", func(time.Time) (string, string) { return "max-age=3600, no-cache", "" }, nil, 5 * time.Minute},
		{"max-age wins over Expires", func(now time.Time) (string, string) {
			return "max-age=1200", now.Add(3 * time.Hour).Format(http.TimeFormat)
		}, nil, 20 * time.Minute},
		{"Expires", func(now time.Time) (string, string) { return "", now.Add(2 * time.Hour).Format(http.TimeFormat) }, nil, 2 * time.Hour},
		{"Expires in the past", func(now time.Time) (string, string) { return "", now.Add(-time.Hour).Format(http.TimeFormat) }, nil, 5 * time.Minute},
		{"Expires invalid", func(time.Time) (string, string) { return "", "0" }, nil, 5 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := newCIMDTest(t, nil)
			now := ct.clock.Now()
			cc, exp := tt.header(now)
			ct.ds.setHandler(func(w http.ResponseWriter, r *http.Request, id string) {
				for k, v := range tt.extra {
					w.Header().Set(k, v)
				}
				// Date as the fake clock sees it, so Expires is judged against it.
				w.Header().Set("Date", now.Format(http.TimeFormat))
				serveDoc(cc, exp)(w, r, id)
			})
			rec, err := ct.docs.Client(context.Background(), ct.url("/doc"))
			if err != nil {
				t.Fatal(err)
			}
			if got := rec.FreshUntil.Sub(now); got != tt.wantTTL {
				t.Errorf("TTL = %v, want %v", got, tt.wantTTL)
			}
		})
	}
}

func TestCIMDTTLConfig(t *testing.T) {
	ct := newCIMDTest(t, func(c *MetadataDocumentsConfig) {
		c.MinTTL, c.MaxTTL, c.DefaultTTL = time.Minute, 10*time.Minute, 2*time.Minute
	})
	ct.ds.setHandler(serveDoc("max-age=86400", ""))
	rec, err := ct.docs.Client(context.Background(), ct.url("/doc"))
	if err != nil {
		t.Fatal(err)
	}
	if got := rec.FreshUntil.Sub(ct.clock.Now()); got != 10*time.Minute {
		t.Errorf("TTL = %v, want MaxTTL 10m", got)
	}
	if _, err := NewMetadataDocuments(MetadataDocumentsConfig{Clients: newMemClients(), Scopes: testScopes, MinTTL: time.Hour, MaxTTL: time.Minute}); err == nil {
		t.Error("MinTTL > MaxTTL: no error")
	}
	if _, err := NewMetadataDocuments(MetadataDocumentsConfig{Scopes: testScopes}); err == nil {
		t.Error("no Clients: no error")
	}
	if _, err := NewMetadataDocuments(MetadataDocumentsConfig{Clients: newMemClients()}); err == nil {
		t.Error("no Scopes: no error")
	}
}

func TestCIMDRefused(t *testing.T) {
	big := strings.Repeat(" ", MaxMetadataBytes)
	tests := []struct {
		name   string
		handle func(w http.ResponseWriter, r *http.Request, id string)
		want   string // in the error
		meta   string // the MetadataError code it must wrap, if any
	}{
		{"client_id mismatch", func(w http.ResponseWriter, r *http.Request, id string) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, validDoc(id+"x"))
		}, "does not equal its URL", ""},
		{"client_id trailing slash", func(w http.ResponseWriter, r *http.Request, id string) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, validDoc(id+"/"))
		}, "does not equal its URL", ""},
		{"client_id missing", func(w http.ResponseWriter, r *http.Request, id string) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"redirect_uris":["http://127.0.0.1/cb"]}`)
		}, "no client_id", ""},
		{"oversize with Content-Length", func(w http.ResponseWriter, r *http.Request, id string) {
			w.Header().Set("Content-Type", "application/json")
			doc := validDoc(id)
			doc = doc[:len(doc)-1] + big + "}"
			w.Header().Set("Content-Length", fmt.Sprint(len(doc)))
			fmt.Fprint(w, doc)
		}, fmt.Sprintf("document larger than %d bytes", MaxMetadataBytes), ""},
		{"oversize chunked", func(w http.ResponseWriter, r *http.Request, id string) {
			w.Header().Set("Content-Type", "application/json")
			doc := validDoc(id)
			fmt.Fprint(w, doc[:len(doc)-1])
			w.(http.Flusher).Flush()
			fmt.Fprint(w, big+"}")
		}, fmt.Sprintf("document larger than %d bytes", MaxMetadataBytes), ""},
		{"404", func(w http.ResponseWriter, r *http.Request, id string) {
			http.NotFound(w, r)
		}, "HTTP 404", ""},
		{"204", func(w http.ResponseWriter, r *http.Request, id string) {
			w.WriteHeader(http.StatusNoContent)
		}, "HTTP 204", ""},
		{"redirect", func(w http.ResponseWriter, r *http.Request, id string) {
			if r.URL.Path == "/doc" {
				http.Redirect(w, r, "/elsewhere", http.StatusFound)
				return
			}
			serveDoc("", "")(w, r, id)
		}, "redirects are not followed", ""},
		{"text/html", func(w http.ResponseWriter, r *http.Request, id string) {
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, validDoc(id))
		}, `content type "text/html"`, ""},
		{"no content type", func(w http.ResponseWriter, r *http.Request, id string) {
			w.Header()["Content-Type"] = nil
			fmt.Fprint(w, validDoc(id))
		}, "is not application/json", ""},
		{"malformed JSON", func(w http.ResponseWriter, r *http.Request, id string) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"client_id":`)
		}, "not valid JSON", errInvalidClientMetadata},
		{"http redirect URI", func(w http.ResponseWriter, r *http.Request, id string) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"client_id":%q,"redirect_uris":["http://evil.example/cb"]}`, id)
		}, "http://evil.example/cb", errInvalidRedirectURI},
		{"secret auth method", func(w http.ResponseWriter, r *http.Request, id string) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"client_id":%q,"redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":"client_secret_basic"}`, id)
		}, "use none", ""},
		{"client_secret in document", func(w http.ResponseWriter, r *http.Request, id string) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"client_id":%q,"redirect_uris":["https://a.example/cb"],"client_secret":"oops"}`, id)
		}, "client_secret", ""},
		{"private_key_jwt", func(w http.ResponseWriter, r *http.Request, id string) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"client_id":%q,"redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":"private_key_jwt"}`, id)
		}, "private_key_jwt", errInvalidClientMetadata},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := newCIMDTest(t, nil)
			ct.ds.setHandler(tt.handle)
			id := ct.url("/doc")
			_, err := ct.docs.Client(context.Background(), id)
			if !errors.Is(err, ErrMetadataDocument) {
				t.Fatalf("error %v does not wrap ErrMetadataDocument", err)
			}
			if !strings.HasPrefix(err.Error(), "client metadata document "+id+": ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q, want it to mention %q", err, tt.want)
			}
			if tt.meta != "" {
				var me *MetadataError
				if !errors.As(err, &me) || me.Code != tt.meta {
					t.Errorf("error %v does not wrap a %s MetadataError", err, tt.meta)
				}
			}
			if n := ct.clients.count(); n != 0 {
				t.Errorf("%d records stored after a refused document", n)
			}
			if tt.name == "redirect" && ct.ds.requests.Load() != 1 {
				t.Errorf("%d requests: the redirect was followed", ct.ds.requests.Load())
			}
		})
	}
}

func TestCIMDContentTypeParameters(t *testing.T) {
	ct := newCIMDTest(t, nil)
	ct.ds.setHandler(func(w http.ResponseWriter, r *http.Request, id string) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		fmt.Fprint(w, validDoc(id))
	})
	if _, err := ct.docs.Client(context.Background(), ct.url("/doc")); err != nil {
		t.Fatal(err)
	}
}

func TestCIMDPrivateAddressRefused(t *testing.T) {
	ct := newCIMDTest(t, func(c *MetadataDocumentsConfig) { c.Outbound.AllowPrivate = false })
	id := ct.url("/oauth/client-metadata.json")
	_, err := ct.docs.Client(context.Background(), id)
	if !errors.Is(err, ErrMetadataDocument) {
		t.Fatalf("error %v does not wrap ErrMetadataDocument", err)
	}
	// The host is an IP literal, which only the dial guard checks.
	if want := "client metadata document " + id + ": 127.0.0.1 is a loopback address"; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
	if n := ct.ds.requests.Load(); n != 0 {
		t.Errorf("%d requests reached the server", n)
	}

	port := ct.ds.srv.Listener.Addr().String()
	port = port[strings.LastIndex(port, ":"):]
	for _, host := range []string{"localhost", "LocalHost.", "app.localhost"} {
		_, err := ct.docs.Client(context.Background(), "https://"+host+port+"/doc")
		if !errors.Is(err, ErrMetadataDocument) || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("%s: error = %v", host, err)
		}
	}
	if n := ct.ds.requests.Load(); n != 0 {
		t.Errorf("%d requests reached the server", n)
	}
}

func TestCIMDInvalidID(t *testing.T) {
	ct := newCIMDTest(t, nil)
	base := ct.url("")
	tests := []struct {
		id   string
		want string
	}{
		{"http" + strings.TrimPrefix(base, "https") + "/doc", "https://"},
		{base, "path"},
		{base + "/", "path"},
		{base + "/doc#frag", "fragment"},
		{base + "/doc#", "fragment"},
		{"https://user:pw@" + strings.TrimPrefix(base, "https://") + "/doc", "user information"},
		{base + "/a/../doc", ". or .."},
		{base + "/./doc", ". or .."},
		{base + "/a/%2e%2e/doc", ". or .."},
		{base + "/" + strings.Repeat("a", 2000), "longer than 2000"},
		{base + "/do c", "control"},
		{base + "/doc\n", "control"},
		{"https:///doc", "no host"},
		{"https://[::1/doc", "does not parse"},
	}
	for _, tt := range tests {
		_, err := ct.docs.Client(context.Background(), tt.id)
		if !errors.Is(err, ErrMetadataDocument) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Client(%q) error = %v, want one mentioning %q", tt.id, err, tt.want)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("error for %q spans lines: %q", tt.id, err)
		}
	}
	if n := ct.ds.requests.Load(); n != 0 {
		t.Errorf("%d requests for invalid ids", n)
	}
}

func TestIsMetadataDocumentID(t *testing.T) {
	for id, want := range map[string]bool{
		"https://claude.ai/oauth/claude-code-client-metadata": true,
		"https://vscode.dev/oauth/client-metadata.json":       true,
		"https://example.com:8443/c?x=1":                      true,
		"https://example.com":                                 false,
		"https://example.com/":                                false,
		"https://example.com?x=/a":                            false,
		"http://example.com/client":                           false,
		"HTTPS://example.com/client":                          false,
		"tgc_abcdefghijklmnopqrstuv":                          false,
		"":                                                    false,
		"https:///client":                                     false,
	} {
		if got := IsMetadataDocumentID(id); got != want {
			t.Errorf("IsMetadataDocumentID(%q) = %v, want %v", id, got, want)
		}
	}
}

func TestCIMDConcurrentFetchesCollapse(t *testing.T) {
	ct := newCIMDTest(t, nil)
	release := make(chan struct{})
	ct.ds.setHandler(func(w http.ResponseWriter, r *http.Request, id string) {
		<-release
		serveDoc("", "")(w, r, id)
	})
	id := ct.url("/doc")
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			rec, err := ct.docs.Client(context.Background(), id)
			if err == nil && rec.ID != id {
				err = fmt.Errorf("record for %q", rec.ID)
			}
			errs <- err
		})
	}
	// Let the first request arrive and the others pile up behind it.
	deadline := time.Now().Add(5 * time.Second)
	for ct.ds.requests.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := ct.ds.requests.Load(); got != 1 {
		t.Errorf("%d fetches, want 1", got)
	}
	if ct.clients.puts != 1 {
		t.Errorf("%d stores, want 1", ct.clients.puts)
	}
}

func TestCIMDCallerCancel(t *testing.T) {
	ct := newCIMDTest(t, nil)
	release := make(chan struct{})
	ct.ds.setHandler(func(w http.ResponseWriter, r *http.Request, id string) {
		<-release
		serveDoc("", "")(w, r, id)
	})
	id := ct.url("/doc")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := ct.docs.Client(ctx, id)
		done <- err
	}()
	for ct.ds.requests.Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("error = %v, want context.Canceled", err)
	}
	// The shared fetch goes on and fills the cache for the next caller.
	close(release)
	deadline := time.Now().Add(5 * time.Second)
	for ct.clients.count() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := ct.docs.Client(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if got := ct.ds.requests.Load(); got != 1 {
		t.Errorf("%d fetches, want 1", got)
	}
}

func TestCIMDExistingRecordOfOtherKind(t *testing.T) {
	ct := newCIMDTest(t, nil)
	id := ct.url("/doc")
	ct.clients.recs[id] = data.OAuthClient{ID: id, Kind: data.ClientStatic, Name: "configured"}
	_, err := ct.docs.Client(context.Background(), id)
	if !errors.Is(err, ErrMetadataDocument) || !strings.Contains(err.Error(), "static") {
		t.Fatalf("error = %v", err)
	}
	if rec, _ := ct.clients.get(id); rec.Name != "configured" {
		t.Error("a static client was overwritten")
	}
	if n := ct.ds.requests.Load(); n != 0 {
		t.Errorf("%d requests", n)
	}
}

func TestCIMDStoreFailure(t *testing.T) {
	ct := newCIMDTest(t, nil)
	ct.clients.failPut = errors.New("disk full")
	_, err := ct.docs.Client(context.Background(), ct.url("/doc"))
	if err == nil || errors.Is(err, ErrMetadataDocument) || !strings.Contains(err.Error(), "disk full") {
		t.Errorf("error = %v, want the store's error, not ErrMetadataDocument", err)
	}
}

func TestCIMDUntrustedCertificate(t *testing.T) {
	ct := newCIMDTest(t, func(c *MetadataDocumentsConfig) { c.Outbound.RootCAs = x509.NewCertPool() })
	_, err := ct.docs.Client(context.Background(), ct.url("/doc"))
	if !errors.Is(err, ErrMetadataDocument) || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("error = %v", err)
	}
}
