// #hearing/ID: one hearing - its facts, checks, live quality, breaks, act and event record.

import { get, post } from "../api.js";
import { t, has, fmtTime, fmtNumber } from "../i18n.js";
import { route } from "../router.js";
import { A, every, state, termName } from "../state.js";
import { act, badge, dl, errText, h, statusBadge, table, verdictBadge } from "../ui.js";
import { findingView, reasonList } from "../reasons.js";
import { capacityBlock } from "../capacity.js";
import { actSection } from "./act.js";
import { eventsSection } from "./events.js";
import { conductSection } from "./hearing_conduct.js";
import { hearingEditControls } from "./hearing_edit.js";
import { selfchecksSection } from "./selfchecks.js";
import { agreementText, checkCell } from "./hearings.js";
import { LIVE_MS, liveCard, ongoing } from "./live.js";

export async function viewHearing(root, id) {
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
  const edit = hearingEditControls(x);
  actions.append(...edit.buttons);
  const checkRows = [];
  for (const [kind, c] of [["test", x.test_request], ["preconnect", x.preconnect]]) {
    for (const it of (c && c.items) || []) {
      const names = { caller: termName(it.caller), callee: termName(it.callee) };
      checkRows.push(h("tr", { dataset: { check: it.id } },
        h("td", {}, t(`kind.${kind}`)),
        h("td", {}, h("a", { href: `#pair/${it.caller}/${it.callee}`, title: t("history.pair_open") },
          `${termName(it.caller)} → ${termName(it.callee)}`)),
        h("td", {}, statusBadge(it.status), it.overdue_at && it.status !== "overdue" ? [" ", badge("flag", "overdue", t("hearings.overdue"))] : null),
        h("td", {}, fmtTime(it.deadline, tz)),
        h("td", {}, it.verdict ? verdictBadge(it.verdict) : t("common.dash")),
        h("td", { class: "reasons-cell" }, reasonList(it, names),
          it.error ? h("p", { class: "error" }, it.error) : null, findingView(it),
          capacityBlock(it.result, names),
          !reasonList(it) && !it.error && !findingView(it) && !capacityBlock(it.result) ? t("common.dash") : null),
        h("td", {}, String(it.attempts))));
    }
  }
  const liveBox = h("div");
  const actBox = h("div");
  const eventsBox = h("div");
  const selfchecksBox = h("div");
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
    actions, edit.box,
    h("h3", {}, t("hearing.checks")),
    checkRows.length ? table(t("hearing.checks"), ["kind", "pair", "status", "deadline", "verdict", "reasons", "attempts"]
      .map((k) => t(`hearing.check.${k}`)), checkRows, "checks") : h("p", { class: "muted" }, t("common.none")),
    selfchecksBox, liveBox, actBox, eventsBox);
  conductSection(actions, x).catch((e) => actions.append(h("p", { class: "error" }, errText(e))));
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
  selfchecksSection(selfchecksBox, x).catch((e) => selfchecksBox.append(h("p", { class: "error" }, errText(e))));
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
