// newsrec demo page: the feed of one reader, clicks sent as events, a live side panel. Plain DOM, no framework.
// Every time shown comes from the service's clock (now_s in its answers), never the browser's: a demo world may
// live in the past.
"use strict";

const FEED_K = 10;
const POLL_MS = 600;           // after a click: how often to re-ask for the feed
const POLL_LIMIT_MS = 15000;   // ...and for how long before saying the feed has not changed yet
const SIDE_REFRESH_MS = 5000;  // trending and latency
const LATENCY_WINDOW = 200;    // rolling window of this page's own feed round trips
const READER_TRIES = 10;       // sample readers: asked again while none come back (a store that timed out, a stack
const READER_RETRY_MS = 2000;  // still loading histories), then "No sample readers"

const $ = (id) => document.getElementById(id);
const state = { reader: null, items: [], meta: null, articles: new Map(), read: new Set(), latencies: [],
                polling: false, clockOffsetS: null };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else if (k === "style") node.style.cssText = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

async function api(path, options = {}) {
  const started = performance.now();
  const resp = await fetch(path, { headers: { "Accept": "application/json", ...(options.headers || {}) }, ...options });
  let body = null;
  try { body = await resp.json(); } catch (_) { body = null; }
  return { ok: resp.ok, status: resp.status, body, ms: performance.now() - started };
}

function reason(body, fallback) {
  if (!body) return fallback;
  const d = body.detail;
  return Array.isArray(d) ? d.join("; ") : (d || body.error || fallback);
}

function setStatus(node, text, kind = "") {
  node.textContent = text;
  node.className = `status${node.classList.contains("small") ? " small" : ""}${kind ? " " + kind : ""}`;
}

// --- time, by the service's clock ---------------------------------------------------------------------------
function serverNowS() {
  return state.clockOffsetS === null ? null : Date.now() / 1000 + state.clockOffsetS;
}

function noteServerNow(nowS) {
  state.clockOffsetS = nowS - Date.now() / 1000;
  const date = new Date(nowS * 1000);
  $("dateline").textContent = date.toLocaleDateString("en-GB", { weekday: "long", day: "numeric", month: "long",
    year: "numeric", timeZone: "UTC" }) + " · " + date.toLocaleTimeString("en-GB", { hour: "2-digit",
    minute: "2-digit", timeZone: "UTC" }) + " UTC";
}

function ago(ageS) {
  if (ageS < 60) return "just now";
  if (ageS < 3600) return `${Math.round(ageS / 60)} min ago`;
  if (ageS < 86400) return `${Math.round(ageS / 3600)} h ago`;
  return `${Math.round(ageS / 86400)} d ago`;
}

function chipColor(name) {
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.charCodeAt(0)) % 360;
  return `hsl(${h}, 55%, 38%)`;
}

// --- article metadata ---------------------------------------------------------------------------------------
async function loadArticles(ids) {
  const wanted = ids.filter((id) => !state.articles.has(id));
  for (let i = 0; i < wanted.length; i += 100) {
    const r = await api(`/v1/articles?ids=${encodeURIComponent(wanted.slice(i, i + 100).join(","))}`);
    if (!r.ok) continue;
    noteServerNow(r.body.now_s);
    for (const a of r.body.articles) state.articles.set(a.news_id, a);
  }
}

function articleAge(a) {
  const now = serverNowS();
  return now === null ? a.age_s : Math.max(now - a.publish_s, 0);
}

function titleOf(id) {
  const a = state.articles.get(id);
  return a && a.title ? a.title : `Story ${id}`;
}

// --- the feed -----------------------------------------------------------------------------------------------
function why(item, meta) {
  const score = item.score.toFixed(2);
  const model = `model ${meta.model_version.split("-")[0]}`;  // v0001; the full version is in the feed's header
  const degraded = meta.degraded.join(", ");
  switch (meta.source) {  // \u00a0 keeps a number on the line of its name
    case "ranked": return ["Picked for you", `ranked by ${model} · score\u00a0${score}`];
    case "retrieval": return ["Picked for you",
      `retrieval order, ranker skipped (${degraded || "deadline"}) · ${model} · similarity\u00a0${score}`];
    case "cold_start": return ["Popular now", `new reader, no history yet · ${model} · popularity\u00a0${score}`];
    case "trending": return ["Trending", `fallback (${degraded || "degraded"}) · popularity\u00a0${score}`];
    default: return [meta.source, `${model} · score\u00a0${score}`];
  }
}

