// Rendering of the "Fix missing models" panel (a plain-DOM dialog: same look and behaviour in
// every ComfyUI frontend).  It only reads `controller.state` and calls controller actions;
// every server string is set as text (dom.js), never parsed as HTML.
import { h, link, safeHref } from "./dom.js";
import {
  basename,
  explainError,
  formatBytes,
  formatPercent,
  formatWhen,
  progressFraction,
  progressText,
  shortPaths,
  summaryText,
} from "./format.js";
import { relinkTarget } from "./graph.js";
import { ACTIVE_ITEM_STATES, TERMINAL_JOB_STATES } from "./controller.js";

const GROUPS = [
  { status: "missing", title: "Missing" },
  { status: "elsewhere", title: "Elsewhere on disk" },
  { status: "present", title: "Present" },
];

const STATE_LABELS = {
  queued: "Queued",
  connecting: "Connecting",
  downloading: "Downloading",
  verifying: "Verifying sha256",
  done: "Done",
  failed: "Failed",
  cancelled: "Cancelled",
  skipped: "Skipped",
  resolving: "Resolving",
  running: "Running",
};

const refKey = (ref) => ref.key ?? `${ref.directory}/${ref.filename}`;

function dirname(name) {
  const s = String(name ?? "");
  const i = s.lastIndexOf("/");
  return i >= 0 ? s.slice(0, i + 1) : "";
}

/** "…/models/loras": the folder a finished download went to, short. */
function savedIn(savePath) {
  if (typeof savePath !== "string" || !savePath) return "";
  const parts = savePath.replace(/\\/g, "/").split("/");
  parts.pop();
  return shortPaths([parts.join("/")])[0];
}

function confidenceLevel(x) {
  if (typeof x !== "number") return "low";
  return x >= 0.9 ? "high" : x >= 0.8 ? "mid" : "low";
}

function button(label, { testid, onClick, disabled = false, kind = "", title, icon } = {}) {
  return h(
    "button",
    { type: "button", class: ["cf-btn", kind && `cf-btn-${kind}`], testid, title, disabled, on: { click: onClick } },
    icon ? h("i", { class: `pi ${icon}`, "aria-hidden": "true" }) : null,
    label,
  );
}

export class FixerPanel {
  constructor(controller) {
    this.c = controller;
    this.root = null;
    this.parts = {};
    this.rows = new Map(); // key -> <tr>
    this.groupOpen = {}; // status -> bool, remembered across renders
    this.jobsOpen = false;
    this.settingsOpen = false;
    controller.subscribe((change) => this.onChange(change));
  }

  get isOpen() {
    return Boolean(this.root && !this.root.hidden);
  }

  open() {
    if (!this.root) this.mount();
    this.root.hidden = false;
    this.renderAll();
    this.renderSettings();
    this.root.focus({ preventScroll: true });
  }

  close() {
    if (this.root) this.root.hidden = true;
  }

  toggle() {
    if (this.isOpen) this.close();
    else this.open();
    return this.isOpen;
  }

  mount() {
    this.parts = {
      header: h("header", { class: "cf-header" }),
      toolbar: h("div", { class: "cf-toolbar", role: "toolbar" }),
      banner: h("div", { class: "cf-banner", "aria-live": "polite" }),
      body: h("div", { class: "cf-body" }),
      jobs: h("details", { class: "cf-section cf-jobs", on: { toggle: (e) => (this.jobsOpen = e.target.open) } }),
      settings: h("details", { class: "cf-section cf-settings", on: { toggle: (e) => (this.settingsOpen = e.target.open) } }),
    };
    this.root = h(
      "div",
      {
        class: "comfyfixer-panel",
        testid: "comfyfixer-panel",
        role: "dialog",
        "aria-label": "Fix missing models",
        tabindex: "-1",
        hidden: true,
        on: { keydown: (e) => e.key === "Escape" && this.close() },
      },
      Object.values(this.parts),
    );
    document.body.appendChild(this.root);
  }

  onChange(change) {
    if (!this.isOpen) return;
    if (change.kind === "row") this.renderRow(change.key);
    else if (change.kind === "progress") this.renderActions(change.key);
    else if (change.kind === "pick") this.renderPick(change.key);
    else if (change.kind === "toolbar") this.renderToolbar();
    else if (change.kind === "settings") this.renderSettings();
    else this.renderAll();
  }

  renderAll() {
    this.renderHeader();
    this.renderToolbar();
    this.renderBanner();
    this.renderBody();
    this.renderJobs();
  }

