// The hearing's page, the secretary's changes (issue 13): "Edit" (the schedule form, PATCH
// /api/v1/hearings/{id}), "Postpone" - with a new start or without one yet (PATCH status
// "postponed", and the start when given: its checks are planned again) - and "Cancel the hearing"
// (DELETE /api/v1/hearings/{id}: kept with its record), each shown only when this role may do it.

import { del, patch } from "../api.js";
import { t, zoneName } from "../i18n.js";
import { route } from "../router.js";
import { A, state } from "../state.js";
import { errText, h, toast } from "../ui.js";
import { localToUtc, scheduleForm } from "./schedule.js";

const CLOSED = ["cancelled", "held"];

// The buttons (appended to the page's actions) and the box the forms open in (after them).
export function hearingEditControls(x) {
  const path = `${A}/hearings/{id}`;
  const canPatch = state.caps.can("PATCH", path) && !CLOSED.includes(x.status);
  const canCancel = state.caps.can("DELETE", path) && x.status !== "cancelled";
  if (!canPatch && !canCancel) return { buttons: [], box: null };
  const box = h("div", { class: "hearing-edit" });
  const toggle = (btn, make) => async () => {
    const open = btn.getAttribute("aria-expanded") === "true";
    for (const b of buttons) b.setAttribute("aria-expanded", "false");
    box.replaceChildren();
    if (open) return;
    btn.setAttribute("aria-expanded", "true");
    try {
      box.append(await make());
      box.querySelector("input, select")?.focus();
    } catch (e) {
      box.append(h("p", { class: "error" }, errText(e)));
    }
  };
  const buttons = [];
  if (canPatch) {
    const edit = h("button", { type: "button", id: "hearing-edit", "aria-expanded": "false" }, t("hearing_edit.edit"));
    edit.addEventListener("click", toggle(edit, () => scheduleForm({ hearing: x, done: () => route() })));
    const postpone = h("button", { type: "button", id: "hearing-postpone", class: "alt", "aria-expanded": "false" },
      t("hearing_edit.postpone"));
    postpone.addEventListener("click", toggle(postpone, async () => postponeForm(x)));
    buttons.push(edit, postpone);
  }
  if (canCancel) {
    buttons.push(h("button", { type: "button", id: "hearing-cancel", class: "danger", onclick: async () => {
      if (!window.confirm(t("hearing_edit.cancel_confirm", { case: x.case_number }))) return;
      try {
        await del(`${A}/hearings/${x.id}`);
        toast(t("hearing_edit.cancelled"));
        await route();
      } catch (e) {
        toast(errText(e), true);
      }
    } }, t("hearing_edit.cancel")));
  }
  return { buttons, box };
}

// Postpone: the new start is optional (rule 23: the date may be agreed later); the court's local time.
function postponeForm(x) {
  const tz = x.court.timezone;
  const startIn = h("input", { id: "postpone-start", name: "start", type: "datetime-local" });
  const err = h("p", { class: "error field-error", role: "alert" });
  return h("form", { class: "card form-grid", id: "postpone-form", onsubmit: async (ev) => {
    ev.preventDefault();
    const body = { status: "postponed" };
    if (startIn.value) body.start_utc = localToUtc(startIn.value, tz);
    try {
      await patch(`${A}/hearings/${x.id}`, body);
      toast(t("hearing_edit.postponed"));
      await route();
    } catch (e) {
      err.textContent = errText(e);
    }
  } },
  h("h3", { class: "full" }, t("hearing_edit.postpone")),
  h("div", { class: "field" }, h("label", { for: "postpone-start" }, t("hearing_edit.new_start")), startIn,
    h("span", { class: "small muted" }, t("hearing_edit.new_start_help", { zone: zoneName(tz) })), err),
  h("div", { class: "field" }, h("button", { type: "submit", id: "postpone-submit" }, t("hearing_edit.postpone_submit"))));
}
