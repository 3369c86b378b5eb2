// The "Fix models" panel: header (counts), tabs (Models, Downloads, Settings), the toolbar and
// banners of the Models tab.  It only renders `controller.state` and calls controller actions;
// where it is shown (a sidebar tab, or docked) is host.js's business.
import { h } from "./dom.js";
import { summaryText } from "./format.js";
import { RowsView } from "./rows.js";
import { DownloadsView } from "./downloadsView.js";
import { SettingsView } from "./settingsView.js";
import { TERMINAL_JOB_STATES } from "./controller.js";
import { button, errorLine } from "./widgets.js";

const TABS = [
  { id: "models", label: "Models" },
  { id: "downloads", label: "Downloads" },
  { id: "settings", label: "Settings" },
];

export class FixerPanel {
  /** options: {onClose(), embedAfter: {get, set}} */
  constructor(controller, options = {}) {
    this.c = controller;
    this.options = options;
    this.tab = "models";
    this.visible = false;
    this.rowsView = new RowsView(controller);
    this.downloadsView = new DownloadsView(controller);
    this.settingsView = new SettingsView(controller, { embedAfter: options.embedAfter });
    this.parts = {
      header: h("header", { class: "cf-header" }),
      tabs: h("div", { class: "cf-tabs", role: "tablist", "aria-label": "ComfyFixerSmart" }),
      toolbar: h("div", { class: "cf-toolbar", role: "toolbar" }),
      banner: h("div", { class: "cf-banner", "aria-live": "polite" }),
      body: h("div", { class: "cf-body", role: "tabpanel" }),
    };
    this.root = h("div", {
      class: "comfyfixer-panel", testid: "comfyfixer-panel", role: "region", "aria-label": "Fix missing models", tabindex: "-1",
    }, Object.values(this.parts));
    controller.subscribe((change) => this.onChange(change));
  }

  get isOpen() {
    return this.visible && this.root.isConnected;
  }

  /** Called by the host when the panel is shown or hidden. */
  setVisible(on) {
    this.visible = on;
    if (on) this.renderAll();
  }

  setTab(id) {
    this.tab = id;
    this.renderAll();
    this.parts.tabs.querySelector(`[data-tab="${id}"]`)?.focus();
  }

  onChange(change) {
    if (!this.visible) return;
    const models = this.tab === "models";
    if (change.kind === "row") {
      if (models) this.rowsView.renderRow(change.key);
      this.renderToolbar();
    } else if (change.kind === "progress") {
      if (models) this.rowsView.renderProgress(change.key);
      else if (this.tab === "downloads") this.downloadsView.render();
    } else if (change.kind === "pick") {
      if (models) this.rowsView.renderPick(change.key);
    } else if (change.kind === "toolbar") {
      this.renderToolbar();
    } else if (change.kind === "settings") {
      if (this.tab === "settings") this.settingsView.render();
    } else {
      this.renderAll();
    }
  }

  renderAll() {
    this.renderHeader();
    this.renderTabs();
    this.renderToolbar();
    this.renderBanner();
    this.renderBody();
  }

  renderHeader() {
    const s = this.c.state;
    this.parts.header.replaceChildren(
      h("div", { class: "cf-title" }, h("i", { class: "pi pi-wrench", "aria-hidden": "true" }), "Fix models"),
      h("div", { class: "cf-summary", testid: "comfyfixer-summary" }, s.references.length || s.summary ? summaryText(this.c.counts()) : ""),
      h("button", {
        type: "button", class: "cf-close", testid: "comfyfixer-close", title: "Close (Esc)",
        "aria-label": "Close", on: { click: () => this.options.onClose?.() },
      }, h("i", { class: "pi pi-times", "aria-hidden": "true" })),
    );
  }

  renderTabs() {
    const s = this.c.state;
    const running = s.jobs.filter((j) => !TERMINAL_JOB_STATES.has(j.state)).length;
    const count = { models: this.c.counts().missing, downloads: running || s.jobs.length, settings: null };
    this.parts.tabs.replaceChildren(...TABS.map((t) => h("button", {
      type: "button", role: "tab", class: "cf-tab", testid: `comfyfixer-tab-${t.id}`, dataset: { tab: t.id },
      "aria-selected": String(this.tab === t.id), tabindex: this.tab === t.id ? "0" : "-1",
      on: {
        click: () => this.setTab(t.id),
        keydown: (e) => {
          const i = TABS.findIndex((x) => x.id === this.tab);
          if (e.key === "ArrowRight") this.setTab(TABS[(i + 1) % TABS.length].id);
          if (e.key === "ArrowLeft") this.setTab(TABS[(i + TABS.length - 1) % TABS.length].id);
        },
      },
    }, t.label, count[t.id] ? h("span", { class: "cf-tab-count" }, String(count[t.id])) : null)));
  }

