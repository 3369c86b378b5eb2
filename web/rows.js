// The "Models" list: one line per file (status, name, node count, state, one action, Locate),
// expanding on click to the choices (candidate, URL, folder) and details.  Rows that need a
// decision come first in their group.  Rendering only: reads controller.state, calls actions.
import { h, link, safeHref } from "./dom.js";
import { basename, folderChoices, formatBytes, formatPercent, plainReason, rowGroup, uniqueNodes } from "./format.js";
import { relinkTarget } from "./graph.js";
import { ACTIVE_ITEM_STATES } from "./controller.js";
import { button, errorLine, iconButton, progressBar, STATE_LABELS } from "./widgets.js";

export const GROUPS = [
  { id: "missing", title: "Missing" },
  { id: "elsewhere", title: "Elsewhere on disk" },
  { id: "optional", title: "Optional (muted or bypassed nodes)" },
  { id: "present", title: "Present" },
];

const LINE_EXTENSIONS = /\.(safetensors|sft|ckpt|pt|pth|bin|gguf)$/i;

const refKey = (ref) => ref.key ?? `${ref.directory}/${ref.filename}`;

function confidenceLevel(x) {
  if (typeof x !== "number") return "low";
  return x >= 0.9 ? "high" : x >= 0.8 ? "mid" : "low";
}

export class RowsView {
  constructor(controller) {
    this.c = controller;
    this.el = h("div", { class: "cf-list", role: "list", testid: "comfyfixer-list" });
    this.rows = new Map(); // key -> row element
    this.expanded = new Set(); // keys whose details are open
    this.groupOpen = {}; // group id -> bool, remembered across renders
  }

  render() {
    const s = this.c.state;
    this.rows.clear();
    const out = [];
    for (const group of GROUPS) {
      const refs = s.references.filter((r) => rowGroup(r) === group.id);
      if (!refs.length) continue;
      // Rows that wait for the user first, then the rest in the workflow's order.
      refs.sort((a, b) => Number(this.c.needsDecision(b)) - Number(this.c.needsDecision(a)));
      const open = this.groupOpen[group.id] ?? (group.id !== "present" || refs.length <= 8);
      const body = h("div", { class: ["cf-group", !open && "cf-collapsed"], dataset: { group: group.id }, role: "group" });
      const head = h("button", {
        type: "button", class: "cf-group-head", "aria-expanded": String(open), testid: "comfyfixer-group",
        dataset: { group: group.id, count: refs.length },
        on: {
          click: (e) => {
            const nowOpen = body.classList.toggle("cf-collapsed") === false;
            this.groupOpen[group.id] = nowOpen;
            e.currentTarget.setAttribute("aria-expanded", String(nowOpen));
          },
        },
      }, h("span", { class: `cf-dot cf-dot-${group.id}` }), `${group.title} (${refs.length})`);
      body.appendChild(head);
      for (const ref of refs) {
        const row = this.row(ref);
        this.rows.set(refKey(ref), row);
        body.appendChild(row);
      }
      out.push(body);
    }
    this.el.replaceChildren(...out);
  }

  renderRow(key) {
    const old = this.rows.get(key);
    const ref = this.c.refByKey(key);
    if (!old || !ref) return;
    const fresh = this.row(ref);
    old.replaceWith(fresh);
    this.rows.set(key, fresh);
  }

  /** Progress only: the line's state and the detail's bar; inputs the user is in stay as they are. */
  renderProgress(key) {
    const row = this.rows.get(key);
    const ref = this.c.refByKey(key);
    if (!row || !ref) return;
    const entry = this.c.state.items[key];
    row.dataset.state = entry?.item?.state ?? "";
    row.querySelector(":scope > .cf-line")?.replaceWith(this.line(ref));
    row.querySelector(":scope > .cf-detail .cf-item")?.replaceWith(this.itemBlock(ref, entry));
  }

  /** The URL field of `key` changed: follow it without re-rendering the field being typed in. */
  renderPick(key) {
    const row = this.rows.get(key);
    if (!row) return;
    const url = this.c.state.picks[key]?.url ?? "";
    const select = row.querySelector('[data-testid="comfyfixer-candidate"]');
    if (select) select.disabled = Boolean(url);
    const input = row.querySelector('[data-testid="comfyfixer-url"]');
    if (input) input.setAttribute("aria-invalid", String(Boolean(url) && !safeHref(url)));
    row.querySelector(":scope > .cf-line")?.replaceWith(this.line(this.c.refByKey(key)));
    const dl = row.querySelector('.cf-detail [data-testid="comfyfixer-download"]');
    if (dl) dl.disabled = !this.c.choiceFor(key) || Boolean(this.c.state.busy[key]);
  }

