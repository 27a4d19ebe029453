// The page: sign-in, hearings with their deadlines and verdicts, terminals, live quality,
// break banners with "confirm resume", escalations, a test on demand, suspensions, the act.
// One module per view (views/); no build step: the browser loads these ES modules as they are.
// Every string comes from the catalogs (i18n.js), every word list from GET /api/v1/vocabularies
// (state.js); every action is shown only when this controller serves its route and the
// signed-in role holds its permission (api.js Capabilities).

import { ApiError, Capabilities, get, post } from "./api.js";
import { t, initialLang, setLang } from "./i18n.js";
import { loadReasons } from "./reasons.js";
import { hasView, register, route } from "./router.js";
import { A, clearViewTimers, instName, loadHearings, loadRegistry, loadVocabularies, session, state } from "./state.js";
import { $, errText, toast } from "./ui.js";
import { startBanners, stopBanners, updateBanners } from "./views/banners.js";
import { viewAgreements } from "./views/agreements.js";
import { viewEscalations } from "./views/escalations.js";
import { viewHearing } from "./views/hearing.js";
import { viewAttention } from "./views/attention.js";
import { viewHearings, viewToday } from "./views/hearings.js";
import { viewPair, viewTerminal } from "./views/history.js";
import { viewLive } from "./views/live.js";
import { viewSuspensions } from "./views/suspensions.js";
import { viewTerminals } from "./views/terminals.js";
import { viewTest } from "./views/test.js";

register({ hearings: viewHearings, today: viewToday, hearing: viewHearing, terminals: viewTerminals, terminal: viewTerminal,
  pair: viewPair, live: viewLive, escalations: viewEscalations, test: viewTest, suspensions: viewSuspensions,
  attention: viewAttention, agreements: viewAgreements });

// Where each role works (issue 13, part 7): the page opens there after sign-in. A coordinator's
// pending agreements (#agreements) when this page serves that view, else the hearings.
export function homeOf(role) {
  if (role === "secretary" || role === "head_of_office") return "today";
  if (role === "technician") return "attention";
  if (role === "coordinator" && hasView("agreements")) return "agreements";
  return "hearings";
}

// --- sign-in ----------------------------------------------------------------------------------

async function loadSession() {
  try {
    state.me = await get(`${A}/me`);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) { state.me = null; return false; }
    throw e;
  }
  const [doc] = await Promise.all([get(`${A}/openapi.json`), loadVocabularies(), loadReasons()]);
  state.caps = new Capabilities(doc, state.me.permissions);
  return true;
}

function showLogin(message = "") {
  clearViewTimers();
  stopBanners();
  $("#login").hidden = false;
  $("#nav").hidden = true;
  $("#view").replaceChildren();
  $("#banners").replaceChildren();
  $("#whoami").hidden = true;
  $("#scope").hidden = true;
  $("#logout").hidden = true;
  $("#login-error").textContent = message;
  $("#login-user").focus();
}

session.expired = () => showLogin();

async function doLogin(body) {
  try {
    await post(`${A}/login`, body);
  } catch (e) {
    const msg = e instanceof ApiError && e.status === 429
      ? t("login.too_many", { seconds: e.body?.retry_after_s ?? "?" })
      : e instanceof ApiError && e.status === 401 ? t("login.wrong") : t("login.failed", { message: e.message });
    $("#login-error").textContent = msg;
    return;
  }
  $("#login-form").reset();
  $("#token-form").reset();
  await start({ home: true });
}

async function logout() {
  try { await post(`${A}/logout`); } catch { /* the cookie is cleared anyway */ }
  state.me = null;
  showLogin();
}

// --- shell ------------------------------------------------------------------------------------

function applyCaps() {
  for (const li of document.querySelectorAll("#nav [data-needs]")) {
    const [m, p] = li.dataset.needs.split(" ");
    li.hidden = !state.caps.can(m, p);       // served, and this role may (e.g. #agreements: coordinators)
  }
  if (!state.caps.can("POST", `${A}/tests`)) $('#nav [data-view="test"]').parentElement.hidden = true;
  $("#whoami").textContent = t("whoami", { name: state.me.name, role: t(`role.${state.me.role}`) });
  showScope();
}

// Where the user acts (GET /api/v1/me): national, or the institutions (by name once the registry is
// loaded) and regions given - what every list of the page is limited to.
function showScope() {
  const me = state.me;
  const what = [...me.institutions.map(instName), ...me.regions.map((region) => t("scope.region", { region }))];
  $("#scope").textContent = me.national ? t("scope.national") : t("scope.some", { what: what.join("; ") });
}

// `home`: just signed in - open the role's home, unless the address names one hearing, terminal or pair
// (a link followed before signing in).
async function start({ home = false } = {}) {
  let signedIn;
  try {
    signedIn = await loadSession();
  } catch (e) {
    showLogin(errText(e));
    return;
  }
  if (!signedIn) { showLogin(); return; }
  $("#login").hidden = true;
  $("#nav").hidden = false;
  $("#whoami").hidden = false;
  $("#scope").hidden = false;
  $("#logout").hidden = false;
  applyCaps();
  if (!location.hash || (home && !/^#(hearing|terminal|pair)\//.test(location.hash))) history.replaceState(null, "", `#${homeOf(state.me.role)}`);
  await loadRegistry().then(showScope).catch((e) => toast(errText(e), true));
  await loadHearings().catch((e) => toast(errText(e), true));
  startBanners();
  await route();
}

// --- boot -------------------------------------------------------------------------------------

async function boot() {
  const langSel = $("#lang");
  const lang = initialLang();
  await setLang(lang);
  langSel.value = lang;
  langSel.addEventListener("change", async () => {
    await setLang(langSel.value);
    if (state.me) { applyCaps(); await route(); updateBanners().catch(() => {}); }
  });
  $("#login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    doLogin({ username: $("#login-user").value.trim(), password: $("#login-pass").value });
  });
  $("#token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    doLogin({ token: $("#login-token").value.trim() });
  });
  $("#logout").addEventListener("click", logout);
  window.addEventListener("hashchange", () => { route(); $("#main").focus({ preventScroll: true }); });
  await start();
  document.body.dataset.ready = "1";
}

boot();
