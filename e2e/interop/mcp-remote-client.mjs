// mcp-remote-client.mjs: mcp-remote's own test client (the `mcp-remote-client` bin of the npm
// package mcp-remote) against a toolgate tunnel protected by toolgate's OAuth authorization server,
// with a real user approving it in headless Chromium. Used by TestMCPRemoteOAuth in
// e2e/interop_oauth_test.go.
//
// It is a browser.mjs script module: its default export takes {page, context, args} and returns a
// JSON summary, so `node browser.mjs mcp-remote-client.mjs < job.json` runs it and prints the
// single result line (exit status 1 and the error on failure). The Go test runs it through
// e2e/browsertest, which supplies a Chromium trusting the instance's dev CA.
//
// args: {mcpURL, signinLink, issuer, debug?}
// Environment: NODE_EXTRA_CA_CERTS=<data dir>/ca.pem, inherited by mcp-remote-client. The child
// also gets NODE_OPTIONS=--import=<resolve-localhost.mjs> (so it resolves *.localhost),
// MCP_REMOTE_CONFIG_DIR=<fresh temporary directory>, and BROWSER=true with the desktop variables
// removed, so its attempt to open a browser does nothing.
//
// The flow:
//  1. `mcp-remote-client MCP_URL PORT --host 127.0.0.1` discovers the servers, registers and
//     prints "Please authorize this client by visiting:\n<URL>" on stderr (mcp-remote 0.15.1,
//     NodeOAuthClientProvider.redirectToAuthorization); the user signs in with the link, opens the
//     URL and presses Allow; the browser lands on mcp-remote's own listener at
//     http://127.0.0.1:PORT/oauth/callback; mcp-remote exchanges the code, connects, logs
//     "Tools: {...}" (which must list test_simple_text) and exits 0.
//  2. A second run with the same config directory connects on the stored tokens, without asking
//     for authorization again.

import { spawn } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { authorize, checkCallback, signIn } from './oauth-browser.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const resolveHook = new URL('./resolve-localhost.mjs', import.meta.url).href;
export const AUTHORIZE_RE = /Please authorize this client by visiting:\s*\n\s*(https?:\/\/\S+)/;

// mcpRemoteBin finds one of the package's bins: mcp-remote-client (its test client, the default)
// or mcp-remote (the stdio proxy, for mcp-remote-stepup.mjs).
export async function mcpRemoteBin(name = 'mcp-remote-client') {
  const dir = join(here, 'node_modules', 'mcp-remote');
  const pkg = JSON.parse(await readFile(join(dir, 'package.json'), 'utf8'));
  const bin = typeof pkg.bin === 'string' ? pkg.bin : pkg.bin?.[name];
  if (!bin) throw new Error(`mcp-remote ${pkg.version} has no ${name} bin`);
  return { path: join(dir, bin), version: pkg.version };
}

export async function freePort() {
  const srv = createServer();
  await new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', resolve);
  });
  const { port } = srv.address();
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

export function childEnv(configDir) {
  const env = { ...process.env, MCP_REMOTE_CONFIG_DIR: configDir, BROWSER: 'true' };
  // xdg-open (behind the `open` package mcp-remote uses) picks a desktop's opener when it detects
  // one; without these it runs $BROWSER, i.e. `true URL`.
  for (const k of ['DISPLAY', 'WAYLAND_DISPLAY', 'XDG_CURRENT_DESKTOP', 'XDG_SESSION_DESKTOP', 'DESKTOP_SESSION',
    'KDE_FULL_SESSION', 'GNOME_DESKTOP_SESSION_ID', 'DBUS_SESSION_BUS_ADDRESS']) {
    delete env[k];
  }
  env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} --import="${resolveHook}"`.trim();
  if (!env.NODE_EXTRA_CA_CERTS) throw new Error('NODE_EXTRA_CA_CERTS is not set: mcp-remote would not trust the dev CA');
  return env;
}

// run starts mcp-remote-client and returns a handle on its output and exit.
function run(bin, argv, env) {
  // stdin stays open: mcp-remote-client shuts down (exit 0, mid-request) when its stdin ends.
  const child = spawn(process.execPath, [bin, ...argv], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  const h = { child, stdout: '', stderr: '', code: undefined, signal: undefined };
  const waiters = new Set();
  const poke = () => waiters.forEach((w) => w());
  child.stdout.setEncoding('utf8').on('data', (d) => { h.stdout += d; poke(); });
  child.stderr.setEncoding('utf8').on('data', (d) => { h.stderr += d; poke(); });
  h.exited = new Promise((resolve) => {
    child.on('close', (code, signal) => {
      h.code = code;
      h.signal = signal;
      poke();
      resolve(code);
    });
    child.on('error', (e) => {
      h.stderr += `\n(spawn error: ${e.message})`;
      h.code = -1;
      poke();
      resolve(-1);
    });
  });
  // until waits (up to ms) for pred(h) to hold, re-checking on every output or exit.
  h.until = (pred, ms, what) =>
    new Promise((resolve, reject) => {
      const check = () => {
        let v;
        try {
          v = pred(h);
        } catch (e) {
          done();
          reject(e);
          return;
        }
        if (v) {
          done();
          resolve(v);
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
      }, ms);
      const done = () => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });
  h.kill = () => {
    if (h.code === undefined) child.kill('SIGKILL');
  };
  return h;
}

export function tail(s, n = 6000) {
  return s.length <= n ? s : '…' + s.slice(-n);
}

// listedTools parses the "Tools: {...}" log line mcp-remote-client prints after tools/list.
function listedTools(stderr) {
  const m = stderr.match(/\] Tools: (\{[\s\S]*?\n\})\n/);
  if (!m) return null;
  return JSON.parse(m[1]).tools ?? [];
}

function checkListed(h, label) {
  if (/Error requesting tools list/.test(h.stderr)) throw new Error(`${label}: mcp-remote could not list tools`);
  if (!/Connected successfully!/.test(h.stderr)) throw new Error(`${label}: mcp-remote never connected`);
  const tools = listedTools(h.stderr);
  if (!tools) throw new Error(`${label}: no "Tools:" line in mcp-remote's output`);
  const names = tools.map((t) => t.name);
  if (!names.includes('test_simple_text') || tools.length < 5) {
    throw new Error(`${label}: mcp-remote listed ${tools.length} tools: ${names.join(', ')}`);
  }
  return names;
}

