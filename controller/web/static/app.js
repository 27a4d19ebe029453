// The page: sign-in, hearings with their deadlines and verdicts, terminals, live quality,
// break banners with "confirm resume", escalations, a test on demand, suspensions, the act.
// Every string comes from the catalogs (i18n.js); every action is shown only when this
// controller serves its route and the signed-in role holds its permission (api.js Capabilities).

import { api, get, post, del, ApiError, Capabilities } from "./api.js";
import { t, has, setLang, initialLang, currentLang, fmtTime, zoneName, localDate, fmtNumber, applyStatic } from "./i18n.js";
import { drawChart } from "./chart.js";

const A = "/api/v1";
const REFRESH_MS = 10000;
const BANNER_MS = 4000;
const LIVE_MS = 2000;
const LIVE_WINDOW_MS = 2 * 60 * 1000;     // the live API returns the last 120 s
const LIVE_MIN_SPAN_MS = 60 * 1000;
const PRECONNECT_LEAD_MS = 30 * 60 * 1000;
const REASONS = ["riot", "group_disobedience", "escape", "hostage_taking", "natural_disaster",
  "state_of_emergency", "special_regime", "martial_law"];
const PROFILES = ["hearing", "monitor"];
const COLORS = { inbound: "#0b5cad", outbound: "#b34700", rtt: "#5b2c83" };

const state = {
  me: null, caps: null, institutions: new Map(), terminals: [], hearings: [],
  timers: [], bannerTimer: null, view: null, arg: null, live: new Map(), runningTest: null,
};

// --- DOM helpers ------------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const $ = (sel) => document.querySelector(sel);

// Element.replaceChildren with the nulls and arrays h() accepts.
function put(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
}

function badge(kind, value, label) {
  return h("span", { class: `badge ${kind}-${value}` }, label);
}

function verdictBadge(v) { return badge("verdict", v || "unknown", t(`verdict.${v || "unknown"}`)); }
function statusBadge(s) { return badge("status", s, t(`status.${s}`)); }

function toast(msg, isError = false) {
  const el = $("#toast");
  el.textContent = msg;
  el.className = `toast show${isError ? " error" : ""}`;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.className = "toast"; }, 5000);
}

// An API error in the page's language (its stable code), with the server's words for the details.
function errText(e) {
  if (e instanceof ApiError) {
    const said = e.code && has(`error.${e.code}`) ? `${t(`error.${e.code}`)} (${e.message})` : e.message;
    return t("common.error", { message: said });
  }
  return t("common.error", { message: String(e) });
}

async function act(fn, okMsg) {
  try {
    const r = await fn();
    toast(okMsg || t("common.done"));
    return r;
  } catch (e) {
    toast(errText(e), true);
    return undefined;
  }
}

function table(caption, headers, rows, cls = "") {
  for (const tr of rows) {
    [...tr.children].forEach((cell, i) => { if (headers[i] && !cell.dataset.label) cell.dataset.label = headers[i]; });
  }
  return h("div", { class: "table-wrap" },
    h("table", { class: cls },
      caption ? h("caption", { class: "sr-only" }, caption) : null,
      h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, rows)));
}

function instName(id) { return state.institutions.get(id)?.name || id; }
function instTz(id) { return state.institutions.get(id)?.timezone || "UTC"; }
function termName(id) { return state.terminals.find((x) => x.id === id)?.name || id; }

// --- sign-in ----------------------------------------------------------------------------------

async function loadSession() {
  try {
    state.me = await get(`${A}/me`);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) { state.me = null; return false; }
    throw e;
  }
  const doc = await get(`${A}/openapi.json`);
  state.caps = new Capabilities(doc, state.me.permissions);
  return true;
}

function showLogin(message = "") {
  stopTimers();
  $("#login").hidden = false;
  $("#nav").hidden = true;
  $("#view").replaceChildren();
  $("#banners").replaceChildren();
  $("#whoami").hidden = true;
  $("#logout").hidden = true;
  $("#login-error").textContent = message;
  $("#login-user").focus();
}

async function doLogin(body) {
  try {
    await post(`${A}/login`, body);
  } catch (e) {
    const msg = e instanceof ApiError && e.status === 429
      ? t("login.too_many", { seconds: e.body?.retry_after_s ?? "?" })
      : e instanceof ApiError && e.status === 401 ? t("login.wrong") : t("login.failed", { message: e.message });
    $("#login-error").textContent = msg;
    return;
  }
  $("#login-form").reset();
  $("#token-form").reset();
  await start();
}

async function logout() {
  try { await post(`${A}/logout`); } catch { /* the cookie is cleared anyway */ }
  state.me = null;
  showLogin();
}

// --- shell ------------------------------------------------------------------------------------

function stopTimers() {
  for (const id of state.timers) clearInterval(id);
  state.timers = [];
  clearInterval(state.bannerTimer);
  state.bannerTimer = null;
}

function every(ms, fn) { state.timers.push(setInterval(fn, ms)); }

function applyCaps() {
  for (const li of document.querySelectorAll("#nav [data-needs]")) {
    const [m, p] = li.dataset.needs.split(" ");
    li.hidden = !state.caps.exists(m, p);
  }
  if (!state.caps.can("POST", `${A}/tests`)) $('#nav [data-view="test"]').parentElement.hidden = true;
  $("#whoami").textContent = t("whoami", { name: state.me.name, role: t(`role.${state.me.role}`) });
}

