// The console in a real browser (Debian's Chromium, driven by
// playwright-core), against a real API process the Rust test started
// (host-init/tests/console_browser.rs). It signs in with tokens of
// different scopes, uses the pages as a person would (keyboard included),
// forges what the console would not offer, attacks the session from
// another origin, and fails on any Content-Security-Policy violation.
//
//   node console/tests/browser.mjs   (settings in the environment:
//   PADDOCK_URL, PADDOCK_ADMIN, PADDOCK_READER, PADDOCK_ATTACKER_URL,
//   PADDOCK_SHOTS: where screenshots go, if set)
import { launch, watch } from "./chromium.mjs";
import assert from "node:assert/strict";
import tls from "node:tls";

const url = process.env.PADDOCK_URL;
const admin = process.env.PADDOCK_ADMIN;
const reader = process.env.PADDOCK_READER;
const attacker = process.env.PADDOCK_ATTACKER_URL;
const plantUrl = process.env.PADDOCK_PLANT_URL;
const attackerToken = process.env.PADDOCK_ATTACKER_TOKEN;
const shots = process.env.PADDOCK_SHOTS;
for (const [k, v] of Object.entries({ url, admin, reader, attacker, plantUrl, attackerToken })) {
  if (!v) throw new Error(`browser.mjs: ${k} is not set`);
}

const problems = [];
const browser = await launch();
const step = (what) => console.log(`browser: ${what}`);

