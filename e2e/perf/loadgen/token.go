package main

// token: an OAuth access token for one tunnel, obtained the way a person and an MCP client
// would get it (e2e/oauth_test.go's browserUser does the same in test form):
//
//	a. `toolgate user reset EMAIL` over the admin socket gives a one-time sign-in link;
//	b. the link's page is a form (csrf, next); posting it back signs in (session cookie);
//	c. dynamic client registration (RFC 7591) of a public client;
//	d. the authorization request with PKCE S256 and the RFC 8707 resource, approved on the
//	   consent page; the redirect carries the code;
//	e. the code, the verifier and the resource at the token endpoint.
//
// Only the token goes to stdout, so run.sh can capture it. The user must own the tunnel (its
// key opened it): toolgate serves a tunnel to its owner only.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// tokenRedirect is the registered redirect URI; nothing listens there: the code is read from
// the Location header, which the client does not follow.
const (
	tokenRedirect = "http://127.0.0.1:9/cb"
	tokenState    = "loadgenstate1"
)

var (
	signinLinkRe = regexp.MustCompile(`https://\S+/signin/t/\S+`)
	formRe       = regexp.MustCompile(`(?s)<form method="post" action="([^"]*)">(.*?)</form>`)
	hiddenRe     = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)
)

func runToken(args []string) error {
	fs := flag.NewFlagSet("token", flag.ExitOnError)
	apex := fs.String("apex", "", "toolgate's apex URL, the issuer: https://toolgate.localhost:PORT")
	dial := fs.String("dial", "", "address every host is dialled at: 127.0.0.1:PORT")
	caFile := fs.String("ca", "", "PEM CA of toolgate's certificates")
	sock := fs.String("admin-socket", "", "toolgate's admin socket (DATA-DIR/admin.sock)")
	email := fs.String("email", "", "the user; must own the tunnel (its key opened it)")
	resource := fs.String("resource", "", "the RFC 8707 resource: https://NAME.toolgate.localhost:PORT[/path]; the token covers that path and below")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after")
	fs.Parse(args)
	if *apex == "" || *dial == "" || *sock == "" || *email == "" || *resource == "" {
		return errors.New("usage: loadgen token -apex URL -dial HOST:PORT -ca CA.pem -admin-socket PATH -email USER -resource URL")
	}
	roots, err := loadRoots(*caFile)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	jar, _ := cookiejar.New(nil)
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, *dial)
		},
		TLSClientConfig: &tls.Config{RootCAs: roots},
	}
	defer tr.CloseIdleConnections()
	b := &browser{
		apex: strings.TrimSuffix(*apex, "/"),
		ctx:  ctx,
		client: &http.Client{Transport: tr, Jar: jar, Timeout: *timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	}
	tok, err := b.accessToken(*sock, *email, *resource)
	if err != nil {
		return err
	}
	fmt.Println(tok)
	return nil
}

// browser is a person's browser plus a public MCP client, sharing one cookie jar and never
// following redirects.
type browser struct {
	apex   string
	ctx    context.Context
	client *http.Client
}

// reply is one response, read in full.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// stepError names the step and shows the response.
func stepError(step, method, u string, r reply) error {
	body := strings.Join(strings.Fields(string(r.body)), " ")
	if len(body) > 300 {
		body = body[:300] + "…"
	}
	return fmt.Errorf("step %s: %s %s: %d %s: %s", step, method, u, r.status, http.StatusText(r.status), body)
}

func (b *browser) abs(ref string) string {
	if strings.HasPrefix(ref, "https://") || strings.HasPrefix(ref, "http://") {
		return ref
	}
	return b.apex + ref
}

