// The hearing form (issue 13): schedule a hearing (POST /api/v1/hearings) or edit one (PATCH
// /api/v1/hearings/{id}) in the court's local time, and import a day's hearings from a CSV or
// iCalendar file (POST /api/v1/hearings/import, docs/import.md). The start is typed as the court's
// wall-clock time (one datetime-local field) and converted with the court's IANA zone - the court
// of the chosen room decides; the API's errors are shown beside the field they name.

import { ApiError, get, patch, post, upload } from "../api.js";
import { t, has, zoneName } from "../i18n.js";
import { A, inScope, state, words } from "../state.js";
import { errText, h, toast } from "../ui.js";

// --- the court's wall clock <-> UTC ------------------------------------------------------------

function wallParts(ms, tz) {
  const parts = new Intl.DateTimeFormat("en-GB", { timeZone: tz, hourCycle: "h23", year: "numeric", month: "2-digit",
    day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" }).formatToParts(new Date(ms));
  const v = Object.fromEntries(parts.filter((p) => p.type !== "literal").map((p) => [p.type, Number(p.value)]));
  return v;
}

// How far the zone's wall clock is ahead of UTC at the instant `ms`, in ms.
function offsetAt(ms, tz) {
  const v = wallParts(ms, tz);
  return Date.UTC(v.year, v.month - 1, v.day, v.hour, v.minute, v.second) - Math.floor(ms / 1000) * 1000;
}

// "2026-12-03T09:00" on the wall clock of `tz` -> the ISO UTC instant ("2026-12-03T04:00:00.000Z").
export function localToUtc(local, tz) {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(local || "");
  if (!m) return null;
  const wall = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5]);
  let utc = wall - offsetAt(wall, tz);
  const again = wall - offsetAt(utc, tz);     // across a change of offset: the offset at the instant itself
  if (again !== utc) utc = again;
  return new Date(utc).toISOString();
}

// An ISO instant as the datetime-local value of `tz`'s wall clock.
export function utcToLocal(iso, tz) {
  const v = wallParts(new Date(iso).getTime(), tz);
  const p = (n) => String(n).padStart(2, "0");
  return `${v.year}-${p(v.month)}-${p(v.day)}T${p(v.hour)}:${p(v.minute)}`;
}

// --- the choices ----------------------------------------------------------------------------------

// The courtrooms of the courts in the user's scope: [{id, label "<court> - <room>", tz, court}].
export async function roomsInScope() {
  const data = await get(`${A}/rooms`);
  return data.items
    .map((r) => ({ r, court: state.institutions.get(r.institution_id) }))
    .filter(({ r, court }) => court && court.kind === "court" && inScope(r.institution_id))
    .map(({ r, court }) => ({ id: r.id, label: `${court.name} - ${r.name}`, tz: court.timezone || "UTC", court: court.id }))
    .sort((a, b) => a.label.localeCompare(b.label));
}

// The terminals a hearing may have as remote participants: any but the reference terminals of a data
// centre (another court's courtroom may take part; the API refuses the hearing's own room's terminal).
function remoteTerminals() {
  return state.terminals.filter((x) => {
    const kind = state.institutions.get(x.institution_id)?.kind;
    return kind && kind !== "datacentre";
  });
}

// --- the form -------------------------------------------------------------------------------------

const FIELD_OF = { case_number: "case", room_id: "room", court_terminal_id: "room", start_utc: "start",
  duration_min: "duration", initiative: "initiative", participants: "participants" };