  // ---------------------------------------------------------------- header / toolbar / banner

  renderHeader() {
    const s = this.c.state;
    this.parts.header.replaceChildren(
      h("div", { class: "cf-title" }, h("i", { class: "pi pi-wrench", "aria-hidden": "true" }), "Fix missing models"),
      h("div", { class: "cf-summary", testid: "comfyfixer-summary" }, s.summary ? summaryText(s.summary) : ""),
      h("button", {
        type: "button", class: "cf-close", testid: "comfyfixer-close", title: "Close (Esc)",
        "aria-label": "Close", on: { click: () => this.close() },
      }, "×"),
    );
  }

  renderToolbar() {
    const c = this.c;
    const s = c.state;
    const working = s.phase === "scanning" || s.phase === "resolving";
    const dl = c.downloadAllKeys().length;
    const rl = c.relinkableKeys().length;
    this.parts.toolbar.replaceChildren(
      button(dl ? `Download all (${dl})` : "Download all", {
        testid: "comfyfixer-download-all", kind: "primary", icon: "pi-download",
        disabled: !dl || s.downloadAllBusy || s.phase === "scanning",
        title: "Download every missing file that has a confident candidate (or your own choice)",
        onClick: () => c.download(),
      }),
      button(rl ? `Relink all (${rl})` : "Relink all", {
        testid: "comfyfixer-relink-all", icon: "pi-link", disabled: !rl,
        title: "Point the nodes at the files already on disk", onClick: () => c.relink(c.relinkableKeys()),
      }),
      button("Embed sources", {
        testid: "comfyfixer-embed", icon: "pi-bookmark",
        title: "Write the resolved download URLs and sha256 into the loaders (properties.models)",
        onClick: () => c.embedAll(),
      }),
      button(working ? "Checking…" : "Re-check", {
        testid: "comfyfixer-recheck", icon: "pi-refresh", disabled: working,
        title: "Scan the loaded workflow again and search the hubs", onClick: () => c.check({ resolve: "force" }),
      }),
      h("label", { class: "cf-check", title: "After a download, write its source into the workflow" },
        h("input", {
          type: "checkbox", checked: s.embedAfterFix, testid: "comfyfixer-embed-after",
          on: { change: (e) => c.setEmbedAfterFix(e.target.checked) },
        }),
        "Embed sources after download"),
    );
  }

  renderBanner() {
    const s = this.c.state;
    const out = [];
    if (s.phase === "scanning") out.push(h("div", { class: "cf-info" }, h("span", { class: "cf-spinner" }), "Scanning the workflow…"));
    if (s.phase === "resolving") {
      const n = s.references.filter((r) => r.status === "missing" && !s.resolutions[refKey(r)]).length;
      out.push(h("div", { class: "cf-info" }, h("span", { class: "cf-spinner" }),
        `Searching Civitai and Hugging Face for ${n} missing file${n === 1 ? "" : "s"}…`));
    }
    if (s.error) out.push(this.errorBlock(s.error, "Check failed"));
    if (s.resolveError) out.push(this.errorBlock(s.resolveError, "Search failed"));
    if (s.phase === "ready" && !s.error) {
      if (!s.references.length) out.push(h("div", { class: "cf-info" }, "This workflow names no model files."));
      else if (!s.references.some((r) => r.status !== "present")) {
        out.push(h("div", { class: "cf-ok" }, h("i", { class: "pi pi-check-circle" }), "Every model this workflow needs is on disk."));
      }
    }
    if (s.warnings.length) {
      out.push(h("details", { class: "cf-warnings" },
        h("summary", {}, `${s.warnings.length} warning${s.warnings.length === 1 ? "" : "s"}`),
        h("ul", {}, s.warnings.map((w) => h("li", {}, typeof w === "string" ? w : (w?.message ?? JSON.stringify(w)))))));
    }
    this.parts.banner.replaceChildren(...out);
  }

  // ---------------------------------------------------------------- rows

