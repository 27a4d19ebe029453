// #agreements: the coordinator's page (rules 11, 12) - the hearings whose date and time wait for her
// agreement (GET /api/v1/agreements: in her scope, of her level), soonest first, each with its
// checks' results beside - the last check's verdict and its reasons in words - and "Give agreement".

import { get, post } from "../api.js";
import { t, fmtTime } from "../i18n.js";
import { reasonList } from "../reasons.js";
import { route } from "../router.js";
import { A, state, termName } from "../state.js";
import { act, h, keepFresh, table, timeCell, verdictBadge } from "../ui.js";
import { checkCell } from "./hearings.js";

// The last check with a result (the pre-connect check after the test): its verdict and, per pair
// that was not good, the reasons in words.
function lastCheck(x) {
  const c = [x.preconnect, x.test_request].find((k) => k && k.verdict);
  if (!c) return h("div", { class: "last-check muted" }, t("agreements.no_check"));
  const tz = x.court.timezone;
  const done = (c.items || []).filter((i) => i.finished_at).map((i) => i.finished_at).sort();
  return h("div", { class: "last-check" },
    verdictBadge(c.verdict), done.length ? [" ", h("span", { class: "small muted" }, fmtTime(done[done.length - 1], tz, { zone: false }))] : null,
    (c.items || []).filter((i) => i.verdict && i.verdict !== "good").map((i) => h("div", { class: "small" },
      `${termName(i.caller)} → ${termName(i.callee)}`,
      reasonList(i, { caller: termName(i.caller), callee: termName(i.callee) }))));
}

function row(x, canGive) {
  const tz = x.court.timezone;
  const give = canGive ? h("button", { type: "button", class: "give-agreement", onclick: () =>
    act(() => post(`${A}/hearings/${x.id}/agreement`, {}), t("agreements.given")).then((r) => r && route()) },
  t("hearing.agree")) : null;
  return h("tr", { dataset: { hearing: String(x.id) } },
    h("th", { scope: "row" }, h("a", { href: `#hearing/${x.id}` }, x.case_number),
      h("div", { class: "small" }, x.court.name, ", ", x.room.name)),
    h("td", {}, timeCell(x.start_utc, tz)),
    h("td", {}, t(`agreement.${x.agreement.coordinator}`)),
    h("td", {}, checkCell(x.test_request, tz, "test"), checkCell(x.preconnect, tz, "preconnect")),
    h("td", {}, lastCheck(x)),
    h("td", {}, give));
}

export async function viewAgreements(root) {
  const list = h("div");
  root.replaceChildren(h("h2", {}, t("agreements.title")), list);
  const canGive = state.caps.can("POST", `${A}/hearings/{id}/agreement`);
  await keepFresh(list, async () => {
    const data = await get(`${A}/agreements?state=pending`);
    if (!data.items.length) return h("p", { class: "muted none" }, t("agreements.none"));
    const heads = ["hearing", "start", "coordinator", "checks", "last", "action"].map((k) => t(`agreements.col.${k}`));
    return table(t("agreements.title"), heads, data.items.map((x) => row(x, canGive)), "agreements");
  });
}
