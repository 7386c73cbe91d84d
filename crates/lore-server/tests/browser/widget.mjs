// Browser scenarios for the Lore widget, run by crates/lore/tests/it/browser.rs with:
//   LORE_URL, HOST_URL (two loopback origins), CHROMIUM (Debian's chromium), ARTIFACTS (folder for
//   screenshots), DOCUMENTS (JSON: "collection/path" -> document id).
// Exits non-zero when a scenario fails. Playwright's CSS locators pierce the widget's open shadow root.
import { chromium } from "playwright-core";
import { gzipSync } from "node:zlib";
import { strict as assert } from "node:assert";
import path from "node:path";

const { LORE_URL, HOST_URL, CHROMIUM, ARTIFACTS } = process.env;
const DOCUMENTS = JSON.parse(process.env.DOCUMENTS);
const results = {};
const failures = [];

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});

async function scenario(name, fn) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 800 } });
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  // Page errors and CSP violations count; a missing favicon does not.
  page.on("console", (m) => { if (m.type() === "error" && /Content Security Policy|Refused/.test(m.text())) errors.push(m.text()); });
  try {
    await fn(page, context, errors);
    console.log(`ok   ${name}`);
  } catch (error) {
    failures.push(`${name}: ${error.stack || error}`);
    console.log(`FAIL ${name}: ${error.message}`);
    await page.screenshot({ path: path.join(ARTIFACTS, `failed-${name.replace(/\W+/g, "-")}.png`) }).catch(() => {});
  } finally {
    await context.close();
  }
}

const lastAssistant = (page) => page.locator("lore-chat .msg.assistant").last();

async function ask(page, question) {
  await page.locator("lore-chat form textarea").fill(question);
  await page.locator("lore-chat form textarea").press("Enter");
}

async function finished(page) {
  await page.waitForFunction(() => {
    const all = document.querySelector("lore-chat").shadowRoot.querySelectorAll(".msg.assistant");
    const last = all[all.length - 1];
    return last && last.dataset.kind;
  }, null, { timeout: 30000 });
}

