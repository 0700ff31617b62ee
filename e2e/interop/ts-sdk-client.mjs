// ts-sdk-client.mjs: the MCP TypeScript SDK v1 client (@modelcontextprotocol/sdk, Client +
// StreamableHTTPClientTransport) against a toolgate tunnel protected by toolgate's OAuth
// authorization server, with a real user approving it in headless Chromium. Used by
// TestTypeScriptSDKClientOAuth in e2e/interop_oauth_test.go.
//
// It is a browser.mjs script module: its default export takes {page, context, args} and returns a
// JSON summary, so `node browser.mjs ts-sdk-client.mjs < job.json` runs it and prints the single
// result line (exit status 1 and the error on failure). The Go test runs it through
// e2e/browsertest, which supplies a Chromium whose NSS store trusts the instance's dev CA and maps
// *.toolgate.localhost to 127.0.0.1.
//
// args: {mcpURL, signinLink, issuer, clientName?}
// Environment: NODE_EXTRA_CA_CERTS=<data dir>/ca.pem so Node trusts the dev CA. *.localhost names
// are pinned to loopback by resolve-localhost.mjs, imported below.
//
// The flow, asserted step by step:
//  1. connect without a token: 401, then the SDK discovers protected-resource and authorization
//     server metadata, registers dynamically (RFC 7591, public client, loopback redirect URI) and
//     hands over the authorization URL; the user signs in with the link and presses Allow; the code
//     arrives at a loopback listener, with the state sent and iss = issuer;
//  2. finishAuth exchanges the code (PKCE S256, resource); a new connection lists tools
//     (test_simple_text among at least 5) and calls test_simple_text;
//  3. the access token is spoiled in the provider: the server answers 401, the SDK refreshes with
//     the refresh token (no new authorization allowed) and the retried call succeeds;
//  4. with the tokens dropped, the same client authorizes again: toolgate skips the consent page
//     and the new token works.

import './resolve-localhost.mjs';
import { randomUUID } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { authorize, checkCallback, signIn } from './oauth-browser.mjs';
import { InMemoryProvider, callbackListener, fmtTrace, tracingFetch } from './ts-sdk-harness.mjs';

