// oauth-browser.mjs is the user's side of an OAuth authorization in toolgate's e2e interop tests:
// signing in to toolgate with a one-time link, and approving (or finding already approved) an MCP
// client on the consent page, in the headless Chromium page that browser.mjs hands a script. The
// client scripts (ts-sdk-client.mjs, mcp-remote-client.mjs) use it; nothing in toolgate does.

// bodyText is the visible text of the page, shortened, for error messages.
export async function bodyText(page, max = 1500) {
  try {
    const t = (await page.locator('body').innerText({ timeout: 2000 })).replace(/\s+\n/g, '\n').trim();
    return t.length > max ? t.slice(0, max) + '…' : t;
  } catch (e) {
    return `(no page text: ${e.message})`;
  }
}

// signIn follows a one-time sign-in link (from `toolgate user reset EMAIL`) and presses
// Continue. The browser context then holds the session cookie for the apex.
export async function signIn(page, link) {
  const resp = await page.goto(link);
  if (!resp || !resp.ok()) {
    throw new Error(`sign-in link ${link}: HTTP ${resp?.status()}: ${await bodyText(page)}`);
  }
  await page.getByRole('button', { name: 'Continue' }).click();
  try {
    await page.waitForURL((u) => !u.pathname.startsWith('/signin'));
  } catch (e) {
    throw new Error(`signing in with the link did not leave /signin (at ${page.url()}): ${await bodyText(page)}`);
  }
}

// authorize opens an authorization URL in the signed-in page. If toolgate shows its consent page
// ("Allow <client> to use your MCP server?"), it presses Allow. Either way it waits until the
// browser has been redirected to a URL starting with callbackPrefix (the client's redirect URI,
// served by the client's own loopback listener) and returns:
//   {consentShown, consentText, callbackURL}
// where callbackURL is the URL the browser landed on (with code, state and iss).
export async function authorize(page, authURL, { callbackPrefix, clientName }) {
  const atCallback = (u) => String(u).startsWith(callbackPrefix);
  let resp;
  try {
    resp = await page.goto(authURL);
  } catch (e) {
    throw new Error(`opening the authorization URL ${authURL}: ${e.message}`);
  }
  if (atCallback(page.url())) {
    return { consentShown: false, consentText: '', callbackURL: page.url() };
  }
  if (!resp || !resp.ok()) {
    throw new Error(`authorization URL ${authURL}: HTTP ${resp?.status()} at ${page.url()}: ${await bodyText(page)}`);
  }
  const allow = page.getByRole('button', { name: 'Allow', exact: true });
  try {
    await allow.waitFor({ state: 'visible' });
  } catch {
    throw new Error(`no Allow button at ${page.url()} (authorization URL ${authURL}): ${await bodyText(page)}`);
  }
  const consentText = await bodyText(page, 600);
  if (!/to use your MCP server/i.test(consentText)) {
    throw new Error(`the consent page does not ask "… to use your MCP server?": ${consentText}`);
  }
  if (clientName && !consentText.includes(clientName)) {
    throw new Error(`the consent page does not name the client ${JSON.stringify(clientName)}: ${consentText}`);
  }
  try {
    await Promise.all([page.waitForURL(atCallback), allow.click()]);
  } catch (e) {
    throw new Error(`after Allow the browser did not reach ${callbackPrefix} (at ${page.url()}): ${e.message}\n${await bodyText(page)}`);
  }
  return { consentShown: true, consentText, callbackURL: page.url() };
}

// checkCallback checks the authorization response a client received at its redirect URI: no
// error, a code, the state the client sent and, as RFC 9207 asks, iss equal to the issuer.
export function checkCallback(callbackURL, { state, issuer }) {
  const q = new URL(callbackURL).searchParams;
  if (q.get('error')) {
    throw new Error(`authorization failed: ${q.get('error')}: ${q.get('error_description') ?? ''} (${callbackURL})`);
  }
  const code = q.get('code');
  if (!code) throw new Error(`no code in the authorization response ${callbackURL}`);
  if (state !== undefined && q.get('state') !== state) {
    throw new Error(`authorization response state ${JSON.stringify(q.get('state'))}, want ${JSON.stringify(state)}`);
  }
  if (issuer !== undefined && q.get('iss') !== issuer) {
    throw new Error(`authorization response iss ${JSON.stringify(q.get('iss'))}, want ${JSON.stringify(issuer)}`);
  }
  return code;
}