  renderBody() {
    const s = this.c.state;
    this.rows.clear();
    if (!s.references.length) {
      this.parts.body.replaceChildren();
      return;
    }
    const table = h("table", { class: "cf-table" },
      h("colgroup", {}, h("col", { class: "cf-c1" }), h("col", { class: "cf-c2" }), h("col", { class: "cf-c3" })),
      h("thead", {}, h("tr", {}, h("th", {}, "File"), h("th", {}, "Source"), h("th", {}, "Download"))));
    for (const group of GROUPS) {
      const refs = s.references.filter((r) => r.status === group.status);
      if (!refs.length) continue;
      const open = this.groupOpen[group.status] ?? (group.status !== "present" || refs.length <= 8);
      const tbody = h("tbody", { class: ["cf-group", `cf-group-${group.status}`, !open && "cf-collapsed"], dataset: { group: group.status } });
      const toggle = () => {
        this.groupOpen[group.status] = tbody.classList.toggle("cf-collapsed") === false;
      };
      tbody.appendChild(h("tr", { class: "cf-group-head" },
        h("th", { colspan: "3" }, h("button", {
          type: "button", class: "cf-group-toggle", "aria-expanded": String(open), on: { click: toggle },
        }, h("span", { class: `cf-dot cf-dot-${group.status}` }), `${group.title} (${refs.length})`))));
      for (const ref of refs) {
        const tr = this.row(ref);
        this.rows.set(refKey(ref), tr);
        tbody.appendChild(tr);
      }
      table.appendChild(tbody);
    }
    this.parts.body.replaceChildren(table);
  }

  renderRow(key) {
    const old = this.rows.get(key);
    const ref = this.c.refByKey(key);
    if (!old || !ref) return;
    const fresh = this.row(ref);
    old.replaceWith(fresh);
    this.rows.set(key, fresh);
  }

  /** Progress, buttons and target folder of one row; the rest (inputs, selects) stays as it is. */
  renderActions(key) {
    const tr = this.rows.get(key);
    const ref = this.c.refByKey(key);
    if (!tr || !ref) return;
    const entry = this.c.state.items[key];
    tr.dataset.state = entry?.item?.state ?? "";
    tr.querySelector(":scope > .cf-col-action")?.replaceChildren(...this.actionCell(ref, entry));
  }

  /** The URL field of `key` changed: follow it without re-rendering the field being typed in. */
  renderPick(key) {
    const tr = this.rows.get(key);
    if (!tr) return;
    const url = this.c.state.picks[key]?.url ?? "";
    const select = tr.querySelector('[data-testid="comfyfixer-candidate"]');
    if (select) select.disabled = Boolean(url);
    const input = tr.querySelector('[data-testid="comfyfixer-url"]');
    if (input) input.setAttribute("aria-invalid", String(Boolean(url) && !safeHref(url)));
    this.renderActions(key);
  }

  row(ref) {
    const key = refKey(ref);
    const entry = this.c.state.items[key];
    return h("tr", {
      class: ["cf-row", `cf-row-${ref.status}`],
      testid: "comfyfixer-row",
      dataset: { filename: ref.filename, directory: ref.directory, status: ref.status, key, state: entry?.item?.state ?? "" },
    },
    h("td", { class: "cf-col-file" }, this.fileCell(ref)),
    h("td", { class: "cf-col-source" }, this.sourceCell(ref, entry?.item)),
    h("td", { class: "cf-col-action" }, this.actionCell(ref, entry)));
  }

  fileCell(ref) {
    const nodes = Array.isArray(ref.nodes) ? ref.nodes : [];
    const inSubgraph = nodes.some((n) => Array.isArray(n.subgraph_path) && n.subgraph_path.length);
    const where = `${ref.node_type ?? "?"} #${ref.node_id ?? "?"}${nodes.length > 1 ? ` +${nodes.length - 1} more` : ""}`;
    return [
      h("div", { class: "cf-name", title: refKey(ref) }, basename(ref.filename)),
      h("div", { class: "cf-sub" },
        h("span", { class: "cf-path" }, `${ref.directory}/${dirname(ref.filename)}`),
        h("span", { class: "cf-sep" }, "·"),
        h("span", { title: nodes.map((n) => `${n.node_type} #${n.node_id} (${n.where})`).join("\n") }, where),
        inSubgraph ? h("span", { class: "cf-tag" }, "subgraph") : null,
        ref.optional ? h("span", { class: "cf-tag", title: "Only muted or bypassed nodes use it" }, "optional") : null),
    ];
  }

