// The hearing's page drives the hearing (issue 13, part 2): "Start the hearing" and "End the hearing"
// (POST .../start, .../end), and each party's way of taking part (rules 21, 23: GET/PUT .../modes) -
// the remote terminals and the named persons (a lawyer, a witness...), each with a select of the
// three modes (contract.vocab.ParticipationMode, from /vocabularies) preset to the last recorded.
// After a break or a postponement the section asks for every party's mode (rule 23).
// views/hearing.js calls conductSection(actions, x) once the page is drawn.

import { get, api, post } from "../api.js";
import { t, fmtTime } from "../i18n.js";
import { route } from "../router.js";
import { A, REFRESH_MS, every, state, termName, words } from "../state.js";
import { act, errText, field, h, table } from "../ui.js";

const START_FROM = ["scheduled", "postponed"];
const END_FROM = ["in_progress"];

function partyName(p) {
  if (p.terminal_id) return `${p.institution_name || ""} — ${termName(p.terminal_id)}`.replace(/^ — /, "");
  return p.kind ? `${p.name} (${p.kind})` : p.name;
}

function modeSelect(id, chosen, label) {
  return h("select", { id, "aria-label": label, dataset: { mode: "1" } },
    words("participation_modes").map((m) => h("option", { value: m, selected: m === chosen }, t(`mode.${m}`))));
}

let seq = 0;

// The modes of the hearing's parties: a table of selects, a way to add a named person, and one
// button that records them all.
async function modesCard(x, given = null) {
  const data = given || await get(`${A}/hearings/${x.id}/modes`);
  const tz = x.court.timezone;
  const canWrite = state.caps.can("PUT", `${A}/hearings/{id}/modes`) && x.status !== "cancelled";
  const tbody = [];
  const rows = [];
  const addRow = (p) => {
    const id = `mode-${x.id}-${++seq}`;
    const name = partyName(p);
    const chosen = p.mode || (p.terminal_id ? "vks" : "in_person");
    const control = canWrite ? modeSelect(id, chosen, `${t("conduct.mode")}: ${name}`) : t(`mode.${chosen}`);
    const tr = h("tr", { dataset: { party: p.terminal_id || `name:${p.name}` } },
      h("th", { scope: "row" }, name),
      h("td", {}, p.mode || canWrite ? control : h("span", { class: "muted" }, t("conduct.not_recorded"))),
      h("td", { class: "small" }, p.recorded_at
        ? t("conduct.recorded_by", { at: fmtTime(p.recorded_at, tz, { zone: false }), by: p.recorded_by })
        : h("span", { class: "muted" }, t("conduct.not_recorded"))));
    rows.push({ p, control });
    tbody.push(tr);
    return tr;
  };
  for (const p of data.parties) addRow(p);
  const heads = [t("conduct.party"), t("conduct.mode"), t("conduct.recorded")];
  const tableEl = table(t("conduct.modes"), heads, tbody, "modes");
  const card = h("section", { class: "card modes", "aria-labelledby": `modes-h-${x.id}` },
    h("h3", { id: `modes-h-${x.id}` }, t("conduct.modes")),
    data.ask ? h("p", { class: "banner ask-modes", role: "alert" }, t(`conduct.ask.${data.ask.because}`)) : null,
    tableEl);
  if (!canWrite) return card;
  const nameIn = h("input", { id: `person-name-${x.id}`, type: "text", maxlength: "200", autocomplete: "off" });
  const kindIn = h("input", { id: `person-kind-${x.id}`, type: "text", maxlength: "64", autocomplete: "off" });
  const addBtn = h("button", { type: "button", class: "add-person" }, t("conduct.add_person"));
  addBtn.addEventListener("click", () => {
    const name = nameIn.value.trim();
    if (!name) { nameIn.focus(); return; }
    const tr = addRow({ name, kind: kindIn.value.trim() || null, mode: null });
    tableEl.querySelector("tbody").append(tr);
    tr.querySelector("select")?.focus();
    nameIn.value = ""; kindIn.value = "";
  });
  const save = h("button", { type: "button", class: "save-modes" }, t("conduct.save"));
  save.addEventListener("click", async () => {
    const items = rows.map(({ p, control }) => (p.terminal_id
      ? { terminal_id: p.terminal_id, mode: control.value }
      : { name: p.name, ...(p.kind ? { kind: p.kind } : {}), mode: control.value }));
    save.disabled = true;
    const done = await act(() => api("PUT", `${A}/hearings/${x.id}/modes`, { items }), t("conduct.saved"));
    save.disabled = false;
    if (done) card.replaceWith(await modesCard(x).catch((e) => h("p", { class: "error" }, errText(e))));
  });
  card.append(h("div", { class: "form-grid" },
    field(nameIn.id, t("conduct.person_name"), nameIn), field(kindIn.id, t("conduct.person_kind"), kindIn),
    h("div", { class: "field" }, addBtn)),
  h("p", { class: "actions" }, save));
  return card;
}

export async function conductSection(actions, x) {
  const path = `${A}/hearings/{id}`;
  if (START_FROM.includes(x.status) && state.caps.can("POST", `${path}/start`)) {
    actions.prepend(h("button", { type: "button", class: "start-hearing", onclick: () =>
      act(() => post(`${A}/hearings/${x.id}/start`), t("conduct.started")).then((r) => r && route()) },
    t("conduct.start")));
  }
  if (END_FROM.includes(x.status) && state.caps.can("POST", `${path}/end`)) {
    actions.prepend(h("button", { type: "button", class: "end-hearing", onclick: () =>
      act(() => post(`${A}/hearings/${x.id}/end`), t("conduct.ended")).then((r) => r && route()) },
    t("conduct.end")));
  }
  if (!state.caps.exists("GET", `${path}/modes`)) return;
  const box = h("div", { class: "modes-box" });
  actions.after(box);
  let asked = null;
  try {
    const data = await get(`${A}/hearings/${x.id}/modes`);
    asked = JSON.stringify(data.ask);
    box.append(await modesCard(x, data));
  } catch (e) {
    box.append(h("p", { class: "error" }, errText(e)));
    return;
  }
  if (!["scheduled", "in_progress", "postponed"].includes(x.status)) return;
  // A break (or a postponement) while the page is open: ask at once, unless someone is at work in the
  // section (their choices stay as they are until saved).
  every(REFRESH_MS, async () => {
    const data = await get(`${A}/hearings/${x.id}/modes`).catch(() => null);
    if (!data || JSON.stringify(data.ask) === asked || box.contains(document.activeElement)) return;
    asked = JSON.stringify(data.ask);
    box.replaceChildren(await modesCard(x, data));
  });
}
