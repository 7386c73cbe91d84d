// Browser scenarios for the Lore console, run by crates/lore-server/tests/api/browser.rs with:
//   LORE_URL, CHROMIUM (Debian's chromium), ARTIFACTS (folder for failure screenshots),
//   SCREENSHOTS (folder for the screens, EN and ES), KEYS (JSON: admin, km_hr, km_eng, bob,
//   sara), EXPECTED (JSON: the scripted requests analytics must show), CORRUPT_PDF (a path).
// Exits non-zero when a scenario fails. Each scenario signs in with an API key (development
// mode: no single sign-on is configured on this server).
import { chromium } from "playwright-core";
import { strict as assert } from "node:assert";
import { readFileSync } from "node:fs";
import path from "node:path";

const { LORE_URL, CHROMIUM, ARTIFACTS, SCREENSHOTS, CORRUPT_PDF } = process.env;
const KEYS = JSON.parse(process.env.KEYS);
const EXPECTED = JSON.parse(process.env.EXPECTED);
const failures = [];

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});

async function scenario(name, fn, viewport = { width: 1280, height: 800 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error" && /Content Security Policy|Refused to/.test(m.text())) errors.push(m.text()); });
  try {
    await fn(page, context);
    assert.deepEqual(errors, [], "no page errors or CSP violations");
    console.log(`ok   ${name}`);
  } catch (error) {
    failures.push(`${name}: ${error.stack || error}`);
    console.log(`FAIL ${name}: ${error.message}`);
    await page.screenshot({ path: path.join(ARTIFACTS, `failed-${name.replace(/\W+/g, "-")}.png`), fullPage: true }).catch(() => {});
  } finally {
    await context.close();
  }
}

async function signIn(page, key, lang = "en", hash = "") {
  await page.goto(`${LORE_URL}/?lang=${lang}${hash}`);
  await page.fill("#key", key);
  await page.press("#key", "Enter");
  await page.waitForFunction(() => document.getElementById("who").textContent.length > 0);
}

async function open(page, screen) {
  await page.click(`#console-nav a[data-screen="${screen}"]`);
  await page.waitForSelector(`#screen-${screen}[data-loaded="true"]`, { state: "visible", timeout: 20000 });
}

async function shot(page, name) {
  await page.waitForTimeout(150);
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

/** Drops files on the drop zone with a synthetic DataTransfer, as a person dragging them would. */
async function dropFiles(page, files) {
  await page.evaluate((files) => {
    const data = new DataTransfer();
    for (const f of files) data.items.add(new File([new Uint8Array(f.bytes)], f.name, { type: f.type || "" }));
    const zone = document.getElementById("dropzone");
    zone.dispatchEvent(new DragEvent("dragenter", { dataTransfer: data, bubbles: true, cancelable: true }));
    zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: data, bubbles: true, cancelable: true }));
    zone.dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
  }, files.map((f) => ({ ...f, bytes: Array.from(f.bytes) })));
}

const text = (s) => new TextEncoder().encode(s);
const upload = (page, name) => page.locator(`#uploads li[data-file="${name}"]`);
const row = (page, pathInCollection) => page.locator(`#doc-table tbody tr[data-path="${pathInCollection}"]`);

async function uploadState(page, name, states, timeout = 60000) {
  await page.waitForFunction(([name, states]) => {
    const li = document.querySelector(`#uploads li[data-file="${name}"]`);
    return li && states.includes(li.dataset.state);
  }, [name, states], { timeout });
  return upload(page, name).getAttribute("data-state");
}

/** Asks in the full page's chat and returns the ids of the documents the answer cites. */
async function askCited(page, question) {
  const before = await page.locator("lore-chat .msg.assistant").count();
  await page.locator("lore-chat form textarea").fill(question);
  await page.locator("lore-chat form textarea").press("Enter");
  await page.waitForFunction((n) => {
    const all = document.querySelector("lore-chat").shadowRoot.querySelectorAll(".msg.assistant");
    return all.length > n && all[all.length - 1].dataset.kind;
  }, before, { timeout: 30000 });
  const last = page.locator("lore-chat .msg.assistant").last();
  return last.locator(".sources a").evaluateAll((links) => links.map((a) => a.dataset.documentId));
}

