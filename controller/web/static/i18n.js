// UI strings from the catalogs (/i18n/{kk,ru,en}.json) and local-time formatting.
// The chosen language is remembered in localStorage ("vks.lang").

export const LANGS = ["kk", "ru", "en"];
const LOCALES = { kk: "kk-KZ", ru: "ru-RU", en: "en-GB" };
const STORE_KEY = "vks.lang";

let lang = "ru";
let catalog = {};
let fallback = {};

export function currentLang() { return lang; }

export function initialLang() {
  const saved = localStorage.getItem(STORE_KEY);
  if (LANGS.includes(saved)) return saved;
  for (const l of navigator.languages || []) {
    const base = l.slice(0, 2).toLowerCase();
    if (LANGS.includes(base)) return base;
  }
  return "ru";
}

async function load(l) {
  const resp = await fetch(`/i18n/${l}.json`, { credentials: "same-origin" });
  if (!resp.ok) throw new Error(`catalog ${l}: HTTP ${resp.status}`);
  return resp.json();
}

export async function setLang(l) {
  if (!LANGS.includes(l)) l = "ru";
  if (!Object.keys(fallback).length) fallback = await load("en");
  catalog = l === "en" ? fallback : await load(l);
  lang = l;
  localStorage.setItem(STORE_KEY, l);
  document.documentElement.lang = l;
  applyStatic(document);
}

// t("key", {name: "x"}) -> the string with {name} filled in; the key itself if missing everywhere.
export function t(key, vars = {}) {
  let s = catalog[key] ?? fallback[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m));
}

// Has the catalog a string for this key? (for optional labels such as an event kind)
export function has(key) { return key in catalog || key in fallback; }

// Elements with data-i18n get their text; data-i18n-attr="attr:key;attr2:key2" their attributes.
export function applyStatic(root) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-attr]")) {
    for (const pair of el.dataset.i18nAttr.split(";")) {
      const [attr, key] = pair.split(":");
      if (attr && key) el.setAttribute(attr.trim(), t(key.trim()));
    }
  }
}

// An ISO UTC time shown in the given IANA zone, with the zone named: "01.12.2026, 10:00 (Asia/Almaty, GMT+5)".
export function fmtTime(iso, tz, { date = true, zone = true, seconds = false } = {}) {
  if (!iso) return t("common.dash");
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const opts = { timeZone: tz || "UTC", hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
  if (date) Object.assign(opts, { year: "numeric", month: "2-digit", day: "2-digit" });
  if (seconds) opts.second = "2-digit";
  let s;
  try {
    s = new Intl.DateTimeFormat(LOCALES[lang], opts).format(d);
  } catch {
    s = new Intl.DateTimeFormat(LOCALES[lang], { ...opts, timeZone: "UTC" }).format(d);
    tz = "UTC";
  }
  return zone ? `${s} (${zoneName(tz || "UTC", d)})` : s;
}

export function zoneName(tz, at = new Date()) {
  let offset = "";
  try {
    const part = new Intl.DateTimeFormat("en-GB", { timeZone: tz, timeZoneName: "shortOffset" })
      .formatToParts(at).find((p) => p.type === "timeZoneName");
    offset = part ? part.value : "";
  } catch { /* an unknown zone: the name alone */ }
  return offset && offset !== tz ? `${tz}, ${offset}` : tz;
}

// The calendar date (YYYY-MM-DD) of an instant in a zone.
export function localDate(iso, tz) {
  const d = iso ? new Date(iso) : new Date();
  try {
    return new Intl.DateTimeFormat("en-CA", { timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit" }).format(d);
  } catch {
    return d.toISOString().slice(0, 10);
  }
}

export function fmtNumber(v, digits = 1) {
  if (v === null || v === undefined || Number.isNaN(Number(v))) return t("common.dash");
  return new Intl.NumberFormat(LOCALES[lang], { maximumFractionDigits: digits, minimumFractionDigits: 0 }).format(Number(v));
}
