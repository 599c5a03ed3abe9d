// The dataset wizard's script: calls /ui/api (the same routes as /api, admitted by the session cookie);
// unsafe requests carry the page's CSRF token. Every text reaches the page through textContent.
"use strict";

const page = document.body.dataset.page;
const model = document.body.dataset.model;
const csrfMeta = document.querySelector('meta[name="csrf-token"]');
const csrf = csrfMeta ? csrfMeta.content : "";
const $ = (sel) => document.querySelector(sel);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "checked" || k === "selected" || k === "hidden") node[k] = Boolean(v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return node;
}

class ApiFailure extends Error {
  constructor(status, error) {
    super(error && error.message ? error.message : "HTTP " + status);
    this.status = status;
    this.field = error ? error.field : null;
    this.expected = error ? error.expected : null;
  }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = csrf;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch("/ui/api" + path, {
    method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await resp.json().catch(() => null);
  if (resp.status === 401) { window.location.href = "/login"; }
  if (!resp.ok) throw new ApiFailure(resp.status, data && data.error);
  return data;
}

function showError(err) {
  const box = $("#error");
  if (!box) { toast(err.message); return; }
  box.hidden = false;
  box.textContent = "";
  box.append(el("strong", {}, err.status ? "HTTP " + err.status + ": " : ""), err.message);
  if (err.field) box.append(el("div", {}, "field: " + err.field + " — expected: " + (err.expected || "?")));
}

function clearError() { const box = $("#error"); if (box) { box.hidden = true; box.textContent = ""; } }

function toast(text) {
  const t = $("#toast");
  t.textContent = text;
  t.hidden = false;
  setTimeout(() => { t.hidden = true; }, 4000);
}

function fmt(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number") return Number.isInteger(v) ? v.toLocaleString("en") : v.toPrecision(4);
  return String(v);
}

// ---------------------------------------------------------------------------------------------- logout

const logout = $("#logout");
if (logout) {
  logout.addEventListener("click", async () => {
    await fetch("/logout", { method: "POST", headers: { "X-CSRF-Token": csrf }, credentials: "same-origin" });
    window.location.href = "/login";
  });
}

// ---------------------------------------------------------------------------------------------- analysis view

function renderAnalysis(target, a) {
  target.textContent = "";
  target.classList.remove("muted");
  const s = a.split;
  target.append(
    el("table", { class: "grid", id: "split-sizes" },
      el("thead", {}, el("tr", {}, el("th", {}, "split"), el("th", {}, "rows"), el("th", {}, "users"), el("th", {}, "share"))),
      el("tbody", {},
        el("tr", {}, el("td", {}, "train"), el("td", { class: "train-rows" }, fmt(s.train_rows)), el("td", {}, fmt(s.train_users)),
          el("td", {}, (100 * (1 - s.eval_share)).toFixed(1) + "%")),
        el("tr", {}, el("td", {}, "eval"), el("td", { class: "eval-rows" }, fmt(s.eval_rows)), el("td", {}, fmt(s.eval_users)),
          el("td", {}, (100 * s.eval_share).toFixed(1) + "%")))),
    el("p", { class: "muted" }, "rule: " + s.rule),
    el("p", {}, "rows " + fmt(a.rows) + " · users " + fmt(a.users) + " · products " + fmt(a.products) +
      " · " + fmt(a.first_timestamp) + " → " + fmt(a.last_timestamp) + " · quality score ",
      el("strong", { id: "quality-score" }, fmt(a.quality_score))),
  );
  const issues = el("ul", { id: "issues" });
  for (const i of a.issues) issues.append(el("li", { class: "issue " + i.severity }, i.severity + " · " + i.kind + ": " + i.message));
  if (!a.issues.length) issues.append(el("li", {}, "no quality issues"));
  target.append(el("h2", {}, "Quality issues"), issues);
}

// ---------------------------------------------------------------------------------------------- wizard

const state = {
  tables: [],        // warehouse table infos
  selected: [],      // chosen table names, primary first
  schemas: {},       // table -> columns (schema)
  suggestions: [],   // join suggestions
  saved: null,       // name once saved
};

function showStep(n) {
  document.querySelectorAll(".step").forEach((s) => { s.hidden = s.dataset.step !== String(n); });
  document.querySelectorAll("#steps li").forEach((li) => li.classList.toggle("current", li.dataset.step === String(n)));
  state.step = n;
}

async function loadTables() {
  state.tables = await api("GET", `/models/${model}/bq-tables/`);
  const body = $("#tables tbody");
  body.textContent = "";
  for (const t of state.tables) {
    const box = el("input", { type: "checkbox", value: t.name, "aria-label": "use " + t.name, id: "table-" + t.name });
    box.addEventListener("change", () => toggleTable(t.name, box.checked));
    const link = el("a", { class: "colname", onclick: () => showSchema(t.name) }, t.name);
    body.append(el("tr", {}, el("td", {}, box), el("td", {}, link), el("td", {}, fmt(t.row_count)),
      el("td", {}, fmt(t.column_count)), el("td", {}, fmt(t.size_bytes))));
  }
}

async function schemaOf(table) {
  if (!state.schemas[table]) state.schemas[table] = await api("GET", `/models/${model}/bq-tables/${encodeURIComponent(table)}/schema/`);
  return state.schemas[table];
}

async function toggleTable(name, on) {
  clearError();
  try {
    state.selected = state.selected.filter((t) => t !== name);
    if (on) { state.selected.push(name); await schemaOf(name); await showSchema(name); }
    state.suggestions = [];
    renderJoins();
  } catch (err) { showError(err); }
}

async function showSchema(table) {
  try {
    const [cols, stats] = await Promise.all([
      schemaOf(table), api("GET", `/models/${model}/bq-tables/${encodeURIComponent(table)}/stats/`)]);
    const byName = Object.fromEntries(stats.map((s) => [s.name, s]));
    $("#schema-table").textContent = table;
    const body = $("#schema tbody");
    body.textContent = "";
    for (const c of cols) {
      const s = byName[c.name] || {};
      const link = el("a", { class: "colname", onclick: () => showSamples(table, c.name) }, c.name);
      body.append(el("tr", {}, el("td", {}, link), el("td", {}, c.type), el("td", {}, c.suggested_role || ""),
        el("td", {}, c.join_key ? "key" : ""), el("td", {}, fmt(s.cardinality)), el("td", {}, fmt(s.nulls)),
        el("td", {}, fmt(s.min)), el("td", {}, fmt(s.max))));
    }
    $("#samples").textContent = "Click a column for its most frequent values.";
  } catch (err) { showError(err); }
}

async function showSamples(table, column) {
  try {
    const values = await api("GET", `/models/${model}/bq-tables/${encodeURIComponent(table)}/columns/${encodeURIComponent(column)}/samples/?limit=8`);
    $("#samples").textContent = `${table}.${column}: ` + values.map((v) => `${fmt(v.value)} (${v.count})`).join(", ");
  } catch (err) { showError(err); }
}

async function detectJoins() {
  clearError();
  if (state.selected.length < 2) { state.suggestions = []; renderJoins(); return; }
  try {
    state.suggestions = await api("POST", `/models/${model}/detect-joins/`, { tables: state.selected });
    // tick the best suggestion that attaches each new table, walking out from the primary table
    const joined = new Set([state.selected[0]]);
    let progress = true;
    while (progress) {
      progress = false;
      for (const s of state.suggestions) {
        if (s.use || s.level === "low") continue;
        const l = joined.has(s.left_table), r = joined.has(s.right_table);
        if (l !== r) { s.use = true; joined.add(s.left_table); joined.add(s.right_table); progress = true; break; }
      }
    }
    renderJoins();
  } catch (err) { showError(err); }
}

function renderJoins() {
  const body = $("#joins tbody");
  body.textContent = "";
  state.suggestions.forEach((s, i) => {
    const box = el("input", { type: "checkbox", checked: s.use, "aria-label": "use join " + i });
    box.addEventListener("change", () => { s.use = box.checked; });
    const type = el("select", { "aria-label": "join type " + i }, el("option", { value: "inner" }, "inner"),
      el("option", { value: "left", selected: s.type === "left" }, "left"));
    type.addEventListener("change", () => { s.type = type.value; });
    body.append(el("tr", { title: s.reason }, el("td", {}, box),
      el("td", {}, `${s.left_table}.${s.left_column} = ${s.right_table}.${s.right_column}`), el("td", {}, type),
      el("td", {}, `${s.confidence} (${s.level})`)));
  });
  if (!state.suggestions.length) {
    body.append(el("tr", {}, el("td", { colspan: "4", class: "muted" },
      state.selected.length < 2 ? "Pick two or more tables to join them." : "Press “Suggest joins”.")));
  }
}

function orderedJoins() {
  // each join attaches a table not yet joined to one already joined (the definition's join tree)
  const joined = new Set([state.selected[0]]);
  const pending = state.suggestions.filter((s) => s.use);
  const out = [];
  let progress = true;
  while (progress && pending.length) {
    progress = false;
    for (let i = 0; i < pending.length; i++) {
      const s = pending[i];
      const type = s.type || "inner";
      if (joined.has(s.left_table) && !joined.has(s.right_table)) {
        out.push({ left_table: s.left_table, left_column: s.left_column, right_table: s.right_table, right_column: s.right_column, type });
        joined.add(s.right_table);
      } else if (joined.has(s.right_table) && !joined.has(s.left_table)) {
        out.push({ left_table: s.right_table, left_column: s.right_column, right_table: s.left_table, right_column: s.left_column, type });
        joined.add(s.left_table);
      } else continue;
      pending.splice(i, 1);
      progress = true;
      break;
    }
  }
  return out;
}

const ROLES = ["feature", "user_id", "product_id", "timestamp", "revenue", "label"];

async function renderColumns() {
  const suggested = await api("POST", `/models/${model}/suggest-columns/`, { tables: state.selected });
  const roleOf = {};
  for (const [role, refs] of Object.entries(suggested)) if (refs.length && !(refs[0] in roleOf)) roleOf[refs[0]] = role;
  const body = $("#columns tbody");
  const previous = {};
  body.querySelectorAll("tr").forEach((tr) => { previous[tr.dataset.ref] = tr; });
  body.textContent = "";
  const taken = new Set();
  for (const table of state.selected) {
    for (const c of await schemaOf(table)) {
      const ref = `${table}.${c.name}`;
      if (previous[ref]) { body.append(previous[ref]); continue; }
      const role = roleOf[ref] || "feature";
      const alias = taken.has(c.name) ? `${table}_${c.name}` : "";
      taken.add(alias || c.name);
      const use = el("input", { type: "checkbox", checked: Boolean(roleOf[ref]), class: "use", "aria-label": "use " + ref });
      const select = el("select", { class: "role", "aria-label": "role of " + ref },
        ...ROLES.map((r) => el("option", { value: r, selected: r === role }, r)));
      const aliasInput = el("input", { class: "alias", value: alias, placeholder: c.name, "aria-label": "alias of " + ref, size: "14" });
      body.append(el("tr", { "data-ref": ref, "data-table": table, "data-column": c.name },
        el("td", {}, use), el("td", {}, ref), el("td", {}, c.type), el("td", {}, select), el("td", {}, aliasInput)));
    }
  }
}

function numOrNull(id) { const v = $(id).value.trim(); return v === "" ? null : Number(v); }

function definitionFromForm() {
  const columns = [];
  document.querySelectorAll("#columns tbody tr").forEach((tr) => {
    if (!tr.querySelector(".use").checked) return;
    const col = { table: tr.dataset.table, column: tr.dataset.column, role: tr.querySelector(".role").value };
    const alias = tr.querySelector(".alias").value.trim();
    if (alias) col.alias = alias;
    columns.push(col);
  });
  const filters = {};
  const kind = $("#range-kind").value;
  if (kind === "rolling") filters.date_range = { last_days: numOrNull("#last-days") };
  if (kind === "fixed") filters.date_range = { start: $("#start").value || null, end: $("#end").value || null };
  const top = numOrNull("#top-products");
  if (top !== null) filters.top_products_percent = top;
  const minTx = numOrNull("#min-tx");
  if (minTx !== null) filters.min_transactions_per_user = minTx;
  const strategy = $("#split-strategy").value;
  const split = strategy === "time" ? { strategy, eval_days: numOrNull("#eval-days") }
    : { strategy, eval_fraction: numOrNull("#eval-fraction"), salt: $("#salt").value };
  return {
    name: $("#name").value.trim(), description: $("#description").value.trim(), status: "draft",
    tables: state.selected.map((name) => ({ name })), joins: orderedJoins(), columns, filters, split,
  };
}

async function saveAndAnalyze() {
  clearError();
  const btn = $("#save");
  btn.disabled = true;
  try {
    const defn = definitionFromForm();
    const saved = state.saved
      ? await api("POST", `/datasets/${encodeURIComponent(state.saved)}/update/`, defn)
      : await api("POST", `/models/${model}/datasets/create/`, defn);
    state.saved = saved.definition.name;
    $("#name").disabled = true;
    const ok = $("#saved");
    ok.hidden = false;
    ok.textContent = `Saved draft ${state.saved} (sha256 ${saved.summary.sha256.slice(0, 12)}…)`;
    const link = $("#open-detail");
    link.hidden = false;
    link.href = `/models/${model}/dataset/${encodeURIComponent(state.saved)}`;
    const activate = $("#activate");
    if (activate) activate.hidden = false;
    const [analysis, query] = await Promise.all([
      api("POST", `/datasets/${encodeURIComponent(state.saved)}/analyze/`, {}),
      api("GET", `/datasets/${encodeURIComponent(state.saved)}/query/?dialect=bigquery`)]);
    renderAnalysis($("#analysis"), analysis);
    $("#sql").textContent = query.sql;
  } catch (err) { showError(err); } finally { btn.disabled = false; }
}

function initWizard() {
  let checkTimer = null;
  $("#name").addEventListener("input", () => {
    clearTimeout(checkTimer);
    checkTimer = setTimeout(async () => {
      const name = $("#name").value.trim();
      const status = $("#name-status");
      if (!name) { status.textContent = ""; return; }
      try {
        const r = await api("POST", `/models/${model}/datasets/check-name/`, { name });
        status.textContent = r.available ? "✓ available" : `✗ taken (${r.taken_by})`;
        status.className = r.available ? "ok" : "error";
      } catch (err) { status.textContent = "✗ " + (err.expected ? "expected " + err.expected : err.message); status.className = "error"; }
    }, 200);
  });
  document.querySelectorAll(".step .prev").forEach((b) => b.addEventListener("click", () => showStep(state.step - 1)));
  $("#next-1").addEventListener("click", () => {
    clearError();
    if (!$("#name").value.trim()) { showError({ message: "field name: expected a name", field: "name", expected: "a name" }); return; }
    showStep(2);
  });
  $("#next-2").addEventListener("click", async () => {
    clearError();
    if (!state.selected.length) { showError({ message: "field tables: expected at least one table", field: "tables", expected: "a table" }); return; }
    try { await renderColumns(); showStep(3); } catch (err) { showError(err); }
  });
  $("#next-3").addEventListener("click", () => { clearError(); showStep(4); });
  $("#detect-joins").addEventListener("click", detectJoins);
  $("#range-kind").addEventListener("change", () => {
    const kind = $("#range-kind").value;
    document.querySelectorAll(".range").forEach((l) => { l.hidden = !l.classList.contains(kind); });
  });
  $("#split-strategy").addEventListener("change", () => {
    const s = $("#split-strategy").value;
    document.querySelectorAll(".split").forEach((l) => { l.hidden = !l.classList.contains(s); });
  });
  $("#save").addEventListener("click", saveAndAnalyze);
  // once saved, every change of a filter or the split re-saves the draft and refreshes the analysis and SQL
  let liveTimer = null;
  document.querySelectorAll('.step[data-step="4"] fieldset').forEach((fs) => fs.addEventListener("change", () => {
    if (!state.saved) return;
    clearTimeout(liveTimer);
    liveTimer = setTimeout(saveAndAnalyze, 500);
  }));
  const activate = $("#activate");
  if (activate) {
    activate.addEventListener("click", async () => {
      clearError();
      try {
        await api("POST", `/datasets/${encodeURIComponent(state.saved)}/activate/`);
        window.location.href = `/models/${model}/dataset/${encodeURIComponent(state.saved)}`;
      } catch (err) { showError(err); }
    });
  }
  renderJoins();
  showStep(1);
  loadTables().catch(showError);
}

// ---------------------------------------------------------------------------------------------- detail page

function initDetail() {
  const name = $("#detail").dataset.name;
  const enc = encodeURIComponent(name);
  const on = (id, fn) => { const b = $(id); if (b) b.addEventListener("click", () => fn().catch(showError)); };
  on("#analyze", async () => renderAnalysis($("#analysis"), await api("POST", `/datasets/${enc}/analyze/`, {})));
  on("#validate", async () => {
    const r = await api("POST", `/datasets/${enc}/validate-query/`);
    toast(r.ok ? `query valid; ~${fmt(r.estimated_rows_scanned)} rows scanned` : r.problems[0]);
  });
  on("#activate", async () => { await api("POST", `/datasets/${enc}/activate/`); window.location.reload(); });
  on("#delete", async () => {
    if (!window.confirm(`Delete draft ${name}?`)) return;
    await api("POST", `/datasets/${enc}/delete/`);
    window.location.href = `/models/${model}/dataset/`;
  });
  on("#clone", async () => {
    const r = await api("POST", `/datasets/${enc}/clone/`, { new_name: $("#clone-name").value.trim() });
    window.location.href = `/models/${model}/dataset/${encodeURIComponent(r.definition.name)}`;
  });
}

if (page === "wizard") initWizard();
if (page === "detail") initDetail();
