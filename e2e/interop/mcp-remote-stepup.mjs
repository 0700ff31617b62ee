// mcp-remote-stepup.mjs: mcp-remote's stdio proxy (the `mcp-remote` bin of the npm package
// mcp-remote) between the MCP TypeScript SDK client and a tunnel under toolgate's built-in policy,
// as the tunnel's owner, through the fresh-sign-in step-up. Used by TestMCPRemoteStepUp in
// e2e/interop_policy_test.go.
//
// A browser.mjs script module like mcp-remote-client.mjs, with the same child environment. The
// SDK's Client talks to `mcp-remote MCP_URL PORT --host 127.0.0.1` over stdio, as Claude Desktop
// does. mcp-remote prints "Please authorize this client by visiting:\n<URL>" on stderr; the
// owner signs in with args.signinLink, sets a password, and approves it in headless Chromium, and
// the browser lands on mcp-remote's own callback listener. The client lists the tools and calls
// the destructive one at once; then it waits until the sign-in is older than args.maxAuthAgeMs,
// calls the read tool and the destructive tool again.
//
// That call is the step-up, all inside mcp-remote: toolgate answers 403 insufficient_scope; the
// proxy's transport runs the SDK's auth(), which holds a refresh token and refreshes first (the
// challenged scope, mcp, is no wider than the token's, so mcp-remote's SDK does not skip the
// refresh). toolgate refuses that refresh with invalid_grant, having just challenged this grant;
// auth() calls the provider's invalidateCredentials('tokens') (mcp-remote deletes its tokens
// file) and starts an authorization, printing its URL again; the proxy re-authorizes mid-session
// (its callback listener comes up again and waits for the code). The owner signs in again with
// the password in the browser, and the pending call is sent again and answered. The client sees
// nothing but a slow answer.
//
// args: {mcpURL, signinLink, issuer, email, password, maxAuthAgeMs, debug?}
// Result: {mcpRemoteVersion, tools, freshText, readText, stepUp: {...}}.

import './resolve-localhost.mjs';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { AUTHORIZE_RE, childEnv, freePort, mcpRemoteBin, tail } from './mcp-remote-client.mjs';
import { authorize, checkCallback, setPassword, signIn, signInWithPassword } from './oauth-browser.mjs';

const CALLBACK_RUNNING_RE = /OAuth callback server running at /g;

// storedRefreshToken is the refresh token in mcp-remote's tokens file, if any.
async function storedRefreshToken(configDir) {
  for (const f of await readdir(configDir, { recursive: true })) {
    if (f.endsWith('_tokens.json') || f.endsWith('/tokens.json')) {
      const tok = JSON.parse(await readFile(join(configDir, f), 'utf8'));
      if (tok.refresh_token) return tok.refresh_token;
    }
  }
  return '';
}

