package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/toolgate/toolgate/e2e/browsertest"
	"github.com/toolgate/toolgate/e2e/sshtest"
)

// browser returns the options that reach this instance's apex and tunnels from Chromium, with
// its development CA as the only trusted local root.
func (in *instance) browser(args any) browsertest.Options {
	return browsertest.Options{
		BaseURL: "https://" + in.domain + ":" + in.httpsPort(),
		Hosts:   map[string]string{in.domain: "127.0.0.1", "*." + in.domain: "127.0.0.1"},
		CAFile:  filepath.Join(in.dataDir, "ca.pem"),
		Args:    args,
	}
}

// bootstrapLink is the first admin's sign-in link from the server's standard output.
func (in *instance) bootstrapLink(t *testing.T) string {
	t.Helper()
	re := regexp.MustCompile(`https://` + regexp.QuoteMeta(in.domain) + `:\d+/signin/t/[A-Za-z0-9_-]{43}`)
	var link string
	waitFor(t, 10*time.Second, "the bootstrap sign-in link on stdout", func() bool {
		link = re.FindString(in.stdout.String())
		return link != ""
	})
	return link
}

// setAdminPassword signs in with the bootstrap link and sets a password, as the operator does
// on first start.
const setAdminPassword = `
	await page.goto(args.link);
	await page.click("button:has-text('Continue')");
	await page.waitForURL(/\/account\/password/);
	await page.fill("#password", args.password);
	await page.fill("#confirm", args.password);
	await page.click("button:has-text('Save password')");
	await page.waitForURL(u => !u.pathname.startsWith("/account/password"));
`

// signIn signs in with the password form.
const signIn = `
	await page.goto("/signin");
	await page.fill("#email", args.email);
	await page.fill("#password", args.password);
	await page.click("button:has-text('Sign in')");
	await page.waitForURL(u => u.pathname !== "/signin");
`

