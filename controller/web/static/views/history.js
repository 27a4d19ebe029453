// #terminal/ID and #pair/A/B: the history of a terminal or of a pair (issue 12) - for each local
// day (the court's time zone) with a check or test, how many there were and the median and 95th
// percentile of loss, jitter and round-trip time, and the median capacity (GET
// /api/v1/terminals/{id}/history, /api/v1/pairs/{a}/{b}/history), drawn as charts and listed in a
// table. A period selector asks for more or fewer days.

import { get } from "../api.js";
import { drawChart } from "../chart.js";
import { fmtNumber, t } from "../i18n.js";
import { A, instName, instTz, loadRegistry, state, termName } from "../state.js";
import { h, table } from "../ui.js";

const PERIODS = [7, 30, 90, 365];
const DAY_MS = 86400000;
const COLORS = { p50: "#1f6feb", p95: "#d1242f", checks: "#57606a", capacity: "#1a7f37" };
let period = 30;

const dayMs = (day) => Date.parse(`${day}T00:00:00Z`);
const fmtDay = (ms) => new Date(ms).toISOString().slice(5, 10);        // MM-DD of the local day

// The charts: a title and its series, each a field of the day's item and a factor (loss: %).
function chartSpecs() {
  const pct = (key) => [{ key: `${key}_p50`, label: t("history.p50"), color: COLORS.p50, k: 100 },
    { key: `${key}_p95`, label: t("history.p95"), color: COLORS.p95, dash: [6, 3], k: 100 }];
  const ms = (key) => [{ key: `${key}_p50`, label: t("history.p50"), color: COLORS.p50, k: 1 },
    { key: `${key}_p95`, label: t("history.p95"), color: COLORS.p95, dash: [6, 3], k: 1 }];
  return [
    { id: "loss", label: t("history.loss"), minMax: 1, series: pct("loss_ratio") },
    { id: "jitter", label: t("history.jitter"), minMax: 10, series: ms("jitter_ms") },
    { id: "rtt", label: t("history.rtt"), minMax: 50, series: ms("rtt_ms") },
    { id: "capacity", label: t("history.capacity"), minMax: 500,
      series: [{ key: "capacity_kbps_p50", label: t("history.p50"), color: COLORS.capacity, k: 1 }] },
    { id: "checks", label: t("history.checks"), minMax: 2,
      series: [{ key: "checks", label: t("history.count"), color: COLORS.checks, k: 1 }] },
  ];
}

function drawCharts(box, items) {
  const last = items[items.length - 1];
  const to = last ? dayMs(last.day) + DAY_MS / 2 : Date.now();
  const from = items.length ? Math.min(dayMs(items[0].day) - DAY_MS / 2, to - 7 * DAY_MS) : to - period * DAY_MS;
  const figs = chartSpecs().map((c) => {
    const canvas = h("canvas", { class: "chart", role: "img", dataset: { chart: c.id } });
    const legend = h("ul", { class: "legend" });
    const series = c.series.map((s) => ({ ...s, points: items.map((d) => [dayMs(d.day), d[s.key] == null ? null : d[s.key] * s.k]) }));
    const values = series.map((s) => `${s.label} ${last && last[s.key] != null ? fmtNumber(last[s.key] * s.k, 2) : t("common.dash")}`);
    canvas.setAttribute("aria-label", `${c.label}. ${last ? t("history.latest", { day: last.day, values: values.join(", ") }) : t("history.none")}`);
    legend.replaceChildren(...series.map((s) => h("li", {},
      h("span", { class: `swatch${s.dash ? " dashed" : ""}`, dataset: { color: s.color } }), s.label)));
    for (const sw of legend.querySelectorAll(".swatch")) sw.style.borderColor = sw.dataset.color;
    return { c, canvas, series, fig: h("figure", { class: "chart-box" }, h("figcaption", {}, c.label), canvas, legend) };
  });
  box.replaceChildren(h("div", { class: "charts history-charts" }, figs.map((f) => f.fig)));
  for (const f of figs) drawChart(f.canvas, f.series, { from, to, fmtX: fmtDay, minMax: f.c.minMax, dots: true });
}

function dayTable(items) {
  const both = (d, key, k = 1) => `${fmtNumber(d[`${key}_p50`] == null ? null : d[`${key}_p50`] * k, 2)} / ${fmtNumber(d[`${key}_p95`] == null ? null : d[`${key}_p95`] * k, 2)}`;
  const heads = ["day", "checks", "loss", "jitter", "rtt", "capacity"].map((k) => t(`history.col.${k}`));
  return table(t("history.table"), heads, [...items].reverse().map((d) => h("tr", { dataset: { day: d.day } },
    h("th", { scope: "row" }, d.day), h("td", {}, String(d.checks)), h("td", {}, both(d, "loss_ratio", 100)),
    h("td", {}, both(d, "jitter_ms")), h("td", {}, both(d, "rtt_ms")),
    h("td", {}, fmtNumber(d.capacity_kbps_p50, 0)))), "history");
}

// Whether the address still shows `hash` (a view that awaited may have been left meanwhile: it must
// not draw over the next one).
const still = (hash) => location.hash === hash;

async function historyView(root, title, zoneOf, path, hash) {
  if (!still(hash)) return;
  const charts = h("div");
  const rows = h("div");
  const select = h("select", { id: "history-days", onchange: () => { period = Number(select.value); load(); } },
    PERIODS.map((n) => h("option", { value: String(n), selected: n === period ? "" : null }, t("history.days_n", { n }))));
  root.replaceChildren(h("h2", {}, title),
    h("p", { class: "small muted" }, t("history.zone", { zone: zoneOf })),
    h("p", {}, h("label", { for: "history-days" }, t("history.period"), " "), select), charts, rows);
  async function load() {
    const out = await get(`${path}?days=${period}`);
    if (!still(hash)) return;
    const items = out.items || [];
    drawCharts(charts, items);
    rows.replaceChildren(items.length ? dayTable(items) : h("p", { class: "muted" }, t("history.none")));
  }
  await load();
}

export async function viewTerminal(root, id) {
  const hash = location.hash;
  await loadRegistry();
  const term = state.terminals.find((x) => x.id === id);
  const tz = term ? instTz(term.institution_id) : "UTC";
  const title = t("history.title_terminal", { name: termName(id) });
  await historyView(root, term ? [title, h("div", { class: "small muted" }, instName(term.institution_id))] : title, tz,
    `${A}/terminals/${encodeURIComponent(id)}/history`, hash);
}

export async function viewPair(root, arg) {
  const hash = location.hash;
  await loadRegistry();
  const [a, b] = (arg || "").split("/");
  const terms = [a, b].map((id) => state.terminals.find((x) => x.id === id)).filter(Boolean);
  const court = terms.find((x) => state.institutions.get(x.institution_id)?.kind === "court") || terms[0];
  await historyView(root, t("history.title_pair", { a: termName(a), b: termName(b) }),
    court ? instTz(court.institution_id) : "UTC",
    `${A}/pairs/${encodeURIComponent(a)}/${encodeURIComponent(b || "")}/history`, hash);
}
