// Package browsertest drives toolgate's web pages with a real headless Chromium in tests. It owns
// the Go side of the browser harness: finding the tools (Chromium, Node, the playwright-core
// install in e2e/interop), giving each run a private certificate trust store and host mapping,
// running a JavaScript test script through e2e/interop/browser.mjs, and reporting failures with
// the script's error, the page's console and a screenshot.
//
// Each Run starts a fresh browser with a fresh profile and a temporary HOME whose NSS database
// ($HOME/.pki/nssdb, which Chromium on Linux reads for locally added roots) trusts exactly the
// CAs in Options.CAFile. Certificate errors are never ignored, so a test sees TLS as a user
// would. Hostnames reach the server under test through Chromium's --host-resolver-rules.
//
// It is test support only; nothing in toolgate's binary imports it.
package browsertest

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// DefaultTimeout bounds a Run whose Options.Timeout is zero.
const DefaultTimeout = 60 * time.Second

// resultPrefix marks browser.mjs's result line on stdout.
const resultPrefix = "BROWSERTEST-RESULT "

// Options describe one browser run.
type Options struct {
	// BaseURL is handed to the script as baseURL and set as the browser context's base URL, so
	// page.goto("/path") works.
	BaseURL string
	// Hosts maps hostname patterns to addresses, e.g. {"*.toolgate.localhost": "127.0.0.1",
	// "toolgate.localhost": "127.0.0.1"}. Each becomes a Chromium host resolver rule
	// "MAP pattern address"; ports stay those of the URL.
	Hosts map[string]string
	// HostResolverRules are further raw rules for --host-resolver-rules, appended after Hosts.
	HostResolverRules string
	// CAFile is a PEM file of CA certificates the browser trusts for TLS (toolgate's dev CA, or a
	// test's own). Empty: the browser trusts no local CA at all.
	CAFile string
	// Timeout bounds the whole script (browser start excluded). Default DefaultTimeout.
	Timeout time.Duration
	// Env is extra "KEY=value" environment for the Node process.
	Env []string
	// Args is JSON-encoded and handed to the script as args.
	Args any
}

// Result is what a successful script produced.
type Result struct {
	// Value is the script's return value as JSON ("null" if it returned nothing).
	Value json.RawMessage
	// Console holds the pages' console messages and uncaught errors, in order.
	Console []string
	// Stdout and Stderr are the Node process's output (the script's own console.log lands in
	// Stdout).
	Stdout, Stderr string
}

// Decode unmarshals the script's return value into v.
func (r Result) Decode(v any) error { return json.Unmarshal(r.Value, v) }

// String returns the return value when the script returned a string, and the raw JSON otherwise.
func (r Result) String() string {
	var s string
	if json.Unmarshal(r.Value, &s) == nil {
		return s
	}
	return string(r.Value)
}

// Error is a failed run: the script threw, timed out, or the browser could not start.
type Error struct {
	Message    string   // the script's error, with its stack when there is one
	Screenshot string   // path of a full-page screenshot taken at failure, if any
	Console    []string // the pages' console messages and uncaught errors
	Stdout     string
	Stderr     string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Message)
	if e.Screenshot != "" {
		fmt.Fprintf(&b, "\nscreenshot: %s", e.Screenshot)
	}
	if len(e.Console) > 0 {
		b.WriteString("\nbrowser console:")
		for _, l := range e.Console {
			b.WriteString("\n  " + l)
		}
	}
	if s := strings.TrimSpace(e.Stderr); s != "" {
		b.WriteString("\nnode stderr:\n" + tail(s, 4000))
	}
	return b.String()
}

// tools are what a run needs on the machine.
type tools struct {
	node, chromium, certutil string
	interop                  string // the e2e/interop directory, with node_modules installed
}

// Require skips the test when Chromium, Node, certutil (libnss3-tools) or e2e/interop's
// node_modules are missing, except under CI (CI set), where a missing tool is a failure: CI
// must install them (.ci/run does).
func Require(t testing.TB) {
	t.Helper()
	require(t)
}

