// The act of technical impossibility of a hearing (rule 18): draft it, print it in Kazakh or
// Russian (HTML, PDF), and record its three signatures (the signer roles from the vocabularies).
// A signer signs from their own account, in its role ("Sign as ..."); whoever may change hearings
// can also enter a signer who has no account, and the act says who entered it.

import { ApiError, get, post } from "../api.js";
import { t, fmtTime } from "../i18n.js";
import { A, state, words } from "../state.js";
import { act, badge, field, h, put } from "../ui.js";

function signatureList(actDoc, tz) {
  const byRole = new Map((actDoc.signatures || []).map((x) => [x.role, x]));
  return h("ul", { class: "signatures" }, words("signer_roles").map((role) => {
    const sig = byRole.get(role);
    return h("li", { class: sig ? "signed" : "unsigned", dataset: { role } }, `${t(`act.signer.${role}`)}: `,
      sig ? t("act.signed", { name: sig.name, time: fmtTime(sig.signed_at, tz) }) : t("act.unsigned"),
      sig && !sig.user_name ? h("span", { class: "small" }, " ", t("act.entered_by", { name: sig.recorded_by })) : null);
  }));
}

// The signed-in user signs themselves: only in their account's role, once per act.
function signSelf(box, x, actDoc, missing) {
  const me = state.me;
  const mine = (actDoc.signatures || []).some((s) => s.user_name === me.name);
  if (mine || !missing.includes(me.role)) return null;
  return h("p", {}, h("button", { type: "button", id: "sign-self", onclick: async () => {
    const r = await act(() => post(`${A}/hearings/${x.id}/act/signatures`, {}));
    if (r !== undefined) await actSection(box, x);
  } }, t("act.sign_self", { name: me.name, role: t(`act.signer.${me.role}`) })));
}

// A signer with no account, entered by a user who may change hearings (recorded with who entered it):
// at most one per act, never in the user's own role (that one they sign themselves).
function signNoAccount(box, x, actDoc, missing) {
  if (!state.caps.permissions.has("hearings.write")) return null;
  if ((actDoc.signatures || []).some((s) => !s.user_name)) return null;
  const roles = missing.filter((r) => r !== state.me.role);
  if (!roles.length) return null;
  const role = h("select", { id: "sign-role", name: "role" }, roles.map((r) => h("option", { value: r }, t(`act.signer.${r}`))));
  const name = h("input", { id: "sign-name", name: "name", required: true, maxlength: "200", autocomplete: "off" });
  return h("form", { class: "card form-grid", id: "sign-form", onsubmit: async (ev) => {
    ev.preventDefault();
    const body = { role: role.value, name: name.value.trim(), no_account: true };
    const r = await act(() => post(`${A}/hearings/${x.id}/act/signatures`, body));
    if (r !== undefined) await actSection(box, x);
  } },
  h("h4", { class: "full" }, t("act.sign")), h("p", { class: "full small muted" }, t("act.no_account_hint")),
  field("sign-role", t("act.signer"), role), field("sign-name", t("act.signer_name"), name),
  h("div", { class: "field" }, h("button", { type: "submit" }, t("act.sign_submit"))));
}

function signing(box, x, actDoc) {
  const missing = actDoc.missing_signatures || words("signer_roles").filter((r) => !(actDoc.signatures || []).some((s) => s.role === r));
  if (!missing.length || !state.caps.can("POST", `${A}/hearings/{id}/act/signatures`)) return null;
  return [signSelf(box, x, actDoc, missing), signNoAccount(box, x, actDoc, missing)];
}

export async function actSection(box, x) {
  const path = `${A}/hearings/{id}/act`;
  if (!state.caps.exists("GET", path)) return;
  const heading = h("h3", {}, t("act.title"));
  let actDoc = null;
  try {
    actDoc = await get(`${A}/hearings/${x.id}/act`);
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 404)) throw e;
  }
  if (!actDoc) {
    put(box, heading, h("p", { class: "muted" }, t("act.none")),
      state.caps.can("POST", path)
        ? h("button", { type: "button", id: "act-draft", onclick: () => act(() => post(`${A}/hearings/${x.id}/act`, {})).then(() => actSection(box, x)) }, t("act.draft"))
        : null);
    return;
  }
  const base = `${A}/hearings/${x.id}/act`;
  const tz = x.court.timezone;
  put(box, heading,
    h("p", {}, badge("act", actDoc.status, t(`act.status.${actDoc.status}`)), " ",
      h("span", { class: "small" }, t("act.drawn", { name: actDoc.created_by, time: fmtTime(actDoc.created_at, tz) }))),
    h("ul", { class: "links" },
      h("li", {}, h("a", { href: `${base}.html?lang=kk`, target: "_blank", rel: "noopener" }, t("act.print_kk"))),
      h("li", {}, h("a", { href: `${base}.html?lang=ru`, target: "_blank", rel: "noopener" }, t("act.print_ru"))),
      h("li", {}, h("a", { href: `${base}.pdf?lang=kk` }, t("act.pdf_kk"))),
      h("li", {}, h("a", { href: `${base}.pdf?lang=ru` }, t("act.pdf_ru")))),
    h("h4", {}, t("act.signatures")), signatureList(actDoc, tz), signing(box, x, actDoc));
}
