// The views by the address's fragment: #hearings (default), #hearing/ID, #terminals, #terminal/ID,
// #pair/A/B, #live, #escalations, #test, #suspensions, #agreements. app.js registers the views; a view is
// `async (root, arg) => ...` drawing into #view.

import { ApiError } from "./api.js";
import { t } from "./i18n.js";
import { clearViewTimers, session, state } from "./state.js";
import { $, errText, h } from "./ui.js";

const views = {};

export function register(table) { Object.assign(views, table); }

// Is a view served under this name (e.g. another module's "agreements")?
export function hasView(name) { return Object.hasOwn(views, name); }

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "hearings";
  const [view, ...rest] = raw.split("/");
  return { view, arg: rest.join("/") || undefined };      // #pair/A/B: arg "A/B"
}

export async function route() {
  if (!state.me) return;
  clearViewTimers();
  const { view, arg } = parseHash();
  state.view = view;
  state.arg = arg;
  for (const a of document.querySelectorAll("#nav a")) {
    const nav = { hearing: "hearings", today: "hearings", terminal: "terminals", pair: "terminals" }[view] || view;
    if (a.dataset.view === nav) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const fn = views[view] || views.hearings;
  // Each route draws into a box of its own: a view still loading when the next route starts (the
  // language changed, then a link was followed) draws into its box, no longer shown.
  const root = h("div", { class: "view-root" }, h("p", { class: "muted" }, t("common.loading")));
  $("#view").replaceChildren(root);
  try {
    await fn(root, arg);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) { session.expired(); return; }
    root.replaceChildren(h("p", { class: "error", role: "alert" }, errText(e)));
  }
}
