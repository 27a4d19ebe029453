// #test: run a test session now between two terminals, and its report.

import { get, post } from "../api.js";
import { t, fmtTime, fmtNumber } from "../i18n.js";
import { findingView, reasonList } from "../reasons.js";
import { capacityBlock } from "../capacity.js";
import { A, instName, loadRegistry, state, termName } from "../state.js";
import { errText, field, h, statusBadge, table, verdictBadge } from "../ui.js";

// The agents' media profiles a test may use (their settings: configs/agent.yaml session.profiles).
const PROFILES = ["hearing", "monitor"];

function terminalSelect(id, name, preferRole) {
  const sel = h("select", { id, name, required: true });
  const sorted = [...state.terminals].sort((a, b) => (b.online - a.online) || (a.role === preferRole ? -1 : 1));
  for (const x of sorted) {
    sel.append(h("option", { value: x.id }, `${x.name} — ${instName(x.institution_id)}${x.online === false ? ` ${t("test.offline_mark")}` : ""}`));
  }
  return sel;
}

function reportView(r) {
  const tz = Intl.DateTimeFormat().resolvedOptions().timeZone;
  const parts = [h("p", {}, t("test.verdict", { verdict: t(`verdict.${r.verdict || "unknown"}`) }), " ", verdictBadge(r.verdict),
    r.mos != null ? [" ", t("test.mos", { mos: fmtNumber(r.mos, 2) })] : null)];
  const reasons = reasonList(r, { caller: termName(r.caller), callee: termName(r.callee) });
  if (reasons) parts.push(h("div", { class: "reasons-block" }, h("h4", {}, t("test.reasons")), reasons));
  if (r.error) parts.push(h("p", { class: "error" }, t("test.error", { error: r.error })));
  const finding = findingView(r);
  if (finding) parts.push(finding);
  const rep = r.report;
  if (rep) {
    const row = (dir) => h("tr", {}, h("th", { scope: "row" }, t(`live.${dir}`)),
      h("td", {}, fmtNumber((rep[dir]?.loss_ratio ?? 0) * 100, 2)), h("td", {}, fmtNumber(rep[dir]?.jitter_ms, 1)),
      h("td", {}, fmtNumber(rep[dir]?.bitrate_kbps, 0)));
    parts.push(table(t("test.result"), ["direction", "loss", "jitter", "bitrate"].map((k) => t(`test.col.${k}`)),
      [row("outbound"), row("inbound")]));
    if (rep.rtt_ms) parts.push(h("p", {}, t("test.rtt", { mean: fmtNumber(rep.rtt_ms.mean, 1), p95: fmtNumber(rep.rtt_ms.p95, 1) })));
    const cap = capacityBlock(rep, { caller: termName(r.caller), callee: termName(r.callee) });
    if (cap) parts.push(cap);
  }
  if (r.finished_at) parts.push(h("p", { class: "small muted" }, fmtTime(r.finished_at, tz)));
  return h("div", { class: "test-result", dataset: { status: r.status } }, h("h3", {}, t("test.result"), " ", statusBadge(r.status)), parts);
}

export async function viewTest(root) {
  if (!state.caps.can("POST", `${A}/tests`)) {
    root.replaceChildren(h("h2", {}, t("test.title")), h("p", { class: "muted" }, t("test.not_allowed")));
    return;
  }
  await loadRegistry();
  const out = h("div", { id: "test-out", "aria-live": "polite" });
  const caller = terminalSelect("test-caller", "caller", "courtroom");
  const callee = terminalSelect("test-callee", "callee", "institution");
  const other = state.terminals.find((x) => x.online && x.role === "institution") || state.terminals.find((x) => x.id !== caller.value);
  if (other) callee.value = other.id;
  const profile = h("select", { id: "test-profile", name: "profile" }, PROFILES.map((p) => h("option", { value: p }, t(`profile.${p}`))));
  const duration = h("input", { id: "test-duration", name: "duration_s", type: "number", min: "1", max: "600", step: "1", value: "10", required: true });
  const capacity = h("input", { id: "test-capacity", name: "capacity", type: "checkbox", checked: true });
  const submit = h("button", { type: "submit" }, t("test.submit"));
  const form = h("form", { class: "card form-grid", onsubmit: async (ev) => {
    ev.preventDefault();
    submit.disabled = true;
    try {
      const r = await post(`${A}/tests`, { caller: caller.value, callee: callee.value, profile: profile.value, duration_s: Number(duration.value),
        capacity: capacity.checked });
      out.replaceChildren(h("p", {}, t("test.running", { id: r.id })));
      pollTest(r.id, out);
    } catch (e) {
      out.replaceChildren(h("p", { class: "error", role: "alert" }, errText(e)));
    } finally {
      submit.disabled = false;
    }
  } },
  field("test-caller", t("test.caller"), caller), field("test-callee", t("test.callee"), callee),
  field("test-profile", t("test.profile"), profile), field("test-duration", t("test.duration"), duration),
  field("test-capacity", t("test.capacity"), capacity),
  h("div", { class: "field" }, submit));
  root.replaceChildren(h("h2", {}, t("test.title")), form, out);
  if (state.runningTest) pollTest(state.runningTest, out);
}

function pollTest(id, out) {
  state.runningTest = id;
  let after = 0;       // polls since the result came: a diagnosis may still begin (issue 12)
  const step = async () => {
    if (state.view !== "test") return;
    let r;
    try { r = await get(`${A}/tests/${encodeURIComponent(id)}`); } catch (e) { out.replaceChildren(h("p", { class: "error" }, errText(e))); return; }
    if (r.status === "running") {
      out.replaceChildren(h("p", { class: "running" }, t("test.running", { id: r.id })));
      setTimeout(step, 1000);
    } else {
      state.runningTest = null;
      out.replaceChildren(reportView(r));
      // Degraded or failed: each side is tested against the reference; show its finding when in.
      if (r.diagnosis === "running" || (r.verdict !== "good" && r.diagnosis == null && after++ < 5)) setTimeout(step, 1000);
    }
  };
  step();
}
