/* rlm view: the run list and one run's timeline, sub-call tree, waterfall and usage, from JSONL logs.
   Who did what (log schema 3) is shown throughout: cells a strategy ran, its actions, each message's
   author and where the answer came from; older logs have none of it and read as the model's.
   Plain browser JavaScript, no build step. Data comes from the viewer's server (paged by byte offset,
   tailed while a run is written) or, in an exported file, from the embedded #rlm-embedded JSON. */
"use strict";

const SCHEMA_VERSION = 3;
const FIRST_PAGE_BYTES = 256 * 1024; // small, so the first iterations show at once
const PAGE_BYTES = 2 * 1024 * 1024; // about 50 ms of parsing: the page stays responsive while it loads
// Longer texts are kept cut in memory, so a huge log's heap stays a fraction of its size; "Show the
// full texts" reads the line again. Sub-call texts are cut shorter: there are thousands of them.
const TRIM_CHARS = 20000;
const SUBCALL_TRIM_CHARS = 4000;
const MAX_AUTO_OPEN = 20;
const TAIL_WAIT_SECONDS = 10;
const BUDGET_STOPS = {
  max_iterations: "ran out of iterations",
  root_budget: "spent the root token budget (max_root_tokens)",
  cost_limit: "reached the cost limit (max_cost)",
  call_limit: "made all allowed model calls (max_llm_calls)",
  timeout: "reached the time limit (max_timeout)",
  cancelled: "was cancelled",
  error: "stopped on an error",
};
// Where a run's answer came from (the result's answer_source); "strategy:<name>" is shown as such.
const ANSWER_SOURCES = {
  final: "from the model's FINAL",
  final_var: "from the model's FINAL_VAR",
  answer_dict: "from the model's answer dict (answer[\"ready\"])",
  last_turn_extract: "read out of the last turn",
  partial: "partial: the text the model wrote last",
};
// What each strategy action did, in words (the action records' "action").
const ACTION_LABELS = {
  tell: "told the model",
  run_code: "ran code for the model",
  accept_answer: "accepted an answer",
  ask_for_final: "asked the model for its final answer",
  cap_call: "capped the output tokens of model calls",
  cap_output: "capped the cell output the model is shown",
};

const decoder = new TextDecoder("utf-8");
const embedded = readEmbedded();
let generation = 0; // bumped on every navigation; stale loops stop when it changes
let listTimer = null;

/* ---------- small DOM helpers ---------- */

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

function marked(text, query) {
  // The text with every match of the search wrapped in <mark>; text stays text (never HTML).
  text = text == null ? "" : String(text);
  if (!query) return document.createTextNode(text);
  const frag = document.createDocumentFragment();
  const lower = text.toLowerCase();
  let pos = 0;
  for (let at = lower.indexOf(query); at >= 0; at = lower.indexOf(query, pos)) {
    frag.append(text.slice(pos, at), h("mark", {}, text.slice(at, at + query.length)));
    pos = at + query.length;
  }
  frag.append(text.slice(pos));
  return frag;
}

function announce(message) {
  document.getElementById("announcer").textContent = message;
}

