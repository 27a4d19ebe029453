// #terminals: every terminal with its institution, role, link to the controller, health
// (rule 14) and last check - the last three only for the terminals in the user's scope (the API
// gives null for the others: the page says so rather than "unknown" or "offline"). A terminal in
// scope links to its history (#terminal/ID).

import { t, fmtTime } from "../i18n.js";
import { reasonList } from "../reasons.js";
import { inScope, instName, instTz, loadRegistry, state, termName } from "../state.js";
import { badge, h, keepFresh, table, verdictBadge } from "../ui.js";

function healthCells(x, tz) {
  if (!inScope(x.institution_id)) {
    const outside = () => h("td", { class: "muted" }, t("terminals.outside_scope"));
    return [outside(), outside()];
  }
  const hs = x.health?.status || "unknown";
  const last = x.last_check;
  return [
    h("td", {}, badge("health", hs, t(`health.${hs}`)),
      x.health?.problems?.length ? h("ul", { class: "small problems" }, x.health.problems.map((p) => h("li", {}, p))) : null),
    h("td", {}, last ? [h("a", { href: `#hearing/${last.hearing_id}` },
      t("terminals.last", { kind: t(`kind.${last.kind}`), status: t(`status.${last.status}`), time: fmtTime(last.finished_at, tz) })),
    " ", last.verdict ? verdictBadge(last.verdict) : null,
    reasonList(last, last.caller ? { caller: termName(last.caller), callee: termName(last.callee) } : null)] : t("common.dash")),
  ];
}

export async function viewTerminals(root) {
  const box = h("div");
  root.replaceChildren(h("h2", {}, t("terminals.title")), box);
  await keepFresh(box, async () => {
    await loadRegistry();
    const heads = ["terminal", "institution", "role", "online", "health", "last"].map((k) => t(`terminals.col.${k}`));
    return table(t("terminals.title"), heads, state.terminals.map((x) => {
      const tz = instTz(x.institution_id);
      return h("tr", { dataset: { terminal: x.id } },
        h("th", { scope: "row" }, inScope(x.institution_id)
          ? h("a", { href: `#terminal/${x.id}`, title: t("history.open") }, x.name) : x.name,
        h("br"), h("code", { class: "small" }, x.id)),
        h("td", {}, instName(x.institution_id)),
        h("td", {}, t(`terminals.role.${x.role}`)),
        h("td", {}, x.online === null ? h("span", { class: "muted" }, t("terminals.outside_scope"))
          : badge("online", x.online ? "yes" : "no", x.online ? t("terminals.online") : t("terminals.offline")),
          x.health?.last_seen ? h("div", { class: "small" }, t("terminals.last_seen", { time: fmtTime(x.health.last_seen, tz) })) : null),
        ...healthCells(x, tz));
    }), "terminals");
  });
}