export default async function runMCPRemote({ page, args }) {
  const { mcpURL, signinLink, issuer } = args ?? {};
  if (!mcpURL || !signinLink || !issuer) throw new Error('args need mcpURL, signinLink and issuer');
  const bin = await mcpRemoteBin();
  const configDir = await mkdtemp(join(tmpdir(), 'toolgate-mcp-remote-'));
  const port = await freePort();
  const argv = [mcpURL, String(port), '--host', '127.0.0.1', '--auth-timeout', '40'];
  if (args.debug) argv.push('--debug');
  const env = childEnv(configDir);
  const runs = [];
  let step = 'first run';
  try {
    // 1. First run: authorization in the browser.
    const first = run(bin.path, argv, env);
    runs.push(first);
    const authURL = await first.until(
      (h) => {
        const m = h.stderr.match(AUTHORIZE_RE);
        if (m) return m[1];
        if (h.code !== undefined) throw new Error(`mcp-remote-client exited (${h.code}) before asking for authorization`);
        return null;
      },
      30000,
      'mcp-remote to print its authorization URL',
    );
    const u = new URL(authURL);
    const redirectURI = u.searchParams.get('redirect_uri');
    const callbackPrefix = `http://127.0.0.1:${port}/oauth/callback`;
    if (redirectURI !== callbackPrefix) throw new Error(`authorization URL redirect_uri=${redirectURI}, want ${callbackPrefix}`);
    if (u.searchParams.get('code_challenge_method') !== 'S256') throw new Error(`no S256 PKCE in ${authURL}`);
    const resource = u.searchParams.get('resource');
    step = 'sign-in and consent';
    await signIn(page, signinLink);
    const a = await authorize(page, authURL, { callbackPrefix, clientName: 'MCP CLI Client' });
    checkCallback(a.callbackURL, { state: u.searchParams.get('state'), issuer });
    step = 'mcp-remote finishing the first run';
    const code = await first.until((h) => h.code !== undefined && { code: h.code }, 40000, 'mcp-remote-client to exit');
    if (code.code !== 0) throw new Error(`mcp-remote-client exited with ${code.code}`);
    const names = checkListed(first, 'first run');

    // 2. Second run: the stored tokens are enough.
    step = 'second run on stored tokens';
    const second = run(bin.path, argv, env);
    runs.push(second);
    await second.until(
      (h) => {
        if (AUTHORIZE_RE.test(h.stderr)) throw new Error('the second run asked for authorization again instead of using its stored tokens');
        return h.code !== undefined;
      },
      30000,
      'the second mcp-remote-client run to exit',
    );
    if (second.code !== 0) throw new Error(`second mcp-remote-client run exited with ${second.code}`);
    checkListed(second, 'second run');

    let storedRefreshToken = false;
    for (const f of await readdir(configDir, { recursive: true })) {
      if (f.endsWith('_tokens.json') || f.endsWith('/tokens.json')) {
        const tok = JSON.parse(await readFile(join(configDir, f), 'utf8'));
        storedRefreshToken ||= !!tok.refresh_token;
      }
    }

    return {
      mcpRemoteVersion: bin.version,
      callbackPort: port,
      resource,
      consentShown: a.consentShown,
      tools: names.length,
      storedRefreshToken,
    };
  } catch (e) {
    const out = runs
      .map((h, i) => `--- mcp-remote-client run ${i + 1} (exit ${h.code ?? 'still running'}) stderr:\n${tail(h.stderr)}${h.stdout ? `\nstdout:\n${tail(h.stdout, 2000)}` : ''}`)
      .join('\n');
    const err = new Error(`mcp-remote ${bin.version} failed at step ${step}: ${e?.stack ?? e}\n${out}`);
    err.stack = err.message; // the cause's stack is in the message already
    throw err;
  } finally {
    runs.forEach((h) => h.kill());
    await rm(configDir, { recursive: true, force: true }).catch(() => {});
  }
}