// The form; `hearing` given: edit it (PATCH), else schedule a new one (POST). `done(hearing)` after.
export async function scheduleForm({ hearing = null, done }) {
  const rooms = await roomsInScope();
  if (hearing && !rooms.some((r) => r.id === hearing.room.id)) {
    const court = state.institutions.get(hearing.court.id);
    rooms.unshift({ id: hearing.room.id, label: `${hearing.court.name} - ${hearing.room.name}`,
      tz: hearing.court.timezone || court?.timezone || "UTC", court: hearing.court.id });
  }
  const errs = {};
  const errFor = (name) => (errs[name] = h("p", { class: "error small field-error", dataset: { for: name }, role: "alert" }));
  const row = (id, labelKey, control, name, extra = null) => h("div", { class: "field", dataset: { field: name } },
    h("label", { for: id }, t(labelKey)), control, extra, errFor(name));

  const caseIn = h("input", { id: "sched-case", name: "case_number", required: true, maxlength: "100",
    value: hearing?.case_number || "" });
  const roomSel = h("select", { id: "sched-room", name: "room_id", required: true },
    rooms.map((r) => h("option", { value: String(r.id), selected: hearing && r.id === hearing.room.id }, r.label)));
  const zone = h("span", { class: "small muted", id: "sched-zone" });
  const tzOf = () => rooms.find((r) => String(r.id) === roomSel.value)?.tz || "UTC";
  const startIn = h("input", { id: "sched-start", name: "start", type: "datetime-local", required: true,
    value: hearing ? utcToLocal(hearing.start_utc, hearing.court.timezone) : "" });
  const showZone = () => { zone.textContent = t("schedule.zone", { zone: zoneName(tzOf()) }); };
  roomSel.addEventListener("change", showZone);
  showZone();
  const durIn = h("input", { id: "sched-duration", name: "duration_min", type: "number", min: "1", max: "1440",
    required: true, value: String(hearing?.duration_min ?? 60) });
  const initSel = h("select", { id: "sched-initiative", name: "initiative" },
    words("initiatives").map((w) => h("option", { value: w, selected: hearing?.initiative === w },
      has(`initiative.${w}`) ? t(`initiative.${w}`) : w)));

  const terminals = remoteTerminals();
  const partBox = h("div", { class: "participants" });
  let serial = 0;
  const addParticipant = (chosen = "") => {
    const id = `sched-terminal-${serial++}`;
    const sel = h("select", { id, name: "terminal_id", class: "sched-participant", required: true },
      h("option", { value: "" }, t("common.dash")),
      terminals.map((x) => h("option", { value: x.id, selected: x.id === chosen }, `${x.name} (${x.id})`)));
    const first = partBox.children.length === 0;
    const wrap = h("div", { class: "participant" }, h("label", { for: id }, t("schedule.terminal")), sel,
      first ? null : h("button", { type: "button", class: "alt small-btn", onclick: () => wrap.remove() },
        t("schedule.remove_participant")));
    partBox.append(wrap);
    return sel;
  };
  for (const p of hearing?.participants || []) addParticipant(p.terminal_id);
  if (!partBox.children.length) addParticipant();
  const addBtn = h("button", { type: "button", class: "alt", id: "sched-add", onclick: () => addParticipant().focus() },
    t("schedule.add_participant"));
  const general = h("p", { class: "error", role: "alert" });

  const showErrors = (e) => {
    for (const p of Object.values(errs)) p.textContent = "";
    general.textContent = "";
    const where = e.body?.field ? FIELD_OF[e.body.field.split(".")[0]] : null;
    if (where && errs[where]) errs[where].textContent = errText(e);
    else general.textContent = errText(e);
    (where === "participants" ? partBox.querySelector("select") : document.getElementById(`sched-${where}`))?.focus?.();
  };

  const form = h("form", { class: "card form-grid", id: hearing ? "edit-form" : "schedule-form", novalidate: true,
    onsubmit: async (ev) => {
      ev.preventDefault();
      const tz = tzOf();
      const start = localToUtc(startIn.value, tz);
      const body = {
        case_number: caseIn.value.trim(), room_id: Number(roomSel.value), start_utc: start,
        duration_min: Number(durIn.value), initiative: initSel.value,
        participants: [...partBox.querySelectorAll("select")].map((s) => s.value).filter(Boolean)
          .map((terminal_id) => ({ terminal_id })),
      };
      if (!start) { showErrors(new ApiError(400, { field: "start_utc", message: t("schedule.start_needed") })); return; }
      // Editing: a start left as shown is not sent (the form shows minutes; the stored start may hold seconds).
      if (hearing && startIn.value === utcToLocal(hearing.start_utc, hearing.court.timezone)
          && roomSel.value === String(hearing.room.id)) delete body.start_utc;
      try {
        const out = hearing ? await patch(`${A}/hearings/${hearing.id}`, body) : await post(`${A}/hearings`, body);
        toast(hearing ? t("hearing_edit.saved") : t("schedule.scheduled", { case: out.case_number }));
        await done(out);
      } catch (e) {
        showErrors(e);
      }
    } },
  h("h3", { class: "full" }, t(hearing ? "schedule.edit_title" : "schedule.title")),
  row("sched-case", "schedule.case", caseIn, "case"),
  row("sched-room", "schedule.room", roomSel, "room"),
  row("sched-start", "schedule.start", startIn, "start", zone),
  row("sched-duration", "schedule.duration", durIn, "duration"),
  h("div", { class: "field full", dataset: { field: "participants" } }, partBox, addBtn, errFor("participants")),
  row("sched-initiative", "schedule.initiative", initSel, "initiative"),
  h("div", { class: "field" }, h("button", { type: "submit", id: "sched-submit" }, t(hearing ? "schedule.save" : "schedule.submit"))),
  general);
  if (!rooms.length) return h("p", { class: "muted" }, t("schedule.no_rooms"));
  return form;
}

