// A hearing's self-checks of remote participants (issue 14, rule 20): a link per person (shown once,
// to copy and as a QR code), and what each check found - devices, verdict, figures both ways.

import { get, post } from "../api.js";
import { t, has, fmtTime, fmtNumber } from "../i18n.js";
import { A, state, words } from "../state.js";
import { act, field, h, keepFresh, table, verdictBadge } from "../ui.js";

function word(prefix, v) { return v != null && has(`${prefix}.${v}`) ? t(`${prefix}.${v}`) : (v ?? t("common.dash")); }

function num(v, digits) { return v == null ? t("common.dash") : fmtNumber(v, digits); }

function figures(it) {
  if (it.status !== "done") return t("common.dash");
  return t("hearing.selfchecks.figures", {
    rtt: num(it.rtt_ms, 0),
    in_loss: num(it.inbound.loss_ratio != null ? it.inbound.loss_ratio * 100 : null, 1),
    in_kbps: num(it.inbound.bitrate_kbps, 0),
    out_loss: num(it.outbound.loss_ratio != null ? it.outbound.loss_ratio * 100 : null, 1),
    out_kbps: num(it.outbound.bitrate_kbps, 0),
    path: it.path_type || t("common.dash"),
  });
}

async function listing(x) {
  const data = await get(`${A}/hearings/${x.id}/self-checks`);
  if (!data.items.length) return h("p", { class: "muted" }, t("hearing.selfchecks.none"));
  const cols = ["name", "status", "devices", "figures", "finished"].map((k) => t(`hearing.selfchecks.col.${k}`));
  return table(t("hearing.selfchecks"), cols, data.items.map((it) => h("tr", { dataset: { id: it.id, status: it.status } },
    h("td", {}, it.name, h("div", { class: "small muted" }, word("mode", it.mode))),
    h("td", {}, word("selfcheck.status", it.status), it.verdict ? [" ", verdictBadge(it.verdict)] : null),
    h("td", {}, `${word("selfcheck.device", it.camera)} / ${word("selfcheck.device", it.microphone)}`),
    h("td", { class: "small" }, figures(it)),
    h("td", {}, it.finished_at ? fmtTime(it.finished_at, x.court.timezone, { zone: false }) : t("common.dash")))), "selfchecks");
}

// The new link, shown once: to copy, and as a QR code a phone's camera opens.
function shownOnce(out, tz) {
  const input = h("input", { type: "text", readonly: true, value: out.url, id: "selfcheck-url", class: "wide" });
  const copy = h("button", { type: "button", onclick: async () => {
    input.select();
    await act(() => navigator.clipboard.writeText(out.url), t("hearing.selfchecks.copied"));
  } }, t("hearing.selfchecks.copy"));
  return h("div", { class: "selfcheck-link" },
    h("p", {}, t("hearing.selfchecks.link", { expires: fmtTime(out.expires_at, tz) })),
    h("p", {}, input, " ", copy),
    h("img", { src: `${new URL(out.url).pathname}/qr.svg`, alt: t("hearing.selfchecks.qr"), class: "qr", width: 180, height: 180 }));
}

export async function selfchecksSection(box, x) {
  const path = `${A}/hearings/{id}/self-checks`;
  if (!state.caps.exists("GET", path)) return;
  const list = h("div");
  const shown = h("div");
  box.append(h("h3", {}, t("hearing.selfchecks")), list, shown);
  if (state.caps.can("POST", path)) {
    const name = h("input", { id: "selfcheck-name", type: "text", required: true, maxlength: 200 });
    const mode = h("select", { id: "selfcheck-mode" },
      words("participation_modes").map((m) => h("option", { value: m, selected: m === "mobile" }, word("mode", m))));
    const form = h("form", { class: "inline", onsubmit: async (e) => {
      e.preventDefault();
      const out = await act(() => post(`${A}/hearings/${x.id}/self-checks`, { name: name.value, mode: mode.value }));
      if (!out) return;
      name.value = "";
      shown.replaceChildren(shownOnce(out, x.court.timezone));
      list.replaceChildren(await listing(x));
    } },
    field("selfcheck-name", t("hearing.selfchecks.name"), name),
    field("selfcheck-mode", t("hearing.selfchecks.mode"), mode),
    h("button", { type: "submit" }, t("hearing.selfchecks.create")));
    box.append(form);
  }
  keepFresh(list, () => listing(x));
}