const fmtInt = (n) => (n == null ? "—" : Number(n).toLocaleString("en-US"));
const fmtCost = (c) => (c == null ? "—" : "$" + Number(c).toFixed(c >= 1 ? 2 : c >= 0.01 ? 4 : 6));
function fmtDuration(s) {
  if (s == null) return "—";
  if (s < 1) return (s * 1000).toFixed(s < 0.01 ? 2 : 0) + " ms";
  if (s < 120) return s.toFixed(2) + " s";
  return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
}
function fmtTime(ts) {
  if (!ts) return "—";
  return new Date(ts * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";
}
const shorten = (text, n) => {
  text = text == null ? "" : String(text);
  return text.length > n ? text.slice(0, n - 1) + "…" : text;
};

/* ---------- who did what ---------- */

function answerSourceText(source) {
  if (source == null || source === "") return null;
  if (ANSWER_SOURCES[source]) return ANSWER_SOURCES[source];
  if (String(source).startsWith("strategy:")) return "answer from " + source;
  return "answer source: " + source;
}

const authorOf = (item) => (item && item.author) || "model"; // logs before schema 3: the model's
const byStrategy = (author) => typeof author === "string" && author.startsWith("strategy:");

function authorName(author) {
  // A message's or prompt's author, as a reader would say it.
  if (author === "model") return "the model";
  if (author === "engine") return "the engine";
  if (author === "user") return "the caller";
  return author;
}

/* ---------- routing ---------- */

function readEmbedded() {
  const node = document.getElementById("rlm-embedded");
  return node ? JSON.parse(node.textContent) : null;
}

function route() {
  generation += 1;
  clearInterval(listTimer);
  const main = document.getElementById("main");
  if (embedded) {
    showRun(main, embedded.file);
    return;
  }
  const match = location.hash.match(/^#\/run\/(.+)$/);
  if (match) showRun(main, decodeURIComponent(match[1]));
  else showList(main);
}

/* ---------- the run list ---------- */

const listState = { sortKey: "time", sortDir: -1, filter: "", runs: [], directory: "" };
const COLUMNS = [
  ["time", "Started"],
  ["root", "Root model"],
  ["subs", "Sub models"],
  ["question", "Question"],
  ["answer", "Answer"],
  ["stop", "Stop reason"],
  ["iterations", "Iterations"],
  ["rootTokens", "Root tokens / budget"],
  ["subTokens", "Sub tokens / budget"],
  ["cost", "Cost / budget"],
  ["duration", "Duration"],
];

function tierTotals(rows) {
  const tiers = {};
  for (const row of rows || []) {
    const t = (tiers[row.tier] = tiers[row.tier] || { calls: 0, input: 0, output: 0, cost: null, models: new Set() });
    t.calls += row.calls || 0;
    t.input += row.input_tokens || 0;
    t.output += row.output_tokens || 0;
    if (row.cost != null) t.cost = (t.cost || 0) + row.cost;
    t.models.add(row.model);
  }
  return tiers;
}

// A run of rlm serve names the profile (model name) of its request and its API key's name (caller).
function servedText(served) {
  if (!served || typeof served !== "object") return "";
  return "served: profile " + (served.profile || "?") + ", key " + (served.caller || "?");
}

function listRow(run) {
  const meta = run.metadata || {};
  const result = run.result || null;
  const tiers = tierTotals(result && result.usage_summary);
  const tokens = (tier) => (tiers[tier] ? tiers[tier].input + tiers[tier].output : null);
  let cost = null;
  for (const t of Object.values(tiers)) if (t.cost != null) cost = (cost || 0) + t.cost;
  let stop = result ? result.stop_reason : run.status === "complete" ? "final" : run.status;
  if (run.status === "unfinished") stop = "unfinished";
  return {
    run,
    file: run.file,
    time: meta.started_at || run.modified || 0,
    root: meta.root_model || "",
    strategy: meta.strategy || "",
    served: servedText(meta.served),
    subs: (meta.sub_models || []).join(", "),
    question: meta.root_prompt || "",
    answer: result ? result.response || "" : "",
    error: result ? result.error : null,
    source: result ? result.answer_source || null : null,
    stop,
    iterations: result ? result.iterations : run.last_iteration || 0,
    rootTokens: tokens("root"),
    subTokens: tokens("sub"),
    rootBudget: meta.max_root_tokens,
    subBudget: meta.max_sub_tokens,
    cost,
    costBudget: meta.max_cost,
    duration: result ? result.execution_time : null,
  };
}

function stopBadge(stop, error) {
  const kind = error ? "bad" : stop === "final" ? "ok" : stop === "unfinished" ? "live" : stop === "strategy" ? "strategy" : "bad";
  const label = stop === "unfinished" ? "unfinished or running" : stop;
  return h("span", { class: "badge badge-" + kind }, label);
}

async function showList(main) {
  const mine = generation;
  document.getElementById("where").textContent = "";
  main.replaceChildren(h("p", { class: "muted" }, "Loading the run list…"));
  let data;
  try {
    const response = await fetch("api/runs");
    data = await response.json();
  } catch (err) {
    main.replaceChildren(h("p", { class: "alert", role: "alert" }, "Could not reach the viewer's server: " + err));
    return;
  }
  if (mine !== generation) return;
  listState.runs = data.runs.map(listRow);
  listState.directory = data.directory;
  document.getElementById("where").textContent = data.directory;
  renderList(main, data);
  // New runs appear without a reload while the list is open.
  listTimer = setInterval(async () => {
    if (mine !== generation) return;
    try {
      const fresh = await (await fetch("api/runs")).json();
      if (mine !== generation || JSON.stringify(fresh.runs) === JSON.stringify(data.runs)) return;
      data = fresh;
      listState.runs = data.runs.map(listRow);
      const focused = document.activeElement && document.activeElement.id;
      renderList(main, data);
      if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
    } catch (err) {
      /* the server stopped: keep what is shown */
    }
  }, 3000);
}

function renderList(main, data) {
  if (!data.runs.length) {
    main.replaceChildren(
      h("section", { class: "empty", "aria-labelledby": "empty-title" },
        h("h2", { id: "empty-title" }, "No runs in this directory"),
        h("p", {}, "There are no trajectory logs (*.jsonl) in ", h("code", {}, data.directory), "."),
        h("p", {}, "Make some: in Python pass ", h("code", {}, "RLM(..., logger=RLMLogger(log_dir=\"logs\"))"),
          ", or on the command line run ", h("code", {}, "rlm run CONTEXT_FILE -q QUESTION --log-dir logs"),
          ", then open this page again (or ", h("code", {}, "rlm view logs"), ")."),
      ),
    );
    return;
  }
  const filterBox = h("input", {
    type: "search", id: "run-filter", placeholder: "model, strategy, question, answer, stop reason…",
    value: listState.filter,
    oninput: (e) => { listState.filter = e.target.value; fillRows(); },
  });
  const head = h("tr", {}, COLUMNS.map(([key, label]) => {
    const sorted = listState.sortKey === key;
    return h("th", { scope: "col", "aria-sort": sorted ? (listState.sortDir > 0 ? "ascending" : "descending") : "none" },
      h("button", { type: "button", class: "sort", id: "sort-" + key, onclick: () => sortBy(key) },
        label, h("span", { "aria-hidden": "true" }, sorted ? (listState.sortDir > 0 ? " ▲" : " ▼") : "")));
  }));
  const body = h("tbody", { id: "run-rows", onkeydown: rowKeys, onclick: rowClick });
  const count = h("p", { id: "run-count", class: "muted", "aria-live": "polite" });
  main.replaceChildren(
    h("section", { "aria-labelledby": "runs-title" },
      h("h2", { id: "runs-title" }, "Runs"),
      h("div", { class: "toolbar", role: "search" },
        h("label", { for: "run-filter" }, "Filter runs "), filterBox, count),
      h("div", { class: "table-wrap" },
        h("table", { class: "runs" }, h("caption", { class: "visually-hidden" }, "Runs, sortable by column"),
          h("thead", {}, head), body))));
  fillRows();

  function sortBy(key) {
    listState.sortDir = listState.sortKey === key ? -listState.sortDir : key === "time" ? -1 : 1;
    listState.sortKey = key;
    renderList(main, data);
    document.getElementById("sort-" + key).focus();
  }

  function fillRows() {
    const q = listState.filter.trim().toLowerCase();
    const rows = listState.runs.filter((r) => !q ||
      [r.file, r.root, r.strategy, r.served, r.subs, r.question, r.answer, r.stop, r.source, r.error].join(" ").toLowerCase().includes(q));
    const key = listState.sortKey;
    rows.sort((a, b) => {
      const x = a[key] ?? -Infinity, y = b[key] ?? -Infinity;
      return (x < y ? -1 : x > y ? 1 : 0) * listState.sortDir;
    });
    body.replaceChildren(...rows.map((r, i) => {
      const problems = r.run.problems || [];
      const started = fmtTime(r.time);
      // The whole row opens the run (rowClick); its one link is the keyboard's way in, named by the question.
      return h("tr", { class: "run-row" + (problems.length ? " has-problem" : "") },
        h("td", { "data-label": "Started" },
          h("a", { href: "#/run/" + encodeURIComponent(r.file), class: "run-link", id: "run-link-" + i,
            "aria-label": "Open the run started " + started + (r.question ? ": " + shorten(r.question, 120) : "") }, started),
          h("div", { class: "muted small" }, r.file)),
        h("td", { "data-label": "Root model" }, r.root || "—",
          r.strategy ? h("div", { class: "muted small" }, "strategy " + r.strategy) : null,
          r.served ? h("div", { class: "muted small served" }, r.served) : null),
        h("td", { "data-label": "Sub models" }, r.subs || "—"),
        h("td", { "data-label": "Question", class: "wrap" }, shorten(r.question, 120) || "—"),
        h("td", { "data-label": "Answer", class: "wrap" }, shorten(r.answer, 120) || "—"),
        h("td", { "data-label": "Stop reason" }, stopBadge(r.stop, r.error),
          r.source ? h("div", { class: "muted small answer-source" }, answerSourceText(r.source)) : null,
          problems.map((p) => h("div", { class: "problem small" }, p))),
        h("td", { "data-label": "Iterations", class: "num" }, fmtInt(r.iterations)),
        h("td", { "data-label": "Root tokens", class: "num" }, fmtInt(r.rootTokens), ofBudget(fmtInt(r.rootBudget))),
        h("td", { "data-label": "Sub tokens", class: "num" }, fmtInt(r.subTokens), ofBudget(fmtInt(r.subBudget))),
        h("td", { "data-label": "Cost", class: "num" }, fmtCost(r.cost), ofBudget(r.costBudget == null ? "no limit" : fmtCost(r.costBudget))),
        h("td", { "data-label": "Duration", class: "num" }, fmtDuration(r.duration)));
    }));
    count.textContent = rows.length + " of " + listState.runs.length + " runs";
  }
}

function ofBudget(text) {
  // On its own line in a wide table, after a slash in a narrow one (see viewer.css).
  return h("span", { class: "budget" + (text === "no limit" ? " unlimited" : "") }, h("span", { class: "slash" }, " / "), text);
}

function moveFocus(items, current, key) {
  const index = items.indexOf(current);
  if (index < 0) return false;
  let next = index;
  if (key === "ArrowDown") next = Math.min(items.length - 1, index + 1);
  else if (key === "ArrowUp") next = Math.max(0, index - 1);
  else if (key === "Home") next = 0;
  else if (key === "End") next = items.length - 1;
  else return false;
  items[next].focus();
  return true;
}

function rowClick(event) {
  // A click anywhere on a run's row opens it, as its link does; links and buttons keep their own
  // click, and a click that ends a text selection (copying a question) does not navigate.
  if (event.button !== 0 || event.target.closest("a, button, input, summary")) return;
  const selection = window.getSelection();
  if (selection && !selection.isCollapsed && String(selection).trim()) return;
  const row = event.target.closest("tr");
  const link = row && row.querySelector(".run-link");
  if (link) link.click();
}

function rowKeys(event) {
  const links = [...document.querySelectorAll("#run-rows .run-link")];
  if (moveFocus(links, document.activeElement, event.key)) event.preventDefault();
}

/* ---------- reading a log ---------- */

function newState(file) {
  return {
    file, lineNo: 0, offset: 0, size: 0, partial: "", finished: false,
    root: null, runs: new Map(), childOfSpan: new Map(), problems: [], newerSchema: null,
  };
}

function runEntry(meta) {
  return { meta, iterations: [], result: null, list: null };
}

function handleLine(state, text, at, length) {
  state.lineNo += 1;
  const lineNo = state.lineNo;
  if (!text.trim()) return null;
  let line;
  try {
    line = JSON.parse(text);
  } catch (err) {
    state.problems.push({ lineNo, kind: "damaged", text: "not valid JSON (" + err.message + "): " + shorten(text, 160) });
    return null;
  }
  if (!line || typeof line !== "object" || Array.isArray(line) || typeof line.type !== "string") {
    state.problems.push({ lineNo, kind: "foreign", text: "not an rlm-core log line (no \"type\"): " + shorten(text, 160) });
    return null;
  }
  const type = line.type;
  if (type === "metadata" || type === "child_run_start") {
    const version = line.schema_version ?? 1;
    if (typeof version === "number" && version > SCHEMA_VERSION) {
      state.newerSchema = version;
      state.problems.push({ lineNo, kind: "newer", text: "written with log schema " + version + "; this viewer reads up to " + SCHEMA_VERSION + ": fields it does not know are not shown. Upgrade rlm-core to see everything." });
    }
    const entry = runEntry(line);
    state.runs.set(line.run_id, entry);
    if (type === "metadata") state.root = entry;
    else if (line.parent_span_id) state.childOfSpan.set(line.parent_span_id, line.run_id);
    return null;
  }
  if (type === "iteration") {
    const run = state.runs.get(line.run_id) || state.root;
    if (!run) {
      state.problems.push({ lineNo, kind: "foreign", text: "an iteration before any metadata line (run " + line.run_id + ")" });
      return null;
    }
    trimRecord(line, at, length);
    run.iterations.push(line);
    return { run, record: line };
  }
  if (type === "result" || type === "child_result") {
    const run = type === "result" ? state.root : state.runs.get(line.run_id);
    if (run) run.result = line;
    if (type === "result") state.finished = true;
    return null;
  }
  state.problems.push({ lineNo, kind: "unknown", text: "a line of unknown type \"" + type + "\" (a newer rlm-core?): skipped" });
  return null;
}

function trimRecord(rec, at, length) {
  if (embedded) return; // an exported file holds everything anyway
  let trimmed = false;
  const cut = (obj, key, limit = TRIM_CHARS) => {
    const value = obj[key];
    if (typeof value === "string" && value.length > limit) {
      // A plain slice would keep the whole original string alive (V8 slices share it): copy it.
      obj[key] = JSON.parse(JSON.stringify(value.slice(0, limit)));
      obj["_" + key + "_full"] = value.length;
      trimmed = true;
    }
  };
  const cutCalls = (calls) => (calls || []).forEach((c) => {
    cut(c, "prompt", SUBCALL_TRIM_CHARS);
    cut(c, "response", SUBCALL_TRIM_CHARS);
    cutCalls(c.children);
  });
  cut(rec, "response");
  (rec.new_messages || []).forEach((m) => cut(m, "content"));
  (rec.actions || []).forEach((a) => { if (a && a.detail) ["text", "code", "reply", "why"].forEach((k) => cut(a.detail, k)); });
  (rec.code_blocks || []).forEach((b) => { cut(b, "code"); cut(b, "stdout"); cut(b, "stderr"); cut(b, "error"); cutCalls(b.subcalls); });
  if (trimmed) rec._line = { at, length };
}

function consumeBytes(state, bytes, completeBytes) {
  const added = [];
  let pos = 0;
  while (pos < completeBytes) {
    let nl = bytes.indexOf(10, pos);
    if (nl < 0 || nl >= completeBytes) nl = completeBytes;
    const got = handleLine(state, decoder.decode(bytes.subarray(pos, nl)), state.offset + pos, nl - pos);
    if (got) added.push(got);
    pos = nl + 1;
  }
  state.offset += completeBytes;
  state.partial = decoder.decode(bytes.subarray(completeBytes));
  // A whole JSON object without its newline: the writer stopped right before it. Read it as a line
  // (a line still being written cannot parse: its closing brace comes last).
  if (state.partial && isJsonObject(state.partial)) {
    const got = handleLine(state, state.partial, state.offset, bytes.length - completeBytes);
    if (got) added.push(got);
    state.offset += bytes.length - completeBytes;
    state.partial = "";
  }
  return added;
}

function isJsonObject(text) {
  try {
    const value = JSON.parse(text);
    return value !== null && typeof value === "object" && !Array.isArray(value);
  } catch (err) {
    return false;
  }
}

async function fetchPage(state, endpoint, maxBytes) {
  const url = "api/" + endpoint + "?file=" + encodeURIComponent(state.file) + "&offset=" + state.offset +
    "&max=" + maxBytes + (endpoint === "tail" ? "&wait=" + TAIL_WAIT_SECONDS : "");
  const response = await fetch(url);
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.error || "HTTP " + response.status);
  }
  const bytes = new Uint8Array(await response.arrayBuffer());
  state.size = Number(response.headers.get("X-Size"));
  return consumeBytes(state, bytes, Number(response.headers.get("X-Complete-Bytes")));
}