  renderToolbar() {
    const c = this.c;
    const s = c.state;
    this.parts.toolbar.hidden = this.tab !== "models";
    if (this.tab !== "models") return;
    const working = s.phase === "scanning" || s.phase === "resolving";
    const dl = c.downloadAllKeys().length;
    const failed = c.failedKeys().length;
    const rl = c.relinkableKeys().length;
    this.parts.toolbar.replaceChildren(...[
      button(dl ? `Download all (${dl})` : "Download all", {
        testid: "comfyfixer-download-all", kind: "primary", icon: "pi-download",
        disabled: !dl || s.downloadAllBusy || s.phase === "scanning",
        title: "Download every missing file that has a sure match (or your own choice)",
        onClick: () => c.download(),
      }),
      failed ? button(`Retry failed (${failed})`, {
        testid: "comfyfixer-retry-failed", icon: "pi-replay", onClick: () => c.retryFailed(),
      }) : null,
      rl ? button(`Relink all (${rl})`, {
        testid: "comfyfixer-relink-all", icon: "pi-link",
        title: "Point the nodes at the files already on disk", onClick: () => c.relink(c.relinkableKeys()),
      }) : null,
      button(working ? "Checking…" : "Re-check", {
        testid: "comfyfixer-recheck", icon: "pi-refresh", disabled: working,
        title: "Scan the workflow again and search the hubs (failed lookups are asked again, not taken from the cache)",
        onClick: () => c.recheck(),
      }),
      button("Embed sources", {
        testid: "comfyfixer-embed", icon: "pi-bookmark",
        title: "Write where each file comes from (URL, checksum) into the loaders, for sharing",
        onClick: () => c.embedAll(),
      }),
    ].filter(Boolean));
  }

  renderBanner() {
    const s = this.c.state;
    const out = [];
    if (this.tab === "models") {
      if (s.phase === "scanning") out.push(h("div", { class: "cf-info" }, h("span", { class: "cf-spinner" }), "Scanning the workflow…"));
      if (s.phase === "resolving") {
        const n = s.references.filter((r) => r.status === "missing" && !s.resolutions[r.key]).length;
        out.push(h("div", { class: "cf-info" }, h("span", { class: "cf-spinner" }),
          `Searching Civitai and Hugging Face for ${n} missing file${n === 1 ? "" : "s"}…`));
      }
      if (s.error) out.push(errorLine(s.error, "Check failed"));
      for (const p of this.c.hubProblems()) {
        out.push(h("div", { class: "cf-hub-banner", role: "alert", testid: "comfyfixer-hub-banner", dataset: { hub: p.hub } },
          h("i", { class: "pi pi-wifi", "aria-hidden": "true" }),
          h("span", { class: "cf-grow" }, `${p.hub} could not be reached${p.count > 1 ? ` (${p.count} lookups)` : ""}.`),
          button("Retry", {
            kind: "small", testid: "comfyfixer-hub-retry", title: p.message,
            onClick: () => this.c.check({ resolve: "force", refresh: true }),
          })));
      }
      if (s.resolveError && !this.c.hubProblems().length) out.push(errorLine(s.resolveError, "Search failed"));
      if (s.phase === "ready" && !s.error) {
        if (!s.references.length) out.push(h("div", { class: "cf-info" }, "This workflow names no model files."));
        else if (s.references.every((r) => r.status === "present" && r.listed !== false)) {
          out.push(h("div", { class: "cf-ok", testid: "comfyfixer-all-present" }, h("i", { class: "pi pi-check-circle", "aria-hidden": "true" }),
            "Every model this workflow needs is on disk and listed by ComfyUI."));
        }
      }
      if (s.warnings.length) {
        out.push(h("details", { class: "cf-warnings" },
          h("summary", {}, `${s.warnings.length} warning${s.warnings.length === 1 ? "" : "s"}`),
          h("ul", {}, s.warnings.map((w) => h("li", {}, typeof w === "string" ? w : (w?.message ?? JSON.stringify(w)))))));
      }
    }
    this.parts.banner.replaceChildren(...out);
  }

  renderBody() {
    if (this.tab === "downloads") {
      this.downloadsView.render();
      this.parts.body.replaceChildren(this.downloadsView.el);
    } else if (this.tab === "settings") {
      if (!this.c.state.settings) this.c.loadSettings();
      this.settingsView.render();
      this.parts.body.replaceChildren(this.settingsView.el);
    } else {
      this.rowsView.render();
      this.parts.body.replaceChildren(this.rowsView.el);
    }
  }
}
