// A hearing's event record (rule 21) as sentences in the page's language: each event kind has its
// sentence (the catalog's `events`, contract/reasons.yaml, written by reasons.js's eventText - the act
// writes the same sentences in kk and ru) with the terminals named, not their ids; a check's result lists
// its reasons (reasons.js); the technical detail - session ids, raw figures - is folded in a <details>.

import { get } from "../api.js";
import { t, has, fmtTime } from "../i18n.js";
import { eventText, reasonList, reasonText } from "../reasons.js";
import { A, termName } from "../state.js";
import { h, table } from "../ui.js";

function label(prefix, value) {
  return value != null && has(`${prefix}.${value}`) ? t(`${prefix}.${value}`) : value;
}

function capital(s) { return s ? s.charAt(0).toUpperCase() + s.slice(1) : s; }

// Each party of a `mode_recorded` event with its way of taking part (rules 21, 23).
function partiesText(parties) {
  return parties.map((p) => `${p.terminal_id ? termName(p.terminal_id) : p.name}${p.kind ? ` (${p.kind})` : ""} — ${label("mode", p.mode)}`).join("; ");
}

// The words an event's sentence may use, from its detail (times as given: the catalog writes them in
// the court's zone); absent ones stay out. controller/event_words.py gives the act the same.
function vars(d, x) {
  const caller = d.caller || x.court_terminal;
  const v = {
    check: label("kind", d.kind), status: label("status", d.status), verdict: label("verdict", d.verdict),
    cause: has(`break.cause.${d.cause}`) ? t(`break.cause.${d.cause}`) : label("cause", d.cause),
    reason: label("reason", d.reason), by: d.by, error: d.error, attempt: d.attempt, attempts: d.attempts,
    channel: d.channel, event: d.event, case: d.case_number, duration: d.duration_s,
    name: d.name, mode: label("mode", d.mode),                       // a self-check's person (issue 14)
    callee: d.callee ? termName(d.callee) : undefined,
    terminal: d.terminal_id ? termName(d.terminal_id) : undefined,
    pair: d.callee && caller ? `${termName(caller)} → ${termName(d.callee)}` : undefined,
    start: d.start_utc,
    deadline: d.deadline,
    detected: d.detected_at, after: d.after_s,
    retry_at: d.retry_at,
    finding: d.code && d.params ? reasonText({ code: d.code, params: d.params }) : undefined,
    trigger: d.trigger ? label("trigger", d.trigger) : undefined,
    coordinator: d.coordinator ? label("agreement", d.coordinator) : undefined,
    given_by: d.given_by,
    modes: Array.isArray(d.parties) ? partiesText(d.parties) : undefined,
  };
  return Object.fromEntries(Object.entries(v).filter(([, val]) => val !== undefined && val !== null && val !== ""));
}

// The event as a sentence: its own when every word it needs is known, else the kind's label.
export function eventSentence(e, x) {
  const d = e.detail || {};
  const s = eventText(e.kind, vars(d, x), x.court.timezone);
  if (s) return s;
  return capital(has(`event.${e.kind}`) ? t(`event.${e.kind}`) : e.kind);
}

function technical(detail) {
  const rows = Object.entries(detail || {}).filter(([, v]) => v !== null && v !== undefined && v !== "");
  if (!rows.length) return null;
  return h("details", { class: "technical" }, h("summary", {}, t("hearing.event.technical")),
    h("dl", {}, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, typeof v === "object" ? JSON.stringify(v) : String(v))])));
}

// The terminals of a check (caller, callee), or of a live break as the side that saw it (a
// direction is what that side sent or received), for a reason's path.
function namesOf(found, x) {
  if (found.callee) return { caller: termName(found.caller || x.court_terminal), callee: termName(found.callee) };
  const remote = x.participants[0]?.terminal_id;
  if (!found.role || !remote) return null;
  const court = termName(x.court_terminal), other = termName(remote);
  return found.role === "callee" ? { caller: other, callee: court } : { caller: court, callee: other };
}

export async function eventsSection(box, x) {
  const data = await get(`${A}/hearings/${x.id}/events`);
  const items = data.items.slice(-50).reverse();
  box.append(h("h3", {}, t("hearing.events")),
    h("p", {}, h("a", { href: `${A}/hearings/${x.id}/events?format=csv`, download: `hearing-${x.id}-events.csv` }, t("hearing.events_csv"))),
    table(t("hearing.events"), [t("hearing.event.at"), t("hearing.event.kind"), t("hearing.event.detail")],
      items.map((e) => {
        const d = e.detail || {};
        const found = d.reason_codes || d.reasons ? d : (d.detail || {});   // an escalation carries its check's
        const names = namesOf(found, x);
        return h("tr", { dataset: { kind: e.kind } },
          h("td", {}, fmtTime(e.at, x.court.timezone, { zone: false })),
          h("td", { class: "sentence" }, eventSentence(e, x), reasonList(found, names)),
          h("td", { class: "detail" }, technical(d)));
      })));
}
