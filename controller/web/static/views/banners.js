// The break banners (rule 22) above every view: for each remote participant of a hearing of today
// whose link failed, the software's recommendation - "Connection to <terminal> lost - break
// recommended" and its evidence in words (the reasons catalog) - while it reconnects; the
// presiding judge's decision recorded with one click ("Break declared" / "Continue"), and
// "Confirm resumption" once the link holds again, for those who may.

import { get, post } from "../api.js";
import { t, fmtTime } from "../i18n.js";
import { reasonText } from "../reasons.js";
import { A, loadHearings, state } from "../state.js";
import { $, act, h } from "../ui.js";
import { ongoing } from "./live.js";

const BANNER_MS = 4000;
const SHOWN = ["break", "reconnecting", "ready_to_resume", "escalated"];

export function startBanners() {
  clearInterval(state.bannerTimer);
  if (!state.caps.exists("GET", `${A}/hearings/{id}/live`)) return;
  const run = () => updateBanners().catch(() => {});
  state.bannerTimer = setInterval(run, BANNER_MS);
  run();
}

export function stopBanners() {
  clearInterval(state.bannerTimer);
  state.bannerTimer = null;
}

// The participants whose link is in a break (an older controller: the hearing's own keys).
export function broken(live) {
  const parts = live.participants && live.participants.length ? live.participants
    : [{ terminal_id: live.callee, terminal_name: live.callee, state: live.state, break: live.break }];
  return parts.filter((p) => SHOWN.includes(p.state) && p.break && !p.break.resumed_at);
}

// "Connection to <terminal> lost - break recommended" and the evidence, in the page's language.
export function recommendation(p) {
  const rs = (p.break && p.break.reasons) || [];
  if (!rs.length) return [t("break.banner_plain"), null];
  return [reasonText(rs[0]), rs[1] ? reasonText(rs[1]) : null];
}

function decisionLine(b, tz) {
  if (!b.decision) return null;
  const key = b.decision === "declared" ? "break.declared_at" : "break.continued_at";
  return h("span", { class: "decision", dataset: { decision: b.decision } },
    t(key, { time: fmtTime(b.decided_at, tz), detected: fmtTime(b.started_at, tz) }));
}

function decisionButtons(x, b, refresh) {
  if (b.decision || !state.caps.can("POST", `${A}/hearings/{id}/break-decision`)) return [];
  const decide = (decision) => async (ev) => {
    for (const btn of ev.target.parentElement.querySelectorAll("button.decide")) btn.disabled = true;
    await act(() => post(`${A}/hearings/${x.id}/break-decision`, { decision }), t("break.recorded"));
    refresh();
  };
  return [h("button", { type: "button", class: "decide declared", onclick: decide("declared") }, t("break.declare")),
    h("button", { type: "button", class: "decide continued", onclick: decide("continued") }, t("break.continue"))];
}

export function breakBanner(x, live, p, refresh) {
  const tz = x.court.timezone;
  const b = p.break;
  const ready = p.state === "ready_to_resume";
  const canResume = ready && state.caps.can("POST", `${A}/hearings/{id}/resume`);
  const [head, evidence] = recommendation(p);
  const status = ready ? t("break.ready") : p.state === "escalated" || b.escalated_at ? t("break.escalated")
    : t("break.reconnecting");
  return h("div", { class: `banner ${ready ? "ready" : "break"}`, role: "alert",
    dataset: { hearing: String(x.id), terminal: p.terminal_id || "" } },
  h("strong", { class: "recommendation" }, head),
  evidence ? h("span", { class: "evidence" }, evidence) : null,
  h("span", { class: "where" }, t("break.where", { room: `${x.court.name}, ${x.room.name}`, case: x.case_number })),
  h("span", {}, status),
  b.started_at ? h("span", { class: "small" }, t("break.detected", { time: fmtTime(b.started_at, tz) })) : null,
  decisionLine(b, tz),
  ...decisionButtons(x, b, refresh),
  canResume ? h("button", { type: "button", class: "resume", onclick: async (ev) => {
    ev.target.disabled = true;
    await act(() => post(`${A}/hearings/${x.id}/resume`, {}), t("break.confirmed"));
    refresh();
  } }, t("break.confirm")) : null);
}

export async function updateBanners() {
  const box = $("#banners");
  if (!state.hearingsAt || Date.now() - state.hearingsAt > 30000) await loadHearings();
  const candidates = ongoing(state.hearings);
  const shown = [];
  const refresh = () => updateBanners().catch(() => {});
  for (const x of candidates) {
    let live;
    try { live = await get(`${A}/hearings/${x.id}/live`); } catch { continue; }
    for (const p of broken(live)) shown.push(breakBanner(x, live, p, refresh));
  }
  const focused = box.contains(document.activeElement);
  box.replaceChildren(...shown);
  if (focused) box.querySelector("button")?.focus();
}
