// Reasons in the page's language: a report's `reason_codes` ([{code, params}]) rendered from the one
// catalog of reason codes (GET /api/v1/reasons, contract/reasons.yaml) by the same rules as the
// controller's contract.reasons.text: numbers in their unit and the language's decimal mark, words of
// the catalog, and - when the session's terminals are known - a direction as the path it names
// (inbound is what the caller received). A record without codes shows its English `reasons`.

import { currentLang, t } from "./i18n.js";
import { get } from "./api.js";
import { A } from "./state.js";
import { h } from "./ui.js";

let catalog = null;

export async function loadReasons() {
  catalog = await get(`${A}/reasons`);
}

// v with d decimals as Python's format() writes it: a value exactly half-way is rounded to even
// (toFixed rounds it up), so the page and the controller's texts show the same figure.
// (toFixed(100) is the double's exact decimal expansion, far enough to tell a true half.)
function fixed(v, d) {
  const exact = v.toFixed(100);
  const dot = exact.indexOf(".");
  if (/^50*$/.test(exact.slice(dot + 1 + d))) {
    const n = Math.floor(Math.abs(v) * 10 ** d);       // the digits kept, as an integer
    return (Math.sign(v) * (n % 2 === 0 ? n : n + 1) / 10 ** d).toFixed(d);
  }
  return v.toFixed(d);
}

function number(value, fmt, lang) {
  const v = Number(value) * (fmt.scale ?? 1);
  const fine = fmt.fine_below != null && fmt.fine_digits != null && Math.abs(v) < fmt.fine_below
    && !(fmt.zero_coarse && v === 0);
  const s = fixed(v, fine ? fmt.fine_digits : (fmt.digits ?? 1));
  return s.replace(".", catalog.decimal_mark[lang] ?? ".") + ((fmt.unit || {})[lang] ?? "");
}

function word(kind, value, lang) {
  const w = (catalog.words[kind] || {})[value];
  return w ? (w[lang] ?? w.en) : String(value);
}

function param(kind, value, lang, names) {
  if (kind === "direction" && names && names.caller && names.callee) {
    const path = { inbound: `${names.callee} → ${names.caller}`, outbound: `${names.caller} → ${names.callee}`,
      both: `${names.caller} ↔ ${names.callee}` }[value];
    if (path) return path;
  }
  if (kind === "direction" || kind === "level") return word(kind, value, lang);
  if (kind === "text" || typeof value !== "number") return String(value);
  return number(value, catalog.formats[kind], lang);
}

function tidy(s) {
  return s.replace(/\(\s*\)/g, "").replace(/ {2,}/g, " ").replace(/ ([:,;])/g, "$1").trim();
}

// One reason ({code, params}) as a sentence in the page's language; `names` = {caller, callee}.
export function reasonText(rc, names = null, lang = currentLang()) {
  const kinds = catalog && catalog.params[rc.code];
  const texts = catalog && catalog.codes[rc.code];
  if (!kinds || !texts) return rc.params && Object.keys(rc.params).length ? `${rc.code} ${JSON.stringify(rc.params)}` : rc.code;
  const params = rc.params || {};
  const given = {};
  for (const [k, kind] of Object.entries(kinds)) {
    if (params[k] !== null && params[k] !== undefined) given[k] = param(kind, params[k], lang, names);
  }
  const template = tidy((texts[lang] || texts.en).replace(/\{(\w+)\}/g, (m, k) => (k in given ? m : "")));
  return template.replace(/\{(\w+)\}/g, (m, k) => given[k]);
}

// The reasons of a check, a test or an event detail as a list (null when there are none).
export function reasonList(item, names = null) {
  const codes = (item && item.reason_codes) || [];
  const texts = codes.length ? codes.map((rc) => reasonText(rc, names)) : ((item && item.reasons) || []).map(String);
  if (!texts.length) return null;
  return h("ul", { class: "reasons" }, texts.map((s) => h("li", {}, s)));
}

// A check's or a test's finding (issue 12: which side is at fault, each side tested against the
// reference terminal in the data centre) in the page's language; while the side tests run, says so.
export function findingView(item) {
  if (!item) return null;
  if (item.finding) {
    return h("p", { class: "finding", dataset: { code: item.finding.code, segment: item.finding.segment } },
      h("strong", {}, `${t("finding.label")}: `), reasonText({ code: item.finding.code, params: item.finding.params || {} }));
  }
  if (item.diagnosis === "running") return h("p", { class: "finding running muted" }, t("finding.running"));
  return null;
}

// An instant (ISO) in the court's zone as contract.reasons writes it: dd.mm.yyyy HH:MM.
function localTime(iso, tz) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const opts = { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
  let parts;
  try {
    parts = new Intl.DateTimeFormat("en-GB", { ...opts, timeZone: tz || "UTC" }).formatToParts(d);
  } catch {
    parts = new Intl.DateTimeFormat("en-GB", { ...opts, timeZone: "UTC" }).formatToParts(d);
  }
  const p = Object.fromEntries(parts.map((x) => [x.type, x.value]));
  return `${p.day}.${p.month}.${p.year} ${p.hour}:${p.minute}`;
}

// An event's sentence (the catalog's `events`, rule 21) in the page's language, its parameters
// (`params`: the values the sentence may use, terminals already named, labels already in the page's
// language) written by their kinds (catalog.event_params), a time in the zone `tz`; null when the
// catalog has no sentence for the kind or a parameter it names is not given. Same rules as
// contract.reasons.event_text.
export function eventText(kind, params, tz, lang = currentLang()) {
  const texts = catalog && catalog.events && catalog.events[kind];
  if (!texts) return null;
  const template = texts[lang] || texts.en;
  const given = {};
  for (const [k, v] of Object.entries(params || {})) {
    const kindOf = catalog.event_params[k];
    if (!kindOf || v === null || v === undefined || v === "") continue;
    if (kindOf === "time") given[k] = localTime(v, tz);
    else if ((kindOf === "seconds" || kindOf === "count") && typeof v === "number") given[k] = number(v, catalog.formats[kindOf], lang);
    else given[k] = String(v);
  }
  if ([...template.matchAll(/\{(\w+)\}/g)].some((m) => !(m[1] in given))) return null;
  const s = template.replace(/\{(\w+)\}/g, (m, k) => given[k]);
  return s.charAt(0).toUpperCase() + s.slice(1);
}
