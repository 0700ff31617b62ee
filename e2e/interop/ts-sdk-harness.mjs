// ts-sdk-harness.mjs: what the TypeScript SDK client scripts (ts-sdk-client.mjs,
// ts-sdk-policy.mjs, ts-sdk-stepup.mjs) share: the client's loopback redirect listener, a
// headless in-memory OAuthClientProvider whose authorization step is the person in Chromium (with
// or without invalidateCredentials), and a fetch that records every HTTP exchange for assertions
// and error messages. Test-only.

import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';

// callbackListener is the client's loopback redirect URI: an HTTP server on 127.0.0.1 and a free
// port that answers GET /callback with a small page, as a CLI MCP client's listener does.
export async function callbackListener() {
  const hits = [];
  const server = createServer((req, res) => {
    const u = new URL(req.url, 'http://127.0.0.1');
    if (u.pathname !== '/callback') {
      res.writeHead(404).end('not found');
      return;
    }
    hits.push(u.search);
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><title>Authorized</title><p>Authorization received; you can close this window.</p>');
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return { server, hits, redirectURL: `http://127.0.0.1:${server.address().port}/callback` };
}

// InMemoryProvider is a headless OAuthClientProvider: everything lives in memory, and
// redirectToAuthorization runs the user's part in the browser and keeps the code. grantTypes
// are the grant_types it registers with (default authorization_code and refresh_token, as the
// SDK's example client).
export class InMemoryProvider {
  constructor({ redirectURL, clientName, userAgent, grantTypes }) {
    this._redirectURL = redirectURL;
    this._clientName = clientName;
    this._grantTypes = grantTypes ?? ['authorization_code', 'refresh_token'];
    this._userAgent = userAgent; // async (authURL) => {code, consentShown, ...}
    this.info = undefined;
    this.tok = undefined;
    this.verifier = undefined;
    this.lastState = undefined;
    this.registrations = 0;
    this.tokenSaves = 0;
    this.authorizations = []; // {authURL, consentShown, code}
    this.forbidAuthorization = ''; // when set, a new authorization is an error with this text
  }

  get redirectUrl() {
    return this._redirectURL;
  }

  get clientMetadata() {
    return {
      client_name: this._clientName,
      redirect_uris: [this._redirectURL],
      grant_types: this._grantTypes,
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }

  state() {
    this.lastState = randomUUID();
    return this.lastState;
  }

  clientInformation() {
    return this.info;
  }

  saveClientInformation(info) {
    if (info.client_id !== this.info?.client_id) this.registrations++;
    this.info = info;
  }

  tokens() {
    return this.tok;
  }

  saveTokens(tokens) {
    this.tokenSaves++;
    this.tok = tokens;
  }

  saveCodeVerifier(v) {
    this.verifier = v;
  }

  codeVerifier() {
    if (!this.verifier) throw new Error('no PKCE code verifier saved');
    return this.verifier;
  }

  async redirectToAuthorization(authURL) {
    if (this.forbidAuthorization) throw new Error(this.forbidAuthorization);
    const a = await this._userAgent(authURL, this.lastState);
    this.authorizations.push({ authURL: authURL.href, ...a });
  }
}

// InvalidatingProvider is InMemoryProvider with invalidateCredentials, which the SDK's
// OAuthClientProvider leaves optional and its example provider lacks, implemented as mcp-remote's
// NodeOAuthClientProvider does (0.15.1): 'all' forgets the client, the tokens and the verifier,
// 'client', 'tokens' and 'verifier' one each ('discovery': nothing is cached here). The SDK's
// auth() calls it when the server refuses the client (invalid_client: 'all') or the refresh token
// (invalid_grant: 'tokens'), and then tries again, which without tokens is a new authorization.
// invalidations records the calls.
export class InvalidatingProvider extends InMemoryProvider {
  constructor(opts) {
    super(opts);
    this.invalidations = [];
  }

  invalidateCredentials(scope) {
    this.invalidations.push(scope);
    if (scope === 'all' || scope === 'client') this.info = undefined;
    if (scope === 'all' || scope === 'tokens') this.tok = undefined;
    if (scope === 'all' || scope === 'verifier') this.verifier = undefined;
  }
}

// tracingFetch records every HTTP exchange of the SDK (MCP requests, metadata, registration,
// token, with a token error's code and description) for assertions and error messages.
export function tracingFetch(trace) {
  return async (url, init = {}) => {
    const entry = { method: init.method ?? 'GET', url: String(url) };
    const body = init.body;
    if (body instanceof URLSearchParams) {
      entry.grant = body.get('grant_type') ?? undefined;
      entry.resource = body.get('resource') ?? undefined;
    }
    try {
      const res = await fetch(url, init);
      entry.status = res.status;
      const wwwAuth = res.headers.get('www-authenticate');
      if (wwwAuth) entry.wwwAuthenticate = wwwAuth;
      if (entry.grant && !res.ok) {
        // A token error's code and description (RFC 6749 §5.2), read from a copy: the SDK
        // reads the response itself.
        const err = await res.clone().json().catch(() => ({}));
        entry.tokenError = `${err.error ?? '?'}: ${err.error_description ?? ''}`;
      }
      trace.push(entry);
      return res;
    } catch (e) {
      entry.error = String(e?.cause?.message ?? e?.message ?? e);
      trace.push(entry);
      throw e;
    }
  };
}

export function fmtTrace(trace) {
  return trace
    .map((e) => {
      let s = `  ${e.method} ${e.url} -> ${e.status ?? 'ERR ' + e.error}`;
      if (e.grant) s += ` grant_type=${e.grant}`;
      if (e.resource) s += ` resource=${e.resource}`;
      if (e.tokenError) s += `\n      ${e.tokenError}`;
      if (e.wwwAuthenticate) s += `\n      WWW-Authenticate: ${e.wwwAuthenticate}`;
      return s;
    })
    .join('\n');
}

// firstAuthorization is a client's first connection: refused with UnauthorizedError after
// exactly one authorization (the person consents in Chromium through prov), whose code the
// transport then exchanges, as the SDK's example client does.
export async function firstAuthorization(newTransport, connect, prov) {
  const t = newTransport();
  try {
    await connect(t);
    throw new Error('connected without authorization');
  } catch (e) {
    if (!(e instanceof UnauthorizedError)) throw e;
  }
  if (prov.authorizations.length !== 1) throw new Error(`UnauthorizedError after ${prov.authorizations.length} authorizations, want 1`);
  await t.finishAuth(prov.authorizations[0].code);
}