async function fetchFullLine(state, rec) {
  const url = "api/page?file=" + encodeURIComponent(state.file) + "&offset=" + rec._line.at + "&max=" + (rec._line.length + 1);
  const text = await (await fetch(url)).text();
  return JSON.parse(text.split("\n")[0]);
}

/* ---------- one run ---------- */

async function showRun(main, file) {
  const mine = generation;
  const state = newState(file);
  document.getElementById("where").textContent = file;
  const view = buildRunView(state);
  main.replaceChildren(view.root);
  main.focus();
  if (embedded) {
    const bytes = new TextEncoder().encode(embedded.text);
    const complete = bytes.lastIndexOf(10) + 1;
    view.add(consumeBytes(state, bytes, complete));
    view.refresh(true);
    return;
  }
  try {
    let maxBytes = FIRST_PAGE_BYTES;
    for (;;) {
      const added = await fetchPage(state, "page", maxBytes);
      if (mine !== generation) return;
      view.add(added);
      view.refresh(false);
      // Small pages until the first iteration shows (a page holds at least one whole line), then big ones.
      if (state.root && state.root.iterations.length) maxBytes = PAGE_BYTES;
      if (state.offset >= state.size || (!added.length && state.partial && state.offset + new TextEncoder().encode(state.partial).length >= state.size)) break;
      await new Promise((r) => setTimeout(r, 0)); // let the page paint between pages
    }
    view.refresh(true);
    view.root.dataset.loaded = "true";
    // A run without its result line may still be running: follow it.
    while (!state.finished && mine === generation) {
      view.setLive(true);
      const added = await fetchPage(state, "tail", PAGE_BYTES);
      if (mine !== generation) return;
      view.add(added);
      view.refresh(true);
      if (added.length) announce("Iteration " + added[added.length - 1].record.iteration + " arrived");
    }
    view.setLive(false);
  } catch (err) {
    if (mine === generation) view.fail(err);
  }
}

