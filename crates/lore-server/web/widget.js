/* Lore chat widget: one <script> tag adds a chat launcher (or an inline chat) to any page.
 *
 *   <script src="https://lore.example.com/widget.js" data-token-function="getLoreToken"
 *           data-title="Ask HR" data-lang="es" data-position="bottom-left"></script>
 *
 * or, anywhere in the page after the script: <lore-chat mode="inline" token-function="..."></lore-chat>
 *
 * With data-api-key (a public key), the widget exchanges the key for a visitor token of its own
 * (POST /v1/embed/token), kept for the tab in sessionStorage and renewed before it expires, so
 * this visitor's conversation is theirs alone. A key that is not public (403) is sent as is.
 *
 * Isolation: everything lives in a shadow root; styles are a constructed stylesheet (no inline
 * style attributes, so a strict host CSP needs no 'unsafe-inline'); no globals except the
 * custom element. Safety: text from the model and from documents is only ever inserted with
 * textContent / createTextNode; links are built from parsed URLs (http/https only) and open with
 * rel="noopener noreferrer".
 */
(() => {
  "use strict";
  if (customElements.get("lore-chat")) return;
  const script = document.currentScript;

  const STRINGS = {
    en: {
      open: "Open chat", close: "Close chat", title: "Ask Lore", placeholder: "Ask a question…",
      label: "Your question", send: "Send", stop: "Stop", retry: "Retry", newChat: "New conversation",
      sources: "Sources", page: "page", thinking: "Searching the knowledge base…",
      noAnswer: "Not in the knowledge base", extracted: "Quoted from the documents (no language model)",
      stopped: "Stopped.", network: "The connection failed.", signIn: "You are not signed in to Lore.",
      helpful: "Helpful", notHelpful: "Not helpful", comment: "What was wrong? (optional)",
      sendFeedback: "Send feedback", thanks: "Thanks for the feedback.", you: "You", assistant: "Lore",
      error: "Something went wrong.",
      verified: "Verified by a knowledge manager", refused: "Not allowed by company policy",
      pending: "A knowledge manager will review this answer.",
      held: "This answer is waiting for a knowledge manager's review.",
    },
    es: {
      open: "Abrir chat", close: "Cerrar chat", title: "Pregunta a Lore", placeholder: "Escribe una pregunta…",
      label: "Tu pregunta", send: "Enviar", stop: "Detener", retry: "Reintentar", newChat: "Nueva conversación",
      sources: "Fuentes", page: "página", thinking: "Buscando en la base de conocimiento…",
      noAnswer: "No está en la base de conocimiento", extracted: "Citado de los documentos (sin modelo de lenguaje)",
      stopped: "Detenido.", network: "Falló la conexión.", signIn: "No has iniciado sesión en Lore.",
      helpful: "Útil", notHelpful: "No es útil", comment: "¿Qué estuvo mal? (opcional)",
      sendFeedback: "Enviar comentario", thanks: "Gracias por tu comentario.", you: "Tú", assistant: "Lore",
      error: "Algo salió mal.",
      verified: "Verificada por un responsable de conocimiento", refused: "No permitido por la política de la empresa",
      pending: "Un responsable de conocimiento revisará esta respuesta.",
      held: "Esta respuesta está pendiente de la revisión de un responsable de conocimiento.",
    },
  };

  const CSS = `
:host { all: initial; --lore-primary: #1d4ed8; --lore-on-primary: #ffffff; --lore-bg: #ffffff; --lore-text: #111827;
  --lore-muted: #4b5563; --lore-border: #d1d5db; --lore-user-bg: #eef2ff; --lore-warn-bg: #fff7ed; --lore-warn: #9a3412;
  --lore-radius: 12px; --lore-font: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; font-family: var(--lore-font); }
* { box-sizing: border-box; }
.launcher { position: fixed; bottom: 20px; z-index: 2147483000; border: 0; border-radius: 999px; padding: 12px 18px;
  background: var(--lore-primary); color: var(--lore-on-primary); font: 600 15px var(--lore-font); cursor: pointer;
  box-shadow: 0 4px 14px rgba(0,0,0,.25); }
.right { right: 20px; } .left { left: 20px; }
.panel { display: flex; flex-direction: column; background: var(--lore-bg); color: var(--lore-text);
  border: 1px solid var(--lore-border); border-radius: var(--lore-radius); font: 14px/1.45 var(--lore-font); overflow: hidden; }
.floating { position: fixed; bottom: 76px; z-index: 2147483000; width: min(400px, calc(100vw - 32px));
  height: min(600px, calc(100vh - 110px)); box-shadow: 0 10px 30px rgba(0,0,0,.25); }
.inline { width: 100%; height: 100%; min-height: 420px; }
[hidden] { display: none !important; }
header { display: flex; align-items: center; gap: 8px; padding: 10px 12px; background: var(--lore-primary); color: var(--lore-on-primary); }
header h2 { flex: 1; margin: 0; font-size: 15px; }
header button { background: transparent; color: inherit; border: 1px solid rgba(255,255,255,.6); border-radius: 6px; padding: 3px 8px; cursor: pointer; font: inherit; }
.log { flex: 1; overflow-y: auto; padding: 12px; display: flex; flex-direction: column; gap: 10px; }
.msg { max-width: 92%; padding: 8px 10px; border-radius: 10px; overflow-wrap: anywhere; }
.msg.user { align-self: flex-end; background: var(--lore-user-bg); }
.msg.assistant { align-self: flex-start; border: 1px solid var(--lore-border); }
.msg.no_answer { background: var(--lore-warn-bg); border-color: #fdba74; }
.badge { display: inline-block; font-size: 12px; font-weight: 600; color: var(--lore-muted); margin-bottom: 4px; }
.no_answer .badge, .refused .badge { color: var(--lore-warn); }
.notice { font-size: 12px; color: var(--lore-muted); margin: 4px 12px; }
.greeting { margin: 8px 0; }
.body p { margin: 0 0 6px; } .body ul { margin: 0 0 6px; padding-left: 20px; }
.cite { font: 600 11px var(--lore-font); vertical-align: super; margin: 0 1px; padding: 0 2px; color: var(--lore-primary);
  background: none; border: 0; cursor: pointer; }
.sources { margin-top: 6px; padding-top: 6px; border-top: 1px solid var(--lore-border); font-size: 13px; }
.sources ol { margin: 4px 0 0; padding-left: 20px; }
.sources a { color: var(--lore-primary); font-weight: 600; }
.snippet { margin: 2px 0 6px; color: var(--lore-muted); font-size: 12px; }
.feedback { display: flex; flex-wrap: wrap; gap: 6px; margin-top: 6px; align-items: center; }
.feedback button, .error button, form button { border: 1px solid var(--lore-border); background: var(--lore-bg); color: var(--lore-text);
  border-radius: 6px; padding: 3px 8px; cursor: pointer; font: inherit; font-size: 13px; }
.feedback button[aria-pressed="true"] { background: var(--lore-user-bg); border-color: var(--lore-primary); color: var(--lore-primary); }
.feedback button { display: inline-flex; align-items: center; }
.feedback textarea { width: 100%; font: inherit; }
.error { padding: 8px 12px; color: #991b1b; background: #fef2f2; display: flex; gap: 8px; align-items: center; }
form { display: flex; gap: 8px; padding: 10px; border-top: 1px solid var(--lore-border); }
form textarea { flex: 1; resize: none; font: inherit; padding: 6px 8px; border: 1px solid var(--lore-border); border-radius: 8px; color: var(--lore-text); background: var(--lore-bg); }
form button.primary { background: var(--lore-primary); color: var(--lore-on-primary); border-color: var(--lore-primary); }
:focus-visible { outline: 3px solid #f59e0b; outline-offset: 2px; }
.sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
`;

  let sheet = null;
  function styles(root) {
    try {
      if (!sheet) { sheet = new CSSStyleSheet(); sheet.replaceSync(CSS); }
      root.adoptedStyleSheets = [sheet];
    } catch (_) {
      const style = document.createElement("style");
      style.textContent = CSS;
      root.appendChild(style);
    }
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === false || v == null) continue;
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const child of children) if (child != null) node.append(child);
    return node;
  }

  /* Minimal Markdown: paragraphs, "- " lists, **bold**, `code`, and [n] citation markers.
     Everything becomes text nodes; nothing is parsed as HTML. */
  function renderMarkdown(text, cite) {
    const frag = document.createDocumentFragment();
    let list = null;
    for (const block of text.split(/\n/)) {
      const line = block.trimEnd();
      if (!line.trim()) { list = null; continue; }
      const item = /^\s*[-*]\s+(.*)$/.exec(line);
      if (item) {
        if (!list) { list = el("ul"); frag.append(list); }
        list.append(inline(el("li"), item[1], cite));
      } else {
        list = null;
        frag.append(inline(el("p"), line, cite));
      }
    }
    return frag;
  }

  function inline(parent, text, cite) {
    const re = /\*\*([^*]+)\*\*|`([^`]+)`|\[(\d{1,2})\]/g;
    let last = 0, m;
    while ((m = re.exec(text))) {
      if (m.index > last) parent.append(document.createTextNode(text.slice(last, m.index)));
      if (m[1] !== undefined) parent.append(el("strong", {}, m[1]));
      else if (m[2] !== undefined) parent.append(el("code", {}, m[2]));
      else parent.append(cite(Number(m[3])));
      last = re.lastIndex;
    }
    if (last < text.length) parent.append(document.createTextNode(text.slice(last)));
    return parent;
  }

  /* A thumb icon as SVG built node by node (no emoji font needed, no markup parsing). */
  function thumb(down) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", "16");
    svg.setAttribute("height", "16");
    svg.setAttribute("aria-hidden", "true");
    if (down) svg.setAttribute("transform", "rotate(180)");
    const path = document.createElementNS(ns, "path");
    path.setAttribute("fill", "currentColor");
    path.setAttribute("d", "M2 21h4V9H2v12zm20-11a2 2 0 0 0-2-2h-6.3l1-4.6v-.3c0-.4-.2-.8-.4-1.1L13.2 1 6.6 7.6c-.4.4-.6.9-.6 1.4v10a2 2 0 0 0 2 2h9c.8 0 1.5-.5 1.8-1.2l3-7.1c.1-.2.2-.5.2-.7v-2z");
    svg.append(path);
    return svg;
  }

  /* Snippets are raw chunk text: drop Markdown syntax for reading. */
  const plain = (text) => text.replace(/^#+\s*/gm, "").replace(/\*\*|`/g, "").replace(/\s+/g, " ").trim();

  function safeUrl(raw, base) {
    try {
      const url = new URL(raw, base);
      return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
    } catch (_) { return null; }
  }

  /* Server-Sent Events over fetch (EventSource cannot POST or send headers). */
  async function* sse(response) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const raw = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let event = "message", data = "";
        for (const line of raw.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data += (data ? "\n" : "") + line.slice(5).replace(/^ /, "");
        }
        if (data) yield { event, data: JSON.parse(data) };
      }
    }
  }

  class LoreChat extends HTMLElement {
    connectedCallback() {
      if (this.root) return;
      const opt = (name, fallback) => this.getAttribute(name) ?? fallback;
      const src = script && script.src ? new URL(script.src) : null;
      this.server = (opt("server", src ? src.origin : location.origin) || "").replace(/\/$/, "");
      const langAttr = opt("lang", document.documentElement.lang || navigator.language || "en").toLowerCase();
      this.lang = langAttr.startsWith("es") ? "es" : "en";
      this.t = STRINGS[this.lang];
      this.mode = opt("mode", "launcher") === "inline" ? "inline" : "launcher";
      this.position = opt("position", "bottom-right") === "bottom-left" ? "left" : "right";
      this.titled = this.hasAttribute("title");
      this.titleText = opt("title", this.t.title);
      this.removeAttribute("title"); // not a tooltip on the whole widget
      this.tokenFunction = opt("token-function", null);
      this.apiKey = opt("api-key", null);
      this.collections = (opt("collections", "") || "").split(",").map((c) => c.trim()).filter(Boolean);
      this.storageKey = `lore:${this.server}:${opt("session-key", "default")}`;
      this.visitorKey = `${this.storageKey}:visitor`;
      for (const name of ["primary", "on-primary", "bg", "text", "radius", "font"]) {
        const value = opt(`theme-${name}`, null);
        if (value) this.style.setProperty(`--lore-${name}`, value);
      }
      this.root = this.attachShadow({ mode: "open" });
      styles(this.root);
      this.build();
      this.restore();
      if (this.mode === "inline") this.introduce();
    }

    /* The asker's assistant (its name and greeting) and the approved-use notice; fetched when
       the chat first opens, since a public key mints a visitor token to ask. */
    async introduce() {
      if (this.introduced) return;
      this.introduced = true;
      try {
        const response = await this.api("/v1/assistant");
        if (!response.ok) return;
        const a = await response.json();
        if (!this.titled && a.name) this.heading.textContent = a.name;
        const greeting = (this.lang === "es" && a.greeting_es) || a.greeting;
        if (greeting && !this.log.firstChild) this.log.append(el("p", { class: "greeting" }, greeting));
        if (a.notice && a.notice.text) {
          const link = a.notice.link && /^https?:\/\//.test(a.notice.link)
            ? el("a", { href: a.notice.link, target: "_blank", rel: "noopener noreferrer" }, a.notice.link) : null;
          this.notice.replaceChildren(document.createTextNode(a.notice.text), link ? " " : "", link || "");
          this.notice.hidden = false;
        }
      } catch (_) { /* offline: no introduction */ }
    }

    build() {
      const t = this.t;
      this.log = el("div", { class: "log", role: "log", "aria-live": "polite", "aria-label": t.title });
      this.input = el("textarea", { rows: 2, placeholder: t.placeholder, "aria-label": t.label, name: "question" });
      this.input.addEventListener("keydown", (e) => {
        if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); this.submit(); }
      });
      this.sendButton = el("button", { type: "submit", class: "primary" }, t.send);
      this.stopButton = el("button", { type: "button", hidden: true, onclick: () => this.stop() }, t.stop);
      const form = el("form", { onsubmit: (e) => { e.preventDefault(); this.submit(); } }, this.input, this.stopButton, this.sendButton);
      this.errorText = el("span");
      this.retryButton = el("button", { type: "button", onclick: () => this.retry() }, t.retry);
      this.errorBox = el("div", { class: "error", role: "alert", hidden: true }, this.errorText, this.retryButton);
      const closeButton = el("button", { type: "button", "aria-label": t.close, onclick: () => this.toggle(false) }, "✕");
      this.heading = el("h2", { id: "lore-title" }, this.titleText);
      this.notice = el("p", { class: "notice", hidden: true });
      const header = el("header", {}, this.heading,
        el("button", { type: "button", onclick: () => this.reset() }, t.newChat),
        this.mode === "launcher" ? closeButton : null);
      this.panel = el("section", { class: `panel ${this.mode === "inline" ? "inline" : `floating ${this.position}`}`,
        role: this.mode === "inline" ? "region" : "dialog", "aria-labelledby": "lore-title", lang: this.lang },
        header, this.log, this.errorBox, this.notice, form);
      if (this.mode === "launcher") {
        this.panel.hidden = true;
        this.launcher = el("button", { type: "button", class: `launcher ${this.position}`, "aria-expanded": "false",
          "aria-haspopup": "dialog", onclick: () => this.toggle() }, this.titleText);
        this.launcher.setAttribute("aria-label", t.open);
        this.panel.addEventListener("keydown", (e) => { if (e.key === "Escape") this.toggle(false); });
        this.root.append(this.launcher, this.panel);
      } else {
        this.root.append(this.panel);
      }
    }

    toggle(open = this.panel.hidden) {
      if (this.mode !== "launcher") return;
      this.panel.hidden = !open;
      this.launcher.setAttribute("aria-expanded", String(open));
      if (open) this.introduce();
      if (open) this.input.focus(); else this.launcher.focus();
    }

    async credential() {
      if (this.tokenFunction) {
        const fn = this.tokenFunction.split(".").reduce((o, k) => (o ? o[k] : undefined), window);
        if (typeof fn !== "function") throw new Error(`token function ${this.tokenFunction} not found`);
        return await fn();
      }
      if (this.apiKey) return (await this.visitorToken()) || this.apiKey;
      throw new Error(this.t.signIn);
    }

    /* The visitor token for a public key: the stored one while it is fresh, else renewed (same
       visitor), else a new visitor (whose conversation starts empty). null: send the key itself. */
    visitorToken() {
      const v = this.visitor, now = Date.now() / 1000;
      if (this.keyOnly) return null;
      if (v && now < v.renewAt) { if (!this.renewal) this.schedule(v); return v.token; }
      if (!this.minting) {
        const renew = v && now < v.expiresAt - 5 ? v.token : null;
        this.minting = this.mintVisitor(renew).finally(() => { this.minting = null; });
      }
      return this.minting;
    }

    async mintVisitor(previous) {
      const post = (body) => fetch(`${this.server}/v1/embed/token`, { method: "POST", body: JSON.stringify(body),
        headers: { Authorization: `Bearer ${this.apiKey}`, "Content-Type": "application/json" } });
      let response = previous ? await post({ visitor_token: previous }) : null;
      if (!response || !response.ok) {
        if (this.visitor) { this.visitor = null; this.conversationId = null; } // that conversation was the old visitor's
        response = await post({});
      }
      if (response.status === 400 || response.status === 403) { this.keyOnly = true; return null; }
      if (!response.ok) throw new Error(response.status === 401 ? this.t.signIn : this.t.error);
      const { token, expires_at: expiresAt } = await response.json();
      // Times on this clock (it may differ from the server's): the token's lifetime from now.
      const now = Date.now() / 1000;
      let life = expiresAt - now;
      try {
        const claims = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
        life = claims.exp - claims.iat;
      } catch (_) { /* keep the server's expiry */ }
      this.schedule(this.visitor = { token, expiresAt: now + life, renewAt: now + life - Math.min(60, life / 4) });
      return token;
    }

    /* Renews in the background shortly before expiry while there is a conversation to keep. */
    schedule(v) {
      clearTimeout(this.renewal);
      this.renewal = setTimeout(() => { if (this.conversationId) this.visitorToken().catch(() => {}); },
        Math.max(1, v.renewAt - Date.now() / 1000) * 1000);
    }

    get visitor() { try { return JSON.parse(sessionStorage.getItem(this.visitorKey)) || null; } catch (_) { return this.memory || null; } }
    set visitor(v) {
      this.memory = v;
      try { if (v) sessionStorage.setItem(this.visitorKey, JSON.stringify(v)); else sessionStorage.removeItem(this.visitorKey); } catch (_) { /* storage blocked */ }
    }

    async api(path, options = {}) {
      const send = async () => {
        const credential = await this.credential();
        const headers = Object.assign({ Authorization: `Bearer ${credential}` }, options.headers || {});
        const body = typeof options.body === "function" ? options.body() : options.body;
        return [await fetch(this.server + path, Object.assign({}, options, { headers, body })), credential];
      };
      const [response, credential] = await send();
      // A refused visitor token (e.g. the server's secret changed): once more as a new visitor.
      if (response.status === 401 && this.apiKey && !this.tokenFunction && credential !== this.apiKey) {
        this.visitor = null;
        this.conversationId = null;
        return (await send())[0];
      }
      return response;
    }

    get conversationId() { try { return sessionStorage.getItem(this.storageKey); } catch (_) { return null; } }
    set conversationId(id) {
      try { if (id) sessionStorage.setItem(this.storageKey, id); else sessionStorage.removeItem(this.storageKey); } catch (_) { /* storage blocked */ }
    }

    async restore() {
      const id = this.conversationId;
      if (!id) return;
      try {
        const response = await this.api(`/v1/conversations/${encodeURIComponent(id)}`);
        if (!response.ok) { this.conversationId = null; return; }
        const conversation = await response.json();
        for (const m of conversation.messages) {
          if (m.role === "user") this.addUser(m.content);
          else if (m.role === "assistant") {
            const view = this.addAssistant();
            this.finishAssistant(view, { kind: (m.meta && m.meta.kind) || "generated", answer: m.content,
              citations: m.citations || [], message_id: m.id });
          }
        }
      } catch (_) { /* offline: start empty */ }
    }

    reset() {
      this.stop();
      this.conversationId = null;
      this.log.replaceChildren();
      this.showError(null);
      this.input.focus();
    }

    addUser(text) {
      this.log.append(el("div", { class: "msg user" }, el("span", { class: "sr" }, `${this.t.you}: `), text));
    }

    addAssistant() {
      const live = el("div", { class: "body" }, el("p", {}, this.t.thinking));
      const node = el("div", { class: "msg assistant", "aria-busy": "true" }, el("span", { class: "sr" }, `${this.t.assistant}: `), live);
      this.log.append(node);
      this.log.scrollTop = this.log.scrollHeight;
      return { node, live, text: "", streaming: false };
    }

    showError(message) {
      this.errorBox.hidden = !message;
      this.errorText.textContent = message || "";
    }

    stop() {
      if (this.controller) { this.controller.abort(); this.controller = null; }
    }

    retry() {
      if (this.lastQuestion) { this.showError(null); this.ask(this.lastQuestion, false); }
    }

    submit() {
      const question = this.input.value.trim();
      if (!question || this.controller) return;
      this.input.value = "";
      this.ask(question, true);
    }

    async ask(question, echo) {
      this.lastQuestion = question;
      if (echo) this.addUser(question);
      const view = this.addAssistant();
      this.controller = new AbortController();
      this.stopButton.hidden = false;
      this.sendButton.disabled = true;
      let sources = [];
      try {
        // Built when sent: getting a visitor token may start a new, empty conversation.
        const body = () => {
          const b = { question, stream: true };
          if (this.collections.length) b.collections = this.collections;
          if (this.conversationId) b.conversation_id = this.conversationId;
          return JSON.stringify(b);
        };
        const response = await this.api("/v1/chat", { method: "POST", signal: this.controller.signal,
          headers: { "Content-Type": "application/json" }, body });
        if (response.status === 401) throw new Error(this.t.signIn);
        if (!response.ok) {
          const error = await response.json().catch(() => ({}));
          throw new Error(error.message || this.t.error);
        }
        for await (const { event, data } of sse(response)) {
          if (event === "metadata") {
            sources = data.sources || [];
            view.kind = data.kind;
          } else if (event === "delta") {
            if (!view.streaming) { view.streaming = true; view.live.replaceChildren(document.createTextNode("")); }
            view.text += data.text;
            view.live.firstChild.appendData(data.text);
            this.log.scrollTop = this.log.scrollHeight;
          } else if (event === "final") {
            this.conversationId = data.conversation_id;
            this.finishAssistant(view, data);
          } else if (event === "review") {
            if (data.mode === "before") {
              this.finishAssistant(view, { kind: "held", answer: this.t.held, citations: [] });
            } else {
              view.live.append(el("p", { class: "badge review" }, this.t.pending));
            }
          } else if (event === "error") {
            throw new Error(data.message || this.t.error);
          }
        }
      } catch (error) {
        if (error.name === "AbortError") {
          view.node.setAttribute("aria-busy", "false");
          view.live.append(el("p", { class: "badge" }, this.t.stopped));
        } else {
          view.node.remove();
          this.showError(error instanceof TypeError ? this.t.network : error.message);
        }
      } finally {
        this.controller = null;
        this.stopButton.hidden = true;
        this.sendButton.disabled = false;
      }
      void sources;
    }

    finishAssistant(view, answer) {
      const t = this.t;
      const kind = answer.kind || "generated";
      view.node.classList.add(kind);
      view.node.setAttribute("aria-busy", "false");
      view.node.dataset.kind = kind;
      const citations = answer.citations || [];
      const byMarker = new Map(citations.map((c) => [c.marker, c]));
      const cite = (n) => {
        if (!byMarker.has(n)) return document.createTextNode("");
        return el("button", { type: "button", class: "cite", "aria-label": `${t.sources} ${n}`, onclick: () => {
          const link = this.root.getElementById(`lore-source-${answer.message_id}-${n}`)?.querySelector("a");
          if (link) { link.scrollIntoView({ block: "nearest" }); link.focus(); }
        } }, `[${n}]`);
      };
      const body = el("div", { class: "body" });
      if (kind === "no_answer") body.append(el("div", { class: "badge" }, t.noAnswer));
      if (kind === "extracted") body.append(el("div", { class: "badge" }, t.extracted));
      if (kind === "verified") body.append(el("div", { class: "badge" }, t.verified));
      if (kind === "refused") body.append(el("div", { class: "badge" }, t.refused));
      body.append(renderMarkdown(answer.answer || "", cite));
      if (citations.length) {
        const list = el("ol");
        for (const c of citations) {
          const where = c.page ? ` · ${t.page} ${c.page}` : "";
          const href = safeUrl(`/#/documents/${encodeURIComponent(c.document_id)}${c.page ? `?page=${c.page}` : ""}`, this.server);
          list.append(el("li", { id: `lore-source-${answer.message_id}-${c.marker}`, value: c.marker },
            el("a", { href, target: "_blank", rel: "noopener noreferrer", "data-document-id": c.document_id }, c.title),
            where, el("div", { class: "snippet" }, plain(c.snippet))));
        }
        body.append(el("div", { class: "sources" }, el("strong", {}, t.sources), list));
      }
      if (answer.message_id) body.append(this.feedback(answer.message_id));
      view.live.replaceWith(body);
      view.live = body;
      this.log.scrollTop = this.log.scrollHeight;
    }

    feedback(messageId) {
      const t = this.t;
      const comment = el("textarea", { rows: 2, "aria-label": t.comment, placeholder: t.comment, hidden: true });
      const status = el("span", { role: "status" });
      const send = el("button", { type: "button", hidden: true }, t.sendFeedback);
      let rating = null;
      const vote = (value, button, other) => {
        rating = value;
        button.setAttribute("aria-pressed", "true");
        other.setAttribute("aria-pressed", "false");
        comment.hidden = false;
        send.hidden = false;
        if (value === "down") comment.focus();
      };
      const up = el("button", { type: "button", "aria-pressed": "false", "aria-label": t.helpful, title: t.helpful }, thumb(false));
      const down = el("button", { type: "button", "aria-pressed": "false", "aria-label": t.notHelpful, title: t.notHelpful }, thumb(true));
      up.addEventListener("click", () => vote("up", up, down));
      down.addEventListener("click", () => vote("down", down, up));
      send.addEventListener("click", async () => {
        try {
          const response = await this.api("/v1/feedback", { method: "POST", headers: { "Content-Type": "application/json" },
            body: JSON.stringify({ message_id: messageId, rating, comment: comment.value.trim() || undefined }) });
          if (!response.ok) throw new Error(t.error);
          status.textContent = t.thanks;
          comment.hidden = true;
          send.hidden = true;
        } catch (_) { status.textContent = t.error; }
      });
      return el("div", { class: "feedback" }, up, down, comment, send, status);
    }
  }

  customElements.define("lore-chat", LoreChat);

  // The <script> tag form: copy its data-* options onto an element and mount it.
  if (script && script.dataset && script.dataset.autoMount !== "false") {
    const widget = document.createElement("lore-chat");
    for (const [key, value] of Object.entries(script.dataset)) {
      widget.setAttribute(key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`), value);
    }
    const mount = () => {
      const target = script.dataset.target ? document.querySelector(script.dataset.target) : null;
      if (script.dataset.target && !target) return;
      if (target) widget.setAttribute("mode", widget.getAttribute("mode") || "inline");
      (target || document.body).append(widget);
    };
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mount); else mount();
  }
})();