async function loadRegistry() {
  const [inst, terms] = await Promise.all([get(`${A}/institutions`), get(`${A}/terminals`)]);
  state.institutions = new Map(inst.items.map((i) => [i.id, i]));
  state.terminals = terms.items;
}

async function loadHearings() {
  const from = new Date(Date.now() - 24 * 3600 * 1000).toISOString();
  const data = await get(`${A}/hearings?from=${encodeURIComponent(from)}&limit=500`);
  state.hearings = data.items;
  state.hearingsAt = Date.now();
  return state.hearings;
}

async function start() {
  let signedIn;
  try {
    signedIn = await loadSession();
  } catch (e) {
    showLogin(errText(e));
    return;
  }
  if (!signedIn) { showLogin(); return; }
  $("#login").hidden = true;
  $("#nav").hidden = false;
  $("#whoami").hidden = false;
  $("#logout").hidden = false;
  applyCaps();
  await loadRegistry().catch((e) => toast(errText(e), true));
  await loadHearings().catch((e) => toast(errText(e), true));
  startBanners();
  await route();
}

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "hearings";
  const [view, arg] = raw.split("/");
  return { view, arg };
}

async function route() {
  if (!state.me) return;
  for (const id of state.timers) clearInterval(id);
  state.timers = [];
  const { view, arg } = parseHash();
  state.view = view;
  state.arg = arg;
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.view === (view === "hearing" ? "hearings" : view)) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const views = { hearings: viewHearings, hearing: viewHearing, terminals: viewTerminals, live: viewLive,
    escalations: viewEscalations, test: viewTest, suspensions: viewSuspensions };
  const fn = views[view] || viewHearings;
  const root = $("#view");
  root.replaceChildren(h("p", { class: "muted" }, t("common.loading")));
  try {
    await fn(root, arg);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) { showLogin(); return; }
    root.replaceChildren(h("p", { class: "error", role: "alert" }, errText(e)));
  }
}

// Re-render a part of a view every `ms` (the forms around it stay as they are).
function keepFresh(container, render, ms = REFRESH_MS) {
  let first = true;
  const run = async () => {
    // Someone working inside (keyboard focus on a button or a link): leave it as it is this round.
    if (!first && container.contains(document.activeElement)) return;
    first = false;
    try {
      container.replaceChildren(await render());
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) { showLogin(); return; }
      container.replaceChildren(h("p", { class: "error" }, errText(e)));
    }
  };
  every(ms, run);
  return run();
}

// --- hearings ---------------------------------------------------------------------------------

function checkCell(c, tz, kind) {
  if (!c) return t("common.dash");
  const parts = [statusBadge(c.status)];
  if (c.verdict) parts.push(" ", verdictBadge(c.verdict));
  if (c.overdue && c.status !== "overdue") parts.push(" ", badge("flag", "overdue", t("hearings.overdue")));
  if (c.late) parts.push(" ", badge("flag", "late", t("hearings.late")));
  const when = kind === "preconnect" && c.window
    ? t("hearings.window", { opens: fmtTime(c.window.opens, tz, { date: false, zone: false }),
      closes: fmtTime(c.window.closes, tz, { date: false, zone: false }) })
    : t("hearings.deadline", { time: fmtTime(c.deadline, tz, { zone: false }) });
  return h("div", { class: "check" }, h("div", {}, parts), h("div", { class: "small" }, when));
}

function agreementText(a) {
  return t("agreement.state", { who: t(`agreement.${a.coordinator}`), state: t(`agreement.${a.state}`) });
}

function agreementCell(a) {
  return h("div", {}, badge("agreement", a.state, t(`agreement.${a.state}`)),
    h("div", { class: "small" }, t(`agreement.${a.coordinator}`)));
}

function timeCell(iso, tz) {
  return [h("span", { class: "nowrap" }, fmtTime(iso, tz, { zone: false })), h("div", { class: "small muted" }, zoneName(tz, new Date(iso)))];
}

function hearingRow(x) {
  const tz = x.court.timezone;
  return h("tr", { class: x.suspended ? "suspended" : "", dataset: { hearing: String(x.id) } },
    h("td", {}, timeCell(x.start_utc, tz)),
    h("th", { scope: "row", class: "nowrap" }, h("a", { href: `#hearing/${x.id}`, "aria-label": t("hearings.open", { case: x.case_number }) },
      x.case_number)),
    h("td", {}, x.court.name, h("br"), h("span", { class: "small" }, x.room.name)),
    h("td", {}, x.participants.map((p) => h("div", {}, p.institution_name))),
    h("td", {}, statusBadge(x.status), x.suspended ? [" ", badge("flag", "suspended", t("hearings.suspended"))] : null),
    h("td", {}, agreementCell(x.agreement)),
    h("td", {}, checkCell(x.test_request, tz, "test")),
    h("td", {}, checkCell(x.preconnect, tz, "preconnect")),
    h("td", {}, verdictBadge(x.verdict)));
}

function hearingsTable(caption, items) {
  const heads = ["start", "case", "court", "remote", "status", "agreement", "test", "preconnect", "verdict"]
    .map((k) => t(`hearings.col.${k}`));
  return table(caption, heads, items.map(hearingRow), "hearings");
}