async function confirm(page) {
  await page.waitForSelector("dialog#confirm[open]");
  await page.click("#confirm-yes");
  await page.waitForSelector("dialog#confirm:not([open])", { state: "attached" });
}

// --- Employees and other departments ---------------------------------------------------

await scenario("an employee sees no console", async (page) => {
  await signIn(page, KEYS.bob, "en", "#/console/documents");
  const nav = page.locator("#console-nav");
  assert.ok(!(await nav.count()) || !(await nav.isVisible()), "no console navigation");
  for (const screen of ["documents", "quality", "analytics", "admin"]) {
    const section = page.locator(`#screen-${screen}`);
    assert.ok(!(await section.count()) || !(await section.isVisible()), `${screen} is not shown to an employee`);
  }
  await page.waitForSelector("lore-chat", { state: "visible" });
  await shot(page, "chat-en");
  await page.selectOption("#lang", "es");
  await page.waitForFunction(() => document.documentElement.lang === "es");
  await page.waitForSelector("lore-chat", { state: "visible" });
  await shot(page, "chat-es");
});

await scenario("a knowledge manager of another department does not see the collection", async (page) => {
  await signIn(page, KEYS.km_eng);
  await open(page, "documents");
  const options = await page.locator("#doc-collection option").evaluateAll((o) => o.map((x) => x.value));
  assert.deepEqual(options, ["eng-docs"], "only engineering's collection");
  assert.equal(await page.locator('#console-nav a[data-screen="admin"]').count(), 0, "no admin screen for a knowledge manager");
});

// --- Analytics of the scripted requests (before the browser adds any) -------------------

await scenario("analytics draw the scripted requests", async (page) => {
  await signIn(page, KEYS.admin);
  await open(page, "analytics");
  const charts = await page.evaluate(() => window.loreConsole.charts);
  const sum = (values) => values.reduce((a, b) => a + (b || 0), 0);
  const requests = charts.requests;
  assert.ok(requests, "the requests chart was drawn");
  assert.equal(sum(requests.series.Total), EXPECTED.total, "total requests");
  for (const [department, n] of Object.entries(EXPECTED.departments)) {
    assert.equal(sum(requests.series[department] || []), n, `requests of ${department}`);
  }
  assert.equal(requests.x.length, requests.series.Total.length);
  // Thirty days, continuous, ending today.
  assert.ok(requests.x.length >= 30, `a day per point over the range (${requests.x.length})`);
  for (const [kind, n] of Object.entries(EXPECTED.kinds)) {
    assert.equal(sum(charts.kinds.series[kind] || []), n, `answers of kind ${kind}`);
  }
  assert.ok(Math.abs(sum(charts.cost.series.Cost) - EXPECTED.cost) < 1e-9, `cost ${sum(charts.cost.series.Cost)} vs ${EXPECTED.cost}`);
  assert.ok(charts.latency.series.p95.some((v) => v > 0), "latency p95 drawn");
  // The table view holds the same numbers as the department chart.
  const table = await page.locator("#table-departments tbody tr").evaluateAll((rows) => rows.map((r) => [...r.cells].map((c) => c.textContent.trim())));
  for (const [department, n] of Object.entries(EXPECTED.departments)) {
    const found = table.find((cells) => cells[0] === department);
    assert.ok(found, `a row for ${department}: ${JSON.stringify(table)}`);
    assert.equal(found[1], String(n), `${department}'s requests in the table`);
  }
  const questions = await page.locator("#table-questions tbody tr").allTextContents();
  assert.ok(questions.some((q) => /When does the office open\?/.test(q) && /2/.test(q)), `top questions: ${questions}`);
  // CSV export downloads the day table.
  const [download] = await Promise.all([page.waitForEvent("download"), page.click('button[data-csv="day"]')]);
  const csv = readFileSync(await download.path(), "utf8");
  assert.match(csv.split("\n")[0], /requests/);
  await shot(page, "analytics-en");
  await page.selectOption("#lang", "es");
  await page.waitForSelector('#screen-analytics[data-loaded="true"]');
  assert.equal(await page.evaluate(() => document.documentElement.lang), "es");
  await shot(page, "analytics-es");
});

