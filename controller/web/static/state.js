// What the views share: the signed-in user and what they may do (api.js Capabilities), the
// vocabularies (GET /api/v1/vocabularies: every word list the page shows, defined once in the
// contract package), the registry and the hearings, and the views' timers.

import { get } from "./api.js";

export const A = "/api/v1";
export const REFRESH_MS = 10000;

export const state = {
  me: null, caps: null, vocab: null, institutions: new Map(), terminals: [], hearings: [], hearingsAt: 0,
  timers: [], bannerTimer: null, view: null, arg: null, runningTest: null,
};

// Set by app.js: what a view does when the session turns out to have ended (401).
export const session = { expired: () => {} };

// Run `fn` every `ms` while the current view is shown (router.js clears these on every route).
export function every(ms, fn) { state.timers.push(setInterval(fn, ms)); }

export function clearViewTimers() {
  for (const id of state.timers) clearInterval(id);
  state.timers = [];
}

// A published vocabulary's words in their order, e.g. words("suspension_reasons").
export function words(name) { return (state.vocab && state.vocab[name]) || []; }

export async function loadVocabularies() {
  state.vocab = await get(`${A}/vocabularies`);
}

export async function loadRegistry() {
  const [inst, terms] = await Promise.all([get(`${A}/institutions`), get(`${A}/terminals`)]);
  state.institutions = new Map(inst.items.map((i) => [i.id, i]));
  state.terminals = terms.items;
}

export async function loadHearings() {
  const from = new Date(Date.now() - 24 * 3600 * 1000).toISOString();
  const data = await get(`${A}/hearings?from=${encodeURIComponent(from)}&limit=500`);
  state.hearings = data.items;
  state.hearingsAt = Date.now();
  return state.hearings;
}

// Is the institution in the signed-in user's scope (GET /api/v1/me: national, or the institutions
// and regions given)? The API already leaves out what is not; the page only says why a cell is empty.
export function inScope(institutionId) {
  const me = state.me;
  if (!me || me.national) return true;
  const region = state.institutions.get(institutionId)?.region;
  return me.institutions.includes(institutionId) || (region != null && me.regions.includes(region));
}

export function instName(id) { return state.institutions.get(id)?.name || id; }
export function instTz(id) { return state.institutions.get(id)?.timezone || "UTC"; }
export function termName(id) { return state.terminals.find((x) => x.id === id)?.name || id; }
