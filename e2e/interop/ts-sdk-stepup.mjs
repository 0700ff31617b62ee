// ts-sdk-stepup.mjs: the MCP TypeScript SDK v1 client (@modelcontextprotocol/sdk, Client +
// StreamableHTTPClientTransport) as a tunnel's owner under toolgate's built-in policy, whose
// destructive tools need a sign-in younger than --max-auth-age. Used by
// TestTypeScriptSDKClientStepUp in e2e/interop_policy_test.go.
//
// Like ts-sdk-client.mjs it is a browser.mjs script module run through e2e/browsertest. The
// owner signs in with args.signinLink, sets a password on the page the link leads to, and
// approves the client in headless Chromium. The client lists the tools and calls the
// destructive one at once; then it waits until the sign-in is older than args.maxAuthAgeMs,
// calls the read tool (no step-up for reads) and the destructive tool again.
//
// That call is the step-up. toolgate answers 403 with a Bearer insufficient_scope challenge; the
// SDK's transport (streamableHttp.js, send(): the `response.status === 403` branch) reacts by
// calling auth() itself. What auth() does first depends on the variant (args.refreshTokens):
//
//  - without refresh tokens (the client registers with grant_types [authorization_code]): holding
//    no refresh token, auth() starts a new authorization at once;
//  - with refresh tokens (the default grant_types, as most clients register), which is the common
//    case: auth() refreshes first (client/auth.js, authInternal: `if (tokens?.refresh_token)`
//    comes before startAuthorization). A refreshed token would keep the old sign-in time, be
//    challenged again, and the transport would give up with "Server returned 403 after trying
//    upscoping" (typescript-sdk#2255); so toolgate, having just challenged this grant, refuses
//    the refresh with invalid_grant. auth() then calls the provider's invalidateCredentials
//    ('tokens') and runs again, now without tokens: a new authorization. The provider is
//    InvalidatingProvider, which implements it as mcp-remote does.
//
// The authorization URL goes to the provider's redirectToAuthorization: there toolgate sees the
// old browser session, ends it and shows its sign-in page, the owner signs in again with the
// password and is sent back to the authorization, which (already approved) redirects to the client
// with a code. auth() answers 'REDIRECT' and send() throws UnauthorizedError. The application then
// does what the SDK's own example client does on UnauthorizedError (examples/client/
// simpleOAuthClient.js: catch it, take the code from the redirect, transport.finishAuth(code),
// carry on): finishAuth on the same transport, and the call again, which passes.
//
// args: {mcpURL, signinLink, issuer, email, password, maxAuthAgeMs, refreshTokens?, clientName?}
// Result: {tools, freshText, readText, stepUp: {...}}; the Go test asserts on it, and on the
// server's own call counts. Environment as for ts-sdk-client.mjs.

import './resolve-localhost.mjs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { authorize, checkCallback, setPassword, signIn, signInWithPassword } from './oauth-browser.mjs';
import { InMemoryProvider, InvalidatingProvider, callbackListener, firstAuthorization, fmtTrace, tracingFetch } from './ts-sdk-harness.mjs';