await scenario("english: keyboard only, streaming, citation, feedback, follow-up, persistence", async (page, context, errors) => {
  await page.goto(`${HOST_URL}/?user=alice&lang=en`);
  // Keyboard only: Tab from the page start reaches the host button, then the launcher.
  let focused = "";
  for (let i = 0; i < 6 && focused !== "launcher"; i++) {
    await page.keyboard.press("Tab");
    focused = await page.evaluate(() => {
      const active = document.activeElement;
      if (active && active.tagName === "LORE-CHAT") return active.shadowRoot.activeElement?.className.includes("launcher") ? "launcher" : "widget";
      return active ? active.id || active.tagName : "";
    });
  }
  assert.equal(focused, "launcher", "the launcher is reachable with Tab");
  const launcher = page.locator("lore-chat .launcher");
  assert.equal(await launcher.getAttribute("aria-expanded"), "false");
  await page.keyboard.press("Enter");
  assert.equal(await launcher.getAttribute("aria-expanded"), "true");
  const inputFocused = await page.evaluate(() => document.querySelector("lore-chat").shadowRoot.activeElement?.tagName);
  assert.equal(inputFocused, "TEXTAREA", "opening moves focus to the question box");
  assert.equal(await page.locator("lore-chat .log").getAttribute("aria-live"), "polite");

  // Host styles stay out, widget styles stay in.
  const launcherBg = await launcher.evaluate((b) => getComputedStyle(b).backgroundColor);
  assert.equal(launcherBg, "rgb(29, 78, 216)", "the widget's own styles apply under the host's CSP, the host's do not");
  const hostButtonBg = await page.locator("#host-button").evaluate((b) => getComputedStyle(b).backgroundColor);
  assert.equal(hostButtonBg, "rgb(255, 0, 0)");
  const hostHeader = await page.locator("body > header").evaluate((h) => getComputedStyle(h).backgroundColor);
  assert.equal(hostHeader, "rgba(0, 0, 0, 0)", "widget CSS must not restyle the host's <header>");
  const newGlobals = await page.evaluate(() => Object.keys(window).filter((k) => !window.__before.includes(k) && k !== "__before" && k !== "getLoreToken"));
  assert.deepEqual(newGlobals, [], "the widget adds no globals");

  // Ask with the keyboard and watch the answer stream in.
  await page.keyboard.type("How many days of paid vacation do I get?");
  await page.evaluate(() => {
    window.__lengths = [];
    const root = document.querySelector("lore-chat").shadowRoot;
    const timer = setInterval(() => {
      const all = root.querySelectorAll(".msg.assistant");
      const last = all[all.length - 1];
      if (!last) return;
      window.__lengths.push(last.textContent.length);
      if (last.dataset.kind) clearInterval(timer);
    }, 25);
  });
  await page.keyboard.press("Enter");
  await finished(page);
  const lengths = await page.evaluate(() => window.__lengths);
  const growth = new Set(lengths).size;
  results.streamedUpdates = growth;
  assert.ok(growth >= 4, `the answer should appear in several steps, saw ${growth} distinct lengths`);
  const answer = lastAssistant(page);
  assert.equal(await answer.getAttribute("data-kind"), "generated");
  assert.match(await answer.locator(".body").innerText(), /25 days/);
  assert.equal(await answer.locator("strong").first().innerText(), "25 days", "Markdown bold is rendered");

  // The citation links to the right document.
  const link = answer.locator(".sources a").first();
  const handbook = DOCUMENTS["samples/handbook/employee-handbook.md"];
  assert.equal(await link.getAttribute("data-document-id"), handbook);
  assert.equal(await link.getAttribute("href"), `${LORE_URL}/#/documents/${handbook}`);
  assert.equal(await link.getAttribute("rel"), "noopener noreferrer");
  assert.match(await link.innerText(), /Employee Handbook/);
  await answer.locator("button.cite").first().click();
  assert.equal(await page.evaluate(() => document.querySelector("lore-chat").shadowRoot.activeElement?.dataset.documentId), handbook);

  // Feedback, keyboard only.
  await answer.locator("button[aria-label='Not helpful']").focus();
  await page.keyboard.press("Enter");
  assert.equal(await answer.locator("button[aria-label='Not helpful']").getAttribute("aria-pressed"), "true");
  await page.keyboard.type("Please mention the carry-over deadline.");
  await answer.locator(".feedback button", { hasText: "Send feedback" }).click();
  await answer.locator(".feedback [role=status]", { hasText: "Thanks" }).waitFor();

  // A follow-up in the same conversation.
  const conversation = await page.evaluate(() => Object.entries(sessionStorage).find(([k]) => k.startsWith("lore:"))?.[1]);
  assert.ok(conversation, "the conversation id is kept for the session");
  await ask(page, "And how does it accrue?");
  await finished(page);
  assert.equal(await page.locator("lore-chat .msg").count(), 4);
  await page.screenshot({ path: path.join(ARTIFACTS, "widget-en.png") });

  // Escape closes and gives focus back to the launcher.
  await page.keyboard.press("Escape");
  assert.equal(await launcher.getAttribute("aria-expanded"), "false");
  assert.equal(await page.evaluate(() => document.querySelector("lore-chat").shadowRoot.activeElement?.className), "launcher right");

  // Navigating within the session keeps the conversation.
  await page.reload();
  await page.locator("lore-chat .launcher").click();
  await page.locator("lore-chat .msg.assistant").nth(1).waitFor();
  assert.equal(await page.locator("lore-chat .msg").count(), 4);
  assert.equal(await page.evaluate(() => Object.entries(sessionStorage).find(([k]) => k.startsWith("lore:"))?.[1]), conversation);

  // The cited document opens in Lore's full page.
  const token = await page.evaluate(() => window.getLoreToken());
  const viewer = await context.newPage();
  await viewer.addInitScript((t) => sessionStorage.setItem("lore:token", t), token);
  await viewer.goto(`${LORE_URL}/#/documents/${handbook}`);
  await viewer.locator("#document-title", { hasText: "Employee Handbook" }).waitFor();
  assert.match(await viewer.locator("#document-body").innerText(), /25 days of paid vacation/);
  assert.deepEqual(errors, []);
});