function buildRunView(state) {
  const summary = h("section", { class: "run-summary", "aria-labelledby": "run-title" });
  const problems = h("section", { class: "problems", id: "problems", hidden: true, "aria-labelledby": "problems-title" });
  const usage = h("section", { class: "usage", id: "usage", "aria-labelledby": "usage-title" });
  // Mouse shortcut only: the iteration list below is the keyboard path to the same content.
  const waterfall = h("div", { class: "waterfall", id: "waterfall", onclick: (event) => {
    const at = event.target.dataset && event.target.dataset.iteration;
    const li = at && [...timeline.children].find((item) => String(item._record.iteration) === at);
    if (li) { li._open(); li.scrollIntoView({ block: "start" }); li.querySelector("summary").focus(); }
  } });
  const searchBox = h("input", { type: "search", id: "search", placeholder: "words in replies, code, outputs, sub-calls, strategy actions", oninput: onSearch });
  const searchStatus = h("p", { id: "search-status", class: "muted", "aria-live": "polite" });
  const timeline = h("ol", { class: "timeline", id: "timeline", onkeydown: timelineKeys });
  const partial = h("p", { id: "partial-line", class: "problem", hidden: true });
  const live = h("p", { id: "live", class: "badge badge-live", hidden: true }, "Live: new lines appear as the run writes them");
  let query = "";
  let searchTimer = null;
  let waterfallTimer = null;
  const root = h("article", { class: "run", id: "run" },
    h("nav", { "aria-label": "Breadcrumb" }, embedded ? h("span", { class: "muted" }, "Exported run") : h("a", { href: "#/" }, "← All runs")),
    summary, live, problems, usage,
    h("details", { class: "panel", open: true, id: "waterfall-panel" },
      h("summary", {}, h("h2", { class: "inline" }, "Where the time went")), waterfall),
    h("section", { "aria-labelledby": "timeline-title" },
      h("h2", { id: "timeline-title" }, "Iterations"),
      h("div", { class: "toolbar", role: "search" }, h("label", { for: "search" }, "Search "), searchBox, searchStatus),
      timeline, partial));

  function add(added) {
    for (const { run, record } of added) {
      if (run !== state.root) continue;
      timeline.append(iterationItem(state, run, record, () => query));
      if (timeline.children.length === 1) performance.mark("rlm-first-iteration"); // read by the benchmark
    }
    if (query && added.length) applySearch();
  }

  function refresh(final) {
    renderSummary(summary, state);
    renderProblems(problems, state);
    renderUsage(usage, state);
    if (state.partial && !state.finished) {
      partial.hidden = false;
      partial.textContent = "The last line is incomplete (" + state.partial.length + " characters so far): the run is still writing it, or its writer stopped mid-line.";
    } else partial.hidden = true;
    clearTimeout(waterfallTimer);
    waterfallTimer = setTimeout(() => renderWaterfall(waterfall, state), final ? 0 : 300);
  }

  function onSearch() {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { query = searchBox.value.trim().toLowerCase(); applySearch(); }, 150);
  }

  function applySearch() {
    let matches = 0, opened = 0;
    for (const li of timeline.children) {
      const hit = !query || haystack(state, li._record).includes(query);
      li.hidden = !hit;
      if (hit && query) {
        matches += 1;
        if (opened < MAX_AUTO_OPEN) { li._open(); opened += 1; }
      } else if (li._isOpen()) li._rebuild();
    }
    searchStatus.textContent = query
      ? matches + " of " + timeline.children.length + " iterations match “" + query + "”"
      : "";
  }

  return {
    root, add, refresh,
    setLive(on) { live.hidden = !on; },
    fail(err) {
      root.append(h("p", { class: "alert", role: "alert" }, "Could not read this log: " + err.message));
    },
  };
}

