// DOM helpers the views share: elements, badges, tables, form fields, toasts, API errors in the
// page's language, and parts that refresh themselves.

import { ApiError } from "./api.js";
import { t, has, fmtTime, zoneName } from "./i18n.js";
import { REFRESH_MS, every, session } from "./state.js";

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export const $ = (sel) => document.querySelector(sel);

// Element.replaceChildren with the nulls and arrays h() accepts.
export function put(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
}

export function badge(kind, value, label) {
  return h("span", { class: `badge ${kind}-${value}` }, label);
}

export function verdictBadge(v) { return badge("verdict", v || "unknown", t(`verdict.${v || "unknown"}`)); }
export function statusBadge(s) { return badge("status", s, t(`status.${s}`)); }

export function toast(msg, isError = false) {
  const el = $("#toast");
  el.textContent = msg;
  el.className = `toast show${isError ? " error" : ""}`;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.className = "toast"; }, 5000);
}

// An API error in the page's language (its stable code), with the server's words for the details.
export function errText(e) {
  if (e instanceof ApiError) {
    const said = e.code && has(`error.${e.code}`) ? `${t(`error.${e.code}`)} (${e.message})` : e.message;
    return t("common.error", { message: said });
  }
  return t("common.error", { message: String(e) });
}

export async function act(fn, okMsg) {
  try {
    const r = await fn();
    toast(okMsg || t("common.done"));
    return r;
  } catch (e) {
    toast(errText(e), true);
    return undefined;
  }
}

export function table(caption, headers, rows, cls = "") {
  for (const tr of rows) {
    [...tr.children].forEach((cell, i) => { if (headers[i] && !cell.dataset.label) cell.dataset.label = headers[i]; });
  }
  return h("div", { class: "table-wrap" },
    h("table", { class: cls },
      caption ? h("caption", { class: "sr-only" }, caption) : null,
      h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, rows)));
}

export function field(id, label, control) {
  return h("div", { class: "field" }, h("label", { for: id }, label), control);
}

export function dl(pairs) {
  return h("dl", { class: "facts" }, pairs.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

export function timeCell(iso, tz) {
  return [h("span", { class: "nowrap" }, fmtTime(iso, tz, { zone: false })), h("div", { class: "small muted" }, zoneName(tz, new Date(iso)))];
}

// Re-render a part of a view every `ms` (the forms around it stay as they are).
export function keepFresh(container, render, ms = REFRESH_MS) {
  let first = true;
  const run = async () => {
    // Someone working inside (keyboard focus on a button or a link): leave it as it is this round.
    if (!first && container.contains(document.activeElement)) return;
    first = false;
    try {
      container.replaceChildren(await render());
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) { session.expired(); return; }
      container.replaceChildren(h("p", { class: "error" }, errText(e)));
    }
  };
  every(ms, run);
  return run();
}