  sourceCell(ref, item) {
    const key = refKey(ref);
    if (ref.status === "present") {
      if (item?.state === "done") {
        return h("div", { class: "cf-muted" }, h("i", { class: "pi pi-verified cf-good" }), " Downloaded, sha256 ",
          h("code", { title: item.sha256 ?? "" }, String(item.sha256 ?? "").slice(0, 12)), " verified");
      }
      return h("div", { class: "cf-muted" }, "On disk");
    }
    if (ref.status === "elsewhere") {
      const target = relinkTarget(ref);
      return [
        h("div", {}, "Found at ", h("code", {}, ref.found_path ?? "?")),
        target.reason ? h("div", { class: "cf-hint" }, target.reason) : h("div", { class: "cf-hint" }, "Relink points the node at it."),
      ];
    }
    // missing
    const s = this.c.state;
    const res = s.resolutions[key];
    const out = [];
    if (!res) {
      if (s.phase === "resolving") out.push(h("div", { class: "cf-muted" }, h("span", { class: "cf-spinner" }), "Searching…"));
      else if (ref.url) out.push(h("div", { class: "cf-muted" }, "The workflow names a source: ", link(ref.url, "link")));
    } else if (!res.candidates.length) {
      out.push(h("div", { class: "cf-muted" }, "No candidate found on the hubs."));
    } else {
      out.push(this.candidatePicker(ref, res));
    }
    for (const err of res?.errors ?? []) out.push(this.errorBlock(err));
    const pasted = s.picks[key]?.url ?? "";
    out.push(h("input", {
      type: "url", class: "cf-url", testid: "comfyfixer-url", spellcheck: "false",
      placeholder: "…or paste a download URL (https://…)", "aria-label": `Download URL for ${ref.filename}`,
      title: "The file is saved under the name the workflow uses, whatever the URL calls it",
      value: pasted, "aria-invalid": String(Boolean(pasted) && !safeHref(pasted)),
      on: {
        input: (e) => this.c.pasteUrl(key, e.target.value),
        change: () => this.renderRow(key),
        keydown: (e) => {
          if (e.key === "Enter" && this.c.choiceFor(key) && !this.c.isActive(key)) this.c.download([key]);
        },
      },
    }));
    return out;
  }

  candidatePicker(ref, res) {
    const key = refKey(ref);
    const choice = this.c.choiceFor(key);
    const pick = this.c.state.picks[key];
    const selected = pick && Number.isInteger(pick.index) ? pick.index : (res.chosen ?? -1);
    const select = h("select", {
      class: "cf-cand", testid: "comfyfixer-candidate", "aria-label": `Candidate for ${ref.filename}`,
      disabled: Boolean(pick?.url),
      on: { change: (e) => this.c.pick(key, Number(e.target.value)) },
    },
    h("option", { value: "-1" }, res.chosen === null ? "Not sure: choose a candidate…" : "Skip this file"),
    res.candidates.map((cand, i) => h("option", { value: String(i) },
      `${formatPercent(cand.confidence)} · ${cand.filename ?? cand.name} · ${cand.backend}` +
      (Number.isFinite(cand.size_bytes) ? ` · ${formatBytes(cand.size_bytes)}` : ""))));
    select.value = String(selected);
    const cand = selected >= 0 ? res.candidates[selected] : null;
    const details = cand
      ? h("div", { class: "cf-reason" },
        h("div", {},
          h("span", { class: `cf-conf cf-conf-${confidenceLevel(cand.confidence)}`, title: "confidence" }, formatPercent(cand.confidence)),
          " ", cand.reason ?? ""),
        h("div", { class: "cf-hint" },
          cand.name && cand.name !== cand.filename ? `${cand.backend}: ${cand.name}` : cand.backend,
          Number.isFinite(cand.size_bytes) ? ` · ${formatBytes(cand.size_bytes)}` : "",
          cand.page_url ? [" · ", link(cand.page_url, "model page ↗")] : null,
          cand.requires_auth ? h("span", { class: "cf-tag cf-tag-warn", title: "The hub wants a token for this file" }, "login required") : null,
          cand.gated ? h("span", { class: "cf-tag cf-tag-warn", title: "Accept the licence on the model page first" }, "gated") : null,
          cand.pickle ? h("span", { class: "cf-tag cf-tag-warn", title: "Pickle files (.ckpt/.pt/.bin) can run code when loaded" }, "pickle") : null))
      : h("div", { class: "cf-hint" }, res.chosen === null ? "No candidate is confident enough to take automatically." : "Skipped.");
    return [select, details, choice?.explicit && !pick?.url ? h("div", { class: "cf-hint" }, "Your choice") : null];
  }

