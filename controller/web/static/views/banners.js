// The break banners (rule 22) above every view: a hearing of today in a break, reconnecting, or
// ready to resume - with "confirm resumption" for those who may.

import { get, post } from "../api.js";
import { t, fmtTime } from "../i18n.js";
import { A, loadHearings, state } from "../state.js";
import { $, act, h } from "../ui.js";
import { ongoing } from "./live.js";

const BANNER_MS = 4000;

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

export async function updateBanners() {
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