function renderSummary(section, state) {
  const meta = (state.root && state.root.meta) || {};
  const result = state.root && state.root.result;
  const stop = result ? result.stop_reason : "unfinished";
  const source = result ? answerSourceText(result.answer_source) : null;
  const items = [
    ["Answer", result ? result.response || "(empty)" : "no answer yet"],
    ["Stop reason", [stopBadge(stop, result && result.error),
      source ? h("span", { class: "answer-source", id: "answer-source" }, " · " + source) : null]],
    ["Strategy", h("span", { id: "run-strategy", class: meta.strategy ? "strategy-name" : "muted" }, meta.strategy || "no strategy")],
    meta.system_prompt_author ? ["System prompt by", authorName(meta.system_prompt_author)] : null,
    servedText(meta.extra && meta.extra.served) ? ["Served", h("span", { id: "run-served" }, servedText(meta.extra.served))] : null,
    ["Root model", meta.root_model || "—"],
    ["Sub models", (meta.sub_models || []).join(", ") || "—"],
    ["Started", fmtTime(meta.started_at)],
    ["Duration", result ? fmtDuration(result.execution_time) : "—"],
    ["Iterations", result ? fmtInt(result.iterations) + " of " + fmtInt(meta.max_iterations) : fmtInt(state.root ? state.root.iterations.length : 0) + " so far"],
    ["Environment", meta.environment || "—"],
    ["Run id", meta.run_id || "—"],
  ];
  const banner = [];
  if (result && result.error) banner.push(h("p", { class: "alert", role: "alert" }, "Error: " + result.error));
  if (result && BUDGET_STOPS[stop]) {
    const answered = result.answer_source === "last_turn_extract" ? "; the answer shown was read out of the model's last turn"
      : result.answer_source === "partial" ? "; the answer shown is the text the model wrote last" : "";
    banner.push(h("p", { class: "alert stop", id: "stop-banner" }, "The run " + BUDGET_STOPS[stop] + " before a final answer" + answered + "."));
  }
  if (result && stop === "strategy" && !result.error) {
    banner.push(h("p", { class: "alert by-strategy", id: "strategy-banner" }, "The model did not finish this run itself: its answer was accepted by " + (result.answer_source || "its strategy") + "."));
  }
  section.replaceChildren(
    h("h2", { id: "run-title" }, meta.root_prompt || (state.root ? "Run " + (meta.run_id || "").slice(0, 8) : "Not an rlm-core log")),
    ...banner,
    h("dl", { class: "facts" }, items.filter(Boolean).map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", { class: k === "Answer" ? "answer" : null }, v)))));
}

function renderProblems(section, state) {
  const items = state.problems.slice(0, 200);
  if (!state.root && state.offset > 0 && !state.problems.some((p) => p.kind === "foreign"))
    items.unshift({ lineNo: 1, kind: "foreign", text: "no metadata line: this does not look like a log written by RLMLogger" });
  section.hidden = !items.length;
  if (!items.length) return;
  section.replaceChildren(
    h("h2", { id: "problems-title" }, "Lines this viewer could not read"),
    h("ul", {}, items.map((p) => h("li", { class: "problem problem-" + p.kind }, h("strong", {}, "Line " + p.lineNo + " (" + p.kind + "): "), p.text))),
    state.problems.length > items.length ? h("p", {}, "… and " + (state.problems.length - items.length) + " more") : null);
}

/* ---------- usage against budgets ---------- */

function allCalls(state) {
  const calls = [];
  for (const run of state.runs.values()) for (const it of run.iterations) for (const c of it.calls || []) calls.push(c);
  return calls;
}

function usageTiers(state) {
  const result = state.root && state.root.result;
  if (result && Array.isArray(result.usage_summary)) return tierTotals(result.usage_summary);
  // Still running: add up the model calls logged so far.
  const rows = allCalls(state).map((c) => ({ tier: c.tier, model: c.model, calls: 1, input_tokens: (c.usage || {}).input_tokens, output_tokens: (c.usage || {}).output_tokens, cost: c.cost }));
  return tierTotals(rows);
}

function meterRow(label, used, budget, format) {
  const ratio = budget ? used / budget : 0;
  return h("div", { class: "meter-row" + (ratio >= 0.9 ? " over" : "") },
    h("span", { class: "meter-label" }, label),
    budget ? h("meter", { min: 0, max: budget, value: Math.min(used, budget), high: budget * 0.9, "aria-label": label + " used of budget" }) : h("span", { class: "muted" }, "no limit"),
    h("span", { class: "num" }, format(used) + (budget ? " / " + format(budget) + " (" + Math.round(ratio * 100) + "%)" : "")));
}

function renderUsage(section, state) {
  const meta = (state.root && state.root.meta) || {};
  const tiers = usageTiers(state);
  const budgets = { root: meta.max_root_tokens, sub: meta.max_sub_tokens };
  let totalCost = null, totalCalls = 0;
  const rows = Object.entries(tiers).map(([tier, t]) => {
    if (t.cost != null) totalCost = (totalCost || 0) + t.cost;
    totalCalls += t.calls;
    return h("tr", {},
      h("th", { scope: "row" }, tier), h("td", {}, [...t.models].join(", ")), h("td", { class: "num" }, fmtInt(t.calls)),
      h("td", { class: "num" }, fmtInt(t.input)), h("td", { class: "num" }, fmtInt(t.output)),
      h("td", { class: "num" }, fmtInt(t.input + t.output) + (budgets[tier] ? " / " + fmtInt(budgets[tier]) : "")),
      h("td", { class: "num" }, fmtCost(t.cost)));
  });
  const meters = Object.entries(tiers).map(([tier, t]) => meterRow(tier + " tokens", t.input + t.output, budgets[tier], fmtInt));
  meters.push(meterRow("cost", totalCost || 0, meta.max_cost, fmtCost));
  if (meta.max_llm_calls) meters.push(meterRow("model calls", totalCalls, meta.max_llm_calls, fmtInt));
  section.replaceChildren(
    h("h2", { id: "usage-title" }, "Usage per tier against the budgets"),
    h("div", { class: "meters" }, meters),
    h("div", { class: "table-wrap" }, h("table", { class: "usage-table" },
      h("thead", {}, h("tr", {}, ["Tier", "Models", "Calls", "Input tokens", "Output tokens", "Tokens / budget", "Cost"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows))));
}

/* ---------- the waterfall ---------- */

function renderWaterfall(container, state) {
  const meta = state.root && state.root.meta;
  if (!meta) { container.replaceChildren(); return; }
  const lanes = { root: [], sub: [], code: [] };
  for (const run of state.runs.values()) {
    for (const it of run.iterations) {
      // Spans of the top-level run know their iteration: clicking one opens it (child spans open the parent's).
      const at = run === state.root ? it.iteration : null;
      for (const c of it.calls || []) lanes[c.tier === "root" ? "root" : "sub"].push({ start: c.started_at, dur: c.latency, label: c.purpose + " · " + c.model + " · " + fmtDuration(c.latency), error: c.error, at });
      for (const b of it.code_blocks || []) {
        const author = authorOf(b);
        lanes.code.push({ start: b.started_at, dur: b.duration, label: "code cell, iteration " + it.iteration + (run === state.root ? "" : " of a child run") + (author === "model" ? "" : " · run by " + author) + " · " + fmtDuration(b.duration), error: b.error, at, strategy: author !== "model" });
      }
    }
  }
  const t0 = meta.started_at;
  let end = t0;
  for (const spans of Object.values(lanes)) for (const s of spans) end = Math.max(end, (s.start || t0) + (s.dur || 0));
  const result = state.root.result;
  if (result) end = Math.max(end, t0 + result.execution_time);
  const total = Math.max(end - t0, 1e-6);
  const names = { root: "Root model calls", sub: "Sub-calls (models)", code: "Code cells" };
  const sums = Object.fromEntries(Object.entries(lanes).map(([k, v]) => [k, v.reduce((a, s) => a + (s.dur || 0), 0)]));
  container.replaceChildren(
    h("p", { class: "muted" }, "Wall time " + fmtDuration(total) + ". Summed: root calls " + fmtDuration(sums.root) + ", sub-calls " + fmtDuration(sums.sub) + " (they may overlap), code " + fmtDuration(sums.code) + "."),
    h("div", { class: "lanes" }, Object.entries(lanes).map(([lane, spans]) => h("div", { class: "lane" },
      h("span", { class: "lane-label" }, names[lane] + " (" + spans.length + ")"),
      h("div", { class: "track", role: "img", "aria-label": names[lane] + ": " + spans.length + " spans, " + fmtDuration(sums[lane]) + " in total" },
        spans.map((s) => h("span", {
          class: "bar bar-" + lane + (s.strategy ? " bar-by-strategy" : "") + (s.error ? " bar-error" : ""), title: s.label, "data-iteration": s.at,
          style: "left:" + (((s.start || t0) - t0) / total * 100).toFixed(3) + "%;width:" + Math.max((s.dur || 0) / total * 100, 0.15).toFixed(3) + "%",
        })))))));
}

/* ---------- iterations, code cells, the sub-call tree ---------- */

function lazyDetails(attrs, summaryChildren, build) {
  // The body is built when first opened, so a run with thousands of sub-calls renders at once.
  const details = h("details", attrs, h("summary", {}, summaryChildren));
  let built = false;
  details.addEventListener("toggle", () => {
    if (details.open && !built) { built = true; details.append(build()); }
  });
  return details;
}

function iterationItem(state, run, rec, getQuery) {
  const subcalls = countSubcalls(rec);
  const hasError = (rec.code_blocks || []).some((b) => b.error || b.timed_out) || (rec.calls || []).some((c) => c.error);
  const rootUsage = rec.root_usage || {};
  const tokens = (rootUsage.input_tokens || 0) + (rootUsage.output_tokens || 0);
  const strategyCells = (rec.code_blocks || []).filter((b) => authorOf(b) !== "model").length;
  const actions = rec.actions || [];
  const acceptedBy = byStrategy(rec.answer_source) ? rec.answer_source : null;
  const details = h("details", { class: "iteration" + (hasError ? " has-error" : "") + (rec.final_answer != null ? " is-final" + (acceptedBy ? " accepted-by-strategy" : "") : "") + (actions.length || strategyCells ? " has-strategy" : "") });
  const body = h("div", { class: "body" });
  let built = false;
  details.append(
    h("summary", {},
      h("span", { class: "it-title" }, "Iteration " + rec.iteration),
      h("span", { class: "chip" }, fmtDuration(rec.duration)),
      h("span", { class: "chip" }, fmtInt(tokens) + " root tokens"),
      subcalls ? h("span", { class: "chip" }, subcalls + " sub-calls") : null,
      (rec.code_blocks || []).length ? h("span", { class: "chip" }, rec.code_blocks.length + " code cells") : null,
      hasError ? h("span", { class: "badge badge-bad" }, "error") : null,
      (rec.notes || []).length ? h("span", { class: "badge badge-note" }, "engine note") : null,
      strategyCells ? h("span", { class: "badge badge-strategy" }, strategyCells === 1 ? "1 cell run by a strategy" : strategyCells + " cells run by a strategy") : null,
      actions.length ? h("span", { class: "badge badge-strategy" }, actions.length === 1 ? "1 strategy action" : actions.length + " strategy actions") : null,
      rec.final_answer != null ? (acceptedBy
        ? h("span", { class: "badge badge-strategy" }, "answer accepted by " + acceptedBy)
        : h("span", { class: "badge badge-ok" }, "final answer")) : null,
      h("span", { class: "preview" }, shorten(String(rec.response || "").replace(/\s+/g, " "), 90))),
    body);
  const build = () => { body.replaceChildren(iterationBody(state, rec, getQuery())); built = true; };
  details.addEventListener("toggle", () => { if (details.open && !built) build(); });
  const li = h("li", {}, details);
  li._record = rec;
  li._open = () => { details.open = true; build(); };
  li._isOpen = () => details.open;
  li._rebuild = () => { if (details.open) build(); else built = false; };
  return li;
}

function countSubcalls(rec) {
  let n = 0;
  const walk = (calls) => (calls || []).forEach((c) => { n += 1; walk(c.children); });
  (rec.code_blocks || []).forEach((b) => walk(b.subcalls));
  return n;
}

function pre(label, text, q, cls, fullLength) {
  if (text == null || text === "") return null;
  const cut = fullLength ? h("p", { class: "muted small shortened" }, "Shortened: " + fmtInt(fullLength - text.length) + " more characters (Show the full texts, above).") : null;
  return h("div", { class: "block " + (cls || "") }, h("h4", {}, label), h("pre", { tabindex: "0" }, marked(text, q)), cut);
}

function iterationBody(state, rec, q) {
  const callsBySpan = new Map((rec.calls || []).map((c) => [c.parent_span_id, c]));
  const parts = [];
  if (rec._line) {
    parts.push(h("p", { class: "muted" }, "Long texts are shortened here. ",
      h("button", { type: "button", onclick: async (e) => {
        const full = await fetchFullLine(state, rec);
        e.target.closest(".body").replaceChildren(iterationBody(state, full, q));
      } }, "Show the full texts")));
  }
  parts.push(pre("Model reply", rec.response, q, "reply", rec._response_full));
  (rec.code_blocks || []).forEach((b, i) => {
    const author = authorOf(b);
    const mine = author === "model";
    parts.push(h("section", { class: "cell " + (mine ? "by-model" : "by-strategy") + (b.error || b.timed_out ? " has-error" : ""), "data-author": author },
      h("h3", {}, "Code cell " + (i + 1),
        mine ? h("span", { class: "author-label" }, "model")
          : h("span", { class: "badge badge-strategy cell-author" }, "run by " + author + " — not the model's code"),
        h("span", { class: "chip" }, fmtDuration(b.duration)), b.timed_out ? h("span", { class: "badge badge-bad" }, "timed out") : null,
        b.final_source ? h("span", { class: "badge badge-ok" }, "finished the run · " + b.final_source) : null),
      pre("Code", b.code, q, "code", b._code_full),
      pre("Output", b.stdout, q, "stdout", b._stdout_full),
      pre("Standard error", b.stderr, q, "stderr", b._stderr_full),
      pre("Error", b.error, q, "error", b._error_full),
      b.final_answer != null ? pre("Final answer", b.final_answer, q) : null,
      (b.subcalls || []).length ? h("div", { class: "block" }, h("h4", {}, "Sub-calls"), subcallTree(state, b.subcalls, callsBySpan, q)) : null));
  });
  if ((rec.notes || []).length) parts.push(h("div", { class: "block notes" }, h("h4", {}, "Engine notes to the model"), h("ul", {}, rec.notes.map((n) => h("li", {}, marked(n, q))))));
  if ((rec.actions || []).length) parts.push(actionsBlock(rec.actions, q));
  if (rec.final_answer != null) {
    const source = answerSourceText(rec.answer_source);
    parts.push(pre("Final answer" + (source ? " · " + source : ""), rec.final_answer, q, "final" + (byStrategy(rec.answer_source) ? " by-strategy" : "")));
  }
  const messages = rec.new_messages || [];
  if (messages.length) {
    const authors = new Map();
    for (const m of messages) if (m.author) authors.set(m.author, (authors.get(m.author) || 0) + 1);
    const by = [...authors].map(([a, n]) => authorName(a) + " " + n).join(", ");
    parts.push(lazyDetails({ class: "messages" }, "Messages added this turn (" + messages.length + (by ? ": " + by : "") + ")", () =>
      h("div", {}, messages.map((m) => pre(m.role + (m.author ? " message · by " + authorName(m.author) : ""), m.content, q,
        "message" + (byStrategy(m.author) ? " by-strategy" : ""), m._content_full)))));
  }
  return h("div", {}, parts);
}

function actionsBlock(actions, q) {
  // A strategy's actions, apart from the engine's own notes: who, what, and what it said.
  return h("div", { class: "block actions" },
    h("h4", {}, "Strategy actions (not the engine's, not the model's)"),
    h("ol", { class: "action-list" }, actions.map((a) => actionItem(a || {}, q))));
}

function actionItem(action, q) {
  const detail = action.detail && typeof action.detail === "object" ? action.detail : {};
  const kind = String(action.action || "unknown");
  const fields = [];
  const field = (label, value, cls) => fields.push(h("div", { class: "action-field " + (cls || "") },
    h("span", { class: "action-key" }, label + ": "), h("span", { class: "action-value" }, marked(value, q))));
  const shortened = (key) => detail["_" + key + "_full"]
    ? h("p", { class: "muted small shortened" }, "Shortened: " + fmtInt(detail["_" + key + "_full"] - String(detail[key]).length) + " more characters (Show the full texts, above).") : null;
  const known = new Set(["text", "why", "code", "reply", "max_tokens", "tier", "chars"]);
  if (detail.text != null && detail.text !== "") field(kind === "accept_answer" ? "Answer" : "Said", detail.text, "action-text");
  if (detail.why != null && detail.why !== "") field("Why", detail.why, "action-why");
  if (detail.max_tokens != null) field("Cap", fmtInt(detail.max_tokens) + " output tokens for " + (detail.tier === "sub" ? "sub-calls" : "root calls"), "action-cap");
  if (detail.chars != null) field("Cap", "at most " + fmtInt(detail.chars) + " characters of each cell's output", "action-cap");
  if (detail.code != null) fields.push(h("div", { class: "action-field action-code" }, h("span", { class: "action-key" }, "Code (its cell is shown above, marked as the strategy's):"), h("pre", { tabindex: "0" }, marked(detail.code, q)), shortened("code")));
  if ("reply" in detail) fields.push(h("div", { class: "action-field action-reply" }, h("span", { class: "action-key" }, "The model's reply:"),
    h("pre", { tabindex: "0" }, marked(detail.reply == null || detail.reply === "" ? "(empty)" : detail.reply, q)), shortened("reply")));
  for (const [key, value] of Object.entries(detail)) {
    if (known.has(key) || key.startsWith("_")) continue;
    field(key, typeof value === "string" ? value : JSON.stringify(value), "action-other");
  }
  return h("li", { class: "action action-" + kind.replace(/[^a-z_]/gi, "") },
    h("div", { class: "action-head" },
      h("span", { class: "badge badge-strategy" }, "strategy:" + (action.strategy || "?")),
      " ", h("span", { class: "fn" }, kind),
      ACTION_LABELS[kind] ? h("span", { class: "chip" }, ACTION_LABELS[kind]) : null),
    fields);
}

function subcallTree(state, subcalls, callsBySpan, q) {
  // Batched slots are grouped under their batch, in the order the batch was first seen.
  const order = [];
  const batches = new Map();
  for (const sc of subcalls) {
    if (sc.batch_id) {
      if (!batches.has(sc.batch_id)) { batches.set(sc.batch_id, []); order.push({ batch: sc.batch_id }); }
      batches.get(sc.batch_id).push(sc);
    } else order.push({ sc });
  }
  return h("ul", { class: "tree" }, order.map((item) => item.batch
    ? batchItem(state, batches.get(item.batch), callsBySpan, q)
    : h("li", {}, subcallItem(state, item.sc, callsBySpan, q))));
}

function sumUsage(calls) {
  const u = { input: 0, output: 0, cost: null, errors: 0, longest: 0 };
  for (const c of calls) {
    u.input += (c.usage || {}).input_tokens || 0; u.output += (c.usage || {}).output_tokens || 0;
    if (c.cost != null) u.cost = (u.cost || 0) + c.cost;
    if (c.error) u.errors += 1;
    u.longest = Math.max(u.longest, c.duration || 0);
  }
  return u;
}

function batchItem(state, group, callsBySpan, q) {
  const u = sumUsage(group);
  return h("li", {}, lazyDetails({ class: "batch" + (u.errors ? " has-error" : "") },
    [h("span", { class: "fn" }, "llm_query_batched"), h("span", { class: "chip" }, group.length + " slots"),
      h("span", { class: "chip" }, fmtInt(u.input) + " → " + fmtInt(u.output) + " tokens"), h("span", { class: "chip" }, fmtCost(u.cost)),
      h("span", { class: "chip" }, "slowest " + fmtDuration(u.longest)), u.errors ? h("span", { class: "badge badge-bad" }, u.errors + " failed") : null],
    () => h("ul", { class: "tree" }, group.slice().sort((x, y) => (x.batch_index ?? 0) - (y.batch_index ?? 0))
      .map((sc) => h("li", {}, subcallItem(state, sc, callsBySpan, q))))));
}

function subcallItem(state, sc, callsBySpan, q) {
  const call = callsBySpan.get(sc.span_id);
  const tier = call ? call.tier : sc.depth > 0 ? "sub" : "root";
  const childId = sc.child_run_id || state.childOfSpan.get(sc.span_id);
  const child = childId ? state.runs.get(childId) : null;
  const label = [
    h("span", { class: "fn" }, sc.function + (sc.batch_index != null ? " [" + sc.batch_index + "]" : "")),
    h("span", { class: "chip" }, "depth " + sc.depth), h("span", { class: "chip" }, tier),
    h("span", { class: "chip" }, sc.model || "—"),
    h("span", { class: "chip" }, fmtInt((sc.usage || {}).input_tokens) + " → " + fmtInt((sc.usage || {}).output_tokens) + " tokens"),
    h("span", { class: "chip" }, fmtCost(sc.cost)), h("span", { class: "chip" }, fmtDuration(sc.duration)),
    child ? h("span", { class: "badge badge-note" }, "child RLM · " + child.iterations.length + " iterations") : null,
    sc.error ? h("span", { class: "badge badge-bad" }, "error") : null,
  ];
  return lazyDetails({ class: "subcall" + (sc.error ? " has-error" : "") + (child ? " has-child" : "") }, label, () => h("div", { class: "body" },
    pre("Prompt", sc.prompt, q, null, sc._prompt_full), pre("Response", sc.response, q, null, sc._response_full), pre("Error", sc.error, q, "error"),
    (sc.children || []).length && !child ? h("div", { class: "block" }, h("h4", {}, "Nested calls"), subcallTree(state, sc.children, callsBySpan, q)) : null,
    child ? childRunSection(state, child, q) : null));
}

function childRunSection(state, child, q) {
  const result = child.result;
  const list = h("ol", { class: "timeline nested", onkeydown: timelineKeys }, child.iterations.map((rec) => iterationItem(state, child, rec, () => q)));
  return h("section", { class: "child-run" },
    h("h4", {}, "Child RLM run " + child.meta.run_id.slice(0, 8) + " (depth " + child.meta.depth + ", " + child.meta.root_model + ")",
      result ? stopBadge(result.stop_reason, result.error) : stopBadge("unfinished"),
      result && answerSourceText(result.answer_source) ? h("span", { class: "chip answer-source" }, answerSourceText(result.answer_source)) : null),
    result ? h("p", {}, "Answer: ", marked(result.response, q)) : null,
    list);
}

function haystack(state, rec) {
  if (!rec._haystack) {
    const parts = [rec.response, ...(rec.notes || []), rec.final_answer, rec.answer_source];
    for (const a of rec.actions || []) {
      if (!a) continue;
      parts.push("strategy:" + a.strategy, a.action);
      for (const value of Object.values(a.detail || {})) if (typeof value === "string") parts.push(value);
    }
    const walk = (calls) => (calls || []).forEach((c) => {
      parts.push(c.prompt, c.response, c.error, c.model);
      const childId = c.child_run_id || state.childOfSpan.get(c.span_id);
      const child = childId && state.runs.get(childId);
      if (child) child.iterations.forEach((it) => parts.push(haystack(state, it)));
      walk(c.children);
    });
    for (const b of rec.code_blocks || []) { parts.push(b.code, b.stdout, b.stderr, b.error, b.author); walk(b.subcalls); }
    rec._haystack = parts.filter((p) => p != null).join("\n").toLowerCase();
  }
  return rec._haystack;
}

function timelineKeys(event) {
  // Arrow keys move between the iterations (or sub-calls) of the list the focus is in.
  const current = document.activeElement;
  if (!current || current.tagName !== "SUMMARY") return;
  const list = current.closest("ol, ul");
  if (!list || list !== event.currentTarget && !event.currentTarget.contains(list)) return;
  const summaries = [...list.querySelectorAll(":scope > li:not([hidden]) > details > summary")];
  if (moveFocus(summaries, current, event.key)) { event.preventDefault(); event.stopPropagation(); }
}

window.addEventListener("hashchange", route);
route();