await scenario("spanish: translated interface and answer", async (page) => {
  await page.goto(`${HOST_URL}/?user=alice&lang=es`);
  await page.locator("lore-chat .launcher").click();
  assert.equal(await page.locator("lore-chat form button.primary").innerText(), "Enviar");
  assert.equal(await page.locator("lore-chat form textarea").getAttribute("aria-label"), "Tu pregunta");
  await ask(page, "¿Cuántos días de vacaciones tengo?");
  await finished(page);
  assert.match(await lastAssistant(page).locator(".body").innerText(), /25 días/);
  assert.match(await lastAssistant(page).locator(".sources").innerText(), /Fuentes/);
  await page.screenshot({ path: path.join(ARTIFACTS, "widget-es.png") });
});

await scenario("no access: a sales user asking about salary bands gets the no-answer state", async (page) => {
  await page.goto(`${HOST_URL}/?user=dana&lang=en`);
  await page.locator("lore-chat .launcher").click();
  await ask(page, "What is the salary range for an Engineer I?");
  await finished(page);
  const answer = lastAssistant(page);
  assert.equal(await answer.getAttribute("data-kind"), "no_answer");
  assert.match(await answer.locator(".badge").innerText(), /Not in the knowledge base/);
  assert.equal(await answer.locator(".sources").count(), 0, "no sources for a no-answer");
  assert.doesNotMatch(await answer.innerText(), /salary band|Engineer I:/i);
  await page.screenshot({ path: path.join(ARTIFACTS, "widget-no-answer.png") });
});

await scenario("the assistant's greeting, the approved-use notice and a refusal by policy", async (page) => {
  await page.goto(`${HOST_URL}/?user=alice&lang=en`);
  await page.locator("lore-chat .launcher").click();
  await page.locator("lore-chat .greeting").waitFor({ timeout: 10000 });
  assert.equal(await page.locator("lore-chat .greeting").innerText(), "Hi! Ask me about Acme's policies.");
  assert.match(await page.locator("lore-chat .notice").innerText(), /check what matters/);
  assert.equal(await page.locator("lore-chat .notice a").getAttribute("href"), "https://intranet.example/ai-policy");
  assert.equal(await page.locator("lore-chat h2").innerText(), "Ask HR", "the page's data-title wins over the assistant's name");
  await ask(page, "Can I file a lawsuit against a supplier?");
  await finished(page);
  const answer = lastAssistant(page);
  assert.equal(await answer.getAttribute("data-kind"), "refused");
  assert.match(await answer.locator(".badge").innerText(), /company policy/);
  assert.match(await answer.locator(".body").innerText(), /does not give legal advice/);
  await page.screenshot({ path: path.join(ARTIFACTS, "widget-policy.png") });
});

await scenario("data-collections limits answers to those collections", async (page) => {
  await page.goto(`${HOST_URL}/?user=alice&lang=en&collections=facilities`);
  await page.locator("lore-chat .launcher").click();
  await ask(page, "How many days of paid vacation do I get?");
  await finished(page);
  assert.equal(await lastAssistant(page).getAttribute("data-kind"), "no_answer", "the handbook is outside the facilities collection");
});

