// The console against a booted appliance, in Debian's Chromium
// (tests/tests/appliance/console.rs starts it): a scoped token sees only
// its own workspaces, creates one through the form, types into its
// terminal and reads the answer, sees graphs with data, asks for a longer
// TTL, and an admin in another browser approves it and reads the box
// page.
//
// Settings in the environment: PADDOCK_URL, PADDOCK_ADMIN, PADDOCK_USER,
// PADDOCK_OTHER_WORKSPACE (one the user must not see), PADDOCK_SHOTS.
// Prints `created ws_...`, `approved apr_...` and `fingerprint ...` for
// the Rust side.
import { launch, signedIn as signIn } from "./chromium.mjs";
import assert from "node:assert/strict";

const url = process.env.PADDOCK_URL;
const admin = process.env.PADDOCK_ADMIN;
const user = process.env.PADDOCK_USER;
const other = process.env.PADDOCK_OTHER_WORKSPACE;
const shots = process.env.PADDOCK_SHOTS;
for (const [k, v] of Object.entries({ url, admin, user, other })) {
  if (!v) throw new Error(`appliance.mjs: ${k} is not set`);
}
const step = (what) => console.log(`browser: ${what}`);
const problems = [];
const browser = await launch();

const signedIn = (secret) => signIn(browser, url, secret, problems);

/** The terminal's screen as lines of text. */
async function screenLines(page) {
  return page.evaluate(() => [...document.querySelectorAll("#terminal .xterm-rows > div")].map((r) => r.textContent ?? ""));
}

try {
  const page = await signedIn(user);
  await page.waitForSelector("#no-workspaces, #workspaces");
  assert.equal(await page.locator(`tr[data-workspace="${other}"]`).count(), 0, "another tenant's workspace is not listed");
  step("signed in with a scoped token: another tenant's workspace is not listed");

  await page.fill("#create-workspace input[name=ttl_s]", "900");
  await page.fill("#create-workspace input[name=memory_mib]", "512");
  // The test appliance's 4 GiB disk holds less than the form's default.
  await page.fill("#create-workspace input[name=disk_mib]", "256");
  await page.fill("#create-workspace input[name=labels]", "made-by=console");
  await page.click("#create-workspace button[type=submit]");
  const created = await page.waitForSelector(".page-status .notice.ok, #create-workspace .notice.error", { timeout: 600000 });
  const said = ((await created.textContent()) ?? "").trim();
  assert.match(said, /^Created /, `the create was refused: ${said}`);
  const id = said.replace(/^Created /, "").trim();
  assert.match(id, /^ws_/, "the create's answer names the workspace");
  console.log(`created ${id}`);
  await page.waitForSelector(`tr[data-workspace="${id}"] .state.running`);
  step(`created ${id} through the form; it runs`);
  if (shots) await page.screenshot({ path: `${shots}/console-workspaces.png`, fullPage: true });

  // The terminal: a login shell; type, read the answer on the screen.
  await page.click(`tr[data-workspace="${id}"] a[data-action=terminal]`);
  await page.waitForSelector("#terminal[data-pid]");
  await page.waitForFunction(() => [...document.querySelectorAll("#terminal .xterm-rows > div")].some((r) => /[$#] *$/.test(r.textContent ?? "")));
  await page.click("#terminal");
  await page.keyboard.type("python3 -c 'print(6*7)'");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => [...document.querySelectorAll("#terminal .xterm-rows > div")].some((r) => (r.textContent ?? "").trim() === "42"));
  step("typed python3 -c 'print(6*7)' into the terminal and read 42");
  if (shots) await page.screenshot({ path: `${shots}/console-terminal.png` });
  const lines = await screenLines(page);
  assert.ok(lines.some((l) => l.includes("print(6*7)")), "the typed command echoed");

  // Graphs from the box's samples (one every 5 s).
  await page.goto(`${url}/#/workspaces/${id}`);
  await page.waitForFunction(() => Number(document.querySelector("#graph-cpu polyline")?.getAttribute("data-points") ?? 0) >= 3);
  const memory = await page.locator("#graph-memory .latest").textContent();
  assert.match(memory ?? "", /used \d/, `a memory figure: ${memory}`);
  step("the workspace's graphs show samples");
  await page.waitForSelector("#no-network, #network");
  assert.equal(await page.locator("#workspace-audit").count(), 0, "the audit log is an admin's");
  if (shots) await page.screenshot({ path: `${shots}/console-workspace.png`, fullPage: true });

  // A longer TTL than its quota: asked, and an admin approves it in the console.
  const asked = await page.evaluate(async (ws) => {
    const s = await (await fetch("/v1/session")).json();
    const r = await fetch(`/v1/workspaces/${ws}/ttl`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Paddock-CSRF": s.csrf_token },
      body: JSON.stringify({ ttl_s: 7200, reason: "the benchmark runs two hours" }),
    });
    return [r.status, await r.json()];
  }, id);
  assert.equal(asked[0], 202, `a TTL over the quota is asked for: ${JSON.stringify(asked[1])}`);
  const approval = asked[1].id;
  const boss = await signedIn(admin);
  await boss.click("nav a:text('Approvals')");
  const card = `article[data-approval="${approval}"]`;
  await boss.waitForSelector(card);
  assert.match((await boss.locator(`${card} blockquote`).textContent()) ?? "", /two hours/, "the asker's reason is shown");
  if (shots) await boss.screenshot({ path: `${shots}/console-approvals.png`, fullPage: true });
  await boss.fill(`${card} input[name=reason]`, "fine for today");
  await boss.click(`${card} button[data-action=approve]`);
  await boss.waitForSelector(".page-status .notice.ok");
  console.log(`approved ${approval}`);
  step("an admin approved the ask in the console");
  await boss.goto(`${url}/#/workspaces/${id}`);
  await boss.waitForSelector("#workspace-audit tr:has-text('workspace_created')");
  await boss.waitForSelector("#workspace-audit tr:has-text('approval_approved')");
  step("the workspace's page shows an admin its audit events");

  // The box page on the appliance: keys sealed, the data partition mounted,
  // the fingerprint the appliance's own screen shows, the host's graphs.
  await boss.click("nav a:text('Box')");
  await boss.waitForSelector("#tls-fingerprint");
  assert.match((await boss.locator("#tls-fingerprint").textContent()) ?? "", /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  assert.match((await boss.locator("#box").textContent()) ?? "", /Disk keysready/, "the disk keys are sealed");
  const total = Number(await boss.locator("#data-meter").getAttribute("max"));
  const used = Number(await boss.locator("#data-meter").getAttribute("value"));
  assert.ok(total > 1 << 30 && used > 0 && used < total, `the data partition: ${used} of ${total}`);
  await boss.waitForFunction(() => Number(document.querySelector("#graph-host-cpu polyline")?.getAttribute("data-points") ?? 0) >= 3);
  await boss.waitForSelector("#graph-host-memory polyline");
  step("the box page shows its keys, data partition and host graphs");
  if (shots) await boss.screenshot({ path: `${shots}/console-box.png`, fullPage: true });
  console.log(`fingerprint ${await boss.locator("#tls-fingerprint").textContent()}`);

  assert.deepEqual(problems, [], "no CSP violation or script error");
  console.log("browser: all checks passed");
} finally {
  await browser.close();
}