async function viewHearings(root) {
  const list = h("div");
  root.replaceChildren(h("h2", {}, t("hearings.title")), list);
  await keepFresh(list, async () => {
    const items = await loadHearings();
    const now = Date.now();
    const today = [], upcoming = [];
    for (const x of items) {
      const tz = x.court.timezone;
      const todayHere = localDate(null, tz);
      const day = localDate(x.start_utc, tz);
      if (day === todayHere) today.push(x);
      else if (day > todayHere || new Date(x.end_utc).getTime() > now) upcoming.push(x);
    }
    const part = (title, rows) => h("section", { class: "group" }, h("h3", {}, title),
      rows.length ? hearingsTable(title, rows) : h("p", { class: "muted" }, t("common.none")));
    return h("div", {}, part(t("hearings.today"), today), part(t("hearings.upcoming"), upcoming),
      h("p", { class: "small muted" }, t("common.updated", { time: fmtTime(new Date().toISOString(), Intl.DateTimeFormat().resolvedOptions().timeZone, { date: false }) })));
  });
}

// --- one hearing ------------------------------------------------------------------------------

function dl(pairs) {
  return h("dl", { class: "facts" }, pairs.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

async function viewHearing(root, id) {
  const x = await get(`${A}/hearings/${encodeURIComponent(id)}`);
  const tz = x.court.timezone;
  const actions = h("div", { class: "actions" });
  const path = `${A}/hearings/{id}`;
  if (state.caps.can("POST", `${path}/checks`)) {
    actions.append(
      h("button", { type: "button", onclick: () => act(() => post(`${A}/hearings/${x.id}/checks`, { kind: "test" })).then(() => route()) }, t("hearing.run_test")),
      h("button", { type: "button", onclick: () => act(() => post(`${A}/hearings/${x.id}/checks`, { kind: "preconnect" })).then(() => route()) }, t("hearing.run_preconnect")));
  }
  if (x.agreement.state === "pending" && state.caps.can("POST", `${path}/agreement`)) {
    actions.append(h("button", { type: "button", onclick: () => act(() => post(`${A}/hearings/${x.id}/agreement`, {})).then(() => route()) }, t("hearing.agree")));
  }
  const checkRows = [];
  for (const [kind, c] of [["test", x.test_request], ["preconnect", x.preconnect]]) {
    for (const it of (c && c.items) || []) {
      checkRows.push(h("tr", {},
        h("td", {}, t(`kind.${kind}`)),
        h("td", {}, `${termName(it.caller)} → ${termName(it.callee)}`),
        h("td", {}, statusBadge(it.status), it.overdue_at && it.status !== "overdue" ? [" ", badge("flag", "overdue", t("hearings.overdue"))] : null),
        h("td", {}, fmtTime(it.deadline, tz)),
        h("td", {}, it.verdict ? verdictBadge(it.verdict) : t("common.dash")),
        h("td", {}, String(it.attempts))));
    }
  }
  const liveBox = h("div");
  const actBox = h("div");
  const eventsBox = h("div");
  root.replaceChildren(
    h("p", {}, h("a", { href: "#hearings" }, `← ${t("common.back")}`)),
    h("h2", {}, t("hearing.title", { case: x.case_number }), " ", verdictBadge(x.verdict)),
    dl([
      [t("hearing.court"), x.court.name],
      [t("hearing.room"), x.room.name],
      [t("hearing.start"), fmtTime(x.start_utc, tz)],
      [t("hearing.duration"), t("hearing.minutes", { n: x.duration_min })],
      [t("hearing.initiative"), t(`initiative.${x.initiative}`)],
      [t("hearings.col.remote"), x.participants.map((p) => h("div", {}, `${p.institution_name} — ${fmtTime(p.start_utc || x.start_utc, p.timezone)}`))],
      [t("hearings.col.status"), [statusBadge(x.status), x.suspended ? [" ", badge("flag", "suspended", t("hearings.suspended"))] : null]],
      [t("hearings.col.agreement"), agreementText(x.agreement)],
      [t("hearings.col.test"), checkCell(x.test_request, tz, "test")],
      [t("hearings.col.preconnect"), checkCell(x.preconnect, tz, "preconnect")],
    ]),
    actions,
    h("h3", {}, t("hearing.checks")),
    checkRows.length ? table(t("hearing.checks"), ["kind", "pair", "status", "deadline", "verdict", "attempts"]
      .map((k) => t(`hearing.check.${k}`)), checkRows) : h("p", { class: "muted" }, t("common.none")),
    liveBox, actBox, eventsBox);
  if (state.caps.exists("GET", `${path}/live`)) {
    const card = liveCard(x);
    const first = await card.update().catch(() => null);
    if (ongoing([x]).length || (first && first.state !== "idle")) {
      liveBox.append(card.el);
      every(LIVE_MS, () => card.update().catch(() => {}));
    }
  }
  if (state.caps.exists("GET", `${path}/breaks`)) breaksSection(liveBox, x).catch(() => {});
  actSection(actBox, x).catch((e) => actBox.append(h("p", { class: "error" }, errText(e))));
  eventsSection(eventsBox, x).catch((e) => eventsBox.append(h("p", { class: "error" }, errText(e))));
}

async function breaksSection(box, x) {
  const data = await get(`${A}/hearings/${x.id}/breaks`);
  const items = data.items || data.breaks || [];
  const tz = x.court.timezone;
  if (!items.length) return;
  box.append(h("h3", {}, t("hearing.breaks")),
    table(t("hearing.breaks"), [t("hearing.break.started"), t("hearing.break.ended"), t("hearing.break.cause"), t("hearing.break.duration"), t("hearing.break.resumed_by")],
      items.map((b) => h("tr", {},
        h("td", {}, fmtTime(b.started_at, tz)),
        h("td", {}, fmtTime(b.resumed_at || b.ended_at, tz, { zone: false })),
        h("td", {}, has(`break.cause.${b.cause}`) ? t(`break.cause.${b.cause}`) : String(b.cause ?? t("common.dash"))),
        h("td", {}, b.duration_s != null ? t("hearing.break.seconds", { n: fmtNumber(b.duration_s, 0) }) : t("common.dash")),
        h("td", {}, b.resumed_by || t("common.dash"))))));
}

function eventText(kind) { return has(`event.${kind}`) ? t(`event.${kind}`) : kind; }

async function eventsSection(box, x) {
  const data = await get(`${A}/hearings/${x.id}/events`);
  const items = data.items.slice(-50).reverse();
  box.append(h("h3", {}, t("hearing.events")),
    h("p", {}, h("a", { href: `${A}/hearings/${x.id}/events?format=csv`, download: `hearing-${x.id}-events.csv` }, t("hearing.events_csv"))),
    table(t("hearing.events"), [t("hearing.event.at"), t("hearing.event.kind"), t("hearing.event.detail")],
      items.map((e) => h("tr", {}, h("td", {}, fmtTime(e.at, x.court.timezone, { zone: false })), h("td", {}, eventText(e.kind)),
        h("td", { class: "detail" }, summarize(e.detail))))));
}

function summarize(detail) {
  return Object.entries(detail || {}).filter(([, v]) => v !== null && typeof v !== "object")
    .map(([k, v]) => `${k}: ${v}`).join(", ");
}

const SIGNERS = ["head_of_office", "secretary", "technician"];

function signatureList(actDoc, tz) {
  const byRole = new Map((actDoc.signatures || []).map((x) => [x.role, x]));
  return h("ul", { class: "signatures" }, SIGNERS.map((role) => {
    const sig = byRole.get(role);
    return h("li", { class: sig ? "signed" : "unsigned", dataset: { role } }, `${t(`act.signer.${role}`)}: `,
      sig ? t("act.signed", { name: sig.name, time: fmtTime(sig.signed_at, tz) }) : t("act.unsigned"));
  }));
}

function signForm(box, x, actDoc) {
  const missing = actDoc.missing_signatures || SIGNERS.filter((r) => !(actDoc.signatures || []).some((s) => s.role === r));
  if (!missing.length || !state.caps.can("POST", `${A}/hearings/{id}/act/signatures`)) return null;
  const role = h("select", { id: "sign-role", name: "role" }, missing.map((r) => h("option", { value: r }, t(`act.signer.${r}`))));
  const name = h("input", { id: "sign-name", name: "name", required: true, maxlength: "200", autocomplete: "name" });
  return h("form", { class: "card form-grid", id: "sign-form", onsubmit: async (ev) => {
    ev.preventDefault();
    const r = await act(() => post(`${A}/hearings/${x.id}/act/signatures`, { role: role.value, name: name.value.trim() }));
    if (r !== undefined) await actSection(box, x);
  } },
  h("h4", { class: "full" }, t("act.sign")),
  field("sign-role", t("act.signer"), role), field("sign-name", t("act.signer_name"), name),
  h("div", { class: "field" }, h("button", { type: "submit" }, t("act.sign_submit"))));
}

async function actSection(box, x) {
  const path = `${A}/hearings/{id}/act`;
  if (!state.caps.exists("GET", path)) return;
  const heading = h("h3", {}, t("act.title"));
  let actDoc = null;
  try {
    actDoc = await get(`${A}/hearings/${x.id}/act`);
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 404)) throw e;
  }
  if (!actDoc) {
    put(box, heading, h("p", { class: "muted" }, t("act.none")),
      state.caps.can("POST", path)
        ? h("button", { type: "button", id: "act-draft", onclick: () => act(() => post(`${A}/hearings/${x.id}/act`, {})).then(() => actSection(box, x)) }, t("act.draft"))
        : null);
    return;
  }
  const base = `${A}/hearings/${x.id}/act`;
  const tz = x.court.timezone;
  put(box, heading,
    h("p", {}, badge("act", actDoc.status, t(`act.status.${actDoc.status}`)), " ",
      h("span", { class: "small" }, t("act.drawn", { name: actDoc.created_by, time: fmtTime(actDoc.created_at, tz) }))),
    h("ul", { class: "links" },
      h("li", {}, h("a", { href: `${base}.html?lang=kk`, target: "_blank", rel: "noopener" }, t("act.print_kk"))),
      h("li", {}, h("a", { href: `${base}.html?lang=ru`, target: "_blank", rel: "noopener" }, t("act.print_ru"))),
      h("li", {}, h("a", { href: `${base}.pdf?lang=kk` }, t("act.pdf_kk"))),
      h("li", {}, h("a", { href: `${base}.pdf?lang=ru` }, t("act.pdf_ru")))),
    h("h4", {}, t("act.signatures")), signatureList(actDoc, tz), signForm(box, x, actDoc));
}