// --- Documents: upload, find, ACL, delete ----------------------------------------------

const GARAGE = "# Garage\n\nThe access code of the Elm Street garage is 4711. Visitors park on level two.";
const FILES = [
  { name: "garage.md", bytes: text(GARAGE), type: "text/markdown" },
  { name: "canteen.md", bytes: text("# Canteen\n\nThe canteen serves lunch from noon to two."), type: "text/markdown" },
  { name: "printers.txt", bytes: text("Printers\n\nThe colour printer is next to the kitchen on the second floor."), type: "text/plain" },
];

await scenario("a knowledge manager uploads three files, changes an ACL and deletes a file", async (page, context) => {
  await signIn(page, KEYS.km_hr);
  await open(page, "documents");
  const options = await page.locator("#doc-collection option").evaluateAll((o) => o.map((x) => x.value));
  assert.deepEqual(options.sort(), ["handbook", "hr-docs"]);
  await page.selectOption("#doc-collection", "hr-docs");
  await page.waitForSelector('#screen-documents[data-loaded="true"]');
  await dropFiles(page, FILES);
  for (const file of FILES) {
    assert.equal(await uploadState(page, file.name, ["indexed", "failed"]), "indexed", `${file.name} is indexed`);
  }
  for (const file of FILES) await row(page, file.name).waitFor();
  assert.match(await row(page, "garage.md").innerText(), /group:hr/);
  const garage = await row(page, "garage.md").getAttribute("data-id");

  // Filters: text and format, served by the server.
  await page.fill("#doc-search", "canteen");
  await page.waitForFunction(() => document.querySelectorAll("#doc-table tbody tr").length === 1);
  await page.fill("#doc-search", "");
  await page.selectOption("#doc-format", "text");
  await page.waitForFunction(() => [...document.querySelectorAll("#doc-table tbody tr")].map((r) => r.dataset.path).join() === "printers.txt");
  await page.selectOption("#doc-format", "");
  await page.waitForFunction(() => document.querySelectorAll("#doc-table tbody tr").length === 4);
  await shot(page, "documents-en");

  // Bob (hr) finds the garage code through the chat.
  const bob = await context.newPage();
  await signIn(bob, KEYS.bob);
  await bob.waitForSelector("lore-chat");
  assert.ok((await askCited(bob, "What is the access code of the Elm Street garage?")).includes(garage), "bob's answer cites the new file");

  // The manager takes the hr group off the garage file and gives it to one person.
  await row(page, "garage.md").locator('button[data-action="open"]').click();
  await page.waitForSelector("#doc-detail", { state: "visible" });
  await shot(page, "document-detail-en");
  await page.fill("#acl-input", "hr");
  await page.click("#acl-add");
  assert.match(await page.locator("#acl-error").innerText(), /\S/, "an invalid principal is refused in the page");
  await page.fill("#acl-input", "user:kim");
  await page.press("#acl-input", "Enter");
  await page.click('#acl-editor .chip[data-principal="group:hr"] button[data-action="remove-principal"]');
  const chips = await page.locator("#acl-editor .chip").evaluateAll((c) => c.map((x) => x.dataset.principal));
  assert.deepEqual(chips, ["user:kim"]);
  await page.click("#acl-save");
  await page.waitForFunction(() => /user:kim/.test(document.querySelector('#doc-table tbody tr[data-path="garage.md"]')?.textContent || ""));

  // Metadata: a JSON object, refused in the page otherwise.
  await page.fill("#doc-metadata", "[1, 2]");
  await page.click("#metadata-save");
  assert.match(await page.locator("#metadata-error").innerText(), /object/);
  await page.fill("#doc-metadata", '{"owner": "facilities", "reviewed": 2026}');
  await page.click("#metadata-save");
  await page.waitForFunction(() => /facilities/.test(document.getElementById("doc-detail-metadata")?.textContent || ""));
  assert.equal(await page.locator("#metadata-error").innerText(), "");

  // Bob no longer gets it.
  await bob.reload();
  await bob.waitForSelector("lore-chat");
  assert.ok(!(await askCited(bob, "What is the access code of the Elm Street garage?")).includes(garage), "the garage file is gone for bob");

  // Delete, with confirmation.
  await row(page, "canteen.md").locator('button[data-action="open"]').click();
  await page.click("#doc-delete");
  await confirm(page);
  await row(page, "canteen.md").waitFor({ state: "detached" });
  await page.selectOption("#lang", "es");
  await page.waitForSelector('#screen-documents[data-loaded="true"]');
  await shot(page, "documents-es");
  await row(page, "printers.txt").locator('button[data-action="open"]').click();
  await page.waitForSelector("#doc-detail", { state: "visible" });
  await shot(page, "document-detail-es");
});

