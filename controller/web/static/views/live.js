// #live: live quality of the hearings going on now (rule 22), one card per hearing with charts
// of loss, jitter and RTT over the last two minutes (its first remote participant's link) and a
// line per remote participant - each one's own link: state, verdict, latest figures, and a break
// named with its recommendation; the same card on a hearing's own view.

import { get } from "../api.js";
import { drawChart } from "../chart.js";
import { t, has, fmtTime, fmtNumber } from "../i18n.js";
import { reasonText } from "../reasons.js";
import { A, REFRESH_MS, every, loadHearings, state } from "../state.js";
import { badge, h, put, verdictBadge } from "../ui.js";

export const LIVE_MS = 2000;
const LIVE_WINDOW_MS = 2 * 60 * 1000;     // the live API returns the last 120 s
const LIVE_MIN_SPAN_MS = 60 * 1000;
const PRECONNECT_LEAD_MS = 30 * 60 * 1000;
const COLORS = { inbound: "#0b5cad", outbound: "#b34700", rtt: "#5b2c83" };

// The hearings whose link matters now: from the pre-connect window to the planned end, or in progress.
export function ongoing(hearings) {
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

function latest(intervals, dir, key, scale = 1) {
  const iv = [...intervals].reverse().find((i) => i[dir] && i[dir][key] != null);
  return iv ? fmtNumber(iv[dir][key] * scale, key === "loss_ratio" ? 2 : 1) : t("common.dash");
}

function stateBadge(st) {
  return badge("live", st, has(`live.state.${st}`) ? t(`live.state.${st}`) : st);
}

// One row per remote participant: whose link, its state and verdict, its latest figures, its break.
function participantsTable(live, tz) {
  const parts = live.participants || [];
  if (!parts.length) return null;
  const cols = ["terminal", "state", "verdict", "loss", "jitter", "break"].map((k) => t(`live.col.${k}`));
  const rows = parts.map((p) => {
    const ivs = p.intervals || [];
    const b = p.break;
    const note = b && !b.resumed_at && b.reasons && b.reasons.length ? reasonText(b.reasons[0]) : "";
    // Each cell labelled: on a narrow screen the rows stack as cards (style.css).
    const cell = (i, ...content) => h("td", { dataset: { label: cols[i] }, class: i === 5 ? "small" : "" }, ...content);
    return h("tr", { dataset: { terminal: p.terminal_id, state: p.state } },
      h("th", { scope: "row" }, p.terminal_name || p.terminal_id),
      cell(1, stateBadge(p.state)), cell(2, verdictBadge(p.verdict)),
      cell(3, `${latest(ivs, "inbound", "loss_ratio", 100)} / ${latest(ivs, "outbound", "loss_ratio", 100)}`),
      cell(4, `${latest(ivs, "inbound", "jitter_ms")} / ${latest(ivs, "outbound", "jitter_ms")}`),
      cell(5, note, b && b.decision
        ? ` (${t(b.decision === "declared" ? "break.declared_at" : "break.continued_at",
          { time: fmtTime(b.decided_at, tz), detected: fmtTime(b.started_at, tz) })})` : ""));
  });
  return h("table", { class: "participants" },
    h("caption", {}, t("live.participants")),
    h("thead", {}, h("tr", {}, cols.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows));
}

export function liveCard(x) {
  const tz = x.court.timezone;
  const stateLine = h("p", { class: "live-state" });
  const partsBox = h("div", { class: "live-participants" });
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
    stateLine, partsBox, h("div", { class: "charts" }, charts.map((c) => c.fig)));
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
    const table = participantsTable(live, tz);
    partsBox.replaceChildren(...(table ? [table] : []));
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

export async function viewLive(root) {
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