function renderFeed(newIds = new Set()) {
  const list = $("feed");
  list.replaceChildren();
  if (!state.items.length) {
    list.append(el("li", { class: "empty", text: "No stories for this reader right now." }));
    return;
  }
  for (const item of state.items) {
    const a = state.articles.get(item.news_id) || {};
    const category = a.category || item.category || "news";
    const [label, detail] = why(item, state.meta);
    const card = el("li", { class: "card", "data-news-id": item.news_id });
    if (newIds.has(item.news_id)) card.classList.add("is-new");
    if (state.read.has(item.news_id)) card.classList.add("is-read");
    const top = el("div", { class: "card-top" },
      el("span", { class: "chip", style: `--chip: ${chipColor(category)}`, text: category }),
      a.subcategory ? el("span", { text: a.subcategory }) : null,
      el("span", { "aria-hidden": "true", text: "·" }),
      el("time", { text: a.publish_s !== undefined ? ago(articleAge(a)) : "" }),
      newIds.has(item.news_id) ? el("span", { class: "badge", text: "New" }) : null,
      state.read.has(item.news_id) ? el("span", { class: "badge read", text: "Read" }) : null);
    const button = el("button", { type: "button", class: "story", "data-news-id": item.news_id,
                                  text: titleOf(item.news_id) });
    button.addEventListener("click", () => clickStory(item.news_id));
    const whyLine = el("p", { class: "why" }, el("b", { text: label }), ` — ${detail}`);
    card.append(top, el("h3", { class: "headline" }, button), whyLine);
    list.append(card);
  }
}

function renderFeedMeta() {
  const m = state.meta;
  const total = Object.values(m.timings_ms).reduce((s, v) => s + v, 0);
  $("feed-title").textContent = `Top stories for ${m.user_id}`;
  $("feed-meta").textContent = `${m.source === "ranked" ? "Personalised" : "Fallback: " + m.source} · model ` +
    `${m.model_version} · index v${m.index_version} · ${total.toFixed(1)} ms on the server`;
}

async function fetchFeed(reader) {
  const r = await api(`/v1/recommend?user_id=${encodeURIComponent(reader)}&k=${FEED_K}`);
  if (r.ok) recordLatency(r.ms, r.body.timings_ms);
  return r;
}

async function showFeed(reader) {
  state.reader = reader;
  state.read.clear();
  $("feed").setAttribute("aria-busy", "true");
  setStatus($("status"), `Loading the feed for ${reader}…`);
  const r = await fetchFeed(reader);
  if (!r.ok) {
    $("feed").removeAttribute("aria-busy");
    setStatus($("status"), `Could not load the feed: ${reason(r.body, `HTTP ${r.status}`)}`, "error");
    return;
  }
  state.items = r.body.items;
  state.meta = r.body;
  await loadArticles(state.items.map((i) => i.news_id));
  renderFeedMeta();
  renderFeed();
  $("feed").removeAttribute("aria-busy");
  setStatus($("status"), `${state.items.length} stories for ${reader}. Choose one to read it.`);
  refreshHistory();
}