await scenario("a corrupt PDF fails with its reason; an oversize file never leaves the page", async (page) => {
  await signIn(page, KEYS.km_hr);
  await open(page, "documents");
  await page.selectOption("#doc-collection", "hr-docs");
  await page.waitForSelector('#screen-documents[data-loaded="true"]');
  let posts = 0;
  page.on("request", (r) => { if (r.method() === "POST" && r.url().includes("/documents")) posts += 1; });
  await dropFiles(page, [
    { name: "broken.pdf", bytes: readFileSync(CORRUPT_PDF), type: "application/pdf" },
    { name: "huge.md", bytes: text("# Huge\n\n" + "word ".repeat(50_000)), type: "text/markdown" },
  ]);
  assert.equal(await uploadState(page, "huge.md", ["refused"], 5000), "refused");
  assert.match(await upload(page, "huge.md").locator(".reason").innerText(), /200|195|0[.,]2|0[.,]19/);
  assert.equal(await uploadState(page, "broken.pdf", ["indexed", "failed"]), "failed");
  assert.match(await upload(page, "broken.pdf").locator(".reason").innerText(), /pdf|PDF/);
  assert.equal(posts, 1, "only the PDF was sent");
  await shot(page, "uploads-en");
});

// --- Quality: reviews and gaps ---------------------------------------------------------

await scenario("a knowledge manager approves and edits reviews and marks a gap answered", async (page) => {
  await signIn(page, KEYS.km_hr);
  await open(page, "quality");
  const reviews = page.locator('#reviews-table tbody tr[data-id]');
  assert.ok((await reviews.count()) >= 2, `reviews waiting: ${await reviews.count()}`);
  await shot(page, "quality-en");
  await reviews.nth(0).locator('button[data-action="review"]').click();
  await page.waitForSelector("#review-detail", { state: "visible" });
  await page.click("#review-approve");
  await page.waitForFunction(() => /approved|aprobad/i.test(document.querySelector("#reviews-table tbody tr[data-id]")?.textContent || ""));
  await reviews.nth(1).locator('button[data-action="review"]').click();
  await page.waitForSelector("#review-detail", { state: "visible" });
  await page.fill("#review-text", "Checked by HR: twenty-five days of paid vacation a year [1].");
  await page.click("#review-edit");
  await page.waitForFunction(() => /edited|editad/i.test([...document.querySelectorAll("#reviews-table tbody tr[data-id]")].map((r) => r.textContent).join(" ")));

  const gap = page.locator("#gaps-table tbody tr[data-id]").first();
  const gapId = await gap.getAttribute("data-id");
  await gap.locator('button[data-action="answered"]').click();
  await page.selectOption("#gap-status", "answered");
  await page.waitForSelector(`#gaps-table tbody tr[data-id="${gapId}"]`);
  await page.selectOption("#lang", "es");
  await page.waitForSelector('#screen-quality[data-loaded="true"]');
  await shot(page, "quality-es");
});

// --- Admin: keys, settings, audit ------------------------------------------------------

