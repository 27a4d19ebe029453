// #hearings: today's and upcoming hearings with their deadlines (rule 13), pre-connect windows
// (rule 15), agreement (rules 11, 12) and verdict (rule 3), in each court's local time.

import { t, fmtTime, localDate } from "../i18n.js";
import { reasonText } from "../reasons.js";
import { loadHearings, termName } from "../state.js";
import { badge, h, keepFresh, statusBadge, table, timeCell, verdictBadge } from "../ui.js";
import { scheduleControls } from "./schedule.js";

export function checkCell(c, tz, kind) {
  if (!c) return t("common.dash");
  const parts = [statusBadge(c.status)];
  if (c.verdict) parts.push(" ", verdictBadge(c.verdict));
  if (c.overdue && c.status !== "overdue") parts.push(" ", badge("flag", "overdue", t("hearings.overdue")));
  if (c.late) parts.push(" ", badge("flag", "late", t("hearings.late")));
  const when = kind === "preconnect" && c.window
    ? t("hearings.window", { opens: fmtTime(c.window.opens, tz, { date: false, zone: false }),
      closes: fmtTime(c.window.closes, tz, { date: false, zone: false }) })
    : t("hearings.deadline", { time: fmtTime(c.deadline, tz, { zone: false }) });
  // Why, on the cell itself (the hearing's page lists each check's reasons in full).
  const deciding = c.verdict && c.verdict !== "good" ? (c.items || []).find((i) => i.verdict === c.verdict) : null;
  const names = deciding ? { caller: termName(deciding.caller), callee: termName(deciding.callee) } : null;
  const why = deciding ? ((deciding.reason_codes || []).length ? deciding.reason_codes.map((rc) => reasonText(rc, names))
    : deciding.reasons || []) : [];
  return h("div", { class: "check", title: why.length ? why.join("\n") : null },
    h("div", {}, parts), h("div", { class: "small" }, when));
}

export function agreementText(a) {
  return t("agreement.state", { who: t(`agreement.${a.coordinator}`), state: t(`agreement.${a.state}`) });
}

function agreementCell(a) {
  return h("div", {}, badge("agreement", a.state, t(`agreement.${a.state}`)),
    h("div", { class: "small" }, t(`agreement.${a.coordinator}`)));
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

// #hearings: today's and upcoming; #today (a secretary's home): today's only, in each court's local day.
export async function viewHearings(root, _arg, only = null) {
  const list = h("div");
  const render = async () => {
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
    return h("div", {}, part(t("hearings.today"), today), only === "today" ? null : part(t("hearings.upcoming"), upcoming),
      h("p", { class: "small muted" }, t("common.updated", { time: fmtTime(new Date().toISOString(), Intl.DateTimeFormat().resolvedOptions().timeZone, { date: false }) })));
  };
  const refresh = async () => list.replaceChildren(await render());
  root.replaceChildren(h("h2", {}, t(only === "today" ? "hearings.today_title" : "hearings.title")), scheduleControls(refresh), list);
  await keepFresh(list, render);
}

export const viewToday = (root, arg) => viewHearings(root, arg, "today");
