// #suspensions: suspensions of an institution or an area (rule 24), and a form to add one
// (the reasons from the vocabularies).

import { del, get, post } from "../api.js";
import { t, fmtTime } from "../i18n.js";
import { A, instName, instTz, state, words } from "../state.js";
import { act, badge, errText, field, h, keepFresh, table } from "../ui.js";

export async function viewSuspensions(root) {
  const box = h("div");
  const canAdd = state.caps.can("POST", `${A}/suspensions`);
  const canLift = state.caps.can("DELETE", `${A}/suspensions/{id}`);
  root.replaceChildren(h("h2", {}, t("suspensions.title")), canAdd ? suspensionForm(() => refresh()) : null, box);
  const render = async () => {
    const data = await get(`${A}/suspensions`);
    if (!data.items.length) return h("p", { class: "muted" }, t("common.none"));
    const heads = ["target", "reason", "from", "until", "state", "by"].map((k) => t(`suspensions.col.${k}`));
    if (canLift) heads.push(t("escalations.col.actions"));
    return table(t("suspensions.title"), heads, [...data.items].reverse().map((s) => {
      const tz = s.institution_id ? instTz(s.institution_id) : "Asia/Almaty";
      return h("tr", { dataset: { suspension: String(s.id) }, class: s.active ? "active" : "" },
        h("td", {}, s.institution_id ? instName(s.institution_id) : t("suspensions.area", { region: s.region })),
        h("td", {}, t(`reason.${s.reason}`), s.note ? h("div", { class: "small" }, s.note) : null),
        h("td", {}, fmtTime(s.from_utc, tz)),
        h("td", {}, s.until_utc ? fmtTime(s.until_utc, tz) : t("common.dash")),
        h("td", {}, s.active ? badge("susp", "active", t("suspensions.active")) : badge("susp", "inactive", t("suspensions.inactive")),
          s.lifted_at ? h("div", { class: "small" }, t("suspensions.lifted", { time: fmtTime(s.lifted_at, tz) })) : null),
        h("td", {}, s.created_by || t("common.dash")),
        canLift ? h("td", {}, !s.lifted_at ? h("button", { type: "button", class: "small-btn", dataset: { action: "lift" },
          onclick: () => act(() => del(`${A}/suspensions/${s.id}`)).then(() => refresh()) }, t("suspensions.lift")) : null) : null);
    }), "suspensions");
  };
  const refresh = async () => { try { box.replaceChildren(await render()); } catch (e) { box.replaceChildren(h("p", { class: "error" }, errText(e))); } };
  await keepFresh(box, render);
}

function suspensionForm(done) {
  const insts = [...state.institutions.values()];
  const kindSel = h("select", { id: "susp-kind", name: "target_kind" },
    h("option", { value: "institution" }, t("suspensions.target.institution")), h("option", { value: "region" }, t("suspensions.target.region")));
  const instSel = h("select", { id: "susp-institution", name: "institution_id" },
    insts.filter((i) => i.kind !== "court").map((i) => h("option", { value: i.id }, i.name)));
  const regions = [...new Set(insts.map((i) => i.region))].sort();
  const regionSel = h("select", { id: "susp-region", name: "region" }, regions.map((r) => h("option", { value: r }, r)));
  const reasonSel = h("select", { id: "susp-reason", name: "reason" },
    words("suspension_reasons").map((r) => h("option", { value: r }, t(`reason.${r}`))));
  const note = h("input", { id: "susp-note", name: "note", maxlength: "2000" });
  const instField = field("susp-institution", t("suspensions.institution"), instSel);
  const regionField = field("susp-region", t("suspensions.region"), regionSel);
  regionField.hidden = true;
  kindSel.addEventListener("change", () => {
    instField.hidden = kindSel.value !== "institution";
    regionField.hidden = kindSel.value !== "region";
  });
  const result = h("p", { class: "small", "aria-live": "polite" });
  return h("form", { class: "card form-grid", id: "susp-form", onsubmit: async (ev) => {
    ev.preventDefault();
    const body = { reason: reasonSel.value, note: note.value || null };
    if (kindSel.value === "institution") body.institution_id = instSel.value; else body.region = regionSel.value;
    const r = await act(() => post(`${A}/suspensions`, body));
    if (r) {
      result.textContent = t("suspensions.affected", { n: (r.affected_hearings || []).length });
      note.value = "";
      await done();
    }
  } },
  h("h3", { class: "full" }, t("suspensions.add")),
  field("susp-kind", t("suspensions.target_kind"), kindSel), instField, regionField,
  field("susp-reason", t("suspensions.reason"), reasonSel), field("susp-note", t("suspensions.note"), note),
  h("div", { class: "field" }, h("button", { type: "submit" }, t("suspensions.submit"))), result);
}