await scenario("an admin creates a key, sees its secret once, revokes it, and it stops working", async (page) => {
  await signIn(page, KEYS.admin);
  await open(page, "admin");
  await page.fill("#key-name", "crm-integration");
  await page.selectOption("#key-role", "agent");
  await page.fill("#key-user", "crm");
  await page.click('#key-new [type="submit"]');
  await page.waitForFunction(() => (document.getElementById("key-secret")?.textContent || "").trim().length > 20);
  const secret = (await page.locator("#key-secret").innerText()).trim();
  const works = (k) => page.evaluate(async (k) => (await fetch("/v1/me", { headers: { Authorization: `Bearer ${k}` } })).status, k);
  assert.equal(await works(secret), 200, "the new key works");
  const keyRow = page.locator("#keys-table tbody tr[data-id]", { hasText: "crm-integration" });
  await keyRow.waitFor();
  assert.ok(!(await page.locator("#keys-table").innerText()).includes(secret), "the list never shows the secret");
  await shot(page, "admin-en");
  await keyRow.locator('button[data-action="revoke"]').click();
  await confirm(page);
  await page.waitForFunction(() => /revoked|revocad/i.test([...document.querySelectorAll("#keys-table tbody tr")].find((r) => r.textContent.includes("crm-integration"))?.textContent || ""));
  assert.equal(await works(secret), 401, "the revoked key stops working");
  // Shown once: gone after a reload.
  await page.reload();
  await page.waitForSelector('#screen-admin[data-loaded="true"]');
  assert.ok(!(await page.content()).includes(secret), "the secret is not shown again");
  // Settings and audit.
  assert.match(await page.locator("#settings-policy").innerText(), /no-legal-advice/);
  assert.match(await page.locator("#settings-sso").innerText(), /\S/);
  await page.fill("#audit-action", "key.");
  await page.click("#audit-apply");
  await page.waitForFunction(() => /key\.revoke/.test(document.querySelector("#audit-table")?.textContent || ""));
  assert.equal(await page.locator("#audit-chain").getAttribute("data-ok"), "true");
  await page.selectOption("#lang", "es");
  await page.waitForSelector('#screen-admin[data-loaded="true"]');
  await shot(page, "admin-es");
});

// --- Keyboard -------------------------------------------------------------------------

await scenario("keyboard only: the navigation and the drop zone work without a mouse, with a visible focus", async (page) => {
  await signIn(page, KEYS.km_hr);
  await open(page, "documents");
  // From the header's language menu, Tab walks on through sign-out and the navigation.
  await page.focus("#lang");
  let focused = "";
  for (let i = 0; i < 10 && focused !== "analytics"; i++) {
    await page.keyboard.press("Tab");
    focused = await page.evaluate(() => document.activeElement?.dataset?.screen || "");
  }
  assert.equal(focused, "analytics", "Tab reaches the Analytics link");
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  assert.notEqual(outline, "none", "the focused link shows an outline");
  await page.keyboard.press("Enter");
  await page.waitForSelector('#screen-analytics[data-loaded="true"]', { state: "visible" });
  await page.focus('#console-nav a[data-screen="documents"]');
  await page.keyboard.press("Enter");
  await page.waitForSelector('#screen-documents[data-loaded="true"]', { state: "visible" });
  // The screen reloads its list when shown, which can replace the drop zone under the focus:
  // focus it again until Enter reaches it.
  let chooser = null;
  for (let attempt = 0; attempt < 3 && !chooser; attempt++) {
    await page.waitForSelector('#screen-documents[data-loaded="true"]', { state: "visible" });
    await page.focus("#dropzone");
    assert.equal(await page.evaluate(() => document.activeElement?.id), "dropzone");
    [chooser] = await Promise.all([
      page.waitForEvent("filechooser", { timeout: 3000 }).catch(() => null),
      page.keyboard.press("Enter"),
    ]);
  }
  assert.ok(chooser, "Enter on the drop zone opens a file chooser");
  assert.ok(chooser.isMultiple(), "for several files");
});

// --- Phone width ---------------------------------------------------------------------

await scenario("the console is usable at a phone's width", async (page) => {
  await signIn(page, KEYS.km_hr);
  await open(page, "documents");
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `the page does not scroll sideways (${overflow}px)`);
  await shot(page, "documents-phone-en");
}, { width: 390, height: 844 });

await browser.close();
if (failures.length) {
  console.error(failures.join("\n\n"));
  process.exit(1);
}