// --- live quality -----------------------------------------------------------------------------

function ongoing(hearings) {
  const now = Date.now();
  return hearings.filter((x) => x.status !== "cancelled" && x.status !== "held" && (x.status === "in_progress" ||
    (new Date(x.start_utc).getTime() - PRECONNECT_LEAD_MS <= now && now <= new Date(x.end_utc).getTime())));
}

function series(intervals, dir, key, scale = 1) {
  return intervals.map((iv) => [intervalMs(iv), iv[dir] && iv[dir][key] != null ? iv[dir][key] * scale : null]);
}

function intervalMs(iv) {
  if (iv.at) return new Date(iv.at).getTime();
  return typeof iv.t === "number" ? iv.t * (iv.t > 1e11 ? 1 : 1000) : Date.now();
}

function liveCard(x) {
  const tz = x.court.timezone;
  const stateLine = h("p", { class: "live-state" });
  const charts = [
    { key: "loss", label: t("live.loss"), minMax: 1 },
    { key: "jitter", label: t("live.jitter"), minMax: 10 },
    { key: "rtt", label: t("live.rtt"), minMax: 50 },
  ].map((c) => {
    const canvas = h("canvas", { class: "chart", role: "img", "aria-label": c.label });
    const legend = h("ul", { class: "legend" });
    const fig = h("figure", { class: "chart-box" }, h("figcaption", {}, c.label), canvas, legend);
    return { ...c, canvas, legend, fig };
  });
  const el = h("section", { class: "card live", "aria-label": x.case_number, dataset: { hearing: String(x.id) } },
    h("h3", {}, h("a", { href: `#hearing/${x.id}` }, x.case_number), ` — ${x.court.name}, ${x.room.name}`),
    stateLine, h("div", { class: "charts" }, charts.map((c) => c.fig)));
  async function update() {
    let live;
    try {
      live = await get(`${A}/hearings/${x.id}/live`);
    } catch (e) {
      put(stateLine, t("common.not_available"));
      return null;
    }
    const st = live.state || "idle";
    put(stateLine, badge("live", st, t("live.state", { state: has(`live.state.${st}`) ? t(`live.state.${st}`) : st })),
      " ", live.verdict ? verdictBadge(live.verdict) : null, " ",
      live.since ? h("span", { class: "small" }, t("live.since", { time: fmtTime(live.since, tz) })) : null);
    const intervals = live.intervals || [];
    const to = intervals.length ? Math.max(Date.now(), intervalMs(intervals[intervals.length - 1])) : Date.now();
    const first = intervals.length ? intervalMs(intervals[0]) : to;
    const from = Math.max(to - LIVE_WINDOW_MS, Math.min(first, to - LIVE_MIN_SPAN_MS));
    const fmtX = (ms) => fmtTime(new Date(ms).toISOString(), tz, { date: false, zone: false, seconds: true });
    const stalled = intervals.filter((iv) => iv.stalled).map(intervalMs);
    const sets = {
      loss: [{ label: t("live.inbound"), color: COLORS.inbound, points: series(intervals, "inbound", "loss_ratio", 100) },
        { label: t("live.outbound"), color: COLORS.outbound, dash: [6, 3], points: series(intervals, "outbound", "loss_ratio", 100) }],
      jitter: [{ label: t("live.inbound"), color: COLORS.inbound, points: series(intervals, "inbound", "jitter_ms") },
        { label: t("live.outbound"), color: COLORS.outbound, dash: [6, 3], points: series(intervals, "outbound", "jitter_ms") }],
      rtt: [{ label: t("live.rtt_series"), color: COLORS.rtt, points: intervals.map((iv) => [intervalMs(iv), iv.rtt_ms != null && typeof iv.rtt_ms === "object" ? iv.rtt_ms.mean : iv.rtt_ms]) }],
    };
    for (const c of charts) {
      const s = sets[c.key];
      drawChart(c.canvas, s, { from, to, fmtX, minMax: c.minMax, marks: stalled });
      const latest = s.map((ser) => {
        const last = [...ser.points].reverse().find(([, v]) => v != null);
        return `${ser.label} ${last ? fmtNumber(last[1], 2) : t("common.dash")}`;
      }).join(", ");
      c.canvas.setAttribute("aria-label", `${c.label}. ${intervals.length ? t("live.latest", { values: latest }) : t("live.no_data")}`);
      c.legend.replaceChildren(...s.map((ser) => {
        const last = [...ser.points].reverse().find(([, v]) => v != null);
        return h("li", {}, h("span", { class: `swatch${ser.dash ? " dashed" : ""}`, style: null, dataset: { color: ser.color } }),
          `${ser.label}: ${last ? fmtNumber(last[1], 2) : t("common.dash")}`);
      }));
      if (stalled.length) c.legend.append(h("li", {}, h("span", { class: "mark-swatch" }), t("live.stalled")));
      for (const sw of c.legend.querySelectorAll(".swatch")) sw.style.borderColor = sw.dataset.color;
    }
    return live;
  }
  return { el, update };
}

