// oauth-browser.mjs is the user's side of an OAuth authorization in toolgate's e2e interop tests:
// signing in to toolgate with a one-time link (and setting a password), signing in again with
// the password when toolgate asks, and approving (or finding already approved) an MCP client on
// the consent page, in the headless Chromium page that browser.mjs hands a script. The client
// scripts (ts-sdk-*.mjs, mcp-remote-client.mjs) use it; nothing in toolgate does.

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

// setPassword sets the password on the "Set a password" page that a link sign-in of a user
// without one leads to, and presses Save; toolgate then signs the browser in afresh and sends
// it on to where the link was going.
export async function setPassword(page, password) {
  if (new URL(page.url()).pathname !== '/account/password') {
    throw new Error(`not on the password page but at ${page.url()}: ${await bodyText(page)}`);
  }
  await page.getByLabel('New password', { exact: false }).first().fill(password);
  await page.getByLabel('New password again').fill(password);
  await page.getByRole('button', { name: 'Save password' }).click();
  try {
    await page.waitForURL((u) => u.pathname !== '/account/password');
  } catch (e) {
    throw new Error(`saving the password did not leave the page (at ${page.url()}): ${await bodyText(page)}`);
  }
}

// signInWithPassword fills toolgate's sign-in page (where the browser is) with email and
// password and presses Sign in; the page's next parameter brings the browser back to where
// toolgate sent it from. It returns the sign-in page's text as the person saw it.
export async function signInWithPassword(page, { email, password }) {
  if (new URL(page.url()).pathname !== '/signin') {
    throw new Error(`not on the sign-in page but at ${page.url()}: ${await bodyText(page)}`);
  }
  const shown = await bodyText(page, 600);
  await page.getByLabel('Email').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  try {
    await page.waitForURL((u) => u.pathname !== '/signin');
  } catch (e) {
    throw new Error(`signing in with the password did not leave /signin (at ${page.url()}): ${await bodyText(page)}`);
  }
  return shown;
}

// authorize opens an authorization URL in the signed-in page. If toolgate sends the browser to
// its sign-in page instead (the session is older than max-auth-age) and signInAgain is given,
// signInAgain(page) signs in there and returns what it saw, and the browser is back at the
// authorization. If toolgate shows its consent page ("Allow <client> to use your MCP
// server?"), it presses Allow. Either way it waits until the browser has been redirected to a
// URL starting with callbackPrefix (the client's redirect URI, served by the client's own
// loopback listener) and returns:
//   {consentShown, consentText, callbackURL, signInAgainText}
// where callbackURL is the URL the browser landed on (with code, state and iss), and
// signInAgainText what signInAgain returned (undefined when it was not called).
export async function authorize(page, authURL, { callbackPrefix, clientName, signInAgain }) {
  const atCallback = (u) => String(u).startsWith(callbackPrefix);
  let resp;
  try {
    resp = await page.goto(authURL);
  } catch (e) {
    throw new Error(`opening the authorization URL ${authURL}: ${e.message}`);
  }
  let signInAgainText;
  const signedInAgain = !!signInAgain && new URL(page.url()).pathname === '/signin';
  if (signedInAgain) signInAgainText = await signInAgain(page);
  if (atCallback(page.url())) {
    return { consentShown: false, consentText: '', callbackURL: page.url(), signInAgainText };
  }
  if (!signedInAgain && (!resp || !resp.ok())) {
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
  return { consentShown: true, consentText, callbackURL: page.url(), signInAgainText };
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