export default async function run({ page, args }) {
  const { mcpURL, signinLink, issuer, email, password, maxAuthAgeMs } = args ?? {};
  if (!mcpURL || !signinLink || !issuer || !email || !password || !(maxAuthAgeMs > 0)) {
    throw new Error('args need mcpURL, signinLink, issuer, email, password and maxAuthAgeMs');
  }
  const bin = await mcpRemoteBin('mcp-remote');
  const configDir = await mkdtemp(join(tmpdir(), 'toolgate-mcp-remote-'));
  const port = await freePort();
  const callbackPrefix = `http://127.0.0.1:${port}/oauth/callback`;
  const argv = [bin.path, mcpURL, String(port), '--host', '127.0.0.1', '--auth-timeout', '40'];
  if (args.debug) argv.push('--debug');
  const transport = new StdioClientTransport({ command: process.execPath, args: argv, env: childEnv(configDir), stderr: 'pipe' });
  const client = new Client({ name: 'toolgate-e2e-mcp-remote-stepup', version: '1.0.0' });

  // mcp-remote's stderr, and waiting on it.
  let stderr = '';
  const waiters = new Set();
  transport.stderr.setEncoding('utf8').on('data', (d) => {
    stderr += d;
    waiters.forEach((w) => w());
  });
  const until = (pred, ms, what) =>
    new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      const check = () => {
        const v = pred();
        if (v) {
          done();
          resolve(v);
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
      }, ms);
      waiters.add(check);
      check();
    });
  const authURLs = () => [...stderr.matchAll(new RegExp(AUTHORIZE_RE.source, 'g'))].map((m) => m[1]);
  // The n-th authorization URL, once mcp-remote's callback listener for it is up: when it
  // re-authorizes mid-session, the URL is printed before the listener starts.
  const nthAuthorization = (n) =>
    until(
      () => authURLs().length >= n && (stderr.match(CALLBACK_RUNNING_RE) ?? []).length >= n && authURLs()[n - 1],
      30000,
      `mcp-remote's authorization URL number ${n} and its callback listener`,
    );

  let signedInAt = 0;
  const signInAgainPages = [];
  const signInAgain = async (p) => {
    const shown = await signInWithPassword(p, { email, password });
    signedInAt = Date.now();
    signInAgainPages.push(shown);
    return shown;
  };
  const text = (res) => (res?.content?.[0]?.type === 'text' ? res.content[0].text : '');
  const call = async (name) => {
    const res = await client.callTool({ name, arguments: {} });
    if (res.isError || !text(res)) throw new Error(`tools/call ${name}: ${JSON.stringify(res)}`);
    return text(res);
  };
  let step = 'setup';

  try {
    step = 'first authorization';
    const connected = client.connect(transport);
    connected.catch(() => {}); // awaited below
    const url1 = await Promise.race([nthAuthorization(1), connected.then(() => { throw new Error('connected without authorization'); })]);
    if (new URL(url1).searchParams.get('redirect_uri') !== callbackPrefix) throw new Error(`authorization URL ${url1}: redirect_uri is not ${callbackPrefix}`);
    await signIn(page, signinLink);
    await setPassword(page, password);
    signedInAt = Date.now();
    const a1 = await authorize(page, url1, { callbackPrefix, clientName: 'MCP CLI Proxy' });
    checkCallback(a1.callbackURL, { state: new URL(url1).searchParams.get('state'), issuer });
    await connected;
    const firstRefreshToken = await storedRefreshToken(configDir);
    if (!firstRefreshToken) throw new Error('mcp-remote stored no refresh token');

    step = 'tools/list and a destructive call with a fresh sign-in';
    const { tools } = await client.listTools();
    const freshText = await call('delete_all');
    const freshAgeMs = Date.now() - signedInAt;
    if (freshAgeMs >= maxAuthAgeMs) {
      throw new Error(`the "fresh" call came ${freshAgeMs} ms after signing in, not under max-auth-age ${maxAuthAgeMs} ms: the test machine is too slow for its timing`);
    }

    step = 'a read call with an old sign-in';
    await new Promise((r) => setTimeout(r, signedInAt + maxAuthAgeMs + 500 - Date.now()));
    const readText = await call('read_notes');
    if (authURLs().length !== 1) throw new Error('the read call with an old sign-in started an authorization');

    step = 'the destructive call with an old sign-in: step-up';
    const pending = call('delete_all');
    pending.catch(() => {}); // awaited below
    const url2 = await Promise.race([
      nthAuthorization(2),
      pending.then((t) => { throw new Error(`the destructive call with an old sign-in was answered without a new authorization: ${t}`); }),
    ]);
    const a2 = await authorize(page, url2, { callbackPrefix, clientName: 'MCP CLI Proxy', signInAgain });
    checkCallback(a2.callbackURL, { state: new URL(url2).searchParams.get('state'), issuer });

    step = 'the destructive call, answered after re-authorizing';
    const retriedText = await pending;
    const newRefreshToken = await storedRefreshToken(configDir);

    return {
      mcpRemoteVersion: bin.version,
      tools: tools.map((t) => t.name).sort(),
      freshText,
      readText,
      stepUp: {
        scope: new URL(url2).searchParams.get('scope'),
        signedInAgain: a2.signInAgainText !== undefined,
        signInPage: signInAgainPages.join('\n---\n'),
        consentShown: a2.consentShown,
        authorizations: authURLs().length,
        reauthorizedLogged: /Re-authorized with the remote server/.test(stderr),
        newRefreshToken: !!newRefreshToken && newRefreshToken !== firstRefreshToken,
        retriedText,
      },
    };
  } catch (e) {
    const err = new Error(`mcp-remote ${bin.version} step-up failed at step ${step}: ${e?.stack ?? e}\n--- mcp-remote stderr:\n${tail(stderr)}`);
    err.stack = err.message;
    throw err;
  } finally {
    await client.close().catch(() => {});
    await rm(configDir, { recursive: true, force: true }).catch(() => {});
  }
}
