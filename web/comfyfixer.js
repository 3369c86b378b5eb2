// Entry point: registers the ComfyFixerSmart extension with ComfyUI's frontend.
//   - commands + a top-menu entry (Extensions > ComfyFixerSmart), an action-bar button where the
//     frontend supports `actionBarButtons`, else a floating button; all open the panel
//   - an optional automatic check after a workflow loads, with a badge counting missing files
// Works with the frontend ComfyUI 0.3.75 pins (1.32.x) and with the newest one.
import { app } from "../../scripts/app.js";
import { FixerController } from "./controller.js";
import { FixerPanel } from "./panel.js";
import { h } from "./dom.js";

const EXTENSION = "ComfyFixerSmart.FixMissingModels";
const SETTING_AUTO_CHECK = "ComfyFixer.AutoCheck";
const ACTION_BAR_CLASS = "comfyfixer-actionbar-button";
const OPEN_TESTID = "comfyfixer-open";
const AUTO_CHECK_DELAY_MS = 600;

let controller = null;
let panel = null;
let floating = null;
let badgeCount = 0;
let autoTimer = null;

/** Toast through the frontend's toast service; a small DOM toast where there is none. */
function notify(severity, summary, detail = "") {
  const toast = app.extensionManager?.toast;
  if (toast?.add) {
    toast.add({ severity, summary, detail, life: severity === "error" ? 10000 : 6000 });
    return;
  }
  const el = h("div", { class: `comfyfixer-toast comfyfixer-toast-${severity}`, role: "status", testid: "comfyfixer-toast" },
    h("strong", {}, summary), detail ? h("div", {}, detail) : null);
  document.body.appendChild(el);
  setTimeout(() => el.remove(), 6000);
}

function ensure() {
  if (!controller) {
    controller = new FixerController(app, notify);
    controller.start();
    panel = new FixerPanel(controller);
    controller.subscribe((change) => {
      if (change.kind === "all") setBadge(controller.missingCount());
    });
  }
  return { controller, panel };
}

/** Open (or bring back) the panel and check the graph loaded right now. */
export function openPanel() {
  const { controller: c, panel: p } = ensure();
  p.open();
  c.check();
}

function togglePanel() {
  const { panel: p } = ensure();
  if (p.isOpen) p.close();
  else openPanel();
}

async function downloadAll() {
  const { controller: c } = ensure();
  openPanel();
  // Wait for the check openPanel() started, then take the confident candidates.
  const seq = c.checkSeq;
  await new Promise((resolve) => {
    const off = c.subscribe(() => {
      if (c.checkSeq !== seq || c.state.phase === "ready" || c.state.phase === "error") {
        off();
        resolve();
      }
    });
  });
  await c.download();
}

// ---------------------------------------------------------------- open button + badge

function settingValue(id, fallback) {
  try {
    const v = app.extensionManager?.setting?.get?.(id) ?? app.ui?.settings?.getSettingValue?.(id);
    return v === undefined || v === null ? fallback : v;
  } catch {
    return fallback;
  }
}

function setBadge(count) {
  badgeCount = count;
  syncOpenButton();
}

function decorate(button) {
  button.dataset.testid = OPEN_TESTID;
  let badge = button.querySelector(":scope > .comfyfixer-badge");
  if (!badge) {
    badge = h("span", { class: "comfyfixer-badge", testid: "comfyfixer-badge", "aria-live": "polite" });
    button.appendChild(badge);
  }
  const text = badgeCount > 0 ? String(badgeCount) : "";
  if (badge.textContent !== text) badge.textContent = text;
  badge.hidden = !text;
  const title = badgeCount > 0
    ? `Fix missing models: ${badgeCount} missing in this workflow`
    : "Fix missing models (ComfyFixerSmart)";
  if (button.title !== title) button.title = title;
}

function visible(el) {
  return el.isConnected && el.getClientRects().length > 0;
}

/**
 * Exactly one element carries data-testid="comfyfixer-open": the action-bar button when the
 * frontend renders one (and it is visible), else our floating button.
 */
