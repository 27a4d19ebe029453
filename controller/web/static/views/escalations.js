// #escalations: open escalations (rules 16, 17) with acknowledge / cannot fix / resolved.

import { get, post } from "../api.js";
import { t, has, fmtTime } from "../i18n.js";
import { route } from "../router.js";
import { A, state, termName } from "../state.js";
import { act, badge, h, keepFresh, table, timeCell } from "../ui.js";

export async function viewEscalations(root) {
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

// What a terminal's escalation (the terminal watch, the retried tests: controller.freshness) is about,
// in a line: the terminal by name, since when it is away, what its health check found.
function aboutTerminal(e, tz) {
  const d = e.detail || {};
  if (!d.terminal_id) return null;
  const terminal = termName(d.terminal_id);
  let line = terminal;
  if (e.cause === "agent_offline") {
    line = d.offline_since ? t("escalations.offline_since", { terminal, time: fmtTime(d.offline_since, tz, { zone: false }) })
      : t("escalations.never_seen", { terminal });
  } else if (e.cause === "terminal_unhealthy") {
    line = t("escalations.unhealthy", { terminal, problems: (d.problems || []).join("; ") || t("common.dash") });
  } else if (e.cause === "test_retries_failed") {
    line = t("escalations.retries_failed", { terminal, retries: d.retries ?? 0 });
  }
  return h("div", { class: "small about" }, line);
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
    h("td", {}, badge("cause", e.cause, cause), aboutTerminal(e, tz)),
    h("td", {}, t(`escalations.step${e.step === 2 ? 2 : 1}`), h("div", { class: "small" }, t(`escalations.state.${e.state}`)),
      e.step !== 2 && e.step2_due_at ? h("div", { class: "small" }, t("escalations.step2_due", { time: fmtTime(e.step2_due_at, tz, { zone: false }) })) : null),
    h("td", {}, timeCell(e.opened_at, tz)),
    h("td", {}, e.acked_by ? t("escalations.acked", { name: e.acked_by, time: fmtTime(e.acked_at, tz, { zone: false }) }) : t("common.dash"),
      e.cannot_fix_by ? h("div", { class: "small" }, t("escalations.cannot_fix_by", { name: e.cannot_fix_by })) : null),
    h("td", { class: "actions" }, buttons));
}