try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1200, height: 800 } });
  const page = await context.newPage();
  watch(page, problems);

  // Sign in as the reader, with the keyboard only.
  await page.goto(`${url}/`);
  await page.waitForSelector("#sign-in");
  await page.keyboard.press("Tab"); // focus starts on the token field; Tab and back
  await page.keyboard.press("Shift+Tab");
  await page.focus("#token");
  await page.keyboard.type(reader);
  await page.keyboard.press("Enter");
  await page.waitForSelector("#signed-in-as");
  step("signed in as a read-only token with the keyboard");
  await page.waitForSelector("#no-workspaces, #workspaces");
  assert.equal(await page.locator("nav a", { hasText: "Tokens" }).count(), 0, "no Tokens page for a non-admin");
  assert.equal(await page.locator("#create-workspace").count(), 0, "no create form without the create scope");
  assert.equal(await page.locator("button[data-action]").count(), 0, "no action buttons for a read-only token");

  // The session is a cookie the page cannot read; the secret is nowhere.
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === "__Host-paddock_session");
  assert.ok(session, "a session cookie");
  assert.equal(session.httpOnly, true);
  assert.equal(session.secure, true);
  assert.equal(session.sameSite, "Strict");
  const readable = await page.evaluate(() => [
    document.cookie,
    JSON.stringify(localStorage),
    JSON.stringify(sessionStorage),
    document.documentElement.outerHTML,
  ]);
  for (const r of readable) assert.ok(!r.includes(reader), "the token's secret is not readable in the page");
  assert.equal(readable[0], "", "document.cookie shows nothing");

  // Forged from the console's own origin: what the page would not offer
  // this token is refused by the API.
  const forged = await page.evaluate(async () => {
    const s = await (await fetch("/v1/session")).json();
    const r = await fetch("/v1/workspaces", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Paddock-CSRF": s.csrf_token },
      body: JSON.stringify({ ttl_s: 60 }),
    });
    const t = await fetch("/v1/tokens");
    const b = await fetch("/v1/system");
    return [r.status, t.status, b.status];
  });
  assert.deepEqual(forged, [403, 403, 403], "a forged create, token list and box details without the scopes");
  step("a forged create, token list and box details were refused (403)");
  await page.click("nav a:text('Box')");
  await page.waitForSelector("#box dd");
  assert.equal(await page.locator("#tls-fingerprint, #host-graphs").count(), 0, "no host details for a non-admin");
  if (shots) await page.screenshot({ path: `${shots}/console-reader.png`, fullPage: true });

  await page.click("#sign-out");
  await page.waitForSelector("#sign-in");
  const after = await page.evaluate(async () => (await fetch("/v1/workspaces")).status);
  assert.equal(after, 401, "signed out: the cookie no longer works");
  step("signed out");

  // Sign in as admin; mint a token through the form.
  if (shots) await page.screenshot({ path: `${shots}/console-sign-in.png` });
  await page.fill("#token", admin);
  await page.click("#sign-in button[type=submit]");
  await page.waitForSelector("#signed-in-as");
  await page.click("nav a:text('Tokens')");
  await page.waitForSelector("#mint-token");
  await page.fill("#mint-token input[name=name]", "from-browser");
  await page.click("#mint-token button[type=submit]");
  const secret = await (await page.waitForSelector("#new-secret")).textContent();
  assert.match(secret ?? "", /^pdk_[A-Za-z0-9]{64}$/, "the new secret, shown once");
  await page.waitForSelector("#tokens tr:has-text('from-browser')");
  step("minted a token through the form; its secret shown once");
  if (shots) await page.screenshot({ path: `${shots}/console-tokens.png`, fullPage: true });

  await page.click("nav a:text('Audit')");
  await page.waitForSelector("#audit tr:has-text('token_issued')");
  step("the audit log shows the mint");
  if (shots) await page.screenshot({ path: `${shots}/console-audit.png`, fullPage: true });
  await page.click("nav a:text('Box')");
  // The fingerprint shown is the certificate's this connection got, and
  // the host's graphs have points (the first sample is taken at start).
  const served = await new Promise((resolve, reject) => {
    const u = new URL(url);
    const s = tls.connect({ host: u.hostname, port: Number(u.port), rejectUnauthorized: false }, () => {
      resolve(s.getPeerCertificate().fingerprint256);
      s.end();
    });
    s.on("error", reject);
  });
  assert.equal(await (await page.waitForSelector("#tls-fingerprint")).textContent(), served, "the served certificate's fingerprint");
  const points = await (await page.waitForSelector("#graph-host-cpu polyline")).getAttribute("data-points");
  assert.ok(Number(points) >= 1, `host CPU points: ${points}`);
  await page.waitForSelector("#graph-host-memory polyline");
  step(`the box page: the served fingerprint and host graphs (${points} points)`);
  if (shots) await page.screenshot({ path: `${shots}/console-box.png`, fullPage: true });

  // The terminal's library injects its own styles: under the page's
  // policy they need the page's nonce (no workspace here, so the shell
  // itself is refused; the appliance's test types into a real one).
  await page.goto(`${url}/#/workspaces/ws_nosuch/terminal`);
  await page.waitForSelector("#terminal .xterm-screen");
  await page.waitForSelector("#terminal-status .notice");
  const styled = await page.evaluate(() => getComputedStyle(document.querySelector(".xterm-rows") ?? document.body).whiteSpace);
  assert.equal(styled, "pre", "the terminal's injected styles apply");
  step("the terminal's styles load under the policy");

  // Another origin, with the admin signed in in the same browser: a form
  // that posts to the API, and a fetch with credentials. SameSite=Strict
  // keeps the cookie off both; neither mints anything (the Rust test
  // checks the token list afterwards).
  const evil = await context.newPage();
  evil.on("pageerror", () => {});
  await evil.goto(`${attacker}/`);
  await evil.waitForFunction(() => document.title === "sent", null, { timeout: 30000 });
  // What the API answered the form (the attacker's page cannot read it;
  // the browser's driver can): the post arrived without the cookie.
  const sink = evil.frame({ name: "sink" });
  assert.ok(sink, "the form's answer frame");
  const answered = await sink.evaluate(() => document.body.innerText);
  assert.match(answered, /missing bearer token/, `the forged form post reached the API without a session: ${answered}`);
  step("the other origin's forged form post and fetch reached the API without the cookie");

  // A page on another port of this host plants cookies named like the
  // session's (a leading Unicode space; lower case), holding the
  // attacker's own session, so that the admin's console would work as the
  // attacker. The box refuses the mix, clears the host's cookies, and the
  // console asks to sign in again; it never shows the attacker.
  const planter = await context.newPage();
  await planter.goto(plantUrl);
  await planter.waitForFunction(() => document.title === "planted");
  await planter.close();
  await page.goto(`${url}/`);
  await page.waitForSelector("#sign-in");
  assert.equal(await page.locator(`#signed-in-as:has-text("${attackerToken}")`).count(), 0);
  assert.match((await page.textContent("#sign-in-status")) ?? "", /conflicting session cookies/);
  const left = (await context.cookies(url)).map((c) => c.name);
  assert.deepEqual(left, [], `the box cleared this host's cookies: ${left}`);
  await page.fill("#token", admin);
  await page.click("#sign-in button[type=submit]");
  await page.waitForSelector("#signed-in-as");
  assert.match((await page.textContent("#signed-in-as")) ?? "", /bootstrap/, "signed in as the admin again");
  step("planted look-alike cookies were refused and cleared; the console never ran as the attacker");

  // A phone-sized screen: nothing wider than the screen.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.click("nav a:text('Workspaces')");
  await page.waitForSelector("#no-workspaces, #workspaces");
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow} px wider than a phone's screen`);
  if (shots) await page.screenshot({ path: `${shots}/console-phone.png`, fullPage: true });
  step("fits a phone-sized screen");

  assert.deepEqual(problems, [], "no CSP violation or script error");
  console.log("browser: all checks passed");
} finally {
  await browser.close();
}