function newEventId() {
  const rand = (window.crypto && crypto.randomUUID) ? crypto.randomUUID()
    : `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
  return `page-${rand}`;
}

async function clickStory(newsId) {
  if (!state.reader) return;
  const reader = state.reader;
  const before = state.items.map((i) => i.news_id).join(",");
  state.read.add(newsId);
  const card = document.querySelector(`.card[data-news-id="${newsId}"]`);
  if (card) card.classList.add("is-read");
  const event = { type: "click", event_id: newEventId(), user_id: reader, news_id: newsId };
  const r = await api("/v1/events", { method: "POST", headers: { "Content-Type": "application/json" },
                                      body: JSON.stringify({ events: [event] }) });
  if (!r.ok) {
    setStatus($("status"), `Could not record the click: ${reason(r.body, `HTTP ${r.status}`)}`, "error");
    return;
  }
  setStatus($("status"), `Recorded: ${reader} read “${titleOf(newsId)}”. Updating the feed…`);
  if (state.polling) return;  // one poll at a time; it compares against the latest feed anyway
  state.polling = true;
  const started = performance.now();
  try {
    while (performance.now() - started < POLL_LIMIT_MS && state.reader === reader) {
      await new Promise((done) => setTimeout(done, POLL_MS));
      const next = await fetchFeed(reader);
      if (!next.ok || state.reader !== reader) continue;
      const ids = next.body.items.map((i) => i.news_id);
      if (ids.join(",") === before) continue;
      const old = new Set(state.items.map((i) => i.news_id));
      const fresh = new Set(ids.filter((id) => !old.has(id)));
      state.items = next.body.items;
      state.meta = next.body;
      await loadArticles(ids);
      renderFeedMeta();
      renderFeed(fresh);
      const secs = ((performance.now() - started) / 1000).toFixed(1);
      setStatus($("status"), `Feed updated ${secs} s after your click: ${fresh.size} new ` +
                `${fresh.size === 1 ? "story" : "stories"}.`, "ok");
      refreshHistory();
      return;
    }
    if (state.reader === reader) {
      setStatus($("status"), "Your click was recorded; the feed has not changed yet.");
    }
  } finally {
    state.polling = false;
  }
}

// --- side panel ---------------------------------------------------------------------------------------------
function percentile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
}

function recordLatency(ms, timings) {
  state.latencies.push(ms);
  if (state.latencies.length > LATENCY_WINDOW) state.latencies.shift();
  const sorted = [...state.latencies].sort((a, b) => a - b);
  $("lat-p50").textContent = `${percentile(sorted, 0.5).toFixed(0)} ms`;
  $("lat-p99").textContent = `${percentile(sorted, 0.99).toFixed(0)} ms`;
  $("lat-last").textContent = `${ms.toFixed(0)} ms`;
  $("lat-note").textContent = `Round trips of this page's last ${sorted.length} feed ` +
    `${sorted.length === 1 ? "request" : "requests"}; bars: server time per stage of the last one.`;
  const max = Math.max(...Object.values(timings), 0.001);
  $("stages").replaceChildren(...Object.entries(timings).map(([stage, v]) => el("li", {},
    el("span", { text: stage.replace("_", " ") }),
    el("span", { class: "bar", "aria-hidden": "true" }, el("span", { style: `width: ${(100 * v / max).toFixed(1)}%` })),
    el("span", { class: "ms", text: `${v.toFixed(2)} ms` }))));
}

function clicks(n) {
  const rounded = Math.round(n);
  return rounded < 1 ? "no recent clicks" : `${rounded} recent ${rounded === 1 ? "click" : "clicks"}`;
}

async function refreshTrending() {
  const r = await api("/v1/trending?k=5");
  if (!r.ok) return;
  noteServerNow(r.body.now_s);
  await loadArticles(r.body.items.map((i) => i.news_id));
  $("trending").replaceChildren(...r.body.items.map((i) => {
    const a = state.articles.get(i.news_id) || {};
    return el("li", {}, el("div", {},
      el("p", { class: "t-title", text: titleOf(i.news_id) }),
      el("p", { class: "t-meta", text: `${i.category} · ${clicks(i.clicks_6h)}` +
        (a.publish_s !== undefined ? ` · ${ago(articleAge(a))}` : "") })));
  }));
}

async function refreshHistory() {
  if (!state.reader) return;
  const r = await api(`/v1/users/${encodeURIComponent(state.reader)}/history?n=5`);
  if (!r.ok) return;
  await loadArticles(r.body.history);
  const items = r.body.history.map((id) => {
    const a = state.articles.get(id) || {};
    return el("li", {}, el("p", { class: "h-title", text: titleOf(id) }),
      el("p", { class: "h-meta", text: [a.category, a.publish_s !== undefined ? ago(articleAge(a)) : null]
        .filter(Boolean).join(" · ") }));
  });
  $("history").replaceChildren(...(items.length ? items
    : [el("li", { class: "muted", text: `${state.reader} has not read anything yet.` })]));
}