func require(t testing.TB) tools {
	t.Helper()
	var tl tools
	var missing []string
	look := func(names ...string) string {
		for _, n := range names {
			if p, err := exec.LookPath(n); err == nil {
				return p
			}
		}
		missing = append(missing, strings.Join(names, " or "))
		return ""
	}
	if p := os.Getenv("BROWSERTEST_CHROMIUM"); p != "" {
		tl.chromium = look(p)
	} else {
		tl.chromium = look("chromium", "chromium-browser")
	}
	tl.node = look("node")
	tl.certutil = look("certutil")
	tl.interop = interopDir()
	if tl.interop == "" {
		missing = append(missing, "e2e/interop/browser.mjs")
	} else if _, err := os.Stat(filepath.Join(tl.interop, "node_modules", "playwright-core", "package.json")); err != nil {
		missing = append(missing, "e2e/interop/node_modules (run: npm ci --prefix e2e/interop)")
	}
	if len(missing) > 0 {
		if os.Getenv("CI") != "" {
			t.Fatalf("browser tests need, under CI: %s", strings.Join(missing, ", "))
		}
		t.Skipf("browser tests skipped, missing: %s", strings.Join(missing, ", "))
	}
	return tl
}

// interopDir finds e2e/interop: next to this source file, or above the working directory.
func interopDir() string {
	ok := func(d string) bool {
		_, err := os.Stat(filepath.Join(d, "browser.mjs"))
		return err == nil
	}
	if _, file, _, good := runtime.Caller(0); good {
		if d := filepath.Join(filepath.Dir(file), "..", "interop"); ok(d) {
			return filepath.Clean(d)
		}
	}
	wd, err := os.Getwd()
	for err == nil {
		if d := filepath.Join(wd, "e2e", "interop"); ok(d) {
			return d
		}
		parent := filepath.Dir(wd)
		if parent == wd {
			break
		}
		wd = parent
	}
	return ""
}

// Run runs script in a fresh headless Chromium and returns its result; any failure is fatal to
// the test, reported with the script's error, the browser console and a screenshot path.
//
// script is the body of an async function receiving {page, context, browser, baseURL, args}
// (playwright-core objects; page is open and blank). Its return value must be
// JSON-serialisable. For example:
//
//	res := browsertest.Run(t, opts, `
//		await page.goto(baseURL + "/");
//		return await page.textContent("h1");
//	`)
func Run(t testing.TB, opts Options, script string) Result {
	t.Helper()
	res, err := Try(t, opts, script)
	if err != nil {
		t.Fatalf("browser script failed: %v", err)
	}
	return res
}