async function viewLive(root) {
  const box = h("div");
  root.replaceChildren(h("h2", {}, t("live.title")), box);
  if (!state.caps.exists("GET", `${A}/hearings/{id}/live`)) {
    box.append(h("p", { class: "muted" }, t("common.not_available")));
    return;
  }
  const cards = new Map();
  const refresh = async () => {
    const now = ongoing(await loadHearings());
    const ids = new Set(now.map((x) => x.id));
    for (const [id, c] of cards) if (!ids.has(id)) { c.el.remove(); cards.delete(id); }
    for (const x of now) if (!cards.has(x.id)) { const c = liveCard(x); cards.set(x.id, c); box.append(c.el); }
    if (!cards.size) box.replaceChildren(h("p", { class: "muted" }, t("live.none")));
    else box.querySelector(":scope > p.muted")?.remove();
  };
  await refresh();
  const tick = () => { for (const c of cards.values()) c.update().catch(() => {}); };
  tick();
  every(LIVE_MS, tick);
  every(REFRESH_MS, () => refresh().catch(() => {}));
}

// --- break banners (rule 22) ------------------------------------------------------------------

function startBanners() {
  clearInterval(state.bannerTimer);
  if (!state.caps.exists("GET", `${A}/hearings/{id}/live`)) return;
  const run = () => updateBanners().catch(() => {});
  state.bannerTimer = setInterval(run, BANNER_MS);
  run();
}