  toggle(key) {
    if (this.expanded.has(key)) this.expanded.delete(key);
    else this.expanded.add(key);
    this.renderRow(key);
    this.rows.get(key)?.querySelector(":scope > .cf-line")?.focus();
  }

  row(ref) {
    const key = refKey(ref);
    const entry = this.c.state.items[key];
    const open = this.expanded.has(key);
    const nodes = uniqueNodes(ref);
    return h("div", {
      class: ["cf-row", `cf-row-${ref.status}`, open && "cf-open", this.c.needsDecision(ref) && "cf-decide"],
      role: "listitem", testid: "comfyfixer-row",
      dataset: {
        filename: ref.filename, directory: ref.directory, status: ref.status, key, group: rowGroup(ref),
        state: entry?.item?.state ?? "", nodeCount: nodes.length, listed: ref.listed === false ? "false" : null,
      },
    }, this.line(ref), open ? this.detail(ref, entry) : null);
  }

  // ---------------------------------------------------------------- the one-line summary

  line(ref) {
    const key = refKey(ref);
    const nodes = uniqueNodes(ref);
    const open = this.expanded.has(key);
    const [stateText, stateKind] = this.stateOf(ref);
    return h("div", {
      class: "cf-line", tabindex: "0", role: "button", "aria-expanded": String(open), testid: "comfyfixer-row-line",
      title: `${ref.directory}/${ref.filename}`,
      on: {
        click: () => this.toggle(key),
        keydown: (e) => {
          if (e.target !== e.currentTarget) return;
          if (e.key === "Enter" || e.key === " ") {
            e.preventDefault();
            this.toggle(key);
          }
        },
      },
    },
    h("i", { class: `pi ${open ? "pi-chevron-down" : "pi-chevron-right"} cf-chev`, "aria-hidden": "true" }),
    h("span", { class: `cf-dot cf-dot-${rowGroup(ref)}`, "aria-hidden": "true" }),
    // The line drops the usual extension to leave room for the name; the details show it whole.
    h("span", { class: "cf-name" }, basename(ref.filename).replace(LINE_EXTENSIONS, "")),
    h("span", {
      class: "cf-count", testid: "comfyfixer-node-count", hidden: nodes.length === 1,
      title: nodes.map((n) => `${n.node_type ?? "node"} #${n.node_id}${n.subgraph_path?.length ? " (in a subgraph)" : ""}`).join("\n"),
    }, nodes.length === 1 ? "1 node" : `${nodes.length} nodes`),
    h("span", { class: ["cf-chip", `cf-chip-${stateKind}`], testid: "comfyfixer-row-state" }, stateText),
    open ? null : this.quickAction(ref), // open: the same buttons are in the details
    iconButton("pi-map-marker", "Locate: select the node and center it", {
      testid: "comfyfixer-locate", disabled: !nodes.length, onClick: () => this.c.locate(key),
    }));
  }

  /** [text, kind] of the chip on the line. */
  stateOf(ref) {
    const key = refKey(ref);
    const s = this.c.state;
    const item = s.items[key]?.item;
    if (ref.status === "present") {
      if (ref.listed === false) return ["Not listed", "warn"];
      return item?.state === "done" ? ["Downloaded", "good"] : ["On disk", "good"];
    }
    if (ref.status === "elsewhere") return ["Elsewhere", "warn"];
    if (item && ACTIVE_ITEM_STATES.has(item.state)) {
      const pct = typeof item.total === "number" && item.total > 0 ? Math.round((100 * (item.downloaded ?? 0)) / item.total) : null;
      return [item.state === "downloading" && pct !== null ? `${pct}%` : STATE_LABELS[item.state], "busy"];
    }
    if (this.c.awaitingRescan(key)) return ["Done", "good"];
    if (item?.state === "failed") return ["Failed", "bad"];
    if (item?.state === "cancelled") return ["Cancelled", "warn"];
    if (!s.resolutions[key]) return s.phase === "resolving" ? ["Searching…", "busy"] : ["Missing", "bad"];
    const choice = this.c.choiceFor(key);
    if (choice) return [choice.candidate ? `Ready ${formatPercent(choice.candidate.confidence)}` : "Your URL", "ready"];
    return s.resolutions[key].candidates.length ? ["Pick one", "warn"] : ["No source", "bad"];
  }

