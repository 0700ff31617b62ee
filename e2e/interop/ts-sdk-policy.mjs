// ts-sdk-policy.mjs: the MCP TypeScript SDK v1 client (@modelcontextprotocol/sdk, Client +
// StreamableHTTPClientTransport) as a person a tunnel is shared with, under toolgate's built-in
// policy. Used by TestTypeScriptSDKClientPolicy in e2e/interop_policy_test.go.
//
// Like ts-sdk-client.mjs it is a browser.mjs script module run through e2e/browsertest: the
// client meets the tunnel without a token, registers, and the user (signed in with args.signinLink)
// approves it in headless Chromium. Then it lists tools and calls read_notes and write_note; a
// call the policy denies comes back as a JSON-RPC error, which the SDK throws as an McpError.
//
// args: {mcpURL, signinLink, issuer, clientName?}
// Result: {tools: [names], readText, readIsError, write: {denied, code, message}}; the Go test
// asserts on it. Environment as for ts-sdk-client.mjs.

import './resolve-localhost.mjs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { authorize, checkCallback, signIn } from './oauth-browser.mjs';
import { InMemoryProvider, callbackListener, firstAuthorization, fmtTrace, tracingFetch } from './ts-sdk-harness.mjs';

export default async function run({ page, args }) {
  const { mcpURL, signinLink, issuer } = args ?? {};
  if (!mcpURL || !signinLink || !issuer) throw new Error('args need mcpURL, signinLink and issuer');
  const clientName = args.clientName ?? 'toolgate e2e TypeScript SDK policy client';
  const trace = [];
  const fetchFn = tracingFetch(trace);
  const cb = await callbackListener();
  const clients = [];
  let step = 'setup';

  const userAgent = async (authURL, state) => {
    await signIn(page, signinLink);
    const a = await authorize(page, authURL.href, { callbackPrefix: cb.redirectURL, clientName });
    return { consentShown: a.consentShown, code: checkCallback(a.callbackURL, { state, issuer }) };
  };
  const prov = new InMemoryProvider({ redirectURL: cb.redirectURL, clientName, userAgent });
  const newTransport = () => new StreamableHTTPClientTransport(new URL(mcpURL), { authProvider: prov, fetch: fetchFn });
  const connect = async (transport) => {
    const client = new Client({ name: 'toolgate-e2e-ts-sdk-policy', version: '1.0.0' });
    clients.push(client);
    await client.connect(transport);
    return client;
  };

  try {
    step = 'authorization';
    await firstAuthorization(newTransport, connect, prov);
    const client = await connect(newTransport());

    step = 'tools/list';
    const { tools } = await client.listTools();
    const names = tools.map((t) => t.name).sort();

    step = 'tools/call read_notes';
    const read = await client.callTool({ name: 'read_notes', arguments: {} });
    const readText = read?.content?.[0]?.type === 'text' ? read.content[0].text : '';

    step = 'tools/call write_note';
    const write = { denied: false, mcpError: false, code: 0, message: '' };
    try {
      const res = await client.callTool({ name: 'write_note', arguments: {} });
      write.result = res;
    } catch (e) {
      write.denied = true;
      write.mcpError = e instanceof McpError;
      write.code = e?.code ?? 0;
      write.message = String(e?.message ?? e);
    }

    return { tools: names, readText, readIsError: !!read?.isError, write, trace };
  } catch (e) {
    const err = new Error(`TypeScript SDK policy client failed at step ${step}: ${e?.stack ?? e}\nHTTP exchanges:\n${fmtTrace(trace)}`);
    err.stack = err.message;
    throw err;
  } finally {
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
    cb.server.closeAllConnections?.();
    cb.server.close();
  }
}