// --- publishing ---------------------------------------------------------------------------------------------
async function loadTopics() {
  const r = await api("/v1/topics");
  if (!r.ok) return;
  const cat = $("pub-category");
  const byCat = new Map(r.body.topics.map((t) => [t.category, t.subcategories]));
  cat.replaceChildren(...r.body.topics.map((t) => el("option", { value: t.category, text: t.category })));
  if (byCat.has("news")) cat.value = "news";
  const fillSubs = () => {
    $("pub-subcategory").replaceChildren(...(byCat.get(cat.value) || [])
      .map((s) => el("option", { value: s, text: s })));
  };
  cat.addEventListener("change", fillSubs);
  fillSubs();
}

async function publish(ev) {
  ev.preventDefault();
  const form = ev.target;
  const button = $("publish-button");
  const out = $("publish-status");
  const data = Object.fromEntries(new FormData(form).entries());
  button.disabled = true;
  setStatus(out, "Publishing…");
  try {
    const r = await api("/v1/articles", { method: "POST", headers: { "Content-Type": "application/json" },
                                          body: JSON.stringify(data) });
    if (r.status === 404 || r.status === 405) {
      setStatus(out, "Publishing is not available on this server (POST /v1/articles is not there).", "error");
      return;
    }
    if (!r.ok) {
      setStatus(out, `Not published: ${reason(r.body, `HTTP ${r.status}`)}`, "error");
      return;
    }
    const newsId = r.body && r.body.news_id;
    if (!newsId) { setStatus(out, "Published. It reaches feeds within seconds.", "ok"); return; }
    setStatus(out, `Published ${newsId}; waiting for it to go live…`);
    const started = performance.now();
    while (performance.now() - started < POLL_LIMIT_MS) {
      await new Promise((done) => setTimeout(done, 500));
      const s = await api(`/v1/articles/${newsId}/status`);  // live = in this server's index, inside its lifetime
      if (s.ok && s.body.live) {
        const secs = ((performance.now() - started) / 1000).toFixed(1);
        setStatus(out, `${newsId} is live (${secs} s): readers can now be recommended it.`, "ok");
        refreshTrending();
        return;
      }
    }
    setStatus(out, `Published ${newsId}; it is not retrievable yet.`);
  } catch (err) {
    setStatus(out, "Could not reach the server to publish.", "error");
  } finally {
    button.disabled = false;
  }
}

// --- start --------------------------------------------------------------------------------------------------
async function loadReaders() {
  const select = $("reader-select");
  for (let attempt = 1; ; attempt++) {
    let readers = [];
    try {
      const r = await api("/v1/readers?n=12");
      readers = r.ok ? r.body.readers : [];
    } catch (_) { /* unreachable server: the same as none yet */ }
    if (readers.length || attempt >= READER_TRIES) {
      select.replaceChildren(el("option", { value: "", text: readers.length ? "Choose a reader…" : "No sample readers" }),
        ...readers.map((u) => el("option", { value: u, text: u })));
      return;
    }
    await new Promise((done) => setTimeout(done, READER_RETRY_MS));
  }
}

function start() {
  $("reader-select").addEventListener("change", (ev) => {
    if (ev.target.value) { $("reader-id").value = ""; showFeed(ev.target.value); }
  });
  $("reader-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const typed = $("reader-id").value.trim();
    const reader = typed || $("reader-select").value;
    if (!reader) { setStatus($("status"), "Choose a reader or enter an id like U123.", "error"); return; }
    if (!/^U\d{1,12}$/.test(reader)) { setStatus($("status"), `“${reader}” is not a reader id like U123.`, "error"); return; }
    showFeed(reader);
  });
  $("publish-form").addEventListener("submit", publish);
  loadReaders();
  loadTopics();
  refreshTrending();
  setInterval(refreshTrending, SIDE_REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", start);