  /** The one action a row offers on its line (Download, Cancel, Retry, Link here). */
  quickAction(ref) {
    const key = refKey(ref);
    const c = this.c;
    const busy = Boolean(c.state.busy[key]);
    const item = c.state.items[key]?.item;
    if (ref.status === "missing") {
      if (item && ACTIVE_ITEM_STATES.has(item.state)) {
        return iconButton("pi-times", "Cancel this download", { testid: "comfyfixer-cancel", disabled: busy, onClick: () => c.cancel(key) });
      }
      if (c.awaitingRescan(key)) return null;
      if (item?.state === "failed" || item?.state === "cancelled") {
        return iconButton("pi-replay", "Retry this download", { testid: "comfyfixer-retry", disabled: busy, onClick: () => c.retry(key) });
      }
      if (c.choiceFor(key)) {
        return iconButton("pi-download", "Download", { testid: "comfyfixer-quick-download", disabled: busy, onClick: () => c.download([key]) });
      }
    }
    return null;
  }

  // ---------------------------------------------------------------- the details

  detail(ref, entry) {
    const nodes = uniqueNodes(ref);
    const where = h("div", { class: "cf-sub" },
      h("code", { class: "cf-path", testid: "comfyfixer-full-name" }, `${ref.directory}/${ref.filename}`),
      nodes.length > 1
        ? h("span", {}, `used by ${nodes.map((n) => `${n.node_type ?? "node"} #${n.node_id}`).join(", ")}`)
        : h("span", {}, `used by ${ref.node_type ?? "a node"} #${ref.node_id ?? "?"}`),
      nodes.some((n) => n.subgraph_path?.length) ? h("span", { class: "cf-tag" }, "subgraph") : null,
      ref.optional ? h("span", { class: "cf-tag", title: "Only muted or bypassed nodes use it" }, "optional") : null);
    const body = [where];
    if (ref.status === "present") body.push(this.presentDetail(ref, entry?.item));
    else if (ref.status === "elsewhere") body.push(this.elsewhereDetail(ref));
    else body.push(this.missingDetail(ref));
    body.push(this.itemBlock(ref, entry));
    return h("div", { class: "cf-detail" }, body);
  }

  presentDetail(ref, item) {
    const out = [];
    if (item?.state === "done" && item.sha256) {
      out.push(h("div", { class: "cf-muted" }, h("i", { class: "pi pi-verified cf-good", "aria-hidden": "true" }),
        " Downloaded; checksum (sha256) ", h("code", { title: item.sha256 }, String(item.sha256).slice(0, 12)), " verified"));
    } else {
      out.push(h("div", { class: "cf-muted" }, "On disk", ref.found_path ? [": ", h("code", {}, ref.found_path)] : null));
    }
    if (ref.listed === false) {
      out.push(h("div", { class: "cf-hint" }, "The node's list does not show this file yet: refresh ComfyUI's lists."),
        h("div", { class: "cf-actions" }, button("Refresh ComfyUI's lists", {
          testid: "comfyfixer-refresh-lists", icon: "pi-refresh",
          onClick: async () => { await this.c.refreshFrontend(); await this.c.check({ resolve: "never" }); },
        })));
    }
    return out;
  }

  elsewhereDetail(ref) {
    const key = refKey(ref);
    const busy = Boolean(this.c.state.busy[key]);
    const target = relinkTarget(ref);
    return [
      h("div", {}, "Found at ", h("code", { testid: "comfyfixer-found-path" }, ref.found_path ?? "?")),
      h("div", { class: "cf-hint" }, target.value
        ? "Relink points the node at it; Link here or Move puts it where the workflow expects it."
        : `${ref.node_type ?? "The node"} only lists ${ref.directory}/: Link here (no second copy where the disk allows) or Move it.`),
      h("div", { class: "cf-actions" },
        button("Link here", {
          testid: "comfyfixer-link", icon: "pi-link", kind: "primary", disabled: busy,
          title: `A hard link (or a copy when the disk does not allow one) in ${ref.directory}/`,
          onClick: () => this.c.placeFile(key, "link"),
        }),
        button("Move", {
          testid: "comfyfixer-move", icon: "pi-arrow-right", disabled: busy,
          title: `Move the file into ${ref.directory}/`, onClick: () => this.c.placeFile(key, "move"),
        }),
        button("Relink", {
          testid: "comfyfixer-relink", icon: "pi-pencil", disabled: busy || !target.value,
          title: target.value ? `Set the node to ${target.value}` : target.reason, onClick: () => this.c.relink([key]),
        })),
    ];
  }

  missingDetail(ref) {
    const key = refKey(ref);
    const c = this.c;
    const s = c.state;
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
    // Unreachable hubs get one banner each at the top; other lookup errors stay on the row.
    for (const err of res?.errors ?? []) if (!c.hubProblems().some((p) => p.message === err.message)) out.push(errorLine(err));
    const pasted = s.picks[key]?.url ?? "";
    out.push(h("input", {
      type: "url", class: "cf-url", testid: "comfyfixer-url", spellcheck: "false",
      placeholder: "…or paste a download URL (https://…)", "aria-label": `Download URL for ${ref.filename}`,
      title: "The file is saved under the name the workflow uses, whatever the URL calls it",
      value: pasted, "aria-invalid": String(Boolean(pasted) && !safeHref(pasted)),
      on: {
        input: (e) => c.pasteUrl(key, e.target.value),
        keydown: (e) => {
          if (e.key === "Enter" && c.choiceFor(key) && !c.isActive(key)) c.download([key]);
        },
      },
    }));
    const item = s.items[key]?.item;
    if (!(item && ACTIVE_ITEM_STATES.has(item.state)) && !c.awaitingRescan(key)) {
      out.push(h("div", { class: "cf-actions" }, this.targetPicker(ref), button(item ? "Download again" : "Download", {
        testid: "comfyfixer-download", icon: "pi-download", kind: "primary",
        disabled: !c.choiceFor(key) || Boolean(s.busy[key]),
        title: c.choiceFor(key) ? c.choiceFor(key).url : "Pick a candidate or paste a URL first",
        onClick: () => c.download([key]),
      })));
    }
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
          h("span", { class: `cf-conf cf-conf-${confidenceLevel(cand.confidence)}`, title: "how sure the match is" }, formatPercent(cand.confidence)),
          " ", plainReason(cand.reason ?? "")),
        h("div", { class: "cf-hint" },
          cand.name && cand.name !== cand.filename ? `${cand.backend}: ${cand.name}` : cand.backend,
          Number.isFinite(cand.size_bytes) ? ` · ${formatBytes(cand.size_bytes)}` : "",
          cand.page_url ? [" · ", link(cand.page_url, "model page ↗")] : null,
          cand.requires_auth ? h("span", { class: "cf-tag cf-tag-warn", title: "The hub wants a token for this file" }, "login required") : null,
          cand.gated ? h("span", { class: "cf-tag cf-tag-warn", title: "Accept the licence on the model page first" }, "gated") : null,
          cand.pickle ? h("span", { class: "cf-tag cf-tag-warn", title: "Pickle files (.ckpt/.pt/.bin) can run code when loaded" }, "pickle") : null))
      : h("div", { class: "cf-hint" }, res.chosen === null ? "No candidate is sure enough to take automatically." : "Skipped.");
    return [select, details, choice?.explicit && !pick?.url ? h("div", { class: "cf-hint" }, "Your choice") : null];
  }

  /** "Save to" select when the folder key has several usable paths; else nothing. */
  targetPicker(ref) {
    const key = refKey(ref);
    const choices = folderChoices(ref.directory, this.c.folderPaths(ref));
    if (choices.length < 2) return null;
    const index = this.c.targetIndex(key);
    const select = h("select", {
      class: "cf-target", testid: "comfyfixer-folder", "aria-label": `Folder for ${ref.filename}`,
      title: choices.find((x) => x.index === index)?.path ?? "", disabled: Boolean(this.c.state.busy[key]),
      on: { change: (e) => this.c.setTarget(key, Number(e.target.value)) },
    }, choices.map((x) => h("option", { value: String(x.index), title: x.path }, x.label)));
    select.value = String(index);
    return h("label", { class: "cf-target-row" }, h("span", { class: "cf-target-label" }, "Save to"), select);
  }

  /** The download of this row (progress, error, Cancel/Retry), in the details. */
  itemBlock(ref, entry) {
    const key = refKey(ref);
    const c = this.c;
    const item = entry?.item;
    const busy = Boolean(c.state.busy[key]);
    if (!item || !(ref.status === "missing" || item.state === "done")) return h("div", { class: "cf-item" });
    const actions = [];
    if (ACTIVE_ITEM_STATES.has(item.state)) {
      actions.push(button("Cancel", { testid: "comfyfixer-cancel", icon: "pi-times", disabled: busy, onClick: () => c.cancel(key) }));
    } else if ((item.state === "failed" || item.state === "cancelled") && ref.status === "missing") {
      actions.push(button("Retry", { testid: "comfyfixer-retry", icon: "pi-replay", disabled: busy, onClick: () => c.retry(key) }));
    }
    return h("div", { class: "cf-item" },
      progressBar(item),
      item.error && item.state !== "done" ? errorLine(item.error) : null,
      actions.length ? h("div", { class: "cf-actions" }, actions) : null);
  }
}

export { refKey };
