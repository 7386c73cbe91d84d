/* The full-page chat: sign-in (OpenID Connect authorization code with PKCE when single sign-on
 * is configured, else an API key kept in this tab's session), the widget inline, and a viewer
 * for cited documents (#/documents/{id}?page=N). Text is only ever set with textContent.
 * Knowledge managers and admins also get the console (console.js), which registers itself on
 * `window.loreApp` and takes the `#/console/…` routes. */
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const store = sessionStorage;
  let config = null;

  const STRINGS = {
    en: {
      language: "Language", signOut: "Sign out", continue: "Continue",
      keyLabel: "API key (development mode: no single sign-on is configured)",
      backToChat: "← Back to the chat", notFound: "Document not found", page: (n) => `Page ${n}`,
    },
    es: {
      language: "Idioma", signOut: "Cerrar sesión", continue: "Continuar",
      keyLabel: "Clave de API (modo de desarrollo: no hay inicio de sesión único configurado)",
      backToChat: "← Volver al chat", notFound: "Documento no encontrado", page: (n) => `Página ${n}`,
    },
  };

  function initialLang() {
    const param = new URLSearchParams(location.search).get("lang");
    if (param === "es" || param === "en") return param;
    let saved = null;
    try { saved = localStorage.getItem("lore:lang"); } catch (_) { /* storage blocked */ }
    if (saved === "es" || saved === "en") return saved;
    return (navigator.language || "en").toLowerCase().startsWith("es") ? "es" : "en";
  }

  let lang = initialLang();
  const t = (key, ...args) => {
    const value = STRINGS[lang][key] ?? STRINGS.en[key] ?? key;
    return typeof value === "function" ? value(...args) : value;
  };

  function translatePage() {
    document.documentElement.lang = lang;
    $("lang").value = lang;
    for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  }

  function setLang(next) {
    if (next !== "es" && next !== "en") return;
    lang = next;
    try { localStorage.setItem("lore:lang", lang); } catch (_) { /* storage blocked */ }
    translatePage();
    // The widget reads its language once, when it is connected: mount it again (the
    // conversation is kept in this tab's session and restored).
    if ($("chat").firstChild) { $("chat").replaceChildren(); if (!$("chat").hidden) mountChat(); }
    document.dispatchEvent(new CustomEvent("lore:lang", { detail: { lang } }));
    if (current) route();
  }

  const b64url = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  const random = (n) => b64url(crypto.getRandomValues(new Uint8Array(n)));

  async function discovery() {
    const response = await fetch(`${config.oidc.issuer.replace(/\/$/, "")}/.well-known/openid-configuration`);
    if (!response.ok) throw new Error("the identity provider's discovery document could not be read");
    return response.json();
  }

  async function signIn() {
    const meta = await discovery();
    const verifier = random(48);
    const state = random(16);
    store.setItem("lore:pkce", JSON.stringify({ verifier, state }));
    const challenge = b64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
    const url = new URL(meta.authorization_endpoint);
    url.search = new URLSearchParams({ response_type: "code", client_id: config.oidc.client_id, redirect_uri: location.origin + "/",
      scope: config.oidc.scopes.join(" "), state, code_challenge: challenge, code_challenge_method: "S256" }).toString();
    location.assign(url.href);
  }

  async function finishSignIn(params) {
    const saved = JSON.parse(store.getItem("lore:pkce") || "null");
    store.removeItem("lore:pkce");
    if (!saved || saved.state !== params.get("state")) throw new Error("sign-in failed: the state does not match");
    const meta = await discovery();
    const response = await fetch(meta.token_endpoint, { method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ grant_type: "authorization_code", code: params.get("code"), redirect_uri: location.origin + "/",
        client_id: config.oidc.client_id, code_verifier: saved.verifier }) });
    if (!response.ok) throw new Error("sign-in failed: the identity provider refused the code");
    const tokens = await response.json();
    store.setItem("lore:token", tokens.access_token);
    // Keep a chosen language (?lang=) but drop the code and state.
    const keep = new URLSearchParams();
    if (params.get("lang")) keep.set("lang", params.get("lang"));
    const search = keep.toString();
    history.replaceState(null, "", location.pathname + (search ? `?${search}` : "") + location.hash);
  }

  /* What console.js reads: the token, who is signed in, the page's configuration and language,
   * and `consoleRoute`, which it sets to take the `#/console/…` routes. */
  const app = window.loreApp = {
    token: async () => store.getItem("lore:token"),
    me: null,
    config: null,
    get lang() { return lang; },
    setLang,
    route: () => route(),
    consoleRoute: null,
  };

  async function who() {
    const response = await fetch("/v1/me", { headers: { Authorization: `Bearer ${await app.token()}` } });
    if (!response.ok) return null;
    return response.json();
  }

  function mountChat() {
    if ($("chat").firstChild) return;
    const chat = document.createElement("lore-chat");
    chat.setAttribute("mode", "inline");
    chat.setAttribute("server", location.origin);
    chat.setAttribute("token-function", "loreApp.token");
    chat.setAttribute("session-key", "app");
    chat.setAttribute("lang", lang);
    $("chat").append(chat);
  }

  async function showDocument(id, page) {
    const response = await fetch(`/v1/documents/${encodeURIComponent(id)}/content`,
      { headers: { Authorization: `Bearer ${await app.token()}` } });
    $("chat").hidden = true;
    $("document").hidden = false;
    const body = $("document-body");
    body.replaceChildren();
    if (!response.ok) { $("document-title").textContent = t("notFound"); $("document-path").textContent = ""; return; }
    const doc = await response.json();
    $("document-title").textContent = doc.title;
    $("document-path").textContent = `${doc.collection}/${doc.path}`;
    let current = null, target = null;
    for (const chunk of doc.chunks) {
      if (chunk.page !== current || current === null) {
        current = chunk.page;
        const section = document.createElement("section");
        section.className = "page";
        if (chunk.page != null) { section.id = `page-${chunk.page}`; const h = document.createElement("h3"); h.textContent = t("page", chunk.page); section.append(h); }
        body.append(section);
        if (page && chunk.page === page) target = section;
      }
      const p = document.createElement("p");
      p.className = "chunk";
      p.textContent = chunk.text;
      body.lastChild.append(p);
    }
    if (target) target.scrollIntoView();
    $("document-title").focus();
  }

  let current = false;
  async function route() {
    if (!app.me) return;
    current = true;
    const match = /^#\/documents\/([^?]+)(?:\?page=(\d+))?/.exec(location.hash);
    // The console shows its screen for its own routes and hides its screens for any other.
    const taken = typeof app.consoleRoute === "function" && app.consoleRoute(location.hash) === true;
    if (match) return showDocument(decodeURIComponent(match[1]), match[2] ? Number(match[2]) : null);
    $("document").hidden = true;
    if (taken) { $("chat").hidden = true; return; }
    $("chat").hidden = false;
    mountChat();
  }

  async function start() {
    $("document-title").tabIndex = -1;
    config = await (await fetch("/app-config.json")).json();
    app.config = config;
    const params = new URLSearchParams(location.search);
    try {
      if (config.oidc && params.get("code")) await finishSignIn(params);
      if (!store.getItem("lore:token")) {
        if (config.oidc) return signIn();
        $("key-form").hidden = false;
        $("key").focus();
        return;
      }
      const me = await who();
      if (!me) { store.removeItem("lore:token"); return start(); }
      app.me = me;
      $("who").textContent = `${me.user} (${me.role})`;
      $("sign-out").hidden = false;
      document.dispatchEvent(new CustomEvent("lore:signed-in", { detail: me }));
      await route();
    } catch (error) {
      $("message").textContent = error.message;
    }
  }

  translatePage();
  $("lang").addEventListener("change", () => setLang($("lang").value));
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    store.setItem("lore:token", $("key").value.trim());
    $("key-form").hidden = true;
    start();
  });
  $("sign-out").addEventListener("click", () => { store.clear(); location.assign("/"); });
  window.addEventListener("hashchange", route);
  start();
})();
