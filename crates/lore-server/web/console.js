/* The console of the full page, for knowledge managers and admins: documents (upload, filter,
 * ACLs, replace, delete), quality (feedback, knowledge gaps, reviews, verified answers),
 * analytics (uPlot charts with the same numbers as tables, CSV export) and, for admins, keys,
 * budgets, settings and the audit log.
 *
 * Plain JS, no build step. Text is only ever set with textContent (see `el`). Everything it
 * shows comes from the API with the signed-in user's token (`window.loreApp.token()`).
 * Employees and agents get nothing from this file: no nav, no screen. */
(() => {
  "use strict";

  /* ---------------------------------------------------------------- strings */

  const STRINGS = {
    en: {
      navLabel: "Console", chat: "Chat", documents: "Documents", quality: "Quality", analytics: "Analytics", admin: "Admin",
      loading: "Loading…", none: "—", yes: "Yes", no: "No", cancel: "Cancel", close: "Close", all: "All",
      confirmTitle: "Please confirm", refresh: "Refresh",
      // Documents
      collection: "Collection", noCollections: "You manage no collection yet.",
      upload: "Upload", dropzone: "Drop files here, or press Enter to choose files",
      chooseFiles: "Choose files", uploadAcl: "Access for new uploads",
      uploadAclHint: (acl) => acl ? `Empty: the collection's default (${acl}).` : "Empty: the collection has no default ACL, so give one.",
      uploads: "Uploads", principal: "Principal", add: "Add", remove: (p) => `Remove ${p}`,
      aclEmpty: "Type a principal first.",
      aclInvalid: (p) => `"${p}" is not a valid principal: use everyone, user:<id>, group:<name> or dept:<name>, without spaces.`,
      aclDuplicate: (p) => `${p} is already in the list.`,
      aclNeedsOne: "An ACL needs at least one principal.",
      tooLarge: (mb) => `larger than the ${mb} MB limit`,
      badExtension: (ext, list) => ext ? `unsupported file type .${ext}; supported: ${list}` : `the file name has no extension; supported: ${list}`,
      states: { uploading: "uploading", queued: "queued", processing: "processing", indexed: "indexed", failed: "failed",
        duplicate: "already uploaded", cancelled: "cancelled", refused: "refused" },
      search: "Search title or path", format: "Format", status: "Status", anyFormat: "All formats", anyStatus: "All states",
      principalFilter: "Principal in ACL", principalFilterHint: "e.g. group:hr, then Enter",
      pending: "Uploads not indexed yet", noPending: "Nothing pending.",
      docTable: "Documents of the collection",
      title: "Title", path: "Path", size: "Size", chunks: "Chunks", acl: "ACL",
      sortBy: (c) => `Sort by ${c}`,
      loadMore: "Load more", noDocuments: "No documents match.",
      detail: "Document", metadata: "Metadata", noMetadata: "No metadata.",
      editMetadata: "Metadata (a JSON object)", saveMetadata: "Save metadata", metadataSaved: "Metadata saved.",
      metadataNotJson: (m) => `Not valid JSON: ${m}`, metadataNotObject: "Metadata must be a JSON object, like {\"owner\": \"hr\"}.",
      metadataTooLarge: "Metadata must be at most 16 KiB.", lang: "Language", id: "Id",
      aclEditor: "Who may read it", saveAcl: "Save access", aclSaved: "Access saved.",
      replace: "Replace the file (same type)", replaced: (s) => `Replacement ${s}.`,
      viewContent: "View content", deleteDoc: "Delete document",
      confirmDelete: (t) => `Delete "${t}"? It is removed from both indexes and cannot be restored.`,
      deleted: (t) => `Deleted "${t}".`,
      // Quality
      feedback: "Feedback", time: "Time", user: "User", vote: "Vote", comment: "Comment", question: "Question",
      sources: "Cited sources", up: "👍 up", down: "👎 down", noFeedback: "No feedback yet.",
      gaps: "Knowledge gaps", gapStatus: "Gap status", open: "open", answered: "answered", dismissed: "dismissed",
      examples: "Questions", count: "Count", departments: "Departments", reasons: "Reasons", lastSeen: "Last seen",
      actions: "Actions", markAnswered: "Answered", dismiss: "Dismiss", noGaps: "No knowledge gaps.",
      reviews: "Reviews", reviewStatus: "Review status", pendingS: "pending", approved: "approved", edited: "edited", rejected: "rejected",
      asker: "Asker", rule: "Rule", created: "Created", reviewAction: "Review", noReviews: "No reviews.",
      reviewDetail: "Review", answer: "Answer", citations: "Citations", noCitations: "No citations.",
      editedAnswer: "Answer to release (edit it, then “Approve edited”)", rejectReason: "Reason for rejecting (shown to the asker)",
      approve: "Approve", approveEdited: "Approve edited", reject: "Reject",
      defaultRejectReason: "Rejected by a reviewer.", decided: (s) => `Review ${s}.`,
      verified: "Verified answers", owner: "Owner", expires: "Expires", source: "Source", department: "Department",
      deleteVerified: "Delete", confirmDeleteVerified: "Delete this verified answer? Questions will be answered from the documents again.",
      noVerified: "No verified answers.",
      // Analytics
      from: "From", to: "To", apply: "Apply",
      chartRequests: "Requests per day", chartKinds: "Answers per day by kind", chartCost: "Cost per day", chartLatency: "Chat latency per day (ms)",
      showTable: "Show as table", date: "Date", total: "Total", cost: "Cost", budgetPerDay: "Budget per day",
      byDepartment: "By department", byCategory: "By category", topQuestions: "Top questions",
      requests: "Requests", activeUsers: "Active users", abstention: "Abstention rate", thumbsUp: "👍", thumbsDown: "👎",
      thumbsUpLabel: "Thumbs up", thumbsDownLabel: "Thumbs down",
      category: "Category", lastAsked: "Last asked", csv: (n) => `Export ${n} as CSV`, csvDay: "days", csvDepartment: "departments", csvCategory: "categories",
      noData: "No data in this period.", badRange: "Choose a start date before the end date.",
      // Admin
      keys: "API keys", newKey: "New key", name: "Name", role: "Role", groups: "Groups (comma separated)",
      keyDepartments: "Department", expiresDays: "Expires in days (optional)", createKey: "Create key",
      roles: { employee: "employee", agent: "agent", knowledge_manager: "knowledge manager", admin: "admin" },
      keySecret: "The new key", copy: "Copy", copied: "Copied.",
      keyOnce: "Copy it now: it will not be shown again.",
      oneDepartment: "A key belongs to one department at most.",
      lastUsed: "Last used", state: "State", active: "active", revokedAt: (d) => `revoked ${d}`, revoke: "Revoke",
      confirmRevoke: (n) => `Revoke the key "${n}"? Anything using it stops working at once.`,
      prefix: "Prefix", noKeys: "No keys.",
      budgets: "Budgets", scope: "Scope", value: "Value", period: "Period", unit: "Unit", soft: "Soft limit", hard: "Hard limit",
      spent: "Spent", onHard: "At the hard limit", deleteBudget: "Delete", newBudget: "Set a budget", saveBudget: "Save budget",
      confirmDeleteBudget: (id) => `Delete the budget ${id}?`, noBudgets: "No budgets.",
      settings: "Settings (read-only; changed in lore.toml)", sso: "Single sign-on", noSso: "Single sign-on is not configured (API keys only)",
      policy: "Use policy", rates: "Rate limits", providers: "Model providers", perMinute: "Per minute", burst: "Burst",
      notice: "Notice", rules: "Rules", reviewRules: "Review rules", verifiedCfg: "Verified answers",
      currency: "Currency", maxFile: "Largest upload",
      audit: "Audit log", action: "Action", actor: "Actor", apply2: "Apply", seq: "Seq", target: "Target", outcome: "Outcome",
      detailJson: "Detail", noEvents: "No events match.",
      chainOk: (n) => `Hash chain verified: ${n} events`, chainBroken: (n) => `Chain broken at event ${n}`,
    },
    es: {
      navLabel: "Consola", chat: "Chat", documents: "Documentos", quality: "Calidad", analytics: "Analítica", admin: "Administración",
      loading: "Cargando…", none: "—", yes: "Sí", no: "No", cancel: "Cancelar", close: "Cerrar", all: "Todos",
      confirmTitle: "Confirme, por favor", refresh: "Actualizar",
      collection: "Colección", noCollections: "Todavía no gestiona ninguna colección.",
      upload: "Subir", dropzone: "Suelte archivos aquí o pulse Intro para elegirlos",
      chooseFiles: "Elegir archivos", uploadAcl: "Acceso de las nuevas subidas",
      uploadAclHint: (acl) => acl ? `Vacío: el de la colección (${acl}).` : "Vacío: la colección no tiene ACL por defecto; indique una.",
      uploads: "Subidas", principal: "Principal", add: "Añadir", remove: (p) => `Quitar ${p}`,
      aclEmpty: "Escriba primero un principal.",
      aclInvalid: (p) => `«${p}» no es un principal válido: use everyone, user:<id>, group:<nombre> o dept:<nombre>, sin espacios.`,
      aclDuplicate: (p) => `${p} ya está en la lista.`,
      aclNeedsOne: "Una ACL necesita al menos un principal.",
      tooLarge: (mb) => `supera el límite de ${mb} MB`,
      badExtension: (ext, list) => ext ? `tipo de archivo .${ext} no admitido; se admiten: ${list}` : `el nombre del archivo no tiene extensión; se admiten: ${list}`,
      states: { uploading: "subiendo", queued: "en cola", processing: "procesando", indexed: "indexado", failed: "error",
        duplicate: "ya subido", cancelled: "cancelado", refused: "rechazado" },
      search: "Buscar título o ruta", format: "Formato", status: "Estado", anyFormat: "Todos los formatos", anyStatus: "Todos los estados",
      principalFilter: "Principal en la ACL", principalFilterHint: "p. ej. group:hr, y después Intro",
      pending: "Subidas aún sin indexar", noPending: "Nada pendiente.",
      docTable: "Documentos de la colección",
      title: "Título", path: "Ruta", size: "Tamaño", chunks: "Fragmentos", acl: "ACL",
      sortBy: (c) => `Ordenar por ${c}`,
      loadMore: "Cargar más", noDocuments: "Ningún documento coincide.",
      detail: "Documento", metadata: "Metadatos", noMetadata: "Sin metadatos.",
      editMetadata: "Metadatos (un objeto JSON)", saveMetadata: "Guardar metadatos", metadataSaved: "Metadatos guardados.",
      metadataNotJson: (m) => `No es JSON válido: ${m}`, metadataNotObject: "Los metadatos deben ser un objeto JSON, como {\"owner\": \"hr\"}.",
      metadataTooLarge: "Los metadatos deben ocupar como mucho 16 KiB.", lang: "Idioma", id: "Id",
      aclEditor: "Quién puede leerlo", saveAcl: "Guardar acceso", aclSaved: "Acceso guardado.",
      replace: "Reemplazar el archivo (mismo tipo)", replaced: (s) => `Reemplazo: ${s}.`,
      viewContent: "Ver contenido", deleteDoc: "Eliminar documento",
      confirmDelete: (t) => `¿Eliminar «${t}»? Se quita de ambos índices y no se puede recuperar.`,
      deleted: (t) => `«${t}» eliminado.`,
      feedback: "Valoraciones", time: "Hora", user: "Usuario", vote: "Voto", comment: "Comentario", question: "Pregunta",
      sources: "Fuentes citadas", up: "👍 a favor", down: "👎 en contra", noFeedback: "Todavía no hay valoraciones.",
      gaps: "Lagunas de conocimiento", gapStatus: "Estado de la laguna", open: "abierta", answered: "respondida", dismissed: "descartada",
      examples: "Preguntas", count: "Veces", departments: "Departamentos", reasons: "Motivos", lastSeen: "Última vez",
      actions: "Acciones", markAnswered: "Respondida", dismiss: "Descartar", noGaps: "No hay lagunas de conocimiento.",
      reviews: "Revisiones", reviewStatus: "Estado de la revisión", pendingS: "pendiente", approved: "aprobada", edited: "editada", rejected: "rechazada",
      asker: "Solicitante", rule: "Regla", created: "Creada", reviewAction: "Revisar", noReviews: "No hay revisiones.",
      reviewDetail: "Revisión", answer: "Respuesta", citations: "Citas", noCitations: "Sin citas.",
      editedAnswer: "Respuesta que se publicará (edítela y pulse «Aprobar editada»)", rejectReason: "Motivo del rechazo (lo verá quien preguntó)",
      approve: "Aprobar", approveEdited: "Aprobar editada", reject: "Rechazar",
      defaultRejectReason: "Rechazada por un revisor.", decided: (s) => `Revisión ${s}.`,
      verified: "Respuestas verificadas", owner: "Responsable", expires: "Caduca", source: "Origen", department: "Departamento",
      deleteVerified: "Eliminar", confirmDeleteVerified: "¿Eliminar esta respuesta verificada? Las preguntas se responderán de nuevo desde los documentos.",
      noVerified: "No hay respuestas verificadas.",
      from: "Desde", to: "Hasta", apply: "Aplicar",
      chartRequests: "Solicitudes por día", chartKinds: "Respuestas por día y tipo", chartCost: "Coste por día", chartLatency: "Latencia del chat por día (ms)",
      showTable: "Ver como tabla", date: "Fecha", total: "Total", cost: "Coste", budgetPerDay: "Presupuesto por día",
      byDepartment: "Por departamento", byCategory: "Por categoría", topQuestions: "Preguntas más frecuentes",
      requests: "Solicitudes", activeUsers: "Usuarios activos", abstention: "Tasa de abstención", thumbsUp: "👍", thumbsDown: "👎",
      thumbsUpLabel: "Votos a favor", thumbsDownLabel: "Votos en contra",
      category: "Categoría", lastAsked: "Última vez", csv: (n) => `Exportar ${n} a CSV`, csvDay: "días", csvDepartment: "departamentos", csvCategory: "categorías",
      noData: "No hay datos en este periodo.", badRange: "Elija una fecha de inicio anterior a la de fin.",
      keys: "Claves de API", newKey: "Nueva clave", name: "Nombre", role: "Rol", groups: "Grupos (separados por comas)",
      keyDepartments: "Departamento", expiresDays: "Caduca en días (opcional)", createKey: "Crear clave",
      roles: { employee: "empleado", agent: "agente", knowledge_manager: "gestor de conocimiento", admin: "administrador" },
      keySecret: "La nueva clave", copy: "Copiar", copied: "Copiada.",
      keyOnce: "Cópiela ahora: no se volverá a mostrar.",
      oneDepartment: "Una clave pertenece como mucho a un departamento.",
      lastUsed: "Último uso", state: "Estado", active: "activa", revokedAt: (d) => `revocada ${d}`, revoke: "Revocar",
      confirmRevoke: (n) => `¿Revocar la clave «${n}»? Lo que la use dejará de funcionar de inmediato.`,
      prefix: "Prefijo", noKeys: "No hay claves.",
      budgets: "Presupuestos", scope: "Ámbito", value: "Valor", period: "Periodo", unit: "Unidad", soft: "Límite suave", hard: "Límite estricto",
      spent: "Gastado", onHard: "Al llegar al límite estricto", deleteBudget: "Eliminar", newBudget: "Fijar un presupuesto", saveBudget: "Guardar presupuesto",
      confirmDeleteBudget: (id) => `¿Eliminar el presupuesto ${id}?`, noBudgets: "No hay presupuestos.",
      settings: "Configuración (solo lectura; se cambia en lore.toml)", sso: "Inicio de sesión único", noSso: "El inicio de sesión único no está configurado (solo claves de API)",
      policy: "Política de uso", rates: "Límites de frecuencia", providers: "Proveedores de modelos", perMinute: "Por minuto", burst: "Ráfaga",
      notice: "Aviso", rules: "Reglas", reviewRules: "Reglas de revisión", verifiedCfg: "Respuestas verificadas",
      currency: "Moneda", maxFile: "Subida máxima",
      audit: "Registro de auditoría", action: "Acción", actor: "Actor", apply2: "Aplicar", seq: "Nº", target: "Objeto", outcome: "Resultado",
      detailJson: "Detalle", noEvents: "Ningún evento coincide.",
      chainOk: (n) => `Cadena de hashes verificada: ${n} eventos`, chainBroken: (n) => `Cadena rota en el evento ${n}`,
    },
  };

  const lang = () => (window.loreApp && window.loreApp.lang === "es" ? "es" : "en");
  function t(key, ...args) {
    const value = STRINGS[lang()][key] ?? STRINGS.en[key] ?? key;
    return typeof value === "function" ? value(...args) : value;
  }
  const stateLabel = (s) => (STRINGS[lang()].states[s] || s);
  const roleLabel = (r) => (STRINGS[lang()].roles[r] || r);

  /* ---------------------------------------------------------------- helpers */

  /** `el("a", {href, class, "data-x": 1, onclick: fn}, "text", child, [more])`: text only as text nodes. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on") && typeof value === "function") node.addEventListener(name.slice(2), value);
      else if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (["value", "checked", "hidden", "disabled", "selected", "multiple", "required"].includes(name)) node[name] = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    append(node, children);
    return node;
  }
  function append(node, ...children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  const $ = (id) => document.getElementById(id);

  async function authHeader() {
    return `Bearer ${await window.loreApp.token()}`;
  }

  /** Fetch with the user's token; JSON in and out; an API error is thrown as Error(message). */
  async function api(path, options = {}) {
    const headers = { Authorization: await authHeader(), ...(options.headers || {}) };
    let body = options.body;
    if (body !== undefined && !(body instanceof FormData) && typeof body !== "string") {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(body);
    }
    const response = await fetch(path, { method: options.method || "GET", headers, body });
    if (!response.ok) throw await apiError(response.status, () => response.text());
    if (options.raw) return response;
    if (response.status === 204) return null;
    const type = response.headers.get("content-type") || "";
    return type.includes("json") ? response.json() : response.text();
  }

  async function apiError(status, readText) {
    let message = `HTTP ${status}`;
    try {
      const text = await readText();
      try {
        const body = JSON.parse(text);
        message = (body && body.error && body.error.message) || (body && body.message) || message;
      } catch (_) {
        if (text && text.length < 300) message = text;
      }
    } catch (_) { /* no body */ }
    const error = new Error(message);
    error.status = status;
    return error;
  }

  const query = (params) => {
    const search = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") search.set(k, v);
    const text = search.toString();
    return text ? `?${text}` : "";
  };

  const numberFormat = () => new Intl.NumberFormat(lang());
  const fmtNumber = (n) => (n === null || n === undefined || Number.isNaN(n) ? t("none") : numberFormat().format(n));
  const fmtPercent = (n) => (n === null || n === undefined ? t("none")
    : new Intl.NumberFormat(lang(), { style: "percent", maximumFractionDigits: 1 }).format(n));
  let currency = "USD";
  function fmtMoney(n, code = currency) {
    if (n === null || n === undefined) return t("none");
    try {
      return new Intl.NumberFormat(lang(), { style: "currency", currency: code, maximumFractionDigits: 4 }).format(n);
    } catch (_) {
      return `${new Intl.NumberFormat(lang(), { maximumFractionDigits: 4 }).format(n)} ${code}`;
    }
  }
  function fmtBytes(n) {
    if (n === null || n === undefined) return t("none");
    const units = ["B", "KB", "MB", "GB"];
    let value = n, unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
    return `${new Intl.NumberFormat(lang(), { maximumFractionDigits: unit ? 1 : 0 }).format(value)} ${units[unit]}`;
  }
  function fmtTime(value) {
    if (value === null || value === undefined || value === "") return t("none");
    const date = typeof value === "number" ? new Date(value) : new Date(value);
    if (Number.isNaN(date.getTime())) return String(value);
    return new Intl.DateTimeFormat(lang(), { dateStyle: "medium", timeStyle: "short" }).format(date);
  }
  const timeEl = (value) => {
    if (value === null || value === undefined || value === "") return t("none");
    const date = new Date(value);
    return el("time", { datetime: Number.isNaN(date.getTime()) ? null : date.toISOString() }, fmtTime(value));
  };
  const json = (value) => JSON.stringify(value);

  // Principals exactly as lore_core::acl::Principal parses them: `everyone`, or a prefix and a
  // non-empty rest without (Unicode) whitespace. Case-sensitive; nothing is trimmed.
  const WHITESPACE = /[\u0009-\u000D\u0020\u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]/u;
  function validPrincipal(raw) {
    if (raw === "everyone") return true;
    return ["user:", "group:", "dept:"].some((prefix) => raw.startsWith(prefix) && raw.length > prefix.length
      && !WHITESPACE.test(raw.slice(prefix.length)));
  }

  // Dates: analytics days are UTC days, `YYYY-MM-DD`.
  const isoDay = (date) => date.toISOString().slice(0, 10);
  const dayMs = 86400000;
  const addDays = (day, n) => isoDay(new Date(Date.parse(`${day}T00:00:00Z`) + n * dayMs));
  function daysBetween(from, to) {
    const days = [];
    for (let d = from; d <= to && days.length < 1000; d = addDays(d, 1)) days.push(d);
    return days;
  }

  function table(id, caption, columns, options = {}) {
    const head = el("tr", null, columns.map((c) => el("th", { scope: "col", class: c.cls }, c.label)));
    const tbody = el("tbody");
    const tableEl = el("table", { id, class: "data" }, caption ? el("caption", { class: options.captionVisible ? "" : "sr-only" }, caption) : null,
      el("thead", null, head), tbody);
    return { wrap: el("div", { class: "table-wrap" }, tableEl), table: tableEl, tbody };
  }
  const emptyRow = (tbody, cols, text) => tbody.append(el("tr", { class: "empty" }, el("td", { colspan: cols }, text)));

  function download(blob, filename) {
    const url = URL.createObjectURL(blob);
    const a = el("a", { href: url, download: filename, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  /* One shared confirmation dialog for every destructive action. */
  let confirmResolve = null;
  function buildConfirm() {
    const old = $("confirm");
    if (old) old.remove();
    const dialog = el("dialog", { id: "confirm", "aria-labelledby": "confirm-heading", "aria-describedby": "confirm-text" },
      el("h2", { id: "confirm-heading" }, t("confirmTitle")),
      el("p", { id: "confirm-text" }),
      el("div", { class: "actions" },
        el("button", { type: "button", id: "confirm-no", onclick: () => dialog.close("no") }, t("no")),
        el("button", { type: "button", id: "confirm-yes", class: "danger", onclick: () => dialog.close("yes") }, t("yes"))));
    dialog.addEventListener("close", () => {
      const resolve = confirmResolve;
      confirmResolve = null;
      if (resolve) resolve(dialog.returnValue === "yes");
    });
    document.body.append(dialog);
  }
  function confirmAction(text) {
    const dialog = $("confirm");
    if (confirmResolve) { confirmResolve(false); confirmResolve = null; }
    $("confirm-text").textContent = text;
    dialog.returnValue = "";
    return new Promise((resolve) => {
      confirmResolve = resolve;
      dialog.showModal();
      $("confirm-no").focus();
    });
  }

  /** A chip editor of principals. ids: root, input, add button, error message. */
  function chipEditor({ id, inputId, addId, errorId, label, hint, onchange }) {
    let principals = [];
    const chips = el("div", { class: "chips", role: "list", "aria-label": label });
    const error = el("p", { id: errorId, class: "field-error", role: "alert" });
    const input = el("input", { id: inputId, type: "text", autocomplete: "off", spellcheck: "false", placeholder: "group:hr", "aria-describedby": `${errorId}${hint ? ` ${inputId}-hint` : ""}` });
    const addButton = el("button", { type: "button", id: addId }, t("add"));
    function render() {
      chips.replaceChildren(...principals.map((p) => el("span", { class: "chip", "data-principal": p, role: "listitem" }, p, " ",
        el("button", { type: "button", "data-action": "remove-principal", "aria-label": t("remove", p),
          onclick: () => { principals = principals.filter((x) => x !== p); render(); if (onchange) onchange(); input.focus(); } }, "×"))));
    }
    function add() {
      const raw = input.value;
      error.textContent = "";
      if (raw === "") { error.textContent = t("aclEmpty"); return; }
      if (!validPrincipal(raw)) { error.textContent = t("aclInvalid", raw); return; }
      if (principals.includes(raw)) { error.textContent = t("aclDuplicate", raw); return; }
      principals.push(raw);
      input.value = "";
      render();
      if (onchange) onchange();
    }
    addButton.addEventListener("click", add);
    input.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); add(); } });
    const root = el("div", { id, class: "chip-editor" },
      el("label", { for: inputId }, label), hint ? el("p", { id: `${inputId}-hint`, class: "hint" }, hint) : null,
      chips, el("div", { class: "row" }, input, addButton), error);
    return {
      root, error,
      get: () => principals.slice(),
      set: (list) => { principals = (list || []).slice(); error.textContent = ""; render(); },
    };
  }

  /* ---------------------------------------------------------------- state and shell */

  const LC = window.loreConsole = window.loreConsole || {};
  LC.charts = LC.charts || {};
  let readyResolve;
  LC.ready = new Promise((resolve) => { readyResolve = resolve; });
  LC.t = t;

  let me = null;
  let isAdmin = false;
  let enabled = false;
  let currentScreen = null;
  const screens = {};
  const SCREENS = ["documents", "quality", "analytics", "admin"];

  function screenSection(name) {
    const section = el("section", { id: `screen-${name}`, class: "screen", hidden: true, "data-loaded": "false", "aria-labelledby": `screen-${name}-heading` },
      el("h2", { id: `screen-${name}-heading`, tabindex: "-1" }, t(name)));
    const alert = el("p", { class: "screen-error", role: "alert", id: `${name}-error` });
    section.append(alert);
    return { section, alert };
  }
  function showError(name, error) {
    const s = screens[name];
    if (s) s.alert.textContent = error ? (error.message || String(error)) : "";
  }
  /** Runs a load of a screen: `data-loaded="false"` until every load under way has finished. */
  async function loading(name, work) {
    const s = screens[name];
    if (!s) return;
    s.busy = (s.busy || 0) + 1;
    s.section.dataset.loaded = "false";
    s.section.setAttribute("aria-busy", "true");
    try {
      await work();
    } catch (error) {
      showError(name, error);
    } finally {
      s.busy -= 1;
      if (!s.busy) {
        s.section.dataset.loaded = "true";
        s.section.removeAttribute("aria-busy");
      }
    }
  }

  function buildShell() {
    const oldNav = $("console-nav");
    if (oldNav) oldNav.remove();
    for (const name of SCREENS) { const old = $(`screen-${name}`); if (old) old.remove(); }
    const links = [["chat", "#/"], ["documents", "#/console/documents"], ["quality", "#/console/quality"], ["analytics", "#/console/analytics"]];
    if (isAdmin) links.push(["admin", "#/console/admin"]);
    const nav = el("nav", { id: "console-nav", "aria-label": t("navLabel") },
      el("ul", null, links.map(([name, href]) => el("li", null, el("a", { href, "data-screen": name }, t(name))))));
    document.querySelector("header.top").after(nav);
    const main = document.querySelector("main");
    for (const name of SCREENS) {
      if (name === "admin" && !isAdmin) continue;
      const built = BUILDERS[name]();
      screens[name] = built;
      main.append(built.section);
    }
    buildConfirm();
  }

  function markNav(screen) {
    for (const a of document.querySelectorAll("#console-nav a[data-screen]")) {
      if (a.dataset.screen === (screen || "chat")) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
  }

  /** Called by app.js on every route: shows a console screen and returns true, or hides them. */
  function route(hash) {
    const match = /^#\/console\/(documents|quality|analytics|admin)(?:[/?].*)?$/.exec(hash || "");
    let screen = match ? match[1] : null;
    if (screen === "admin" && !isAdmin) screen = null;
    const leaving = currentScreen && currentScreen !== screen ? currentScreen : null;
    if (leaving && screens[leaving] && screens[leaving].leave) screens[leaving].leave();
    currentScreen = screen;
    document.body.classList.toggle("console-screen", Boolean(screen));
    markNav(screen || (/^#\/documents\//.test(hash || "") ? null : "chat"));
    for (const [name, s] of Object.entries(screens)) s.section.hidden = name !== screen;
    if (!screen) return false;
    const s = screens[screen];
    if (s.load) s.load();
    if (leaving !== null || !s.shown) s.section.querySelector("h2").focus({ preventScroll: true });
    s.shown = true;
    return true;
  }

  function init(who, routeNow) {
    if (me) return;
    me = who;
    enabled = me && (me.role === "knowledge_manager" || me.role === "admin");
    if (!enabled) { readyResolve(false); return; }
    isAdmin = me.role === "admin";
    LC.enabled = true;
    document.body.classList.add("has-console");
    buildShell();
    window.loreApp.consoleRoute = route;
    document.addEventListener("lore:lang", () => {
      for (const s of Object.values(screens)) if (s.leave) s.leave();
      for (const key of Object.keys(screens)) delete screens[key];
      currentScreen = null;
      buildShell();
      // app.js routes again right after this event, which shows and loads the screen.
    });
    window.addEventListener("resize", resizeCharts);
    readyResolve(true);
    // Signed in before this script ran: route again, now with the console.
    if (routeNow) window.loreApp.route();
  }

  /* ---------------------------------------------------------------- documents */

  function buildDocuments() {
    const { section, alert } = screenSection("documents");
    const config = () => (window.loreApp && window.loreApp.config) || {};
    // The chosen collection outlives a rebuild (a language switch) and a reload of the tab.
    const st = { collections: [], collection: sessionStorage.getItem("lore:collection"), docs: [], cursor: null, sort: null, detail: null, seq: 0 };

    const collectionSelect = el("select", { id: "doc-collection" });
    const defaultAclHint = el("p", { id: "upload-acl-input-hint", class: "hint" });
    const uploadAcl = chipEditor({ id: "upload-acl", inputId: "upload-acl-input", addId: "upload-acl-add", errorId: "upload-acl-error", label: t("uploadAcl") });
    uploadAcl.root.querySelector("label").after(defaultAclHint);
    uploadAcl.root.querySelector("input").setAttribute("aria-describedby", "upload-acl-error upload-acl-input-hint");
    const fileInput = el("input", { type: "file", id: "file-input", multiple: true, class: "visually-hidden" });
    const dropzone = el("div", { id: "dropzone", tabindex: "0", role: "button", "aria-describedby": "dropzone-text" },
      el("p", { id: "dropzone-text" }, t("dropzone")));
    const uploads = el("ul", { id: "uploads", class: "uploads", "aria-label": t("uploads"), "aria-live": "polite" });

    const search = el("input", { id: "doc-search", type: "search", autocomplete: "off" });
    const formatSelect = el("select", { id: "doc-format" }, el("option", { value: "" }, t("anyFormat")));
    for (const f of config().formats || ["markdown", "text", "html", "pdf", "docx"]) formatSelect.append(el("option", { value: f }, f));
    const statusSelect = el("select", { id: "doc-status" }, el("option", { value: "" }, t("anyStatus")),
      ["indexed", "queued", "processing", "failed"].map((s) => el("option", { value: s }, stateLabel(s))));
    const principalInput = el("input", { id: "doc-principal", type: "text", autocomplete: "off", spellcheck: "false", placeholder: "group:hr", "aria-describedby": "doc-principal-hint" });

    const pending = el("ul", { id: "doc-pending", class: "pending" });
    const sortable = { title: t("title"), path: t("path"), format: t("format"), size: t("size"), status: t("status") };
    const cols = [["title", t("title")], ["path", t("path")], ["format", t("format")], ["size", t("size")], ["chunks", t("chunks")], ["acl", t("acl")], ["status", t("status")]];
    const headRow = el("tr", null, cols.map(([key, label]) => sortable[key]
      ? el("th", { scope: "col", "data-col": key }, el("button", { type: "button", class: "sort", "data-sort": key, "aria-label": t("sortBy", label) }, label, el("span", { class: "sort-mark", "aria-hidden": "true" })))
      : el("th", { scope: "col", "data-col": key }, label)));
    const tbody = el("tbody");
    const docTable = el("table", { id: "doc-table", class: "data" }, el("caption", { class: "sr-only" }, t("docTable")), el("thead", null, headRow), tbody);
    const more = el("button", { type: "button", id: "doc-more", hidden: true }, t("loadMore"));

    // Detail panel.
    const detailTitle = el("h3", { id: "doc-detail-title", tabindex: "-1" });
    const detailPath = el("p", { class: "muted", id: "doc-detail-path" });
    const detailMeta = el("dl", { id: "doc-detail-metadata", class: "meta" });
    const aclEditor = chipEditor({ id: "acl-editor", inputId: "acl-input", addId: "acl-add", errorId: "acl-error", label: t("aclEditor") });
    const aclSave = el("button", { type: "button", id: "acl-save", class: "primary" }, t("saveAcl"));
    const metadataText = el("textarea", { id: "doc-metadata", rows: "4", spellcheck: "false", "aria-describedby": "metadata-error" });
    const metadataError = el("p", { id: "metadata-error", class: "field-error", role: "alert" });
    const metadataSave = el("button", { type: "button", id: "metadata-save" }, t("saveMetadata"));
    const detailStatus = el("p", { id: "doc-detail-status", role: "status" });
    const replaceInput = el("input", { type: "file", id: "replace-input" });
    const viewLink = el("a", { id: "doc-view", href: "#/" }, t("viewContent"));
    const deleteButton = el("button", { type: "button", id: "doc-delete", class: "danger" }, t("deleteDoc"));
    const detail = el("div", { id: "doc-detail", class: "panel", hidden: true, role: "region", "aria-labelledby": "doc-detail-title" },
      el("div", { class: "panel-head" }, detailTitle, el("button", { type: "button", class: "close", "aria-label": t("close"), onclick: () => closeDetail(true) }, "×")),
      detailPath, el("h4", null, t("metadata")), detailMeta, aclEditor.root, el("div", { class: "row" }, aclSave),
      el("div", { class: "field" }, el("label", { for: "doc-metadata" }, t("editMetadata")), metadataText, metadataError),
      el("div", { class: "row" }, metadataSave), detailStatus,
      el("div", { class: "field" }, el("label", { for: "replace-input" }, t("replace")), replaceInput),
      el("div", { class: "row" }, viewLink, deleteButton));

    append(section,
      el("div", { class: "toolbar" }, el("label", { for: "doc-collection" }, t("collection")), collectionSelect),
      el("div", { class: "card upload" }, el("h3", null, t("upload")),
        dropzone,
        el("div", { class: "row" }, fileInput, el("label", { for: "file-input", class: "button" }, t("chooseFiles"))),
        uploadAcl.root, uploads),
      el("div", { class: "filters" },
        el("div", { class: "field" }, el("label", { for: "doc-search" }, t("search")), search),
        el("div", { class: "field" }, el("label", { for: "doc-format" }, t("format")), formatSelect),
        el("div", { class: "field" }, el("label", { for: "doc-status" }, t("status")), statusSelect),
        el("div", { class: "field" }, el("label", { for: "doc-principal" }, t("principalFilter")), principalInput,
          el("span", { id: "doc-principal-hint", class: "hint" }, t("principalFilterHint")))),
      el("h3", null, t("pending")), pending,
      el("div", { class: "docs-layout" },
        el("div", { class: "docs-main" }, el("div", { class: "table-wrap" }, docTable), more),
        detail));

    const currentCollection = () => st.collections.find((c) => c.id === st.collection) || null;
    function updateDefaultHint() {
      const c = currentCollection();
      defaultAclHint.textContent = t("uploadAclHint", c && c.default_acl && c.default_acl.length ? c.default_acl.join(", ") : "");
    }

    function listUrl(cursor) {
      return `/v1/collections/${encodeURIComponent(st.collection)}/documents${query({
        limit: 50, cursor, q: search.value.trim(), format: formatSelect.value, principal: principalInput.value.trim(), status: statusSelect.value,
      })}`;
    }

    async function loadDocuments() {
      if (!st.collection) { tbody.replaceChildren(); pending.replaceChildren(); return; }
      const seq = ++st.seq;
      const page = await api(listUrl(null));
      if (seq !== st.seq) return;
      st.docs = page.documents || [];
      st.cursor = page.next_cursor || null;
      renderPending(page.pending || []);
      renderRows();
    }

    async function reload() {
      await loading("documents", async () => { showError("documents", null); await loadDocuments(); });
    }

    function renderPending(jobs) {
      pending.replaceChildren();
      if (!jobs.length) { pending.append(el("li", { class: "muted" }, t("noPending"))); return; }
      for (const job of jobs) {
        pending.append(el("li", { "data-id": job.id, "data-state": job.state },
          el("span", { class: "name" }, job.filename), " ",
          el("span", { class: `badge state-${job.state}` }, stateLabel(job.state)),
          job.error ? el("span", { class: "reason" }, job.error) : null));
      }
    }

    function sortDocs() {
      if (!st.sort) return;
      const { key, dir } = st.sort;
      const value = (d) => key === "size" ? d.size_bytes : String(d[key] ?? "");
      st.docs.sort((a, b) => {
        const x = value(a), y = value(b);
        const c = typeof x === "number" ? x - y : x.localeCompare(y, lang(), { sensitivity: "base", numeric: true });
        return dir === "asc" ? c : -c;
      });
    }

    function renderRows() {
      sortDocs();
      for (const th of headRow.querySelectorAll("th")) {
        const key = th.dataset.col;
        if (!sortable[key]) continue;
        if (st.sort && st.sort.key === key) th.setAttribute("aria-sort", st.sort.dir === "asc" ? "ascending" : "descending");
        else th.removeAttribute("aria-sort");
        th.querySelector(".sort-mark").textContent = st.sort && st.sort.key === key ? (st.sort.dir === "asc" ? " ▲" : " ▼") : "";
      }
      tbody.replaceChildren();
      if (!st.docs.length) emptyRow(tbody, cols.length, t("noDocuments"));
      for (const doc of st.docs) tbody.append(row(doc));
      more.hidden = !st.cursor;
    }

    function row(doc) {
      return el("tr", { "data-id": doc.id, "data-path": doc.path, "data-status": doc.status, class: st.detail && st.detail.id === doc.id ? "selected" : null },
        el("td", { class: "title" }, el("button", { type: "button", class: "link", "data-action": "open", onclick: () => openDetail(doc.id) }, doc.title || doc.path)),
        el("td", { class: "path" }, doc.path),
        el("td", null, doc.format),
        el("td", { class: "num", "data-bytes": doc.size_bytes }, fmtBytes(doc.size_bytes)),
        el("td", { class: "num" }, fmtNumber(doc.chunk_count)),
        el("td", { class: "acl" }, (doc.acl || []).map((p) => el("span", { class: "tag" }, p))),
        el("td", null, el("span", { class: `badge state-${doc.status}` }, stateLabel(doc.status))));
    }

    function replaceRow(doc) {
      const index = st.docs.findIndex((d) => d.id === doc.id);
      if (index >= 0) st.docs[index] = doc;
      const old = tbody.querySelector(`tr[data-id="${CSS.escape(doc.id)}"]`);
      if (old) old.replaceWith(row(doc));
    }

    function openDetail(id) {
      const doc = st.docs.find((d) => d.id === id);
      if (!doc) return;
      st.detail = doc;
      for (const tr of tbody.querySelectorAll("tr.selected")) tr.classList.remove("selected");
      const tr = tbody.querySelector(`tr[data-id="${CSS.escape(id)}"]`);
      if (tr) tr.classList.add("selected");
      detailTitle.textContent = doc.title || doc.path;
      detailPath.textContent = `${doc.collection}/${doc.path}`;
      detailMeta.replaceChildren(
        el("dt", null, t("id")), el("dd", null, doc.id),
        el("dt", null, t("format")), el("dd", null, doc.format),
        el("dt", null, t("lang")), el("dd", null, doc.lang),
        el("dt", null, t("size")), el("dd", null, fmtBytes(doc.size_bytes)),
        el("dt", null, t("status")), el("dd", null, stateLabel(doc.status)));
      const entries = Object.entries(doc.metadata || {});
      for (const [k, v] of entries) detailMeta.append(el("dt", null, k), el("dd", null, typeof v === "string" ? v : json(v)));
      if (!entries.length) detailMeta.append(el("dt", null, t("metadata")), el("dd", { class: "muted" }, t("noMetadata")));
      aclEditor.set(doc.acl);
      metadataText.value = JSON.stringify(doc.metadata || {}, null, 2);
      metadataError.textContent = "";
      detailStatus.textContent = "";
      replaceInput.value = "";
      viewLink.setAttribute("href", `#/documents/${encodeURIComponent(doc.id)}`);
      detail.hidden = false;
      detailTitle.focus();
    }

    function closeDetail(restoreFocus) {
      const id = st.detail && st.detail.id;
      st.detail = null;
      detail.hidden = true;
      for (const tr of tbody.querySelectorAll("tr.selected")) tr.classList.remove("selected");
      if (restoreFocus && id) {
        const button = tbody.querySelector(`tr[data-id="${CSS.escape(id)}"] button[data-action=open]`);
        if (button) button.focus();
      }
    }

    aclSave.addEventListener("click", async () => {
      const doc = st.detail;
      if (!doc) return;
      const acl = aclEditor.get();
      aclEditor.error.textContent = "";
      detailStatus.textContent = "";
      if (!acl.length) { aclEditor.error.textContent = t("aclNeedsOne"); return; }
      aclSave.disabled = true;
      try {
        const updated = await api(`/v1/documents/${encodeURIComponent(doc.id)}`, { method: "PATCH", body: { acl } });
        st.detail = updated;
        replaceRow(updated);
        aclEditor.set(updated.acl);
        detailStatus.textContent = t("aclSaved");
      } catch (error) {
        aclEditor.error.textContent = error.message;
      } finally {
        aclSave.disabled = false;
      }
    });

    // Metadata: a JSON object, checked here as the API checks it (an object, at most 16 KiB).
    metadataSave.addEventListener("click", async () => {
      const doc = st.detail;
      if (!doc) return;
      metadataError.textContent = "";
      detailStatus.textContent = "";
      let metadata;
      try { metadata = JSON.parse(metadataText.value.trim() || "{}"); } catch (error) { metadataError.textContent = t("metadataNotJson", error.message); return; }
      if (metadata === null || typeof metadata !== "object" || Array.isArray(metadata)) { metadataError.textContent = t("metadataNotObject"); return; }
      if (new TextEncoder().encode(JSON.stringify(metadata)).length > 16 * 1024) { metadataError.textContent = t("metadataTooLarge"); return; }
      metadataSave.disabled = true;
      try {
        const updated = await api(`/v1/documents/${encodeURIComponent(doc.id)}`, { method: "PATCH", body: { metadata } });
        replaceRow(updated);
        openDetail(updated.id);
        detailStatus.textContent = t("metadataSaved");
      } catch (error) {
        metadataError.textContent = error.message;
      } finally {
        metadataSave.disabled = false;
      }
    });

    replaceInput.addEventListener("change", async () => {
      const doc = st.detail;
      const file = replaceInput.files && replaceInput.files[0];
      if (!doc || !file) return;
      detailStatus.textContent = stateLabel("uploading");
      const form = new FormData();
      form.append("file", file, file.name);
      try {
        const accepted = await api(`/v1/documents/${encodeURIComponent(doc.id)}`, { method: "PUT", body: form });
        detailStatus.textContent = t("replaced", stateLabel(accepted.job.state));
        const job = await pollJob(accepted.job, (j) => { if (st.detail && st.detail.id === doc.id) detailStatus.textContent = t("replaced", stateLabel(j.state)); });
        if (st.detail && st.detail.id === doc.id) {
          detailStatus.textContent = t("replaced", stateLabel(job.state)) + (job.error ? ` ${job.error}` : "");
        }
        await reload();
        if (st.docs.some((d) => d.id === doc.id) && st.detail && st.detail.id === doc.id) st.detail = st.docs.find((d) => d.id === doc.id);
      } catch (error) {
        detailStatus.textContent = "";
        showError("documents", error);
      } finally {
        replaceInput.value = "";
      }
    });

    deleteButton.addEventListener("click", async () => {
      const doc = st.detail;
      if (!doc) return;
      if (!(await confirmAction(t("confirmDelete", doc.title || doc.path)))) { deleteButton.focus(); return; }
      try {
        await api(`/v1/documents/${encodeURIComponent(doc.id)}`, { method: "DELETE" });
        st.docs = st.docs.filter((d) => d.id !== doc.id);
        const tr = tbody.querySelector(`tr[data-id="${CSS.escape(doc.id)}"]`);
        if (tr) tr.remove();
        if (!st.docs.length) emptyRow(tbody, cols.length, t("noDocuments"));
        closeDetail(false);
        showError("documents", null);
        alert.textContent = "";
        section.querySelector("h2").focus();
      } catch (error) {
        showError("documents", error);
      }
    });

    // Uploads.
    async function pollJob(job, onUpdate) {
      let current = job;
      while (!["indexed", "failed", "cancelled"].includes(current.state)) {
        await new Promise((resolve) => setTimeout(resolve, 500));
        current = await api(`/v1/jobs/${encodeURIComponent(current.id)}`);
        onUpdate(current);
      }
      return current;
    }

    const extensionsOf = () => (config().extensions || ["md", "markdown", "mdx", "txt", "text", "html", "htm", "pdf", "docx"]).map((e) => String(e).toLowerCase());
    function mb(bytes) {
      const value = bytes / (1024 * 1024);
      const options = value >= 1 ? { maximumFractionDigits: 1 } : { maximumSignificantDigits: 2 };
      return new Intl.NumberFormat(lang(), options).format(value);
    }

    function uploadItem(file) {
      const progress = el("progress", { max: "100", value: "0", "aria-label": file.name });
      const stateEl = el("span", { class: "state" });
      const reason = el("span", { class: "reason" });
      const li = el("li", { "data-file": file.name, "data-state": "uploading" }, el("span", { class: "name" }, file.name), progress, stateEl, reason);
      const set = (state, why) => {
        li.dataset.state = state;
        stateEl.textContent = stateLabel(state);
        reason.textContent = why || "";
        if (["indexed", "duplicate"].includes(state)) { progress.max = 100; progress.value = 100; }
        if (["queued", "processing"].includes(state)) progress.removeAttribute("value"); // indeterminate while indexing
        if (["failed", "cancelled", "refused"].includes(state) && !progress.hasAttribute("value")) progress.value = 0;
      };
      set("uploading");
      return { li, progress, set };
    }

    function uploadFiles(fileList) {
      const files = Array.from(fileList || []);
      if (!files.length) return;
      showError("documents", null);
      const collection = st.collection;
      if (!collection) return;
      const acl = uploadAcl.get();
      const max = Number(config().max_file_bytes) || 0;
      const extensions = extensionsOf();
      for (const file of files) {
        const item = uploadItem(file);
        uploads.prepend(item.li);
        const dot = file.name.lastIndexOf(".");
        const ext = dot > 0 ? file.name.slice(dot + 1).toLowerCase() : "";
        if (!ext || !extensions.includes(ext)) { item.set("refused", t("badExtension", ext, extensions.join(", "))); continue; }
        if (max && file.size > max) { item.set("refused", t("tooLarge", mb(max))); continue; }
        sendFile(file, collection, acl, item);
      }
    }

    async function sendFile(file, collection, acl, item) {
      const form = new FormData();
      form.append("file", file, file.name);
      if (acl.length) form.append("acl", JSON.stringify(acl));
      let token;
      try { token = await authHeader(); } catch (error) { item.set("failed", error.message); return; }
      const xhr = new XMLHttpRequest();
      xhr.open("POST", `/v1/collections/${encodeURIComponent(collection)}/documents`);
      xhr.setRequestHeader("Authorization", token);
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable) { item.progress.max = e.total; item.progress.value = e.loaded; }
      };
      xhr.onerror = () => item.set("failed", "network error");
      xhr.onload = async () => {
        if (xhr.status !== 200 && xhr.status !== 202) {
          const error = await apiError(xhr.status, async () => xhr.responseText);
          item.set("failed", error.message);
          return;
        }
        let accepted;
        try { accepted = JSON.parse(xhr.responseText); } catch (_) { item.set("failed", "invalid response"); return; }
        if (accepted.duplicate) {
          item.set("duplicate");
          if (collection === st.collection) reload();
          return;
        }
        item.set(accepted.job.state, accepted.job.error);
        try {
          const job = await pollJob(accepted.job, (j) => item.set(j.state, j.error));
          item.set(job.state, job.error);
          if (collection === st.collection) reload();
        } catch (error) {
          item.set("failed", error.message);
        }
      };
      xhr.send(form);
    }

    fileInput.addEventListener("change", () => { uploadFiles(fileInput.files); fileInput.value = ""; });
    dropzone.addEventListener("dragover", (e) => { e.preventDefault(); if (e.dataTransfer) e.dataTransfer.dropEffect = "copy"; dropzone.classList.add("over"); });
    dropzone.addEventListener("dragenter", (e) => { e.preventDefault(); dropzone.classList.add("over"); });
    dropzone.addEventListener("dragleave", () => dropzone.classList.remove("over"));
    dropzone.addEventListener("drop", (e) => {
      e.preventDefault();
      dropzone.classList.remove("over");
      uploadFiles(e.dataTransfer && e.dataTransfer.files);
    });
    dropzone.addEventListener("click", () => fileInput.click());
    dropzone.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); fileInput.click(); }
    });

    // Filters, sorting, paging.
    let debounce = null;
    search.addEventListener("input", () => { clearTimeout(debounce); debounce = setTimeout(reload, 250); });
    formatSelect.addEventListener("change", reload);
    statusSelect.addEventListener("change", reload);
    principalInput.addEventListener("change", reload);
    principalInput.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); reload(); } });
    headRow.addEventListener("click", (e) => {
      const button = e.target.closest("button[data-sort]");
      if (!button) return;
      const key = button.dataset.sort;
      st.sort = st.sort && st.sort.key === key ? { key, dir: st.sort.dir === "asc" ? "desc" : "asc" } : { key, dir: "asc" };
      renderRows();
    });
    more.addEventListener("click", () => loading("documents", async () => {
      const seq = st.seq;
      const page = await api(listUrl(st.cursor));
      if (seq !== st.seq) return;
      st.docs = st.docs.concat(page.documents || []);
      st.cursor = page.next_cursor || null;
      renderRows();
    }));
    collectionSelect.addEventListener("change", () => {
      st.collection = collectionSelect.value;
      sessionStorage.setItem("lore:collection", st.collection);
      closeDetail(false);
      updateDefaultHint();
      reload();
    });

    async function load() {
      await loading("documents", async () => {
        showError("documents", null);
        const list = await api("/v1/collections");
        st.collections = list.collections || [];
        const keep = st.collections.some((c) => c.id === st.collection) ? st.collection : (st.collections[0] && st.collections[0].id);
        st.collection = keep || null;
        collectionSelect.replaceChildren(...st.collections.map((c) => el("option", { value: c.id, selected: c.id === st.collection },
          c.name && c.name !== c.id ? `${c.name} (${c.id})` : c.id)));
        collectionSelect.disabled = !st.collections.length;
        if (!st.collections.length) alert.textContent = t("noCollections");
        updateDefaultHint();
        await loadDocuments();
        if (st.detail) {
          const fresh = st.docs.find((d) => d.id === st.detail.id);
          if (fresh) st.detail = fresh; else closeDetail(false);
        }
      });
    }

    return { section, alert, load, leave: () => {} };
  }

  /* ---------------------------------------------------------------- quality */

  function buildQuality() {
    const { section, alert } = screenSection("quality");
    const feedback = table("feedback-table", t("feedback"), [
      { label: t("time") }, { label: t("user") }, { label: t("vote") }, { label: t("comment") }, { label: t("question") }, { label: t("sources") }]);
    const gapStatus = el("select", { id: "gap-status" },
      ["open", "answered", "dismissed"].map((s) => el("option", { value: s }, t(s))), el("option", { value: "" }, t("all")));
    const gaps = table("gaps-table", t("gaps"), [
      { label: t("examples") }, { label: t("count"), cls: "num" }, { label: t("departments") }, { label: t("reasons") }, { label: t("lastSeen") }, { label: t("status") }, { label: t("actions") }]);
    const reviewStatus = el("select", { id: "review-status" },
      [["pending", "pendingS"], ["approved", "approved"], ["edited", "edited"], ["rejected", "rejected"]].map(([v, k]) => el("option", { value: v }, t(k))));
    const reviews = table("reviews-table", t("reviews"), [
      { label: t("created") }, { label: t("asker") }, { label: t("question") }, { label: t("departments") }, { label: t("rule") }, { label: t("status") }, { label: t("actions") }]);
    const verified = table("verified-table", t("verified"), [
      { label: t("examples") }, { label: t("answer") }, { label: t("department") }, { label: t("owner") }, { label: t("created") }, { label: t("expires") }, { label: t("source") }, { label: t("actions") }]);

    // Review detail.
    const rq = el("p", { id: "review-question" });
    const ra = el("div", { id: "review-answer", class: "answer-text" });
    const rc = el("ol", { id: "review-citations", class: "citations" });
    const rtext = el("textarea", { id: "review-text", rows: "6" });
    const rreason = el("input", { id: "review-reason", type: "text" });
    const rstatus = el("p", { id: "review-status-text", role: "status" });
    const approve = el("button", { type: "button", id: "review-approve", class: "primary" }, t("approve"));
    const edit = el("button", { type: "button", id: "review-edit" }, t("approveEdited"));
    const reject = el("button", { type: "button", id: "review-reject", class: "danger" }, t("reject"));
    const reviewTitle = el("h3", { id: "review-detail-title", tabindex: "-1" }, t("reviewDetail"));
    const reviewDetail = el("div", { id: "review-detail", class: "panel", hidden: true, role: "region", "aria-labelledby": "review-detail-title" },
      el("div", { class: "panel-head" }, reviewTitle, el("button", { type: "button", class: "close", "aria-label": t("close"), onclick: () => closeReview() }, "×")),
      el("h4", null, t("question")), rq, el("h4", null, t("answer")), ra, el("h4", null, t("citations")), rc,
      el("div", { class: "field" }, el("label", { for: "review-text" }, t("editedAnswer")), rtext),
      el("div", { class: "field" }, el("label", { for: "review-reason" }, t("rejectReason")), rreason),
      el("div", { class: "row" }, approve, edit, reject), rstatus);
    let reviewing = null;

    append(section,
      el("h3", null, t("feedback")), feedback.wrap,
      el("div", { class: "heading-row" }, el("h3", null, t("gaps")),
        el("div", { class: "field inline" }, el("label", { for: "gap-status" }, t("gapStatus")), gapStatus)), gaps.wrap,
      el("div", { class: "heading-row" }, el("h3", null, t("reviews")),
        el("div", { class: "field inline" }, el("label", { for: "review-status" }, t("reviewStatus")), reviewStatus)), reviews.wrap, reviewDetail,
      el("h3", null, t("verified")), verified.wrap);

    const citationList = (citations) => {
      const list = Array.isArray(citations) ? citations : [];
      if (!list.length) return t("none");
      return el("ul", { class: "plain" }, list.map((c) => el("li", null,
        c.document_id ? el("a", { href: `#/documents/${encodeURIComponent(c.document_id)}${c.page ? `?page=${c.page}` : ""}` }, c.title || c.source_path || c.document_id) : (c.title || ""))));
    };

    async function loadFeedback() {
      const data = await api("/v1/feedback?limit=100");
      feedback.tbody.replaceChildren();
      const rows = data.feedback || [];
      if (!rows.length) emptyRow(feedback.tbody, 6, t("noFeedback"));
      for (const f of rows) {
        feedback.tbody.append(el("tr", { "data-id": f.id, "data-rating": f.rating },
          el("td", null, timeEl(f.updated_at || f.created_at)), el("td", null, f.user),
          el("td", null, f.rating === "up" ? t("up") : f.rating === "down" ? t("down") : f.rating),
          el("td", null, f.comment || t("none")), el("td", { class: "text" }, f.question), el("td", null, citationList(f.citations))));
      }
    }

    async function loadGaps() {
      const data = await api(`/v1/analytics/gaps${query({ status: gapStatus.value })}`);
      gaps.tbody.replaceChildren();
      const rows = data.gaps || [];
      if (!rows.length) emptyRow(gaps.tbody, 7, t("noGaps"));
      for (const g of rows) {
        const [first, ...rest] = g.examples || [];
        const actions = ["answered", "dismissed"].filter((s) => s !== g.status).map((s) =>
          el("button", { type: "button", "data-action": s, "aria-label": `${s === "answered" ? t("markAnswered") : t("dismiss")}: ${first || g.id}`,
            onclick: (e) => setGap(g.id, s, e.currentTarget) }, s === "answered" ? t("markAnswered") : t("dismiss")));
        if (g.status !== "open") {
          actions.push(el("button", { type: "button", "data-action": "open", onclick: (e) => setGap(g.id, "open", e.currentTarget) }, t("open")));
        }
        gaps.tbody.append(el("tr", { "data-id": g.id, "data-status": g.status },
          el("td", { class: "text" }, el("strong", null, first || ""), rest.length ? el("ul", { class: "plain muted" }, rest.map((q) => el("li", null, q))) : null),
          el("td", { class: "num" }, fmtNumber(g.count)), el("td", null, (g.departments || []).join(", ") || t("none")),
          el("td", null, Object.entries(g.reasons || {}).map(([k, v]) => `${k}: ${fmtNumber(v)}`).join(", ") || t("none")),
          el("td", null, timeEl(g.last_seen_ms)), el("td", { class: "status" }, t(g.status)),
          el("td", { class: "actions" }, actions)));
      }
    }

    async function setGap(id, status, button) {
      if (button) button.disabled = true;
      try {
        await api(`/v1/analytics/gaps/${encodeURIComponent(id)}`, { method: "PATCH", body: { status } });
        await loading("quality", loadGaps);
        showError("quality", null);
      } catch (error) {
        showError("quality", error);
        if (button) button.disabled = false;
      }
    }

    function statusText(s) { return t(s === "pending" ? "pendingS" : s); }

    async function loadReviews() {
      const data = await api(`/v1/reviews${query({ status: reviewStatus.value })}`);
      reviews.tbody.replaceChildren();
      const rows = data.reviews || [];
      if (!rows.length) emptyRow(reviews.tbody, 7, t("noReviews"));
      for (const r of rows) {
        reviews.tbody.append(el("tr", { "data-id": r.id, "data-status": r.status },
          el("td", null, timeEl(r.created_ms)), el("td", null, r.asker), el("td", { class: "text" }, r.question),
          el("td", null, (r.departments || []).join(", ") || t("none")), el("td", null, r.rule),
          el("td", { class: "status" }, statusText(r.status)),
          el("td", null, el("button", { type: "button", "data-action": "review", "aria-label": `${t("reviewAction")}: ${r.question}`, onclick: () => openReview(r) }, t("reviewAction")))));
      }
    }

    /* Shown at once from the listed review, then from the full one (GET /v1/reviews/{id}). */
    async function openReview(summary) {
      fillReview(summary, true);
      const shown = rtext.value;
      let full = null;
      try { full = await api(`/v1/reviews/${encodeURIComponent(summary.id)}`); } catch (_) { /* keep the listed one */ }
      if (full && reviewing && reviewing.id === summary.id && reviewing.status === summary.status && rtext.value === shown) fillReview(full, false);
    }

    function fillReview(review, focus) {
      reviewing = review;
      const answer = review.answer && typeof review.answer === "object" ? review.answer : { answer: review.answer || "" };
      rq.textContent = review.question || "";
      ra.textContent = review.edited_answer || answer.answer || "";
      rc.replaceChildren();
      const citations = Array.isArray(answer.citations) ? answer.citations : (review.citations || []);
      if (!citations.length) rc.append(el("li", { class: "muted" }, t("noCitations")));
      for (const c of citations) {
        rc.append(el("li", null, c.marker ? `[${c.marker}] ` : "",
          el("a", { href: `#/documents/${encodeURIComponent(c.document_id)}${c.page ? `?page=${c.page}` : ""}` }, c.title || c.source_path || c.document_id),
          c.snippet ? el("span", { class: "muted snippet" }, ` — ${c.snippet}`) : null));
      }
      rtext.value = review.edited_answer || answer.answer || "";
      rreason.value = review.reason || "";
      rstatus.textContent = review.status && review.status !== "pending" ? statusText(review.status) : "";
      const decided = review.status && review.status !== "pending";
      for (const b of [approve, edit, reject]) b.disabled = Boolean(decided);
      reviewDetail.hidden = false;
      if (focus) reviewTitle.focus();
    }

    function closeReview() {
      const id = reviewing && reviewing.id;
      reviewing = null;
      reviewDetail.hidden = true;
      const button = id && reviews.tbody.querySelector(`tr[data-id="${CSS.escape(id)}"] button[data-action=review]`);
      if (button) button.focus();
    }

    async function decide(action) {
      if (!reviewing) return;
      const body = { action };
      if (action === "edit") body.answer = rtext.value;
      if (action === "reject") body.reason = rreason.value.trim() || t("defaultRejectReason");
      for (const b of [approve, edit, reject]) b.disabled = true;
      try {
        const decided = await api(`/v1/reviews/${encodeURIComponent(reviewing.id)}/decision`, { method: "POST", body });
        reviewing = decided;
        rstatus.textContent = t("decided", statusText(decided.status));
        const tr = reviews.tbody.querySelector(`tr[data-id="${CSS.escape(decided.id)}"]`);
        if (tr) {
          tr.dataset.status = decided.status;
          tr.querySelector("td.status").textContent = statusText(decided.status);
        }
        showError("quality", null);
      } catch (error) {
        showError("quality", error);
        for (const b of [approve, edit, reject]) b.disabled = false;
      }
    }
    approve.addEventListener("click", () => decide("approve"));
    edit.addEventListener("click", () => decide("edit"));
    reject.addEventListener("click", () => decide("reject"));

    async function loadVerified() {
      const data = await api("/v1/verified");
      verified.tbody.replaceChildren();
      const rows = data.verified || [];
      if (!rows.length) emptyRow(verified.tbody, 8, t("noVerified"));
      for (const v of rows) {
        verified.tbody.append(el("tr", { "data-id": v.id },
          el("td", { class: "text" }, el("ul", { class: "plain" }, (v.questions || []).map((q) => el("li", null, q)))),
          el("td", { class: "text clamp" }, v.answer), el("td", null, v.department || t("none")), el("td", null, v.owner),
          el("td", null, timeEl(v.created_ms)), el("td", null, v.expires_ms ? timeEl(v.expires_ms) : t("none")),
          el("td", null, v.source),
          el("td", null, el("button", { type: "button", class: "danger", "data-action": "delete-verified", "aria-label": `${t("deleteVerified")}: ${(v.questions || [])[0] || v.id}`,
            onclick: async (e) => {
              const button = e.currentTarget;
              if (!(await confirmAction(t("confirmDeleteVerified")))) { button.focus(); return; }
              try {
                await api(`/v1/verified/${encodeURIComponent(v.id)}`, { method: "DELETE" });
                const tr = verified.tbody.querySelector(`tr[data-id="${CSS.escape(v.id)}"]`);
                if (tr) tr.remove();
                if (!verified.tbody.querySelector("tr")) emptyRow(verified.tbody, 8, t("noVerified"));
                showError("quality", null);
              } catch (error) { showError("quality", error); }
            } }, t("deleteVerified")))));
      }
    }

    gapStatus.addEventListener("change", () => loading("quality", loadGaps));
    reviewStatus.addEventListener("change", () => { reviewDetail.hidden = true; reviewing = null; loading("quality", loadReviews); });

    async function load() {
      await loading("quality", async () => {
        showError("quality", null);
        const results = await Promise.allSettled([loadFeedback(), loadGaps(), loadReviews(), loadVerified()]);
        const failed = results.filter((r) => r.status === "rejected").map((r) => r.reason.message);
        if (failed.length) alert.textContent = [...new Set(failed)].join(" ");
      });
    }
    return { section, alert, load, leave: () => {} };
  }

  /* ---------------------------------------------------------------- analytics */

  const COLORS = ["#1d4ed8", "#b91c1c", "#047857", "#b45309", "#7c3aed", "#0e7490", "#be185d", "#4d7c0f", "#374151", "#c2410c"];
  const plots = {};

  function resizeCharts() {
    for (const [name, plot] of Object.entries(plots)) {
      const target = $(`chart-${name}`);
      if (!target || !plot) continue;
      const width = chartWidth(target);
      if (width && width !== plot.width) plot.setSize({ width, height: plot.height });
    }
  }
  function chartWidth(target) {
    const box = target.querySelector(".plot") || target;
    return Math.max(280, Math.floor(box.clientWidth || (target.parentElement && target.parentElement.clientWidth) || 600));
  }

  /** Stores the data for tests and tables, draws it with uPlot (when loaded), fills its table. */
  function drawChart(name, x, series, options = {}) {
    LC.charts[name] = { x: x.slice(), series: Object.fromEntries(Object.entries(series).map(([k, v]) => [k, v.slice()])) };
    const target = $(`chart-${name}`);
    if (!target) return;
    const plotBox = target.querySelector(".plot");
    if (plots[name]) { try { plots[name].destroy(); } catch (_) { /* already gone */ } plots[name] = null; }
    plotBox.replaceChildren();
    const labels = Object.keys(series);
    if (typeof window.uPlot === "function" && x.length) {
      const xs = x.map((d) => Date.parse(`${d}T00:00:00Z`) / 1000);
      const data = [xs, ...labels.map((l) => series[l])];
      const format = options.format || ((v) => fmtNumber(v));
      const opts = {
        width: chartWidth(target),
        height: 240,
        tzDate: (ts) => window.uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
        scales: { x: { time: true } },
        series: [{ label: t("date"), value: (u, v) => (v == null ? "" : isoDay(new Date(v * 1000))) },
          ...labels.map((label, i) => ({
            label, stroke: options.colors && options.colors[label] || COLORS[i % COLORS.length], width: 2,
            dash: options.dashed && options.dashed.includes(label) ? [6, 4] : undefined,
            value: (u, v) => (v == null ? "" : format(v)),
          }))],
        axes: [{}, { values: (u, vals) => vals.map((v) => format(v)), size: 70 }],
      };
      try { plots[name] = new window.uPlot(opts, data, plotBox); } catch (error) { plotBox.append(el("p", { class: "muted" }, String(error.message || error))); }
    }
    if (!x.length) plotBox.append(el("p", { class: "muted" }, t("noData")));
    // The same numbers as a table.
    const tableEl = $(`table-${name}`);
    const format = options.format || ((v) => fmtNumber(v));
    tableEl.querySelector("thead").replaceChildren(el("tr", null, el("th", { scope: "col" }, t("date")), labels.map((l) => el("th", { scope: "col", class: "num" }, l))));
    const body = tableEl.querySelector("tbody");
    body.replaceChildren(...x.map((d, i) => el("tr", null, el("th", { scope: "row" }, d), labels.map((l) => el("td", { class: "num" }, format(series[l][i]))))));
  }

  function chartBlock(name, title) {
    return el("div", { id: `chart-${name}`, class: "chart card", role: "group", "aria-labelledby": `chart-${name}-title` },
      el("h3", { id: `chart-${name}-title` }, title),
      el("div", { class: "plot", "aria-hidden": "true" }),
      el("details", null, el("summary", null, t("showTable")),
        el("div", { class: "table-wrap" }, el("table", { id: `table-${name}`, class: "data" }, el("caption", { class: "sr-only" }, title), el("thead"), el("tbody")))));
  }

  function buildAnalytics() {
    const { section, alert } = screenSection("analytics");
    const today = isoDay(new Date());
    const from = el("input", { type: "date", id: "range-from", value: addDays(today, -29) });
    const to = el("input", { type: "date", id: "range-to", value: today });
    const applyButton = el("button", { type: "button", id: "range-apply", class: "primary" }, t("apply"));
    const csvButton = (name, label) => el("button", { type: "button", "data-csv": name, onclick: () => exportCsv(name) }, t("csv", label));
    const departments = table("table-departments", t("byDepartment"), [
      { label: t("department") }, { label: t("requests"), cls: "num" }, { label: t("activeUsers"), cls: "num" }, { label: t("abstention"), cls: "num" },
      { label: t("cost"), cls: "num" }, { label: t("thumbsUpLabel"), cls: "num" }, { label: t("thumbsDownLabel"), cls: "num" }]);
    const categories = table("table-categories", t("byCategory"), [
      { label: t("category") }, { label: t("requests"), cls: "num" }, { label: t("activeUsers"), cls: "num" }, { label: t("abstention"), cls: "num" },
      { label: t("cost"), cls: "num" }, { label: t("thumbsUpLabel"), cls: "num" }, { label: t("thumbsDownLabel"), cls: "num" }]);
    const questions = table("table-questions", t("topQuestions"), [{ label: t("question") }, { label: t("count"), cls: "num" }, { label: t("lastAsked") }]);

    append(section,
      el("form", { class: "filters", id: "range-form", onsubmit: (e) => { e.preventDefault(); load(); } },
        el("div", { class: "field" }, el("label", { for: "range-from" }, t("from")), from),
        el("div", { class: "field" }, el("label", { for: "range-to" }, t("to")), to),
        applyButton, csvButton("day", t("csvDay"))),
      el("div", { class: "charts" },
        chartBlock("requests", t("chartRequests")), chartBlock("kinds", t("chartKinds")),
        chartBlock("cost", t("chartCost")), chartBlock("latency", t("chartLatency"))),
      el("div", { class: "heading-row" }, el("h3", null, t("byDepartment")), csvButton("department", t("csvDepartment"))), departments.wrap,
      el("div", { class: "heading-row" }, el("h3", null, t("byCategory")), csvButton("category", t("csvCategory"))), categories.wrap,
      el("h3", null, t("topQuestions")), questions.wrap);
    applyButton.addEventListener("click", () => load());

    function range() {
      const f = from.value, tt = to.value;
      if (!f || !tt || f > tt) throw new Error(t("badRange"));
      // The report's `to` is exclusive: the day after the chosen end.
      return { from: f, to: tt, toExclusive: addDays(tt, 1) };
    }
    const usage = (r, params) => api(`/v1/analytics/usage${query({ from: r.from, to: r.toExclusive, ...params })}`);

    async function exportCsv(name) {
      try {
        const r = range();
        const response = await api(`/v1/analytics/usage${query({ from: r.from, to: r.toExclusive, group_by: name })}`, { raw: true, headers: { Accept: "text/csv" } });
        const blob = await response.blob();
        download(new Blob([blob], { type: "text/csv" }), `lore-usage-${name}-${r.from}-${r.to}.csv`);
      } catch (error) { showError("analytics", error); }
    }

    function groupTable(target, rows) {
      target.tbody.replaceChildren();
      if (!rows.length) emptyRow(target.tbody, 7, t("noData"));
      for (const row of rows) {
        target.tbody.append(el("tr", { "data-group": row.group },
          el("th", { scope: "row" }, row.group), el("td", { class: "num" }, fmtNumber(row.requests)), el("td", { class: "num" }, fmtNumber(row.active_users)),
          el("td", { class: "num" }, fmtPercent(row.abstention_rate)), el("td", { class: "num" }, fmtMoney(row.cost)),
          el("td", { class: "num" }, fmtNumber(row.thumbs_up)), el("td", { class: "num" }, fmtNumber(row.thumbs_down))));
      }
    }

    async function load() {
      await loading("analytics", async () => {
        showError("analytics", null);
        const r = range();
        const days = daysBetween(r.from, r.to);
        const byDay = (rows, pick) => {
          const map = new Map(rows.map((row) => [row.group, row]));
          return days.map((d) => { const row = map.get(d); const v = row ? pick(row) : 0; return typeof v === "number" && Number.isFinite(v) ? v : 0; });
        };
        const errors = [];
        const settle = (promise) => promise.catch((error) => { errors.push(error.message); return null; });
        const [dayReport, deptReport, catReport, top, budgets] = await Promise.all([
          usage(r, { group_by: "day" }),
          settle(usage(r, { group_by: "department" })),
          settle(usage(r, { group_by: "category" })),
          settle(api(`/v1/analytics/questions${query({ from: r.from, to: r.toExclusive, limit: 20 })}`)),
          isAdmin ? settle(api("/v1/budgets")) : Promise.resolve(null),
        ]);
        currency = dayReport.currency || currency;
        const dayRows = dayReport.rows || [];
        const deptRows = deptReport ? deptReport.rows || [] : [];
        const names = deptRows.map((row) => row.group).filter((g) => g && g !== "(none)").slice(0, 8);
        const perDept = await Promise.all(names.map((d) => settle(usage(r, { group_by: "day", department: d }))));

        // Requests: the total and one series per department.
        const requests = { [t("total")]: byDay(dayRows, (row) => row.requests) };
        names.forEach((d, i) => { if (perDept[i]) requests[d] = byDay(perDept[i].rows || [], (row) => row.requests); });
        drawChart("requests", days, requests);

        // Kinds: the usual four first (see AnswerKind), then any other present.
        const kinds = new Set(["generated", "extracted", "no_answer", "refused"]);
        for (const row of dayRows) for (const k of Object.keys(row.kinds || {})) kinds.add(k);
        const kindSeries = {};
        for (const k of kinds) kindSeries[k] = byDay(dayRows, (row) => (row.kinds || {})[k] || 0);
        drawChart("kinds", days, kindSeries);

        // Cost, and a budget line for admins with a cost budget.
        const costSeries = { [t("cost")]: byDay(dayRows, (row) => row.cost) };
        const perDay = budgetPerDay(budgets, r.to);
        if (perDay !== null) costSeries[t("budgetPerDay")] = days.map(() => perDay);
        drawChart("cost", days, costSeries, { format: (v) => fmtMoney(v), dashed: [t("budgetPerDay")] });

        drawChart("latency", days, {
          p50: byDay(dayRows, (row) => row.latency_p50_ms),
          p95: byDay(dayRows, (row) => row.latency_p95_ms),
        });

        groupTable(departments, deptRows);
        groupTable(categories, catReport ? catReport.rows || [] : []);
        questions.tbody.replaceChildren();
        const qs = top ? top.questions || [] : [];
        if (!qs.length) emptyRow(questions.tbody, 3, t("noData"));
        for (const q of qs) {
          questions.tbody.append(el("tr", null, el("td", { class: "text" }, q.question), el("td", { class: "num" }, fmtNumber(q.count)), el("td", null, timeEl(q.last_asked))));
        }
        if (errors.length) alert.textContent = [...new Set(errors)].join(" ");
      });
    }

    /** The daily cost budget: department budgets (else any) of unit cost; a month's divided by its days. */
    function budgetPerDay(list, endDay) {
      if (!list || !Array.isArray(list.budgets)) return null;
      const cost = list.budgets.map((b) => b.budget || b).filter((b) => b.unit === "cost" && (b.hard_limit != null || b.soft_limit != null));
      if (!cost.length) return null;
      const scoped = cost.filter((b) => b.scope === "department");
      const chosen = scoped.length ? scoped : cost;
      const [y, m] = endDay.split("-").map(Number);
      const daysInMonth = new Date(Date.UTC(y, m, 0)).getUTCDate();
      let total = 0;
      for (const b of chosen) {
        const limit = b.hard_limit != null ? b.hard_limit : b.soft_limit;
        total += b.period === "month" ? limit / daysInMonth : limit;
      }
      return total;
    }

    return { section, alert, load, leave: () => {} };
  }

  /* ---------------------------------------------------------------- admin */

  function buildAdmin() {
    const { section, alert } = screenSection("admin");
    const field = (id, label, control) => el("div", { class: "field" }, el("label", { for: id }, label), control);
    const split = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);

    // Keys.
    const keyName = el("input", { id: "key-name", type: "text", required: true, autocomplete: "off" });
    const keyRole = el("select", { id: "key-role" }, ["employee", "agent", "knowledge_manager", "admin"].map((r) => el("option", { value: r }, roleLabel(r))));
    const keyUser = el("input", { id: "key-user", type: "text", autocomplete: "off" });
    const keyGroups = el("input", { id: "key-groups", type: "text", autocomplete: "off", placeholder: "hr, managers" });
    const keyDepartments = el("input", { id: "key-departments", type: "text", autocomplete: "off", placeholder: "sales" });
    const keyExpires = el("input", { id: "key-expires", type: "number", min: "1", step: "1", inputmode: "numeric" });
    const keyForm = el("form", { id: "key-new", class: "card form-grid", "aria-labelledby": "key-new-title" },
      el("h4", { id: "key-new-title" }, t("newKey")),
      field("key-name", t("name"), keyName), field("key-role", t("role"), keyRole), field("key-user", t("user"), keyUser),
      field("key-groups", t("groups"), keyGroups), field("key-departments", t("keyDepartments"), keyDepartments),
      field("key-expires", t("expiresDays"), keyExpires),
      el("div", { class: "row" }, el("button", { type: "submit", class: "primary", id: "key-create" }, t("createKey"))));
    const keySecret = el("output", { id: "key-secret", for: "key-new" });
    const copyStatus = el("span", { role: "status", class: "muted" });
    const secretBox = el("div", { id: "key-secret-box", class: "secret", hidden: true },
      el("p", null, el("strong", null, t("keySecret"))), el("div", { class: "row" }, keySecret,
        el("button", { type: "button", id: "key-copy", onclick: async () => {
          try { await navigator.clipboard.writeText(keySecret.value || keySecret.textContent); copyStatus.textContent = t("copied"); }
          catch (_) { const range = document.createRange(); range.selectNodeContents(keySecret); const sel = getSelection(); sel.removeAllRanges(); sel.addRange(range); }
        } }, t("copy")), copyStatus),
      el("p", { class: "note" }, t("keyOnce")));
    const keys = table("keys-table", t("keys"), [
      { label: t("name") }, { label: t("prefix") }, { label: t("role") }, { label: t("user") }, { label: t("department") }, { label: t("created") },
      { label: t("lastUsed") }, { label: t("expires") }, { label: t("state") }, { label: t("actions") }]);

    // Budgets.
    const bScope = el("select", { id: "budget-scope" }, ["department", "key", "user"].map((v) => el("option", { value: v }, v)));
    const bValue = el("input", { id: "budget-value", type: "text", required: true, autocomplete: "off" });
    const bPeriod = el("select", { id: "budget-period" }, ["day", "month"].map((v) => el("option", { value: v }, v)));
    const bUnit = el("select", { id: "budget-unit" }, ["cost", "tokens"].map((v) => el("option", { value: v }, v)));
    const bSoft = el("input", { id: "budget-soft", type: "number", min: "0", step: "any" });
    const bHard = el("input", { id: "budget-hard", type: "number", min: "0", step: "any" });
    const bOnHard = el("select", { id: "budget-on-hard" }, ["refuse", "degrade"].map((v) => el("option", { value: v }, v)));
    const budgetForm = el("form", { id: "budget-new", class: "card form-grid", "aria-labelledby": "budget-new-title" },
      el("h4", { id: "budget-new-title" }, t("newBudget")),
      field("budget-scope", t("scope"), bScope), field("budget-value", t("value"), bValue), field("budget-period", t("period"), bPeriod),
      field("budget-unit", t("unit"), bUnit), field("budget-soft", t("soft"), bSoft), field("budget-hard", t("hard"), bHard),
      field("budget-on-hard", t("onHard"), bOnHard),
      el("div", { class: "row" }, el("button", { type: "submit", class: "primary" }, t("saveBudget"))));
    const budgets = table("budgets-table", t("budgets"), [
      { label: t("scope") }, { label: t("value") }, { label: t("period") }, { label: t("unit") }, { label: t("soft"), cls: "num" }, { label: t("hard"), cls: "num" },
      { label: t("spent"), cls: "num" }, { label: t("onHard") }, { label: t("actions") }]);

    // Settings.
    const sso = el("div", { id: "settings-sso", class: "settings" });
    const policy = el("div", { id: "settings-policy", class: "settings" });
    const rates = el("div", { id: "settings-rates", class: "settings" });
    const providers = el("div", { id: "settings-providers", class: "settings" });

    // Audit.
    const aAction = el("input", { id: "audit-action", type: "text", autocomplete: "off", placeholder: "document." });
    const aActor = el("input", { id: "audit-actor", type: "text", autocomplete: "off" });
    const aFrom = el("input", { id: "audit-from", type: "date" });
    const aTo = el("input", { id: "audit-to", type: "date" });
    const aApply = el("button", { type: "submit", id: "audit-apply", class: "primary" }, t("apply2"));
    const chain = el("p", { id: "audit-chain", role: "status" });
    const audit = table("audit-table", t("audit"), [
      { label: t("seq"), cls: "num" }, { label: t("time") }, { label: t("actor") }, { label: t("action") }, { label: t("target") }, { label: t("outcome") }, { label: t("detailJson") }]);
    const auditMore = el("button", { type: "button", id: "audit-more", hidden: true }, t("loadMore"));
    let auditAfter = null;

    append(section,
      el("h3", null, t("keys")), keyForm, secretBox, keys.wrap,
      el("h3", null, t("budgets")), budgets.wrap, budgetForm,
      el("h3", null, t("settings")),
      el("div", { class: "settings-grid" },
        el("div", { class: "card" }, el("h4", null, t("sso")), sso), el("div", { class: "card" }, el("h4", null, t("rates")), rates),
        el("div", { class: "card wide" }, el("h4", null, t("policy")), policy), el("div", { class: "card wide" }, el("h4", null, t("providers")), providers)),
      el("h3", null, t("audit")),
      el("form", { class: "filters", id: "audit-filters", onsubmit: (e) => { e.preventDefault(); loading("admin", () => loadAudit(false)); } },
        field("audit-action", t("action"), aAction), field("audit-actor", t("actor"), aActor),
        field("audit-from", t("from"), aFrom), field("audit-to", t("to"), aTo), aApply),
      chain, audit.wrap, auditMore);

    function keyRow(k) {
      const revoked = Boolean(k.revoked_at);
      return el("tr", { "data-id": k.id, "data-revoked": revoked ? "true" : "false" },
        el("td", null, k.name), el("td", null, el("code", null, k.prefix || "")), el("td", null, roleLabel(k.role)), el("td", null, k.user),
        el("td", null, k.department || t("none")), el("td", null, timeEl(k.created_at)), el("td", null, timeEl(k.last_used_at)),
        el("td", null, timeEl(k.expires_at)),
        el("td", { class: "state" }, revoked ? t("revokedAt", fmtTime(k.revoked_at)) : t("active")),
        el("td", null, el("button", { type: "button", class: "danger", "data-action": "revoke", disabled: revoked, "aria-label": `${t("revoke")}: ${k.name}`,
          onclick: async (e) => {
            const button = e.currentTarget;
            if (!(await confirmAction(t("confirmRevoke", k.name)))) { button.focus(); return; }
            try {
              const info = await api(`/v1/keys/${encodeURIComponent(k.id)}`, { method: "DELETE" });
              const tr = keys.tbody.querySelector(`tr[data-id="${CSS.escape(k.id)}"]`);
              const updated = info && info.id ? info : { ...k, revoked_at: new Date().toISOString() };
              if (tr) tr.replaceWith(keyRow(updated));
              showError("admin", null);
            } catch (error) { showError("admin", error); }
          } }, t("revoke"))));
    }

    async function loadKeys() {
      const data = await api("/v1/keys");
      keys.tbody.replaceChildren();
      const list = data.keys || [];
      if (!list.length) emptyRow(keys.tbody, 10, t("noKeys"));
      for (const k of list) keys.tbody.append(keyRow(k));
    }

    keyForm.addEventListener("submit", async (e) => {
      e.preventDefault();
      showError("admin", null);
      const depts = split(keyDepartments.value);
      if (depts.length > 1) { showError("admin", new Error(t("oneDepartment"))); keyDepartments.focus(); return; }
      const body = { name: keyName.value.trim(), role: keyRole.value, groups: split(keyGroups.value) };
      if (keyUser.value.trim()) body.user = keyUser.value.trim();
      if (depts.length) body.department = depts[0];
      if (keyExpires.value) body.expires_in_days = Number(keyExpires.value);
      try {
        const created = await api("/v1/keys", { method: "POST", body });
        keySecret.value = created.key;
        keySecret.textContent = created.key;
        copyStatus.textContent = "";
        secretBox.hidden = false;
        keyForm.reset();
        await loadKeys();
        $("key-copy").focus();
      } catch (error) { showError("admin", error); }
    });

    function clearSecret() {
      keySecret.value = "";
      keySecret.textContent = "";
      secretBox.hidden = true;
    }

    async function loadBudgets() {
      const data = await api("/v1/budgets");
      const code = data.currency || currency;
      budgets.tbody.replaceChildren();
      const list = data.budgets || [];
      if (!list.length) emptyRow(budgets.tbody, 9, t("noBudgets"));
      for (const status of list) {
        const b = status.budget || status;
        const amount = (v) => (v === null || v === undefined ? t("none") : b.unit === "cost" ? fmtMoney(v, code) : fmtNumber(v));
        budgets.tbody.append(el("tr", { "data-id": b.id },
          el("td", null, b.scope), el("td", null, b.value), el("td", null, b.period), el("td", null, b.unit),
          el("td", { class: "num" }, amount(b.soft_limit)), el("td", { class: "num" }, amount(b.hard_limit)),
          el("td", { class: "num" }, amount(status.spent)), el("td", null, b.on_hard),
          el("td", null, el("button", { type: "button", class: "danger", "data-action": "delete-budget", "aria-label": `${t("deleteBudget")}: ${b.id}`,
            onclick: async (e) => {
              const button = e.currentTarget;
              if (!(await confirmAction(t("confirmDeleteBudget", b.id)))) { button.focus(); return; }
              try {
                await api(`/v1/budgets/${encodeURIComponent(b.id)}`, { method: "DELETE" });
                await loading("admin", loadBudgets);
                showError("admin", null);
              } catch (error) { showError("admin", error); }
            } }, t("deleteBudget")))));
      }
    }

    budgetForm.addEventListener("submit", async (e) => {
      e.preventDefault();
      showError("admin", null);
      const body = {
        scope: bScope.value, value: bValue.value, period: bPeriod.value, unit: bUnit.value,
        soft_limit: bSoft.value === "" ? null : Number(bSoft.value), hard_limit: bHard.value === "" ? null : Number(bHard.value), on_hard: bOnHard.value,
      };
      try {
        await api("/v1/budgets", { method: "PUT", body });
        budgetForm.reset();
        await loading("admin", loadBudgets);
      } catch (error) { showError("admin", error); }
    });

    /** Any JSON value, read-only: objects as definition lists, lists of objects as tables. */
    function view(value) {
      if (value === null || value === undefined) return el("span", { class: "muted" }, t("none"));
      if (Array.isArray(value)) {
        if (!value.length) return el("span", { class: "muted" }, t("none"));
        if (value.every((v) => v && typeof v === "object" && !Array.isArray(v))) {
          const columns = [...new Set(value.flatMap((v) => Object.keys(v)))];
          return el("div", { class: "table-wrap" }, el("table", { class: "data compact" },
            el("thead", null, el("tr", null, columns.map((c) => el("th", { scope: "col" }, c)))),
            el("tbody", null, value.map((v) => el("tr", null, columns.map((c) => el("td", null, view(v[c]))))))));
        }
        return value.map((v) => (typeof v === "object" ? json(v) : String(v))).join(", ");
      }
      if (typeof value === "object") {
        const entries = Object.entries(value);
        if (!entries.length) return el("span", { class: "muted" }, t("none"));
        return el("dl", { class: "meta" }, entries.map(([k, v]) => [el("dt", null, k), el("dd", null, view(v))]));
      }
      return String(value);
    }

    async function loadSettings() {
      const s = await api("/v1/admin/settings");
      if (s.sso) sso.replaceChildren(view(s.sso));
      else sso.replaceChildren(el("p", null, t("noSso")));
      const p = s.policy || {};
      policy.replaceChildren(
        el("h5", null, t("notice")), p.notice ? view(p.notice) : el("p", { class: "muted" }, t("none")),
        el("h5", null, t("rules")), view(p.rules || []),
        el("h5", null, t("reviewRules")), view(p.review || []),
        el("h5", null, t("verifiedCfg")), view(p.verified || {}));
      const limits = s.rate_limits || {};
      rates.replaceChildren(el("div", { class: "table-wrap" }, el("table", { class: "data compact" },
        el("thead", null, el("tr", null, el("th", { scope: "col" }, t("scope")), el("th", { scope: "col", class: "num" }, t("perMinute")), el("th", { scope: "col", class: "num" }, t("burst")))),
        el("tbody", null, Object.entries(limits).map(([name, l]) => el("tr", { "data-scope": name },
          el("th", { scope: "row" }, name), el("td", { class: "num" }, fmtNumber(l && l.per_minute)), el("td", { class: "num" }, fmtNumber(l && l.burst))))))),
        el("dl", { class: "meta" }, el("dt", null, t("currency")), el("dd", null, s.currency || t("none")),
          s.max_file_bytes ? [el("dt", null, t("maxFile")), el("dd", null, fmtBytes(s.max_file_bytes))] : null));
      providers.replaceChildren(view(s.providers || []));
    }

    async function loadAudit(more) {
      const params = { action: aAction.value.trim(), actor: aActor.value.trim(), since: aFrom.value, until: aTo.value ? addDays(aTo.value, 1) : "", limit: 100 };
      if (more && auditAfter !== null) params.after = auditAfter;
      const data = await api(`/v1/audit${query(params)}`);
      const events = data.events || [];
      if (!more) audit.tbody.replaceChildren();
      if (!more && !events.length) emptyRow(audit.tbody, 7, t("noEvents"));
      for (const ev of events) {
        audit.tbody.append(el("tr", { "data-seq": ev.seq, "data-outcome": ev.outcome },
          el("td", { class: "num" }, String(ev.seq)), el("td", null, timeEl(ev.at)), el("td", null, ev.actor),
          el("td", null, ev.action), el("td", null, ev.target || t("none")), el("td", null, ev.outcome),
          el("td", { class: "detail" }, el("code", null, json(ev.detail)))));
      }
      auditAfter = events.length ? events[events.length - 1].seq : auditAfter;
      auditMore.hidden = events.length < 100;
      const verify = await api("/v1/audit/verify");
      chain.dataset.ok = verify.ok ? "true" : "false";
      chain.className = verify.ok ? "ok" : "broken";
      chain.textContent = verify.ok ? t("chainOk", fmtNumber(verify.events)) : t("chainBroken", verify.first_mismatch);
    }
    auditMore.addEventListener("click", () => loading("admin", () => loadAudit(true)));

    async function load() {
      await loading("admin", async () => {
        showError("admin", null);
        const results = await Promise.allSettled([loadKeys(), loadBudgets(), loadSettings(), loadAudit(false)]);
        const failed = results.filter((r) => r.status === "rejected").map((r) => r.reason.message);
        if (failed.length) alert.textContent = [...new Set(failed)].join(" ");
      });
    }
    return { section, alert, load, leave: clearSecret };
  }

  const BUILDERS = { documents: buildDocuments, quality: buildQuality, analytics: buildAnalytics, admin: buildAdmin };

  /* ---------------------------------------------------------------- start */

  if (window.loreApp && window.loreApp.me) init(window.loreApp.me, true);
  else document.addEventListener("lore:signed-in", (e) => init(e.detail, false));
})();