async function updateBanners() {
  const box = $("#banners");
  if (!state.hearingsAt || Date.now() - state.hearingsAt > 30000) await loadHearings();
  const candidates = ongoing(state.hearings);
  const shown = [];
  for (const x of candidates) {
    let live;
    try { live = await get(`${A}/hearings/${x.id}/live`); } catch { continue; }
    const inBreak = live.break && !live.break.resumed_at && ["reconnecting", "ready_to_resume", "escalated"].includes(live.state);
    if (!inBreak && !["break", "reconnecting", "ready_to_resume"].includes(live.state)) continue;
    const tz = x.court.timezone;
    const ready = live.state === "ready_to_resume";
    const since = live.break?.started_at || live.since;
    const canResume = ready && state.caps.can("POST", `${A}/hearings/{id}/resume`);
    shown.push(h("div", { class: `banner ${ready ? "ready" : "break"}`, role: "alert", dataset: { hearing: String(x.id) } },
      h("strong", {}, t("break.banner", { room: `${x.court.name}, ${x.room.name}`, case: x.case_number })),
      " ", h("span", {}, ready ? t("break.ready") : live.state === "escalated" ? t("break.escalated") : t("break.reconnecting")),
      " ", since ? h("span", { class: "small" }, t("break.since", { time: fmtTime(since, tz) })) : null,
      canResume ? h("button", { type: "button", class: "resume", onclick: async (ev) => {
        ev.target.disabled = true;
        await act(() => post(`${A}/hearings/${x.id}/resume`, {}), t("break.confirmed"));
        updateBanners().catch(() => {});
      } }, t("break.confirm")) : null));
  }
  const focused = box.contains(document.activeElement);
  box.replaceChildren(...shown);
  if (focused) box.querySelector("button")?.focus();
}

// --- terminals --------------------------------------------------------------------------------

async function viewTerminals(root) {
  const box = h("div");
  root.replaceChildren(h("h2", {}, t("terminals.title")), box);
  await keepFresh(box, async () => {
    await loadRegistry();
    const heads = ["terminal", "institution", "role", "online", "health", "last"].map((k) => t(`terminals.col.${k}`));
    return table(t("terminals.title"), heads, state.terminals.map((x) => {
      const tz = instTz(x.institution_id);
      const hs = x.health?.status || "unknown";
      const last = x.last_check;
      return h("tr", { dataset: { terminal: x.id } },
        h("th", { scope: "row" }, x.name, h("br"), h("code", { class: "small" }, x.id)),
        h("td", {}, instName(x.institution_id)),
        h("td", {}, t(`terminals.role.${x.role}`)),
        h("td", {}, badge("online", x.online ? "yes" : "no", x.online ? t("terminals.online") : t("terminals.offline")),
          x.health?.last_seen ? h("div", { class: "small" }, t("terminals.last_seen", { time: fmtTime(x.health.last_seen, tz) })) : null),
        h("td", {}, badge("health", hs, t(`health.${hs}`)),
          x.health?.problems?.length ? h("ul", { class: "small problems" }, x.health.problems.map((p) => h("li", {}, p))) : null),
        h("td", {}, last ? [h("a", { href: `#hearing/${last.hearing_id}` },
          t("terminals.last", { kind: t(`kind.${last.kind}`), status: t(`status.${last.status}`), time: fmtTime(last.finished_at, tz) })),
        " ", last.verdict ? verdictBadge(last.verdict) : null] : t("common.dash")));
    }), "terminals");
  });
}

// --- escalations ------------------------------------------------------------------------------

async function viewEscalations(root) {
  const box = h("div");
  root.replaceChildren(h("h2", {}, t("escalations.title")), box);
  if (!state.caps.exists("GET", `${A}/escalations`)) { box.append(h("p", { class: "muted" }, t("common.not_available"))); return; }
  await keepFresh(box, async () => {
    const data = await get(`${A}/escalations?state=open`);
    const items = data.items || [];
    if (!items.length) return h("p", { class: "muted" }, t("escalations.none"));
    const byId = new Map(state.hearings.map((x) => [x.id, x]));
    const heads = ["hearing", "cause", "step", "opened", "acks", "actions"].map((k) => t(`escalations.col.${k}`));
    return table(t("escalations.title"), heads, items.map((e) => escalationRow(e, byId.get(e.hearing_id))), "escalations");
  });
}