// Try is Run for scripts that are expected to fail: it returns the failure (an *Error when the
// script or browser failed) instead of ending the test. Missing tools still skip or fail the
// test as Require does.
func Try(t testing.TB, opts Options, script string) (Result, error) {
	t.Helper()
	tl := require(t)
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	work := t.TempDir()
	home := filepath.Join(work, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	if opts.CAFile != "" {
		if err := trustCAs(tl.certutil, home, opts.CAFile); err != nil {
			t.Fatalf("browsertest: trusting %s: %v", opts.CAFile, err)
		}
	}
	artifacts := artifactsDir(t)

	scriptPath := filepath.Join(work, "script.mjs")
	src := "export default async ({page, context, browser, baseURL, args}) => {\n" + script + "\n};\n"
	if err := os.WriteFile(scriptPath, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	args, err := json.Marshal(opts.Args)
	if err != nil {
		t.Fatalf("browsertest: encoding Args: %v", err)
	}
	job, err := json.Marshal(map[string]any{
		"baseURL":           opts.BaseURL,
		"args":              json.RawMessage(args),
		"hostResolverRules": hostRules(opts),
		"timeoutMs":         opts.Timeout.Milliseconds(),
	})
	if err != nil {
		t.Fatal(err)
	}

	// browser.mjs enforces opts.Timeout itself; this deadline only catches a wedged Node or
	// browser start.
	ctx, cancel := context.WithTimeout(context.Background(), opts.Timeout+60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, tl.node, filepath.Join(tl.interop, "browser.mjs"), scriptPath)
	cmd.Dir = tl.interop
	cmd.Stdin = bytes.NewReader(job)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append(os.Environ(),
		"HOME="+home,
		"XDG_CONFIG_HOME="+filepath.Join(home, ".config"),
		"XDG_CACHE_HOME="+filepath.Join(home, ".cache"),
		"BROWSERTEST_CHROMIUM="+tl.chromium,
		"BROWSERTEST_ARTIFACTS="+artifacts,
	)
	cmd.Env = append(cmd.Env, opts.Env...)
	// Node and the browser it starts share a process group, killed together on timeout.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	runErr := cmd.Run()

	var out struct {
		OK         bool            `json:"ok"`
		Value      json.RawMessage `json:"value"`
		Error      string          `json:"error"`
		Screenshot string          `json:"screenshot"`
		Console    []string        `json:"console"`
	}
	found := false
	for _, line := range strings.Split(stdout.String(), "\n") {
		if rest, ok := strings.CutPrefix(line, resultPrefix); ok {
			found = json.Unmarshal([]byte(rest), &out) == nil
		}
	}
	res := Result{Value: out.Value, Console: out.Console, Stdout: stdout.String(), Stderr: stderr.String()}
	if found && out.OK && runErr == nil {
		if len(res.Value) == 0 {
			res.Value = json.RawMessage("null")
		}
		return res, nil
	}
	e := &Error{Message: ansi.ReplaceAllString(out.Error, ""), Screenshot: out.Screenshot, Console: out.Console, Stdout: res.Stdout, Stderr: res.Stderr}
	if !found {
		e.Message = fmt.Sprintf("browser.mjs gave no result (%v); stdout:\n%s", runErr, tail(res.Stdout, 4000))
		if ctx.Err() != nil {
			e.Message = fmt.Sprintf("browser.mjs killed after %v; stdout:\n%s", opts.Timeout+60*time.Second, tail(res.Stdout, 4000))
		}
	}
	return res, e
}

// ansi matches the terminal colour codes playwright puts in its error messages.
var ansi = regexp.MustCompile("\x1b\\[[0-9;]*m")

// hostRules renders Options.Hosts (sorted, so runs are reproducible) and HostResolverRules as
// one --host-resolver-rules value.
func hostRules(o Options) string {
	var rules []string
	for pattern, addr := range o.Hosts {
		rules = append(rules, "MAP "+pattern+" "+addr)
	}
	sort.Strings(rules)
	if o.HostResolverRules != "" {
		rules = append(rules, o.HostResolverRules)
	}
	return strings.Join(rules, ", ")
}

// trustCAs creates home/.pki/nssdb and adds each certificate in the PEM file as a CA trusted
// for TLS servers ("C,,"). Chromium on Linux honours roots added to this database.
func trustCAs(certutil, home, pemFile string) error {
	data, err := os.ReadFile(pemFile)
	if err != nil {
		return err
	}
	db := filepath.Join(home, ".pki", "nssdb")
	if err := os.MkdirAll(db, 0o700); err != nil {
		return err
	}
	run := func(args ...string) error {
		out, err := exec.Command(certutil, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("certutil %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := run("-N", "-d", "sql:"+db, "--empty-password"); err != nil {
		return err
	}
	n := 0
	for {
		var blk *pem.Block
		blk, data = pem.Decode(data)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		der := filepath.Join(home, fmt.Sprintf("ca-%d.der", n))
		if err := os.WriteFile(der, blk.Bytes, 0o600); err != nil {
			return err
		}
		if err := run("-A", "-d", "sql:"+db, "-n", fmt.Sprintf("browsertest-ca-%d", n), "-t", "C,,", "-i", der); err != nil {
			return err
		}
		n++
	}
	if n == 0 {
		return errors.New("no CERTIFICATE block in the file")
	}
	return nil
}

// artifactsDir is where a failure screenshot goes: under $BROWSERTEST_ARTIFACTS when set (CI can
// keep it), else a temporary directory that is removed when the test passes and kept when it
// fails, so the reported path still exists.
func artifactsDir(t testing.TB) string {
	base := os.Getenv("BROWSERTEST_ARTIFACTS")
	if base != "" {
		if err := os.MkdirAll(base, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	d, err := os.MkdirTemp(base, "browsertest-"+sanitize(t.Name())+"-")
	if err != nil {
		t.Fatal(err)
	}
	if base == "" {
		t.Cleanup(func() {
			if !t.Failed() {
				os.RemoveAll(d)
			}
		})
	}
	return d
}

func sanitize(s string) string {
	if len(s) > 60 {
		s = s[:60]
	}
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
