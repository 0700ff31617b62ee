// browser.mjs runs one browser test script in a fresh headless Chromium (via playwright-core) and
// reports the outcome as a single JSON line on stdout. It is driven by the Go package
// e2e/browsertest; nothing in toolgate itself uses it.
//
// Usage: node browser.mjs SCRIPT.mjs < job.json
//
// SCRIPT.mjs default-exports an async function ({page, context, browser, baseURL, args}); what it
// returns (JSON-serialisable) is reported as the result's value.
//
// job.json: {"baseURL": "...", "args": <any JSON>, "hostResolverRules": "MAP a 127.0.0.1, ...",
//            "timeoutMs": 60000, "actionTimeoutMs": 15000}
//
// Environment:
//   BROWSERTEST_CHROMIUM   the Chromium binary (default /usr/bin/chromium)
//   BROWSERTEST_ARTIFACTS  directory for failure.png (default: no screenshot)
//   HOME                   Chromium reads certificate trust from $HOME/.pki/nssdb; the Go side
//                          points HOME at a temporary directory holding exactly the test's CA.
//
// Output: the last stdout line starts with RESULT_PREFIX followed by
//   {"ok":true,"value":...,"console":[...]} or
//   {"ok":false,"error":"...","screenshot":"path or empty","console":[...]}
// and the exit status is 0 on success, 1 on failure. Anything the script itself prints with
// console.log lands on stdout before that line.

import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';

const RESULT_PREFIX = 'BROWSERTEST-RESULT ';

// Flags that keep Chromium from phoning home (it has no internet here and would stall on it).
// Playwright adds --headless, --no-sandbox (chromiumSandbox: false) and a fresh --user-data-dir.
const QUIET_ARGS = [
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-default-apps',
  '--disable-domain-reliability',
  '--no-default-browser-check',
  '--metrics-recording-only',
];

function report(obj, code) {
  process.stdout.write(RESULT_PREFIX + JSON.stringify(obj) + '\n', () => process.exit(code));
}

function errorText(e) {
  if (e instanceof Error) return e.stack || e.message;
  return String(e);
}

async function main() {
  const scriptPath = process.argv[2];
  if (!scriptPath) throw new Error('usage: node browser.mjs SCRIPT.mjs < job.json');
  const stdin = readFileSync(0, 'utf8');
  const job = stdin.trim() === '' ? {} : JSON.parse(stdin);
  const timeoutMs = job.timeoutMs || 60000;
  const actionTimeoutMs = Math.min(job.actionTimeoutMs || 15000, timeoutMs);
  const artifacts = process.env.BROWSERTEST_ARTIFACTS || '';

  const mod = await import(pathToFileURL(resolve(scriptPath)).href);
  const fn = mod.default;
  if (typeof fn !== 'function') throw new Error(`${scriptPath} has no default-exported function`);

  const args = [...QUIET_ARGS];
  if (job.hostResolverRules) args.push(`--host-resolver-rules=${job.hostResolverRules}`);

  const consoleLines = [];
  let browser;
  let page;
  let timer;
  try {
    browser = await chromium.launch({
      executablePath: process.env.BROWSERTEST_CHROMIUM || '/usr/bin/chromium',
      headless: true,
      chromiumSandbox: false,
      args,
      timeout: actionTimeoutMs * 2,
      env: process.env,
    });
    const context = await browser.newContext({ ignoreHTTPSErrors: false, baseURL: job.baseURL || undefined });
    context.setDefaultTimeout(actionTimeoutMs);
    context.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
    context.on('weberror', (e) => consoleLines.push(`pageerror: ${e.error().message}`));
    page = await context.newPage();

    const deadline = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`script timed out after ${timeoutMs} ms`)), timeoutMs);
    });
    const value = await Promise.race([
      fn({ page, context, browser, baseURL: job.baseURL || '', args: job.args ?? null }),
      deadline,
    ]);
    clearTimeout(timer);
    await browser.close().catch(() => {});
    report({ ok: true, value: value === undefined ? null : value, console: consoleLines }, 0);
  } catch (e) {
    clearTimeout(timer);
    let screenshot = '';
    if (page && artifacts) {
      const p = join(artifacts, 'failure.png');
      try {
        await page.screenshot({ path: p, fullPage: true, timeout: 10000 });
        screenshot = p;
      } catch (se) {
        consoleLines.push(`(screenshot failed: ${se.message})`);
      }
    }
    if (browser) await browser.close().catch(() => {});
    report({ ok: false, error: errorText(e), screenshot, console: consoleLines }, 1);
  }
}

main().catch((e) => report({ ok: false, error: errorText(e), screenshot: '', console: [] }, 1));