await scenario("markup in documents and answers is shown as text, never run", async (page) => {
  await page.goto(`${HOST_URL}/?user=alice&lang=en&csp=0`); // no CSP: only the widget's rendering protects the page
  await page.locator("lore-chat .launcher").click();
  await ask(page, "Where is the badge printer?");
  await finished(page);
  const answer = lastAssistant(page);
  assert.match(await answer.locator(".body > p").first().innerText(), /<img src=x onerror="window.__xss=3">/);
  const sources = await answer.locator(".sources").innerText();
  assert.match(sources, /<script>window.__xss=2<\/script>/, "the document snippet shows the markup as text");
  assert.equal(await answer.locator(".sources a").first().getAttribute("data-document-id"), DOCUMENTS["facilities/badge-printer.txt"]);
  await page.waitForTimeout(300);
  assert.equal(await page.evaluate(() => window.__xss), undefined, "no script ran");
  assert.equal(await page.evaluate(() => document.querySelector("lore-chat").shadowRoot.querySelectorAll("img, script").length), 0);
});

await scenario("stop and retry", async (page) => {
  await page.goto(`${HOST_URL}/?user=alice&lang=en`);
  await page.locator("lore-chat .launcher").click();
  await ask(page, "How many days of paid vacation do I get?");
  await page.waitForFunction(() => {
    const all = document.querySelector("lore-chat").shadowRoot.querySelectorAll(".msg.assistant");
    return all.length && all[all.length - 1].textContent.includes("paid vacation");
  });
  await page.locator("lore-chat button", { hasText: "Stop" }).click();
  await lastAssistant(page).locator(".badge", { hasText: "Stopped." }).waitFor();
  assert.equal(await lastAssistant(page).getAttribute("data-kind"), null);

  // A network failure shows an error with Retry, which then succeeds.
  await page.route(`${LORE_URL}/v1/chat`, (route) => route.abort("connectionrefused"));
  await ask(page, "How does vacation accrue?");
  await page.locator("lore-chat .error", { hasText: "The connection failed." }).waitFor();
  await page.unroute(`${LORE_URL}/v1/chat`);
  await page.locator("lore-chat .error button", { hasText: "Retry" }).click();
  await finished(page);
  assert.equal(await lastAssistant(page).getAttribute("data-kind"), "generated");
  assert.ok(await page.locator("lore-chat .error").isHidden());
});

await scenario("an expired or foreign token is refused", async (page) => {
  await page.goto(`${HOST_URL}/?user=alice&lang=en`);
  await page.evaluate(() => { window.getLoreToken = async () => "lore_not-a-key"; });
  await page.locator("lore-chat .launcher").click();
  await ask(page, "How many days of paid vacation do I get?");
  await page.locator("lore-chat .error", { hasText: "not signed in" }).waitFor();
});

await scenario("the full page signs in with the authorization code flow and PKCE", async (page, context, errors) => {
  await page.goto(`${LORE_URL}/`);
  await page.locator("#who", { hasText: "alice (employee)" }).waitFor();
  assert.equal(new URL(page.url()).search, "", "the code and state are removed from the address bar");
  await ask(page, "How many days of paid vacation do I get?");
  await finished(page);
  assert.equal(await lastAssistant(page).getAttribute("data-kind"), "generated");
  assert.deepEqual(errors, []);
  await page.screenshot({ path: path.join(ARTIFACTS, "full-page.png") });
});