function syncOpenButton() {
  const barButton = [...document.querySelectorAll(`.${ACTION_BAR_CLASS}`)].find(visible) ?? null;
  if (!floating) {
    floating = h("button", {
      type: "button", class: "comfyfixer-floating", "aria-label": "Fix missing models",
      on: { click: () => togglePanel() },
    }, h("i", { class: "pi pi-wrench", "aria-hidden": "true" }), h("span", { class: "comfyfixer-floating-label" }, "Fix models"));
    floating.hidden = true;
    document.body.appendChild(floating);
  }
  const active = barButton ?? floating;
  floating.hidden = Boolean(barButton);
  // A stale action-bar button (re-rendered by Vue) or the hidden floating one: no test ids.
  for (const other of document.querySelectorAll(`[data-testid="${OPEN_TESTID}"]`)) {
    if (other !== active) undecorate(other);
  }
  if (active !== floating) undecorate(floating);
  decorate(active);
}

function undecorate(button) {
  delete button.dataset.testid;
  button.querySelector(":scope > .comfyfixer-badge")?.remove();
}

function watchOpenButton() {
  let pending = null;
  const schedule = () => {
    if (pending) return;
    pending = setTimeout(() => {
      pending = null;
      syncOpenButton();
    }, 200);
  };
  // The action bar is Vue-rendered and can appear, move or be re-rendered at any time.
  new MutationObserver(schedule).observe(document.body, { childList: true, subtree: true });
  window.addEventListener("resize", schedule);
  syncOpenButton();
}

function scheduleAutoCheck() {
  clearTimeout(autoTimer);
  autoTimer = setTimeout(() => {
    if (!settingValue(SETTING_AUTO_CHECK, true)) return;
    const { controller: c, panel: p } = ensure();
    if (p.isOpen) c.check();
    else c.quickScan();
  }, AUTO_CHECK_DELAY_MS);
}

// ---------------------------------------------------------------- registration

function loadStylesheet() {
  const href = new URL("./comfyfixer.css", import.meta.url).href;
  if (!document.querySelector(`link[href="${CSS.escape(href)}"]`)) {
    document.head.appendChild(h("link", { rel: "stylesheet", href }));
  }
}

app.registerExtension({
  name: EXTENSION,
  commands: [
    { id: "ComfyFixer.OpenPanel", label: "Fix missing models", icon: "pi pi-wrench", function: () => openPanel() },
    { id: "ComfyFixer.DownloadAll", label: "Download all missing models", icon: "pi pi-download", function: () => downloadAll() },
    { id: "ComfyFixer.EmbedSources", label: "Embed model sources in the workflow", icon: "pi pi-bookmark",
      function: () => ensure().controller.embedAll() },
  ],
  menuCommands: [
    { path: ["Extensions", "ComfyFixerSmart"], commands: ["ComfyFixer.OpenPanel", "ComfyFixer.DownloadAll", "ComfyFixer.EmbedSources"] },
  ],
  // Rendered by frontends that have an action bar (1.32+); the class lets us find the button.
  actionBarButtons: [
    { icon: "pi pi-wrench", label: "Fix models", tooltip: "Fix missing models (ComfyFixerSmart)", class: ACTION_BAR_CLASS,
      onClick: () => togglePanel() },
  ],
  aboutPageBadges: [
    { label: "ComfyFixerSmart", url: "https://github.com/comfyfixersmart/comfyfixersmart", icon: "pi pi-wrench" },
  ],
  settings: [
    { id: SETTING_AUTO_CHECK, name: "Check for missing models when a workflow loads", type: "boolean", defaultValue: true,
      tooltip: "Scans the loaded workflow against your model folders (no network) and shows the count on the Fix models button." },
  ],
  setup() {
    loadStylesheet();
    ensure();
    watchOpenButton();
    scheduleAutoCheck(); // the workflow restored at start-up may have loaded before setup()
  },
  afterConfigureGraph() {
    scheduleAutoCheck();
  },
});