  actionCell(ref, entry) {
    const key = refKey(ref);
    const c = this.c;
    const busy = Boolean(c.state.busy[key]);
    const item = entry?.item;
    const out = [];
    const showItem = item && (ref.status === "missing" || item.state === "done");
    if (showItem) {
      out.push(this.progress(item));
      if (item.error && item.state !== "done") out.push(this.errorBlock(item.error));
      const actions = [];
      if (ACTIVE_ITEM_STATES.has(item.state)) {
        actions.push(button("Cancel", { testid: "comfyfixer-cancel", icon: "pi-times", disabled: busy, onClick: () => c.cancel(key) }));
      } else if (item.state === "failed" || item.state === "cancelled") {
        actions.push(button("Retry", { testid: "comfyfixer-retry", icon: "pi-replay", disabled: busy, onClick: () => c.retry(key) }));
      }
      if (actions.length) out.push(h("div", { class: "cf-actions" }, actions));
      if (ref.status !== "missing" || ACTIVE_ITEM_STATES.has(item.state) || c.awaitingRescan(key)) return out;
    }
    if (ref.status === "missing") {
      const choice = c.choiceFor(key);
      out.push(this.targetPicker(ref, busy));
      out.push(h("div", { class: "cf-actions" }, button(item ? "Download again" : "Download", {
        testid: "comfyfixer-download", icon: "pi-download", disabled: !choice || busy,
        title: choice ? choice.url : "Pick a candidate or paste a URL first",
        onClick: () => c.download([key]),
      })));
    } else if (ref.status === "elsewhere") {
      const target = relinkTarget(ref);
      out.push(h("div", { class: "cf-actions" }, button("Relink", {
        testid: "comfyfixer-relink", icon: "pi-link", disabled: !target.value,
        title: target.value ? `Set the widget to ${target.value}` : target.reason,
        onClick: () => c.relink([key]),
      })));
    } else if (!showItem) {
      out.push(h("span", { class: "cf-good", title: "present" }, h("i", { class: "pi pi-check" })));
    }
    return out;
  }

  /** "Save to" select when the folder key has several paths (extra_model_paths.yaml); else nothing. */
  targetPicker(ref, busy) {
    const key = refKey(ref);
    const paths = this.c.folderPaths(ref);
    if (paths.length < 2) return null;
    const index = this.c.targetIndex(key);
    const labels = shortPaths(paths);
    const select = h("select", {
      class: "cf-target", testid: "comfyfixer-folder", "aria-label": `Folder for ${ref.filename}`,
      title: paths[index], disabled: busy,
      on: { change: (e) => this.c.setTarget(key, Number(e.target.value)) },
    }, paths.map((path, i) => h("option", { value: String(i), title: path }, i === 0 ? `${labels[i]} (default)` : labels[i])));
    select.value = String(index);
    return h("label", { class: "cf-target-row" }, h("span", { class: "cf-target-label" }, "Save to"), select);
  }

  progress(item) {
    const frac = item.state === "done" ? 1 : progressFraction(item.downloaded, item.total);
    const pct = frac === null ? null : Math.round(frac * 100);
    const label = STATE_LABELS[item.state] ?? item.state ?? "";
    return h("div", {
      class: ["cf-progress", `cf-progress-${item.state}`, frac === null && ACTIVE_ITEM_STATES.has(item.state) && "cf-indeterminate"],
      testid: "comfyfixer-progress", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100",
      "aria-valuenow": pct === null ? null : String(pct), dataset: { state: item.state ?? "" },
      title: typeof item.save_path === "string" && item.save_path ? item.save_path : null,
    },
    h("div", { class: "cf-bar" }, h("div", { class: "cf-fill", style: { width: `${pct ?? 0}%` } })),
    h("div", { class: "cf-progress-text" },
      h("span", { class: "cf-state" }, pct !== null && item.state === "downloading" ? `${label} ${pct}%` : label),
      item.state === "done" || item.state === "skipped"
        ? h("span", { class: "cf-saved-in", title: item.save_path ?? "" }, savedIn(item.save_path))
        : h("span", {}, progressText(item))));
  }

  errorBlock(error, title = "") {
    const ex = explainError(error);
    const helpUrl = error.help_url ?? error.helpUrl;
    return h("div", { class: "cf-error", role: "alert", dataset: { errorType: ex.type } },
      h("div", { class: "cf-error-title" }, title || ex.hint || ex.type || "Error"),
      title && ex.hint ? h("div", {}, ex.hint) : null,
      ex.message ? h("div", { class: "cf-error-msg" }, ex.message) : null,
      helpUrl ? h("div", {}, link(helpUrl, "Open the page to sign in or accept ↗")) : null);
  }

  // ---------------------------------------------------------------- jobs and settings