function escalationRow(e, hx) {
  const tz = hx ? hx.court.timezone : "Asia/Almaty";
  const verbs = [["ack", "escalations.ack", e.state === "open"], ["cannot-fix", "escalations.cannot_fix", e.state !== "cannot_fix"],
    ["resolve", "escalations.resolve", true]];
  const buttons = verbs.filter(([verb, , when]) => when && state.caps.can("POST", `${A}/escalations/{id}/${verb}`))
    .map(([verb, label]) => h("button", { type: "button", class: "small-btn", dataset: { action: verb },
      onclick: () => act(() => post(`${A}/escalations/${e.id}/${verb}`, {})).then(() => route()) }, t(label)));
  const cause = has(`cause.${e.cause}`) ? t(`cause.${e.cause}`) : e.cause;
  const who = e.hearing ? `${e.hearing.court_name}, ${e.hearing.room}` : "";
  return h("tr", { dataset: { escalation: String(e.id) } },
    h("td", {}, h("a", { href: `#hearing/${e.hearing_id}` }, e.hearing ? e.hearing.case_number : `#${e.hearing_id}`),
      who ? h("div", { class: "small" }, who) : null),
    h("td", {}, badge("cause", e.cause, cause)),
    h("td", {}, t(`escalations.step${e.step === 2 ? 2 : 1}`), h("div", { class: "small" }, t(`escalations.state.${e.state}`)),
      e.step !== 2 && e.step2_due_at ? h("div", { class: "small" }, t("escalations.step2_due", { time: fmtTime(e.step2_due_at, tz, { zone: false }) })) : null),
    h("td", {}, timeCell(e.opened_at, tz)),
    h("td", {}, e.acked_by ? t("escalations.acked", { name: e.acked_by, time: fmtTime(e.acked_at, tz, { zone: false }) }) : t("common.dash"),
      e.cannot_fix_by ? h("div", { class: "small" }, t("escalations.cannot_fix_by", { name: e.cannot_fix_by })) : null),
    h("td", { class: "actions" }, buttons));
}

// --- a test now -------------------------------------------------------------------------------

function field(id, label, control) {
  return h("div", { class: "field" }, h("label", { for: id }, label), control);
}

function terminalSelect(id, name, preferRole) {
  const sel = h("select", { id, name, required: true });
  const sorted = [...state.terminals].sort((a, b) => (b.online - a.online) || (a.role === preferRole ? -1 : 1));
  for (const x of sorted) {
    sel.append(h("option", { value: x.id }, `${x.name} — ${instName(x.institution_id)}${x.online ? "" : ` ${t("test.offline_mark")}`}`));
  }
  return sel;
}

function reportView(r) {
  const tz = Intl.DateTimeFormat().resolvedOptions().timeZone;
  const parts = [h("p", {}, t("test.verdict", { verdict: t(`verdict.${r.verdict || "unknown"}`) }), " ", verdictBadge(r.verdict),
    r.mos != null ? [" ", t("test.mos", { mos: fmtNumber(r.mos, 2) })] : null)];
  if (r.error) parts.push(h("p", { class: "error" }, t("test.error", { error: r.error })));
  const rep = r.report;
  if (rep) {
    const row = (dir) => h("tr", {}, h("th", { scope: "row" }, t(`live.${dir}`)),
      h("td", {}, fmtNumber((rep[dir]?.loss_ratio ?? 0) * 100, 2)), h("td", {}, fmtNumber(rep[dir]?.jitter_ms, 1)),
      h("td", {}, fmtNumber(rep[dir]?.bitrate_kbps, 0)));
    parts.push(table(t("test.result"), ["direction", "loss", "jitter", "bitrate"].map((k) => t(`test.col.${k}`)),
      [row("outbound"), row("inbound")]));
    if (rep.rtt_ms) parts.push(h("p", {}, t("test.rtt", { mean: fmtNumber(rep.rtt_ms.mean, 1), p95: fmtNumber(rep.rtt_ms.p95, 1) })));
  }
  if (r.finished_at) parts.push(h("p", { class: "small muted" }, fmtTime(r.finished_at, tz)));
  return h("div", { class: "test-result", dataset: { status: r.status } }, h("h3", {}, t("test.result"), " ", statusBadge(r.status)), parts);
}

async function viewTest(root) {
  if (!state.caps.can("POST", `${A}/tests`)) {
    root.replaceChildren(h("h2", {}, t("test.title")), h("p", { class: "muted" }, t("test.not_allowed")));
    return;
  }
  await loadRegistry();
  const out = h("div", { id: "test-out", "aria-live": "polite" });
  const caller = terminalSelect("test-caller", "caller", "courtroom");
  const callee = terminalSelect("test-callee", "callee", "institution");
  const other = state.terminals.find((x) => x.online && x.role === "institution") || state.terminals.find((x) => x.id !== caller.value);
  if (other) callee.value = other.id;
  const profile = h("select", { id: "test-profile", name: "profile" }, PROFILES.map((p) => h("option", { value: p }, t(`profile.${p}`))));
  const duration = h("input", { id: "test-duration", name: "duration_s", type: "number", min: "1", max: "600", step: "1", value: "10", required: true });
  const submit = h("button", { type: "submit" }, t("test.submit"));
  const form = h("form", { class: "card form-grid", onsubmit: async (ev) => {
    ev.preventDefault();
    submit.disabled = true;
    try {
      const r = await post(`${A}/tests`, { caller: caller.value, callee: callee.value, profile: profile.value, duration_s: Number(duration.value) });
      out.replaceChildren(h("p", {}, t("test.running", { id: r.id })));
      pollTest(r.id, out);
    } catch (e) {
      out.replaceChildren(h("p", { class: "error", role: "alert" }, errText(e)));
    } finally {
      submit.disabled = false;
    }
  } },
  field("test-caller", t("test.caller"), caller), field("test-callee", t("test.callee"), callee),
  field("test-profile", t("test.profile"), profile), field("test-duration", t("test.duration"), duration),
  h("div", { class: "field" }, submit));
  root.replaceChildren(h("h2", {}, t("test.title")), form, out);
  if (state.runningTest) pollTest(state.runningTest, out);
}

