// Entry point: registers the ComfyFixerSmart extension with ComfyUI's frontend.
//   - the panel as a sidebar tab (host.js; docked where the frontend has no sidebar API)
//   - commands, a keybinding (Alt+Shift+F), a top-menu entry (Extensions > ComfyFixerSmart)
//   - an action-bar button (else a floating one) with the missing count, or the download
//     progress while the panel is closed
//   - "Fix with ComfyFixerSmart" in the frontend's own missing-model dialog / Issues panel
//   - the server options in ComfyUI's Settings dialog (tokens write-only)
// Works with the two pinned frontends, 1.32.9 (ComfyUI 0.3.75's) and 1.58.1.
import { app } from "../../scripts/app.js";
import { FixerController } from "./controller.js";
import { FixerPanel } from "./panel.js";
import { createDock, makeNotify, refreshFrontend } from "./host.js";
import { closeDialogAround, injectFixButtons } from "./inject.js";
import { fieldControl, SERVER_FIELDS } from "./settingsView.js";
import { h } from "./dom.js";

const EXTENSION = "ComfyFixerSmart.FixMissingModels";
const SETTING_AUTO_CHECK = "ComfyFixer.AutoCheck";
const ACTION_BAR_CLASS = "comfyfixer-actionbar-button";
const OPEN_TESTID = "comfyfixer-open";
const AUTO_CHECK_DELAY_MS = 600;

let controller = null;
let panel = null;
let dock = null;
let floating = null;
let autoTimer = null;

const notify = makeNotify(app);

function ensure() {
  if (!controller) {
    controller = new FixerController(app, notify, { refreshFrontend: () => refreshFrontend(app) });
    controller.start();
    panel = new FixerPanel(controller, {
      onClose: () => dock.close(),
      embedAfter: {
        get: () => controller.state.embedAfterFix,
        set: (on) => controller.setEmbedAfterFix(on),
      },
    });
    dock = createDock(app, panel, { onShow: syncOpenButton, onHide: syncOpenButton });
    let pending = false;
    controller.subscribe((change) => {
      // The button shows the count, or the download progress (throttled to a frame).
      if (change.kind !== "all" && change.kind !== "progress") return;
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => {
        pending = false;
        syncOpenButton();
      });
    });
  }
  return { controller, panel, dock };
}

/** Open (or bring back) the panel and check the graph loaded right now. */
export function openPanel() {
  const { controller: c, dock: d } = ensure();
  d.open();
  c.check();
}

function togglePanel() {
  const { dock: d } = ensure();
  if (d.isOpen) d.close();
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

/** "Fix with ComfyFixerSmart" in the frontend's own missing-model UI. */
function fixWith(where, buttonEl) {
  if (where === "dialog") closeDialogAround(buttonEl); // 1.32's dialog is modal: out of the way
  openPanel();
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

/** The badge: the download progress while the panel is closed, else the missing count. */
function badgeState() {
  if (!controller) return { text: "", kind: "count", title: "Fix missing models (ComfyFixerSmart)" };
  const progress = controller.activeProgress();
  if (progress && !dock?.isOpen) {
    const pct = progress.fraction === null ? null : Math.floor(progress.fraction * 100);
    return {
      text: pct === null ? "↓" : `${pct}%`, kind: "progress",
      title: `Downloading ${progress.active} file${progress.active === 1 ? "" : "s"}${pct === null ? "" : `: ${pct}%`}`,
    };
  }
  const n = controller.missingCount();
  return {
    text: n > 0 ? String(n) : "", kind: "count",
    title: n > 0 ? `Fix missing models: ${n} missing in this workflow` : "Fix missing models (ComfyFixerSmart)",
  };
}

function decorate(button) {
  button.dataset.testid = OPEN_TESTID;
  let badge = button.querySelector(":scope > .comfyfixer-badge");
  if (!badge) {
    badge = h("span", { class: "comfyfixer-badge", testid: "comfyfixer-badge", "aria-live": "polite" });
    button.appendChild(badge);
  }
  const { text, kind, title } = badgeState();
  if (badge.textContent !== text) badge.textContent = text;
  badge.hidden = !text;
  if (badge.dataset.kind !== kind) badge.dataset.kind = kind;
  if (button.title !== title) button.title = title;
  button.setAttribute("aria-expanded", String(Boolean(dock?.isOpen)));
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
      injectFixButtons(fixWith);
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
    const { controller: c, dock: d } = ensure();
    if (d.isOpen) c.check();
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

/** ComfyUI Settings rows for the server's options: each renders our own control (write-only tokens). */
function serverSettings() {
  return SERVER_FIELDS.map((field) => ({
    id: `ComfyFixer.Server.${field.id}`,
    category: ["ComfyFixerSmart", "Server", field.label],
    name: field.label,
    tooltip: field.help,
    defaultValue: "",
    // A render function: the value lives on the ComfyUI server (tokens never in comfy.settings.json).
    type: () => {
      const { controller: c } = ensure();
      const holder = h("span", { class: "comfyfixer-setting" });
      const fill = () => {
        const el = fieldControl(c, field);
        holder.replaceChildren(el.childNodes.length ? el : h("span", { class: "cf-muted" }, "not on this server"));
      };
      fill();
      const off = c.subscribe((change) => {
        if (!holder.isConnected && c.state.settings) return off();
        if (change.kind === "settings") fill();
      });
      c.loadSettings();
      return holder;
    },
  }));
}

app.registerExtension({
  name: EXTENSION,
  commands: [
    { id: "ComfyFixer.OpenPanel", label: "Fix missing models", icon: "pi pi-wrench", function: () => openPanel() },
    { id: "ComfyFixer.TogglePanel", label: "Show or hide the Fix models panel", icon: "pi pi-wrench", function: () => togglePanel() },
    { id: "ComfyFixer.DownloadAll", label: "Download all missing models", icon: "pi pi-download", function: () => downloadAll() },
    { id: "ComfyFixer.EmbedSources", label: "Embed model sources in the workflow", icon: "pi pi-bookmark",
      function: () => ensure().controller.embedAll() },
  ],
  keybindings: [
    { combo: { key: "f", alt: true, shift: true }, commandId: "ComfyFixer.TogglePanel" },
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
    { id: SETTING_AUTO_CHECK, category: ["ComfyFixerSmart", "Panel", "Auto check"],
      name: "Check for missing models when a workflow loads", type: "boolean", defaultValue: true,
      tooltip: "Scans the loaded workflow against your model folders (no network) and shows the count on the Fix models button." },
    ...serverSettings(),
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