  renderJobs() {
    const c = this.c;
    const jobs = c.state.jobs;
    const el = this.parts.jobs;
    el.open = this.jobsOpen;
    const active = jobs.filter((j) => !TERMINAL_JOB_STATES.has(j.state)).length;
    el.replaceChildren(
      h("summary", {}, `Downloads (${jobs.length})`, active ? h("span", { class: "cf-tag" }, `${active} running`) : null),
      jobs.length ? h("ul", { class: "cf-job-list" }, jobs.map((job) => this.jobLine(job))) : h("div", { class: "cf-muted" }, "No downloads yet."),
    );
  }

  jobLine(job) {
    const sum = job.summary ?? {};
    const counts = [`${sum.done ?? 0}/${sum.total ?? (job.items ?? []).length} done`];
    if (sum.failed) counts.push(`${sum.failed} failed`);
    if (sum.cancelled) counts.push(`${sum.cancelled} cancelled`);
    return h("li", { class: "cf-job", testid: "comfyfixer-job", dataset: { jobId: job.id, state: job.state } },
      h("div", { class: "cf-job-head" },
        h("span", { class: `cf-chip cf-chip-${job.state}` }, STATE_LABELS[job.state] ?? job.state),
        h("span", {}, job.kind === "fix" ? "Fix" : "Download"),
        h("span", { class: "cf-muted" }, formatWhen(job.created)),
        h("span", { class: "cf-muted" }, counts.join(" · ")),
        TERMINAL_JOB_STATES.has(job.state) ? null : button("Cancel all", {
          testid: "comfyfixer-cancel-job", kind: "small", onClick: () => c.cancelJob(job.id),
        })),
      job.error ? this.errorBlock(job.error) : null,
      h("ul", { class: "cf-job-items" }, (job.items ?? []).map((it) => h("li", { dataset: { state: it.state } },
        h("span", { class: `cf-dot cf-dot-${it.state}` }), basename(it.filename),
        h("span", { class: "cf-muted" }, ` ${STATE_LABELS[it.state] ?? it.state}`),
        it.error ? h("span", { class: "cf-error-inline" }, ` ${it.error.message ?? ""}`) : null))));
  }

  renderSettings() {
    if (!this.root) return;
    const c = this.c;
    const st = c.state.settings;
    const el = this.parts.settings;
    el.open = this.settingsOpen;
    const civitai = h("input", { type: "password", autocomplete: "off", placeholder: st?.civitai_token_set ? "set (enter a new one to replace)" : "Civitai API key", "aria-label": "Civitai API key" });
    const hf = h("input", { type: "password", autocomplete: "off", placeholder: st?.hf_token_set ? "set (enter a new one to replace)" : "hf_…", "aria-label": "Hugging Face token" });
    const minConf = h("input", { type: "number", min: "0.8", max: "1", step: "0.01", value: String(st?.min_confidence ?? 0.9), "aria-label": "Minimum confidence" });
    const save = () => {
      const values = {};
      if (civitai.value.trim()) values.civitai_token = civitai.value.trim();
      if (hf.value.trim()) values.hf_token = hf.value.trim();
      const mc = Number(minConf.value);
      if (Number.isFinite(mc) && mc !== st?.min_confidence) values.min_confidence = mc;
      civitai.value = "";
      hf.value = "";
      if (Object.keys(values).length) c.saveSettings(values);
    };
    const status = (set) => h("span", { class: set ? "cf-good" : "cf-muted" }, set ? "set" : "not set");
    el.replaceChildren(
      h("summary", {}, "Tokens & settings"),
      h("form", { class: "cf-form", on: { submit: (e) => { e.preventDefault(); save(); } } },
        h("label", {}, "Civitai API key ", status(st?.civitai_token_set)), civitai,
        st?.civitai_token_set ? button("Clear", { kind: "small", onClick: () => c.saveSettings({ civitai_token: null }) }) : h("span"),
        h("label", {}, "Hugging Face token ", status(st?.hf_token_set)), hf,
        st?.hf_token_set ? button("Clear", { kind: "small", onClick: () => c.saveSettings({ hf_token: null }) }) : h("span"),
        h("label", { title: "Download all takes a candidate automatically only from this confidence up (never below 80%)" }, "Minimum confidence"), minConf, h("span"),
      ),
      h("div", { class: "cf-actions" }, button("Save", { kind: "primary", testid: "comfyfixer-save-settings", onClick: save }),
        h("span", { class: "cf-hint" }, "Stored on the ComfyUI server (a private file); never sent back to the page.")),
    );
  }
}