// do sends a request; form and JSON bodies are given as contentType and body. A browser's form
// post also carries Origin (toolgate's CSRF check); the MCP client's requests do not.
func (b *browser) do(step, method, u, accept, contentType, body string, origin bool) (reply, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(b.ctx, method, u, rd)
	if err != nil {
		return reply{}, fmt.Errorf("step %s: %w", step, err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if origin {
		req.Header.Set("Origin", b.apex)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return reply{}, fmt.Errorf("step %s: %s %s: %w", step, method, u, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return reply{}, fmt.Errorf("step %s: %s %s: reading the response: %w", step, method, u, err)
	}
	return reply{resp.StatusCode, resp.Header, data}, nil
}

// postForm posts a page's form back as the browser would.
func (b *browser) postForm(step, action string, form url.Values) (reply, error) {
	return b.do(step, http.MethodPost, b.abs(action), "text/html", "application/x-www-form-urlencoded", form.Encode(), true)
}

type htmlForm struct {
	action string
	fields map[string]string
}

// parseForm returns the last POST form of a page that has a csrf field (not sign-out).
func parseForm(page []byte) (htmlForm, bool) {
	var f htmlForm
	for _, m := range formRe.FindAllStringSubmatch(string(page), -1) {
		if !strings.Contains(m[2], `name="csrf"`) || strings.Contains(m[1], "signout") {
			continue
		}
		f = htmlForm{action: html.UnescapeString(m[1]), fields: map[string]string{}}
		for _, h := range hiddenRe.FindAllStringSubmatch(m[2], -1) {
			f.fields[h[1]] = html.UnescapeString(h[2])
		}
	}
	return f, f.action != ""
}

func (b *browser) accessToken(sock, email, resource string) (string, error) {
	// a. A one-time sign-in link, as `toolgate user reset` prints it for the operator.
	out, err := adminRun(sock, "user", "reset", email)
	if err != nil {
		return "", fmt.Errorf("step a (user reset over %s): %w", sock, err)
	}
	link := signinLinkRe.FindString(out)
	if link == "" {
		return "", fmt.Errorf("step a (user reset): no sign-in link in %q", out)
	}

	// b. The link's page, then its form posted back: a session cookie.
	r, err := b.do("b (sign-in link page)", http.MethodGet, link, "text/html", "", "", false)
	if err != nil {
		return "", err
	}
	if r.status != http.StatusOK {
		return "", stepError("b (sign-in link page)", "GET", link, r)
	}
	form, ok := parseForm(r.body)
	if !ok {
		return "", stepError("b (sign-in link page: no form with csrf)", "GET", link, r)
	}
	r, err = b.postForm("b (sign in)", form.action, url.Values{"csrf": {form.fields["csrf"]}, "next": {form.fields["next"]}})
	if err != nil {
		return "", err
	}
	if r.status != http.StatusSeeOther {
		return "", stepError("b (sign in)", "POST", b.abs(form.action), r)
	}
	if apexURL, _ := url.Parse(b.apex); len(b.client.Jar.Cookies(apexURL)) == 0 {
		return "", stepError("b (sign in: no session cookie set)", "POST", b.abs(form.action), r)
	}

	// c. Dynamic client registration of a public client (no secret).
	reg, _ := json.Marshal(map[string]any{"client_name": "loadgen", "redirect_uris": []string{tokenRedirect}})
	regURL := b.apex + "/oauth/register"
	r, err = b.do("c (client registration)", http.MethodPost, regURL, "application/json", "application/json", string(reg), false)
	if err != nil {
		return "", err
	}
	var client struct {
		ClientID string `json:"client_id"`
	}
	if r.status != http.StatusCreated || json.Unmarshal(r.body, &client) != nil || client.ClientID == "" {
		return "", stepError("c (client registration)", "POST", regURL, r)
	}

	// d. Authorization request with PKCE; the user approves on the consent page.
	verifier := oauth2.GenerateVerifier()
	q := url.Values{
		"client_id":             {client.ClientID},
		"response_type":         {"code"},
		"redirect_uri":          {tokenRedirect},
		"code_challenge":        {oauth2.S256ChallengeFromVerifier(verifier)},
		"code_challenge_method": {"S256"},
		"state":                 {tokenState},
		"resource":              {resource},
	}
	authURL := b.apex + "/oauth/authorize?" + q.Encode()
	r, err = b.do("d (authorization request)", http.MethodGet, authURL, "text/html", "", "", false)
	if err != nil {
		return "", err
	}
	redirect, redirectURL := r, authURL
	if r.status == http.StatusOK { // the consent page; with consent given before, 303 at once
		form, ok := parseForm(r.body)
		if !ok {
			return "", stepError("d (consent page: no form with csrf)", "GET", authURL, r)
		}
		redirectURL = b.abs(form.action)
		if redirect, err = b.postForm("d (consent)", form.action, url.Values{"csrf": {form.fields["csrf"]}, "decision": {"approve"}}); err != nil {
			return "", err
		}
	}
	if redirect.status != http.StatusSeeOther && redirect.status != http.StatusFound {
		return "", stepError("d (authorization)", "GET/POST", redirectURL, redirect)
	}
	loc, err := url.Parse(redirect.header.Get("Location"))
	if err != nil {
		return "", fmt.Errorf("step d (authorization): Location %q: %w", redirect.header.Get("Location"), err)
	}
	lq := loc.Query()
	if e := lq.Get("error"); e != "" {
		return "", fmt.Errorf("step d (authorization): refused: %s: %s", e, lq.Get("error_description"))
	}
	if lq.Get("state") != tokenState || lq.Get("code") == "" {
		return "", fmt.Errorf("step d (authorization): redirect without code or with another state: %s", loc)
	}

	// e. The code for tokens.
	tokURL := b.apex + "/oauth/token"
	tf := url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {lq.Get("code")},
		"code_verifier": {verifier},
		"client_id":     {client.ClientID},
		"redirect_uri":  {tokenRedirect},
		"resource":      {resource},
	}
	r, err = b.do("e (token request)", http.MethodPost, tokURL, "application/json", "application/x-www-form-urlencoded", tf.Encode(), false)
	if err != nil {
		return "", err
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	if r.status != http.StatusOK || json.Unmarshal(r.body, &tok) != nil || tok.AccessToken == "" {
		return "", stepError("e (token request)", "POST", tokURL, r)
	}
	if !strings.EqualFold(tok.TokenType, "bearer") {
		return "", fmt.Errorf("step e (token request): token_type %q, want Bearer", tok.TokenType)
	}
	return tok.AccessToken, nil
}
