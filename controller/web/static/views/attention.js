// #attention: a technician's home (issue 13, part 7) - the terminals in the user's scope that need
// them (offline, health not ok, last check failed or not good; rule 14) with why in words, and the
// open escalations (rules 16, 17) below.

import { get } from "../api.js";
import { t, has, fmtTime } from "../i18n.js";
import { A, inScope, instName, instTz, loadRegistry, state } from "../state.js";
import { badge, h, keepFresh, table, verdictBadge } from "../ui.js";

// Why a terminal needs attention, in words (none: it does not).
export function whyAttention(x, tz) {
  const why = [];
  if (x.online === false) {
    why.push(x.health?.last_seen ? t("attention.offline_since", { time: fmtTime(x.health.last_seen, tz) }) : t("attention.offline"));
  }
  const hs = x.health?.status;
  if (hs && hs !== "ok") {
    why.push([t("attention.unhealthy", { status: t(`health.${hs}`) }),
      x.health.problems?.length ? ` (${x.health.problems.join("; ")})` : ""].join(""));
  }
  const last = x.last_check;
  if (last && (last.status === "failed" || (last.verdict && last.verdict !== "good"))) {
    why.push(t("attention.check_failed", { kind: t(`kind.${last.kind}`), time: fmtTime(last.finished_at, tz) }));
  }
  return why;
}

export async function viewAttention(root) {
  const box = h("div");
  const esc = h("div");
  root.replaceChildren(h("h2", {}, t("attention.title")), box, h("h3", {}, t("attention.escalations")), esc);
  const escalations = async () => {
    if (!state.caps.exists("GET", `${A}/escalations`)) return h("p", { class: "muted" }, t("common.not_available"));
    const items = (await get(`${A}/escalations?state=open`)).items || [];
    if (!items.length) return h("p", { class: "muted" }, t("escalations.none"));
    return h("ul", { class: "attention-escalations" }, items.map((e) => h("li", { dataset: { escalation: String(e.id) } },
      h("a", { href: `#hearing/${e.hearing_id}` }, e.hearing ? e.hearing.case_number : `#${e.hearing_id}`), " ",
      badge("cause", e.cause, has(`cause.${e.cause}`) ? t(`cause.${e.cause}`) : e.cause), " ", h("span", { class: "small" },
        t("attention.opened", { time: fmtTime(e.opened_at, e.hearing?.timezone || "Asia/Almaty") })))),
    h("p", {}, h("a", { href: "#escalations" }, t("nav.escalations"))));
  };
  await Promise.all([keepFresh(box, async () => {
    await loadRegistry();
    const rows = state.terminals.filter((x) => inScope(x.institution_id))
      .map((x) => ({ x, tz: instTz(x.institution_id) }))
      .map(({ x, tz }) => ({ x, tz, why: whyAttention(x, tz) }))
      .filter(({ why }) => why.length);
    if (!rows.length) return h("p", { class: "muted" }, t("attention.none"));
    const heads = ["terminal", "institution", "why", "last"].map((k) => t(`attention.col.${k}`));
    return table(t("attention.title"), heads, rows.map(({ x, tz, why }) => h("tr", { dataset: { terminal: x.id } },
      h("th", { scope: "row" }, h("a", { href: `#terminal/${x.id}`, title: t("history.open") }, x.name), h("br"),
        h("code", { class: "small" }, x.id)),
      h("td", {}, instName(x.institution_id)),
      h("td", {}, h("ul", { class: "small problems" }, why.map((w) => h("li", {}, w)))),
      h("td", {}, x.last_check ? [h("a", { href: `#hearing/${x.last_check.hearing_id}` },
        t("terminals.last", { kind: t(`kind.${x.last_check.kind}`), status: t(`status.${x.last_check.status}`),
          time: fmtTime(x.last_check.finished_at, tz) })), " ", x.last_check.verdict ? verdictBadge(x.last_check.verdict) : null]
        : t("common.dash")))), "attention");
  }), keepFresh(esc, escalations)]);
}
