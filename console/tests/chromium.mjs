// Debian's Chromium as the console's tests start it, and signing in.
import { chromium } from "playwright-core";

/** Headless, and nothing of Chromium's own goes out: test traffic stays home. */
export function launch() {
  return chromium.launch({
    executablePath: process.env.PADDOCK_CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-features=Translate,OptimizationHints,MediaRouter",
    ],
  });
}

/** A page of a new browser context, signed in at `url` with `secret`;
 * CSP violations and script errors go into `problems`. */
export async function signedIn(browser, url, secret, problems, viewport = { width: 1200, height: 900 }) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(120000);
  watch(page, problems);
  await page.goto(`${url}/`);
  await page.fill("#token", secret);
  await page.click("#sign-in button[type=submit]");
  await page.waitForSelector("#signed-in-as");
  return page;
}

/** Records a page's CSP violations and script errors in `problems`. */
export function watch(page, problems) {
  page.on("console", (m) => {
    if (/Content.Security.Policy|Refused to/i.test(m.text())) problems.push(`CSP: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
}