// TestKeyLinkingInBrowser is the whole first-use story with real components: the operator
// signs in with the printed link and sets a password; an OpenSSH client with a key nobody owns
// is shown a sign-in URL and waits; the operator approves the key in Chromium; the tunnel comes
// up and serves; revoking the key on the keys page makes the ssh process exit. A second
// unknown key is denied and its ssh exits with the reason. Signing out ends the session, and
// a form post without the CSRF token is refused.
func TestKeyLinkingInBrowser(t *testing.T) {
	browsertest.Require(t)
	in := startToolgate(t)
	const password = "correct horse battery staple"
	email := "admin@" + in.domain
	browsertest.Run(t, in.browser(map[string]string{"link": in.bootstrapLink(t), "password": password}), setAdminPassword)

	port := localServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from the laptop")
	}), 0)
	key := sshtest.NewKey(t)
	ssh := sshtest.Start(t, sshtest.Options{Key: key, Port: in.ssh, Interactive: true,
		Args: []string{"-N", "-R", fmt.Sprintf("0:127.0.0.1:%d", port)}})
	m := ssh.WaitFor(regexp.MustCompile(`(https://\S+/link/([A-Z0-9]{4}-[A-Z0-9]{4}))`), 15*time.Second)
	linkURL, code := m[1], m[2]
	if !strings.Contains(ssh.Output(), "code "+code) {
		t.Fatalf("the terminal does not show the code to compare:\n%s", ssh.Output())
	}

	// The approval page shows what the person must check before approving.
	shown := browsertest.Run(t, in.browser(map[string]string{"email": email, "password": password, "link": linkURL}), signIn+`
		await page.goto(args.link);
		const details = await page.textContent("dl");
		await page.check("input[name=remember]");
		await page.click("button[value=approve]");
		await page.waitForSelector("h1:has-text('Key linked')");
		return details;
	`).String()
	approved := time.Now()
	for _, want := range []string{code, key.Fingerprint, "ssh-ed25519", "127.0.0.1"} {
		if !strings.Contains(shown, want) {
			t.Errorf("approval page details lack %q:\n%s", want, shown)
		}
	}

	// The handshake goes on: -N prints nothing, so wait for the tunnel to serve.
	host := ""
	waitFor(t, 10*time.Second, "the linked key's tunnel", func() bool {
		host = in.liveTunnelHost(t)
		return host != ""
	})
	t.Logf("tunnel up %s after the approval page answered", time.Since(approved).Round(time.Millisecond))
	resp, err := in.client().Get(in.url(host, "/mcp"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "hello from the laptop" {
		t.Fatalf("through the linked key's tunnel: %d %q", resp.StatusCode, body)
	}
	if out, _, _ := in.adminRun("key", "list"); !strings.Contains(out, key.Fingerprint) || !strings.Contains(out, email) {
		t.Fatalf("key list after approval:\n%s", out)
	}

	// Keys page: the key is listed; revoking it closes the connection and the ssh exits.
	flash := browsertest.Run(t, in.browser(map[string]string{"email": email, "password": password, "fp": key.Fingerprint}), signIn+`
		await page.goto("/keys");
		const row = page.locator("tr", { hasText: args.fp });
		await row.locator("button:has-text('Revoke')").click();
		await page.waitForURL(/\/keys$/);
		return await page.textContent("main");
	`).String()
	if !strings.Contains(flash, "Revoked "+key.Fingerprint) || !strings.Contains(flash, "Its connection was closed") {
		t.Errorf("keys page after revoke:\n%s", flash)
	}
	if code := ssh.Wait(10 * time.Second); code == 0 {
		t.Fatalf("ssh exited 0 after its key was revoked:\n%s", ssh.Output())
	}
	if out, _, _ := in.adminRun("key", "list"); strings.Contains(out, key.Fingerprint) {
		t.Fatalf("revoked key still listed:\n%s", out)
	}

	// Denial: the ssh client is told and exits.
	other := sshtest.Start(t, sshtest.Options{Key: sshtest.NewKey(t), Port: in.ssh, Interactive: true,
		Args: []string{"-N", "-R", fmt.Sprintf("0:127.0.0.1:%d", port)}})
	m = other.WaitFor(regexp.MustCompile(`(https://\S+/link/[A-Z0-9]{4}-[A-Z0-9]{4})`), 15*time.Second)
	browsertest.Run(t, in.browser(map[string]string{"email": email, "password": password, "link": m[1]}), signIn+`
		await page.goto(args.link);
		await page.click("button[value=deny]");
		await page.waitForSelector("h1:has-text('Denied')");
	`)
	if code := other.Wait(10 * time.Second); code == 0 {
		t.Fatalf("ssh exited 0 after the link was denied:\n%s", other.Output())
	}
	if n := strings.Count(other.Output(), "toolgate: the key link was denied"); n != 1 {
		t.Errorf("the denied ssh client was told why %d times, want once:\n%s", n, other.Output())
	}

	// CSRF. Tunnels are same-site with the apex, so SameSite=Lax lets a tunnel's page post a
	// form to the apex with the session cookie attached: such a post must be refused. So must
	// the apex's own form with a forged token. Neither changes anything; signing out does.
	evil := localServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<form id="f" method="post" action="https://%s:%s/signout"><input name="csrf" value="guess"></form>
<script>document.getElementById("f").submit()</script>`, in.domain, in.httpsPort())
	}), 0)
	evilSSH := in.sshClient(sshtest.NewKey(t), []string{"-T", "-R", fmt.Sprintf("0:127.0.0.1:%d", evil)})
	evilURL := in.url(tunnelHost(t, evilSSH, 1)[0], "/")
	res := browsertest.Run(t, in.browser(map[string]string{"email": email, "password": password, "evil": evilURL}), signIn+`
		const crossSite = await Promise.all([
			page.waitForResponse(r => r.url().endsWith("/signout")),
			page.goto(args.evil),
		]).then(async ([r]) => ({status: r.status(), body: await r.text()}));

		await page.goto("/keys");
		await page.evaluate(() => {
			document.querySelector('form[action="/signout"] input[name=csrf]').value = "forged";
		});
		const [forgedResp] = await Promise.all([
			page.waitForResponse(r => r.url().endsWith("/signout")),
			page.click("button:has-text('Sign out')"),
		]);
		const forged = {status: forgedResp.status(), body: await forgedResp.text()};

		await page.goto("/keys");
		const stillIn = new URL(page.url()).pathname === "/keys";
		await page.click("button:has-text('Sign out')");
		await page.waitForURL(u => u.pathname === "/");
		await page.goto("/keys");
		return {crossSite, forged, stillIn, after: new URL(page.url()).pathname};
	`)
	type post struct {
		Status int
		Body   string
	}
	var got struct {
		CrossSite, Forged post
		StillIn           bool
		After             string
	}
	if err := res.Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.CrossSite.Status != http.StatusForbidden || !strings.Contains(got.CrossSite.Body, "only be sent from this site") {
		t.Errorf("sign-out posted from a tunnel page: %d %q", got.CrossSite.Status, got.CrossSite.Body)
	}
	if got.Forged.Status != http.StatusForbidden {
		t.Errorf("sign-out with a forged CSRF token: %d %q", got.Forged.Status, got.Forged.Body)
	}
	if !got.StillIn {
		t.Error("a refused sign-out signed the user out")
	}
	if got.After != "/signin" {
		t.Errorf("after signing out, /keys went to %s, want /signin", got.After)
	}
}

// liveTunnelHost returns the public host of a live tunnel from toolgate's log, or "".
func (in *instance) liveTunnelHost(t *testing.T) string {
	m := regexp.MustCompile(`"msg":"tunnel open","name":"([a-z0-9-]+)"`).FindAllStringSubmatch(in.logs.String(), -1)
	if len(m) == 0 {
		return ""
	}
	return m[len(m)-1][1] + "." + in.domain
}

// toolgateCLI runs the toolgate binary's account and key commands against the instance's data
// directory, as an operator on the same machine does; with the server running they go through
// its admin socket.
func (in *instance) toolgateCLI(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(toolgateBin, append(args, "--data-dir", in.dataDir)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("toolgate %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestNamesFollowTheUser: names belong to people, not keys. A name claimed with one key is
// granted to the same person's other key, also with a random name given back, and refused to
// someone else's key. Disabling the person with the CLI closes their connections.
func TestNamesFollowTheUser(t *testing.T) {
	t.Parallel()
	in := startToolgate(t)
	port := localServer(t, say("mine"), 0)
	in.toolgateCLI(t, "user", "add", "ada@example.com")
	laptop, desktop := sshtest.NewKey(t), sshtest.NewKey(t)
	in.linkKeyTo(laptop, "ada@example.com")
	in.linkKeyTo(desktop, "ada@example.com")
	fwd := []string{"-T", "-R", fmt.Sprintf("ada:80:127.0.0.1:%d", port), "-R", fmt.Sprintf("0:127.0.0.1:%d", port)}

	first := in.sshClient(laptop, fwd)
	before := tunnelHost(t, first, 2)
	first.Kill()
	waitFor(t, 10*time.Second, "the laptop's tunnels to close", func() bool { return in.metric("toolgate_tunnels") == 0 })

	second := in.sshClient(desktop, fwd)
	after := tunnelHost(t, second, 2)
	if before[0] != after[0] || before[1] != after[1] {
		t.Fatalf("names with the laptop's key %v, with the desktop's %v: the same person should get the same names", before, after)
	}
	if code, body := getStatus(t, quickClient(t, in), in.url(after[0], "/")); code != 200 || body != "mine" {
		t.Fatalf("%s with the second key: %d %q", after[0], code, body)
	}

	stranger := in.sshClient(sshtest.NewKey(t), []string{"-T", "-R", fmt.Sprintf("ada:80:127.0.0.1:%d", port)})
	if code := stranger.Wait(10 * time.Second); code == 0 {
		t.Fatalf("another person's key got ada:\n%s", stranger.Output())
	}

	out := in.toolgateCLI(t, "user", "disable", "ada@example.com")
	if !strings.Contains(out, "1 SSH connection(s) closed") {
		t.Fatalf("user disable: %s", out)
	}
	if code := second.Wait(10 * time.Second); code == 0 {
		t.Fatalf("ssh of a disabled user exited 0:\n%s", second.Output())
	}
	if !strings.Contains(second.Output(), "your account was disabled") {
		t.Errorf("the disabled user's terminal was not told why:\n%s", second.Output())
	}
	// And the key no longer connects, with a reason.
	again := sshtest.Start(t, sshtest.Options{Key: desktop, Port: in.ssh, Args: fwd})
	if code := again.Wait(10 * time.Second); code == 0 {
		t.Fatalf("a disabled user's key connected:\n%s", again.Output())
	}
	if !strings.Contains(again.Output(), "disabled") {
		t.Errorf("a disabled user's key was refused without a reason:\n%s", again.Output())
	}
}
