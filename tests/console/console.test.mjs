// Browser test of the web console, driven by crates/headway/tests/e2e/console.rs
// (which starts the server and an official Tailscale client).
//
// Environment: HEADWAY_URL, HEADWAY_API_KEY, SCREENSHOT_DIR.
// Talks to the Rust side over stdio: lines "@@ <verb> <arg>" out, replies in.
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";
import { mkdirSync } from "node:fs";
import assert from "node:assert/strict";

const url = process.env.HEADWAY_URL;
const apiKey = process.env.HEADWAY_API_KEY;
const shots = process.env.SCREENSHOT_DIR;
assert.ok(url && apiKey && shots, "HEADWAY_URL, HEADWAY_API_KEY and SCREENSHOT_DIR are needed");
mkdirSync(shots, { recursive: true });

// The interface keeps the process alive while stdin is open: it is closed
// at the end (and the Rust side closes stdin after "@@ DONE").
const input = createInterface({ input: process.stdin });
const replies = input[Symbol.asyncIterator]();
async function ask(verb, arg = "") {
  console.log(`@@ ${verb} ${arg}`);
  const { value, done } = await replies.next();
  assert.ok(!done, `no reply to ${verb}`);
  assert.ok(value.startsWith("ok"), `${verb} failed: ${value}`);
  return value.slice(2).trim();
}
const step = (what) => console.log(`-- ${what}`);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});
const errors = [];
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  // A CSP violation or a script error fails the test.
  // (Saving a bad policy answers 422 on purpose; Chromium logs that.)
  page.on("console", (m) => {
    if (m.type() === "error" && !/status of 422/.test(m.text())) errors.push(m.text());
  });
  page.on("pageerror", (e) => errors.push(String(e)));
  const shot = (name) => page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });

  step("sign in with an API key");
  await page.goto(`${url}/admin`);
  await page.waitForURL(/\/admin\/login$/);
  await shot("sign-in");
  await page.getByLabel("API key").fill(apiKey);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(/\/admin$/);
  await page.getByRole("heading", { name: "Overview" }).waitFor();
  await page.locator("#live-state.on").waitFor();

  step("create a user");
  await page.getByRole("link", { name: "Users", exact: true }).click();
  await page.getByText("No users yet.").waitFor();
  await page.getByLabel("Name", { exact: true }).fill("alice");
  await page.getByLabel("Display name").fill("Alice Example");
  await page.getByRole("button", { name: "Create user" }).click();
  await page.getByText("User alice created.").waitFor();
  await page.locator("#users").getByText("alice", { exact: true }).waitFor();

  step("create a pre-auth key");
  await page.getByRole("link", { name: "Keys", exact: true }).click();
  const form = page.locator("#create-preauth");
  await form.getByLabel("User").selectOption({ label: "alice" });
  await form.getByRole("button", { name: "Create key" }).click();
  const secret = (await page.locator("#new-secret").textContent()).trim();
  assert.match(secret, /^hskey-auth-/);
  await shot("keys");
  // Shown once: a reload no longer shows it.
  await page.reload();
  assert.equal(await page.locator("#new-secret").count(), 0, "the secret must be shown only once");

  step("watch an official client join, live");
  await page.getByRole("link", { name: "Nodes", exact: true }).click();
  await page.getByText("No nodes yet.").waitFor();
  await page.locator("#live-state.on").waitFor();
  await page.evaluate(() => { window.__notReloaded = true; });
  await ask("JOIN", secret);
  const row = page.locator("#nodes tr", { hasText: "console-laptop" });
  await row.locator(".badge.online").waitFor({ timeout: 60000 });
  assert.equal(await page.evaluate(() => window.__notReloaded), true, "the page must update without a reload");
  await shot("nodes");

  step("rename it");
  await row.locator("a.node-name").click();
  await page.getByLabel("Name", { exact: true }).fill("renamed-laptop");
  await page.getByRole("button", { name: "Rename" }).click();
  await page.getByText("Renamed to renamed-laptop.").waitFor();

  step("approve its route");
  await page.getByRole("checkbox", { name: "10.77.0.0/24" }).check();
  await page.getByRole("button", { name: "Save approvals" }).click();
  await page.getByText("Approved: 10.77.0.0/24.").waitFor();
  await shot("node");

  step("a bad policy is refused with its line marked");
  await page.getByRole("link", { name: "Policy", exact: true }).click();
  const bad = [
    "{",
    '  "acls": [',
    '    {"action": "accept", "src": ["*"], "dst": ["*:*"]},',
    '    {"action": "accept" "src": ["alice@"], "dst": ["*:22"]},',
    "  ],",
    "}",
  ].join("\n");
  const editor = page.locator("#policy");
  await editor.fill(bad);
  await page.getByRole("button", { name: "Check" }).click();
  const mark = page.locator('#policy-verdict .error-at[data-line="4"]');
  await mark.waitFor();
  await page.locator(".gutter span.bad", { hasText: "4" }).waitFor();
  await shot("policy-error");
  // Saving it is refused too, and the text is kept.
  await page.getByRole("button", { name: "Save" }).click();
  await page.locator('.error-at[data-line="4"]').waitFor();
  assert.equal(await editor.inputValue(), bad, "a refused policy must stay in the editor");

  step("a good policy is checked and saved");
  const good = [
    "{",
    "  // Everyone reaches everyone, the lab host included.",
    '  "hosts": {"lab": "10.77.0.1"},',
    '  "acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}],',
    '  "tests": [{"src": "alice@", "accept": ["lab:22"]}],',
    "}",
  ].join("\n");
  await editor.fill(good);
  await page.getByRole("button", { name: "Check" }).click();
  await page.getByText("The policy is valid and its tests pass.").waitFor();
  await page.locator("#policy-diff ins").first().waitFor();
  await page.getByRole("button", { name: "Save" }).click();
  await page.getByText("Policy saved and applied to every node.").waitFor();
  assert.equal(await editor.inputValue(), good);
  await shot("policy");

  step("the node goes offline, live");
  await page.getByRole("link", { name: "Nodes", exact: true }).click();
  const renamed = page.locator("#nodes tr", { hasText: "renamed-laptop" });
  await renamed.locator(".badge.online").waitFor();
  await page.locator("#live-state.on").waitFor();
  await page.evaluate(() => { window.__notReloaded = true; });
  // A refresh of the page is under way when the node goes: its answer,
  // rendered while the node was online, arrives after the offline event
  // and must not undo it.
  let staleRendered;
  const staleReady = new Promise((resolve) => { staleRendered = resolve; });
  let release;
  const released = new Promise((resolve) => { release = resolve; });
  await page.route(/\/admin\/nodes$/, async (route) => {
    if (route.request().resourceType() !== "fetch") return route.continue();
    const stale = await route.fetch();
    staleRendered();
    await released;
    await route.fulfill({ response: stale });
  });
  // Any change refreshes the page: a new user is one.
  await page.evaluate(async () => {
    const csrf = document.querySelector('meta[name="csrf-token"]').content;
    await fetch("/admin/users", { method: "POST", body: new URLSearchParams({ name: "bystander", _csrf: csrf }) });
  });
  await staleReady;
  await page.evaluate(() => { document.getElementById("nodes").dataset.before = "refresh"; });
  const stopAsked = Date.now();
  await ask("STOP");
  await renamed.locator(".badge.offline").waitFor({ timeout: 30000 });
  console.log(`@@ OFFLINE_SHOWN_MS ${Date.now() - stopAsked}`);
  release();
  await page.locator("#nodes:not([data-before])").waitFor();
  await page.unroute(/\/admin\/nodes$/);
  assert.equal(await renamed.locator(".badge").textContent(), "offline", "a refresh rendered before the node went offline must not show it online again");
  assert.equal(await page.evaluate(() => window.__notReloaded), true, "the badge must change without a reload");

  step("the audit log shows what was done, and filters");
  await page.getByRole("link", { name: "Audit log", exact: true }).click();
  await page.getByRole("heading", { name: "Audit log" }).waitFor();
  const audit = page.locator("#audit");
  for (const action of ["user.create", "preauth_key.create", "node.register", "node.rename", "node.approve_routes"]) {
    await audit.getByRole("link", { name: action, exact: true }).first().waitFor();
  }
  await shot("audit");
  await page.getByLabel("Action").fill("node.");
  await page.getByRole("button", { name: "Filter" }).click();
  await page.waitForURL(/[?&]action=node\./);
  await audit.getByRole("link", { name: "node.rename", exact: true }).first().waitFor();
  const actions = await audit.locator("tbody tr td:nth-child(3)").allTextContents();
  assert.ok(actions.length > 0 && actions.every((a) => a.trim().startsWith("node.")), `filtered to node.: ${actions}`);
  assert.equal(await audit.getByRole("link", { name: "user.create", exact: true }).count(), 0);

  step("other pages");
  for (const [link, name] of [["Overview", "overview"], ["Registrations", "registrations"], ["DNS", "dns"], ["Users", "users"]]) {
    await page.getByRole("link", { name: link, exact: true }).click();
    await page.locator("h1").waitFor();
    await shot(name);
  }
  await page.emulateMedia({ colorScheme: "dark" });
  await page.getByRole("link", { name: "Nodes", exact: true }).click();
  await shot("nodes-dark");
  await page.emulateMedia({ colorScheme: "light" });
  await page.setViewportSize({ width: 390, height: 844 });
  await shot("nodes-phone");
  await page.setViewportSize({ width: 1280, height: 800 });

  step("keyboard: the skip link and the navigation are reachable");
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement.textContent), "Skip to content");

  step("sign out");
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("heading", { name: "Signed out" }).waitFor();
  await page.goto(`${url}/admin/nodes`);
  await page.waitForURL(/\/admin\/login$/);

  assert.deepEqual(errors, [], "the browser reported errors");
  console.log("@@ DONE");
} catch (e) {
  // Say where the browser was: its address and what it showed.
  for (const ctx of browser.contexts()) {
    for (const p of ctx.pages()) {
      console.error(`page at ${p.url()}:\n${(await p.locator("body").innerText().catch(() => "")).slice(0, 3000)}`);
    }
  }
  console.error(`browser errors: ${JSON.stringify(errors)}`);
  throw e;
} finally {
  input.close();
  await browser.close();
}