export default async function run({ page, args }) {
  const { mcpURL, signinLink, issuer } = args ?? {};
  if (!mcpURL || !signinLink || !issuer) throw new Error('args need mcpURL, signinLink and issuer');
  const clientName = args.clientName ?? 'toolgate e2e TypeScript SDK client';
  const trace = [];
  const fetchFn = tracingFetch(trace);
  const cb = await callbackListener();
  const clients = [];
  let step = 'setup';

  let signedIn = false;
  const userAgent = async (authURL, state) => {
    const u = new URL(authURL);
    if (u.searchParams.get('code_challenge_method') !== 'S256') {
      throw new Error(`authorization URL without code_challenge_method=S256: ${authURL}`);
    }
    if (u.searchParams.get('resource') !== mcpURL) {
      throw new Error(`authorization URL resource=${u.searchParams.get('resource')}, want ${mcpURL}`);
    }
    if (!signedIn) {
      await signIn(page, signinLink);
      signedIn = true;
    }
    const before = cb.hits.length;
    const a = await authorize(page, authURL.href, { callbackPrefix: cb.redirectURL, clientName });
    if (cb.hits.length !== before + 1) {
      throw new Error(`the loopback listener got ${cb.hits.length - before} requests, want 1`);
    }
    const code = checkCallback(a.callbackURL, { state, issuer });
    return { consentShown: a.consentShown, code };
  };
  const provider = new InMemoryProvider({ redirectURL: cb.redirectURL, clientName, userAgent });

  const newTransport = () => new StreamableHTTPClientTransport(new URL(mcpURL), { authProvider: provider, fetch: fetchFn });
  const connect = async (transport) => {
    const client = new Client({ name: 'toolgate-e2e-ts-sdk', version: '1.0.0' });
    clients.push(client);
    await client.connect(transport);
    return client;
  };
  // authorizeAndConnect connects, expecting the 401 and a browser authorization, then finishes the
  // authorization and connects again.
  const authorizeAndConnect = async () => {
    const n = provider.authorizations.length;
    const t1 = newTransport();
    try {
      await connect(t1);
      throw new Error('connected without authorization');
    } catch (e) {
      if (!(e instanceof UnauthorizedError)) throw e;
    }
    if (provider.authorizations.length !== n + 1) {
      throw new Error(`UnauthorizedError without an authorization (authorizations ${provider.authorizations.length - n})`);
    }
    await t1.finishAuth(provider.authorizations[n].code);
    return connect(newTransport());
  };
  const callSimple = async (client) => {
    const res = await client.callTool({ name: 'test_simple_text', arguments: {} });
    const text = res?.content?.[0]?.type === 'text' ? res.content[0].text : '';
    if (res.isError || !text) throw new Error(`tools/call test_simple_text: ${JSON.stringify(res)}`);
    return text;
  };

  try {
    step = '1-2: first authorization, tools/list, tools/call';
    const client = await authorizeAndConnect();
    if (provider.registrations !== 1) throw new Error(`dynamic registrations: ${provider.registrations}, want 1`);
    const first = provider.tok;
    if (!first?.access_token || !first.refresh_token) {
      throw new Error(`token response without access and refresh tokens: ${JSON.stringify(Object.keys(first ?? {}))}`);
    }
    const { tools } = await client.listTools();
    const names = tools.map((t) => t.name);
    if (!names.includes('test_simple_text') || tools.length < 5) {
      throw new Error(`tools/list returned ${tools.length} tools: ${names.join(', ')}`);
    }
    const text = await callSimple(client);

    step = '3: refresh after a 401 on a spoiled access token';
    provider.tok = { ...first, access_token: `spoiled-${randomUUID()}` };
    provider.forbidAuthorization = 'the SDK started a new authorization instead of refreshing its token';
    const traceMark = trace.length;
    const refreshedText = await callSimple(client);
    const after = trace.slice(traceMark);
    const got401 = after.find((e) => e.url === mcpURL && e.status === 401);
    const refresh = after.find((e) => e.grant === 'refresh_token');
    if (!got401) throw new Error('the spoiled access token was not answered with 401');
    if (!/^Bearer /.test(got401.wwwAuthenticate ?? '')) {
      throw new Error(`401 without a Bearer challenge: ${got401.wwwAuthenticate}`);
    }
    if (!refresh || refresh.status !== 200) throw new Error('no successful refresh_token grant after the 401');
    const second = provider.tok;
    if (!second?.access_token || second.access_token === first.access_token || second.access_token.startsWith('spoiled-')) {
      throw new Error('the refresh did not yield a new access token');
    }
    provider.forbidAuthorization = '';

    step = '4: second authorization of the same client skips consent';
    provider.tok = undefined;
    const again = await authorizeAndConnect();
    const againText = await callSimple(again);
    if (provider.registrations !== 1) throw new Error(`dynamic registrations: ${provider.registrations}, want 1`);
    const consents = provider.authorizations.map((a) => a.consentShown);
    if (consents[0] !== true) throw new Error('the first authorization showed no consent page');
    if (consents[1] !== false) throw new Error('the second authorization of the same client showed the consent page again');

    return {
      clientId: provider.info.client_id,
      clientName,
      redirectURL: cb.redirectURL,
      tools: tools.length,
      callText: text,
      refreshedCallText: refreshedText,
      secondAuthCallText: againText,
      consents,
      refresh: {
        resource: refresh.resource ?? null,
        rotatedRefreshToken: !!second.refresh_token && second.refresh_token !== first.refresh_token,
      },
      tokenSaves: provider.tokenSaves,
      trace: trace.map((e) => `${e.method} ${new URL(e.url).pathname} ${e.status ?? e.error}${e.grant ? ' ' + e.grant : ''}`),
    };
  } catch (e) {
    const err = new Error(`TypeScript SDK client failed at step ${step}: ${e?.stack ?? e}\nHTTP exchanges:\n${fmtTrace(trace)}`);
    err.stack = err.message; // the cause's stack is in the message already
    throw err;
  } finally {
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
    cb.server.closeAllConnections?.();
    cb.server.close();
  }
}