await scenario("the demo page answers over the sample corpus with a public key", async (page, context, errors) => {
  await page.goto(`${LORE_URL}/demo`);
  await page.locator("lore-chat .launcher").click();
  await ask(page, "How many days of paid vacation do I get?");
  await finished(page);
  assert.equal(await lastAssistant(page).getAttribute("data-kind"), "generated");
  assert.equal(await lastAssistant(page).locator(".sources a").first().getAttribute("data-document-id"),
    DOCUMENTS["samples/handbook/employee-handbook.md"]);
  assert.deepEqual(errors, [], "the demo page's own CSP allows the widget");
  await page.screenshot({ path: path.join(ARTIFACTS, "demo-page.png") });

  // The widget exchanged the public key for a visitor token of its own, kept for the tab.
  const stored = await page.evaluate(() => Object.fromEntries(Object.entries(sessionStorage)));
  const visitorKey = Object.keys(stored).find((k) => k.startsWith("lore:") && k.endsWith(":visitor"));
  assert.ok(visitorKey, `a visitor token is kept for the tab: ${JSON.stringify(Object.keys(stored))}`);
  const conversationKey = visitorKey.replace(/:visitor$/, "");
  const conversation = stored[conversationKey];
  assert.ok(conversation, "the conversation id is kept next to it");
  const call = (p, [token, url]) => p.evaluate(async ([t, u]) => {
    const response = await fetch(u, { headers: { Authorization: `Bearer ${t}` } });
    return { status: response.status, body: await response.json() };
  }, [token, url]);
  const me = await call(page, [JSON.parse(stored[visitorKey]).token, "/v1/me"]);
  assert.match(me.body.user, /^visitor:/);
  assert.deepEqual(me.body.principals, ["everyone"]);
  // Shortly before expiry the token is renewed: same visitor, same conversation.
  await page.evaluate((k) => {
    const v = JSON.parse(sessionStorage.getItem(k));
    sessionStorage.setItem(k, JSON.stringify(Object.assign(v, { renewAt: 0 })));
  }, visitorKey);
  await ask(page, "And how does it accrue?");
  await finished(page);
  const renewed = JSON.parse(await page.evaluate((k) => sessionStorage.getItem(k), visitorKey));
  assert.notEqual(renewed.token, JSON.parse(stored[visitorKey]).token, "the token was renewed");
  assert.equal((await call(page, [renewed.token, "/v1/me"])).body.user, me.body.user);
  assert.equal(await page.evaluate((k) => sessionStorage.getItem(k), conversationKey), conversation);
  // A reload restores the conversation (a same-origin GET: no Origin header).
  await page.reload();
  await page.locator("lore-chat .launcher").click();
  await page.locator("lore-chat .msg.assistant").nth(1).waitFor();
  assert.equal(await page.locator("lore-chat .msg").count(), 4);

  // Another visitor of the same page (another browser) reaches none of it, even knowing its id.
  const otherContext = await browser.newContext();
  try {
    const other = await otherContext.newPage();
    await other.goto(`${LORE_URL}/demo`);
    await other.locator("lore-chat .launcher").click();
    await ask(other, "How does vacation accrue?");
    await finished(other);
    const theirs = await other.evaluate((k) => JSON.parse(sessionStorage.getItem(k)).token, visitorKey);
    assert.notEqual((await call(other, [theirs, "/v1/me"])).body.user, me.body.user);
    const list = await call(other, [theirs, "/v1/conversations"]);
    assert.equal(list.body.conversations.length, 1);
    assert.ok(!list.body.conversations.some((c) => c.id === conversation), "the other visitor lists the first one's conversation");
    assert.equal((await call(other, [theirs, `/v1/conversations/${conversation}`])).status, 404);
    await other.evaluate(([k, id]) => sessionStorage.setItem(k, id), [conversationKey, conversation]);
    await other.reload();
    await other.locator("lore-chat .launcher").click();
    await other.waitForFunction((k) => sessionStorage.getItem(k) === null, conversationKey);
    assert.equal(await other.locator("lore-chat .msg").count(), 0, "a foreign conversation id restores nothing");
  } finally {
    await otherContext.close();
  }
});

const widget = await (await fetch(`${LORE_URL}/widget.js`)).arrayBuffer();
results.widgetBytes = widget.byteLength;
results.widgetGzipBytes = gzipSync(Buffer.from(widget), { level: 9 }).length;
if (results.widgetGzipBytes > 12 * 1024) failures.push(`widget.js is ${results.widgetGzipBytes} bytes gzipped, over 12 KiB`);
console.log(JSON.stringify(results));
await browser.close();
if (failures.length) {
  console.error(failures.join("\n\n"));
  process.exit(1);
}