function pollTest(id, out) {
  state.runningTest = id;
  const step = async () => {
    if (state.view !== "test") return;
    let r;
    try { r = await get(`${A}/tests/${encodeURIComponent(id)}`); } catch (e) { out.replaceChildren(h("p", { class: "error" }, errText(e))); return; }
    if (r.status === "running") {
      out.replaceChildren(h("p", { class: "running" }, t("test.running", { id: r.id })));
      setTimeout(step, 1000);
    } else {
      state.runningTest = null;
      out.replaceChildren(reportView(r));
    }
  };
  step();
}

// --- suspensions ------------------------------------------------------------------------------

async function viewSuspensions(root) {
  const box = h("div");
  const canAdd = state.caps.can("POST", `${A}/suspensions`);
  const canLift = state.caps.can("DELETE", `${A}/suspensions/{id}`);
  root.replaceChildren(h("h2", {}, t("suspensions.title")), canAdd ? suspensionForm(() => refresh()) : null, box);
  const render = async () => {
    const data = await get(`${A}/suspensions`);
    if (!data.items.length) return h("p", { class: "muted" }, t("common.none"));
    const heads = ["target", "reason", "from", "until", "state", "by"].map((k) => t(`suspensions.col.${k}`));
    if (canLift) heads.push(t("escalations.col.actions"));
    return table(t("suspensions.title"), heads, [...data.items].reverse().map((s) => {
      const tz = s.institution_id ? instTz(s.institution_id) : "Asia/Almaty";
      return h("tr", { dataset: { suspension: String(s.id) }, class: s.active ? "active" : "" },
        h("td", {}, s.institution_id ? instName(s.institution_id) : t("suspensions.area", { region: s.region })),
        h("td", {}, t(`reason.${s.reason}`), s.note ? h("div", { class: "small" }, s.note) : null),
        h("td", {}, fmtTime(s.from_utc, tz)),
        h("td", {}, s.until_utc ? fmtTime(s.until_utc, tz) : t("common.dash")),
        h("td", {}, s.active ? badge("susp", "active", t("suspensions.active")) : badge("susp", "inactive", t("suspensions.inactive")),
          s.lifted_at ? h("div", { class: "small" }, t("suspensions.lifted", { time: fmtTime(s.lifted_at, tz) })) : null),
        h("td", {}, s.created_by || t("common.dash")),
        canLift ? h("td", {}, !s.lifted_at ? h("button", { type: "button", class: "small-btn", dataset: { action: "lift" },
          onclick: () => act(() => del(`${A}/suspensions/${s.id}`)).then(() => refresh()) }, t("suspensions.lift")) : null) : null);
    }), "suspensions");
  };
  const refresh = async () => { try { box.replaceChildren(await render()); } catch (e) { box.replaceChildren(h("p", { class: "error" }, errText(e))); } };
  await keepFresh(box, render);
}

function suspensionForm(done) {
  const insts = [...state.institutions.values()];
  const kindSel = h("select", { id: "susp-kind", name: "target_kind" },
    h("option", { value: "institution" }, t("suspensions.target.institution")), h("option", { value: "region" }, t("suspensions.target.region")));
  const instSel = h("select", { id: "susp-institution", name: "institution_id" },
    insts.filter((i) => i.kind !== "court").map((i) => h("option", { value: i.id }, i.name)));
  const regions = [...new Set(insts.map((i) => i.region))].sort();
  const regionSel = h("select", { id: "susp-region", name: "region" }, regions.map((r) => h("option", { value: r }, r)));
  const reasonSel = h("select", { id: "susp-reason", name: "reason" }, REASONS.map((r) => h("option", { value: r }, t(`reason.${r}`))));
  const note = h("input", { id: "susp-note", name: "note", maxlength: "2000" });
  const instField = field("susp-institution", t("suspensions.institution"), instSel);
  const regionField = field("susp-region", t("suspensions.region"), regionSel);
  regionField.hidden = true;
  kindSel.addEventListener("change", () => {
    instField.hidden = kindSel.value !== "institution";
    regionField.hidden = kindSel.value !== "region";
  });
  const result = h("p", { class: "small", "aria-live": "polite" });
  return h("form", { class: "card form-grid", id: "susp-form", onsubmit: async (ev) => {
    ev.preventDefault();
    const body = { reason: reasonSel.value, note: note.value || null };
    if (kindSel.value === "institution") body.institution_id = instSel.value; else body.region = regionSel.value;
    const r = await act(() => post(`${A}/suspensions`, body));
    if (r) {
      result.textContent = t("suspensions.affected", { n: (r.affected_hearings || []).length });
      note.value = "";
      await done();
    }
  } },
  h("h3", { class: "full" }, t("suspensions.add")),
  field("susp-kind", t("suspensions.target_kind"), kindSel), instField, regionField,
  field("susp-reason", t("suspensions.reason"), reasonSel), field("susp-note", t("suspensions.note"), note),
  h("div", { class: "field" }, h("button", { type: "submit" }, t("suspensions.submit"))), result);
}

// --- boot -------------------------------------------------------------------------------------

async function boot() {
  const langSel = $("#lang");
  const lang = initialLang();
  await setLang(lang);
  langSel.value = lang;
  langSel.addEventListener("change", async () => {
    await setLang(langSel.value);
    if (state.me) { applyCaps(); await route(); updateBanners().catch(() => {}); }
  });
  $("#login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    doLogin({ username: $("#login-user").value.trim(), password: $("#login-pass").value });
  });
  $("#token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    doLogin({ token: $("#login-token").value.trim() });
  });
  $("#logout").addEventListener("click", logout);
  window.addEventListener("hashchange", () => { route(); $("#main").focus({ preventScroll: true }); });
  await start();
  document.body.dataset.ready = "1";
}

boot();