// --- the import -----------------------------------------------------------------------------------

function importErrorLine(e) {
  const unit = e.event !== undefined ? "event" : "row";
  return t("import.error", { where: t(`import.${unit}`, { n: e[unit] }), field: e.field, message: e.message });
}

export function importForm(done) {
  const file = h("input", { id: "import-file", name: "file", type: "file", accept: ".csv,.ics,text/csv,text/calendar", required: true });
  const out = h("div", { id: "import-result", "aria-live": "polite" });
  return h("form", { class: "card form-grid", id: "import-form", onsubmit: async (ev) => {
    ev.preventDefault();
    if (!file.files.length) return;
    out.replaceChildren();
    try {
      const r = await upload(`${A}/hearings/import`, file.files[0]);
      toast(t("import.done", { n: r.items.length }));
      out.append(h("p", {}, t("import.done", { n: r.items.length })));
      file.value = "";
      await done(r.items);
    } catch (e) {
      const rows = e.body?.errors || [];
      out.append(h("p", { class: "error", role: "alert" }, t("import.refused", { message: rows.length ? e.message : errText(e) })),
        rows.length ? h("ul", { class: "error import-errors" }, rows.map((x) => h("li", {}, importErrorLine(x)))) : null);
    }
  } },
  h("h3", { class: "full" }, t("import.title")),
  h("div", { class: "field" }, h("label", { for: "import-file" }, t("import.file")), file,
    h("p", { class: "small muted" }, t("import.help"))),
  h("div", { class: "field" }, h("button", { type: "submit", id: "import-submit" }, t("import.submit"))),
  h("div", { class: "full" }, out));
}

// The hearings view's controls: "Schedule a hearing" (opens the form) and the import, for whoever may
// schedule (POST /api/v1/hearings; the page shows only what this role may do).
export function scheduleControls(refresh) {
  if (!state.caps.can("POST", `${A}/hearings`)) return null;
  const box = h("div", { class: "schedule-box" });
  const openBtn = h("button", { type: "button", id: "schedule-open", "aria-expanded": "false", onclick: async () => {
    if (box.children.length) { box.replaceChildren(); openBtn.setAttribute("aria-expanded", "false"); return; }
    openBtn.setAttribute("aria-expanded", "true");
    try {
      box.replaceChildren(await scheduleForm({ done: (x) => { location.hash = `#hearing/${x.id}`; } }));
      document.getElementById("sched-case")?.focus();
    } catch (e) {
      box.replaceChildren(h("p", { class: "error" }, errText(e)));
    }
  } }, t("schedule.open"));
  const canImport = state.caps.can("POST", `${A}/hearings/import`);
  return h("div", { class: "schedule-controls" }, h("div", { class: "actions" }, openBtn), box,
    canImport ? h("details", { class: "import" }, h("summary", {}, t("import.title")),
      importForm(refresh)) : null);
}