export default async function run({ page, args }) {
  const { mcpURL, signinLink, issuer, email, password, maxAuthAgeMs } = args ?? {};
  if (!mcpURL || !signinLink || !issuer || !email || !password || !(maxAuthAgeMs > 0)) {
    throw new Error('args need mcpURL, signinLink, issuer, email, password and maxAuthAgeMs');
  }
  const clientName = args.clientName ?? 'toolgate e2e TypeScript SDK step-up client';
  const refreshTokens = args.refreshTokens === true;
  const trace = [];
  const fetchFn = tracingFetch(trace);
  const cb = await callbackListener();
  const clients = [];
  let step = 'setup';

  let signedInAt = 0; // when the browser last signed in, by this clock
  const signInAgainPages = []; // the sign-in page's text each time toolgate asked again
  const userAgent = async (authURL, state) => {
    if (!signedInAt) {
      await signIn(page, signinLink);
      await setPassword(page, password);
      signedInAt = Date.now();
    }
    const a = await authorize(page, authURL.href, {
      callbackPrefix: cb.redirectURL,
      clientName,
      signInAgain: async (p) => {
        const shown = await signInWithPassword(p, { email, password });
        signedInAt = Date.now();
        signInAgainPages.push(shown);
        return shown;
      },
    });
    return { consentShown: a.consentShown, signedInAgain: a.signInAgainText !== undefined, code: checkCallback(a.callbackURL, { state, issuer }) };
  };
  const prov = refreshTokens
    ? new InvalidatingProvider({ redirectURL: cb.redirectURL, clientName, userAgent })
    : new InMemoryProvider({ redirectURL: cb.redirectURL, clientName, userAgent, grantTypes: ['authorization_code'] });
  const newTransport = () => new StreamableHTTPClientTransport(new URL(mcpURL), { authProvider: prov, fetch: fetchFn });
  const connect = async (transport) => {
    const client = new Client({ name: 'toolgate-e2e-ts-sdk-stepup', version: '1.0.0' });
    clients.push(client);
    await client.connect(transport);
    return client;
  };
  const text = (res) => (res?.content?.[0]?.type === 'text' ? res.content[0].text : '');
  const call = async (client, name) => {
    const res = await client.callTool({ name, arguments: {} });
    if (res.isError || !text(res)) throw new Error(`tools/call ${name}: ${JSON.stringify(res)}`);
    return text(res);
  };

  try {
    step = 'first authorization';
    await firstAuthorization(newTransport, connect, prov);
    if (refreshTokens && !prov.tok?.refresh_token) throw new Error('toolgate issued no refresh token to a client registered with the refresh_token grant');
    if (!refreshTokens && prov.tok?.refresh_token) throw new Error('toolgate issued a refresh token to a client registered without the refresh_token grant');
    const firstTokens = prov.tok;
    const transport = newTransport();
    const client = await connect(transport);

    step = 'tools/list and a destructive call with a fresh sign-in';
    const { tools } = await client.listTools();
    const freshText = await call(client, 'delete_all');
    const freshAgeMs = Date.now() - signedInAt;
    if (freshAgeMs >= maxAuthAgeMs) {
      throw new Error(`the "fresh" call came ${freshAgeMs} ms after signing in, not under max-auth-age ${maxAuthAgeMs} ms: the test machine is too slow for its timing`);
    }

    step = 'a read call with an old sign-in';
    await new Promise((r) => setTimeout(r, signedInAt + maxAuthAgeMs + 500 - Date.now()));
    const readText = await call(client, 'read_notes');
    if (prov.authorizations.length !== 1) throw new Error('the read call with an old sign-in started an authorization');

    step = 'the destructive call with an old sign-in: step-up';
    const mark = trace.length;
    let thrown;
    try {
      const res = await client.callTool({ name: 'delete_all', arguments: {} });
      throw new Error(`the destructive call with an old sign-in was answered without a step-up: ${JSON.stringify(res)}`);
    } catch (e) {
      if (!(e instanceof UnauthorizedError)) throw e;
      thrown = `${e.constructor.name}: ${e.message}`;
    }
    if (prov.authorizations.length !== 2) throw new Error(`authorizations after the step-up challenge: ${prov.authorizations.length}, want 2`);
    const reauth = prov.authorizations[1];
    await transport.finishAuth(reauth.code);

    step = 'the destructive call again, after re-authorizing';
    const retriedText = await call(client, 'delete_all');
    const exchanges = trace.slice(mark);
    const challenge = exchanges.find((e) => e.url === mcpURL && e.status === 403);

    return {
      tools: tools.map((t) => t.name).sort(),
      freshText,
      readText,
      stepUp: {
        status: challenge?.status ?? 0,
        wwwAuthenticate: challenge?.wwwAuthenticate ?? '',
        thrown,
        scope: new URL(reauth.authURL).searchParams.get('scope'),
        signedInAgain: reauth.signedInAgain,
        signInPage: signInAgainPages.join('\n---\n'),
        consentShown: reauth.consentShown,
        grants: exchanges.filter((e) => e.grant).map((e) => `${e.grant} ${e.status}`),
        tokenErrors: exchanges.filter((e) => e.tokenError).map((e) => e.tokenError),
        invalidations: prov.invalidations ?? [],
        newTokens: prov.tok?.access_token !== firstTokens.access_token &&
          (!refreshTokens || (!!prov.tok?.refresh_token && prov.tok.refresh_token !== firstTokens.refresh_token)),
        retriedText,
      },
      authorizations: prov.authorizations.length,
      trace: exchanges.map((e) => `${e.method} ${new URL(e.url).pathname} ${e.status ?? e.error}${e.grant ? ' ' + e.grant : ''}`),
    };
  } catch (e) {
    const err = new Error(`TypeScript SDK step-up client failed at step ${step}: ${e?.stack ?? e}\nHTTP exchanges:\n${fmtTrace(trace)}`);
    err.stack = err.message;
    throw err;
  } finally {
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
    cb.server.closeAllConnections?.();
    cb.server.close();
  }
}
