// Capacity (issue 12, part 1): what each direction of a test carried, from its report's `capacity`
// ({outbound, inbound: {kbps, limited_by}}, agent/capacity.py) - kb/s each way and what limited it,
// in the page's language. Null for a report without it (an older agent, a check that did not ask).

import { t, fmtNumber } from "./i18n.js";
import { h } from "./ui.js";

function side(dir, d, names) {
  const label = names ? (dir === "outbound" ? `${names.caller} → ${names.callee}` : `${names.callee} → ${names.caller}`)
    : t(`live.${dir}`);
  if (!d) return h("li", { dataset: { dir } }, t("capacity.not_measured", { dir: label }));
  return h("li", { dataset: { dir, limitedBy: d.limited_by || "" } },
    t("capacity.side", { dir: label, kbps: fmtNumber(d.kbps, 0),
      limit: t(`capacity.limited_by.${d.limited_by || "time"}`) }));
}

// The capacity figures of a report as a small block; `names` = {caller, callee} (terminal names).
export function capacityBlock(report, names = null) {
  const c = report && report.capacity;
  if (!c) return null;
  return h("div", { class: "capacity" },
    h("span", { class: "small" }, t("capacity.title")),
    h("ul", { class: "capacity-list" }, side("outbound", c.outbound, names), side("inbound", c.inbound, names)),
    c.error ? h("p", { class: "small muted" }, t("capacity.error", { error: c.error })) : null);
}
