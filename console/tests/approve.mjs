// An admin approves one pending approval in the console, in Debian's
// Chromium: the network test (tests/tests/appliance/networks.rs) then
// watches the workspace reach the host it asked for.
//   PADDOCK_URL, PADDOCK_ADMIN, PADDOCK_APPROVAL, PADDOCK_TTL_S, PADDOCK_REASON
import { launch, signedIn } from "./chromium.mjs";
import assert from "node:assert/strict";

const { PADDOCK_URL: url, PADDOCK_ADMIN: admin, PADDOCK_APPROVAL: id, PADDOCK_TTL_S: ttl, PADDOCK_REASON: reason } = process.env;
for (const [k, v] of Object.entries({ url, admin, id, ttl, reason })) {
  if (!v) throw new Error(`approve.mjs: ${k} is not set`);
}
const browser = await launch();
try {
  const problems = [];
  const page = await signedIn(browser, url, admin, problems);
  await page.click("nav a:text('Approvals')");
  const card = `article[data-approval="${id}"]`;
  await page.waitForSelector(card);
  const asked = (await page.textContent(`${card} h3`)) ?? "";
  console.log(`browser: the card says: ${asked}`);
  await page.fill(`${card} input[name=ttl_s]`, ttl);
  await page.fill(`${card} input[name=reason]`, reason);
  await page.click(`${card} button[data-action=approve]`);
  await page.waitForSelector(".page-status .notice.ok");
  assert.deepEqual(problems, []);
  console.log(`browser: approved ${id}`);
} finally {
  await browser.close();
}
