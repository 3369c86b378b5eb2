// State and actions of the "Fix missing models" panel: scan/resolve the loaded graph, start and
// follow downloads (websocket events, with polling as a safety net), relink, embed sources.
// Talks to the server only through api.js and to the graph only through graph.js; panel.js
// renders `controller.state` and calls the action methods.
import * as api from "./api.js";
import {
  embedSources, listedByComfyUI, locateNode, relinkReference, relinkTarget, serializeWorkflow, setReferenceValue,
} from "./graph.js";
import { basename, canonicalHubUrl, countRows, explainError, hubName, uniqueNodes, UNREACHABLE_TYPES } from "./format.js";
import { safeHref } from "./dom.js";

export const ACTIVE_ITEM_STATES = new Set(["queued", "connecting", "downloading", "verifying"]);
export const TERMINAL_JOB_STATES = new Set(["done", "failed", "cancelled"]);
const POLL_MS = 1500;
const PICKLE_NAME = /\.(ckpt|pt|pth|bin|pkl|pickle)$/i;
const MAX_JOBS_SHOWN = 20;

function refKey(ref) {
  return ref.key ?? `${ref.directory}/${ref.filename}`;
}

function itemKey(item) {
  return item.key ?? `${item.directory}/${item.filename}`;
}

function jobTime(job) {
  const t = typeof job?.created === "number" ? job.created * 1000 : Date.parse(job?.created ?? "");
  return Number.isFinite(t) ? t : 0;
}

export class FixerController {
  /**
   * @param app     ComfyUI's app
   * @param notify  (severity: "success"|"info"|"warn"|"error", summary, detail) => void
   * @param hooks   {refreshFrontend?: async () => void}: the frontend's own model-list and
   *                missing-model refresh (host.js), run after every job and relink
   */
  constructor(app, notify, hooks = {}) {
    this.app = app;
    this.notify = notify;
    this.hooks = hooks;
    this.state = {
      phase: "idle", // idle | scanning | resolving | ready | error
      error: null, // {type, message, helpUrl}
      references: [],
      summary: null,
      warnings: [],
      resolutions: {}, // key -> {candidates, chosen, errors}
      resolveError: null,
      picks: {}, // key -> {index} (-1: skip) | {url}
      folders: null, // folder key -> [absolute paths], ComfyUI's order (GET /folders)
      targets: {}, // key -> index into folders[directory] chosen by the user (default 0)
      items: {}, // key -> {jobId, item}: the newest download of that file
      jobs: [], // newest first
      settings: null,
      busy: {}, // key -> true while a row request is in flight
      downloadAllBusy: false,
      // Off by default: embedding marks the workflow as changed (issue 11.5).
      embedAfterFix: false,
    };
    this.listeners = new Set();
    this.watched = new Set(); // jobs started/retried here: when they end, refresh + rescan + toast
    this.finishing = new Set(); // watched jobs that ended and whose rescan has not come back yet
    this.sources = {}; // key -> {url, sha256} chosen for a download started here (for Embed)
    this.checkSeq = 0;
    this.pollTimer = null;
    this.unsubscribe = [];
  }

  // ---------------------------------------------------------------- plumbing

  /** Listen to server events; call once. */
  start() {
    this.unsubscribe.push(api.onJob((job) => this.applyJob(job)));
    this.unsubscribe.push(api.onProgress((p) => this.applyProgress(p)));
    this.unsubscribe.push(api.onReconnected(() => this.refreshJobs()));
  }

  stop() {
    for (const off of this.unsubscribe.splice(0)) off();
    clearInterval(this.pollTimer);
    this.pollTimer = null;
  }

  /** fn(change) with change = {kind: "all"} or {kind: "row", key}; returns unsubscribe. */
  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  emit(change = { kind: "all" }) {
    for (const fn of this.listeners) {
      try {
        fn(change, this.state);
      } catch (e) {
        console.error("[ComfyFixer] render failed", e);
      }
    }
  }

  // ---------------------------------------------------------------- derived data

  refByKey(key) {
    return this.state.references.find((r) => refKey(r) === key) ?? null;
  }

  /** Missing, non-optional references: the number on the badge, the header and the Missing group. */
  missingCount() {
    return this.counts().missing;
  }

  /** One count per row by group (format.countRows): what the badge, header and groups show. */
  counts() {
    return countRows(this.state.references);
  }

  /** Rows whose download failed (Retry failed (n)). */
  failedKeys() {
    return this.state.references
      .filter((r) => r.status === "missing")
      .map(refKey)
      .filter((key) => this.state.items[key]?.item?.state === "failed" && !this.awaitingRescan(key));
  }

  /** A row that waits for the user: no confident candidate, a failed download, or a file elsewhere. */
  needsDecision(ref) {
    const key = refKey(ref);
    if (ref.status === "elsewhere") return true;
    if (ref.status !== "missing") return false;
    const state = this.state.items[key]?.item?.state;
    if (state && ACTIVE_ITEM_STATES.has(state)) return false;
    if (state === "failed") return true;
    return this.state.phase !== "resolving" && !this.choiceFor(key);
  }

  /**
   * One entry per hub that could not be reached during the last search:
   * [{hub: "Civitai", count: lookups that failed, message}] (a banner with Retry each).
   */
  hubProblems() {
    const byHub = new Map();
    const add = (err) => {
      if (!err || !UNREACHABLE_TYPES.has(err.type)) return;
      const hub = hubName(err.backend) || hubName(err.message) || "A model hub";
      const entry = byHub.get(hub) ?? { hub, count: 0, message: err.message ?? "" };
      entry.count += 1;
      byHub.set(hub, entry);
    };
    for (const res of Object.values(this.state.resolutions)) for (const err of res.errors ?? []) add(err);
    add(this.state.resolveError);
    return [...byHub.values()];
  }

  /** Some lookup of the last search failed (then Re-check asks the hubs again, not the cache). */
  hasFailedLookups() {
    return Boolean(this.state.resolveError) ||
      Object.values(this.state.resolutions).some((res) => (res.errors ?? []).length > 0);
  }

  /** Aggregate progress of running downloads for the open button: {active, fraction|null} or null. */
  activeProgress() {
    let done = 0;
    let total = 0;
    let active = 0;
    let unknown = false;
    for (const { item } of Object.values(this.state.items)) {
      if (!ACTIVE_ITEM_STATES.has(item.state)) continue;
      active += 1;
      if (typeof item.total === "number" && item.total > 0) {
        total += item.total;
        done += Math.min(item.downloaded ?? 0, item.total);
      } else {
        unknown = true;
      }
    }
    if (!active) return null;
    return { active, fraction: unknown || !total ? null : done / total };
  }

  /** What a download of `key` would fetch: {url, sha256?, size?, candidate?} or null. */
  choiceFor(key) {
    const pick = this.state.picks[key];
    if (pick?.url) return { url: pick.url, explicit: true };
    const res = this.state.resolutions[key];
    const index = pick && Number.isInteger(pick.index) ? pick.index : res?.chosen;
    if (!res || index === null || index === undefined || index < 0) return null;
    const cand = res.candidates?.[index];
    if (!cand?.download_url) return null;
    return {
      url: cand.download_url,
      sha256: cand.hash_sha256 || undefined,
      size: Number.isFinite(cand.size_bytes) ? cand.size_bytes : undefined,
      candidate: cand,
      explicit: Boolean(pick),
    };
  }

  /** The paths a download of `ref` may go to; the first is ComfyUI's default. */
  folderPaths(ref) {
    const paths = ref ? this.state.folders?.[ref.directory] : null;
    return Array.isArray(paths) ? paths.filter((p) => typeof p === "string" && p) : [];
  }

  /** Index of the folder path a download of `key` goes to (0 unless the user chose another). */
  targetIndex(key) {
    const index = this.state.targets[key];
    const count = this.folderPaths(this.refByKey(key)).length;
    return Number.isInteger(index) && index >= 0 && index < count ? index : 0;
  }

  isActive(key) {
    const entry = this.state.items[key];
    return Boolean(entry && ACTIVE_ITEM_STATES.has(entry.item.state));
  }

  /**
   * The file of `key` was downloaded by a job that is still running (or whose rescan is still
   * on its way): the row says "missing" only because nothing rescanned yet.
   */
  awaitingRescan(key) {
    const entry = this.state.items[key];
    if (!entry || !["done", "skipped"].includes(entry.item.state)) return false;
    if (this.finishing.has(entry.jobId)) return true;
    // A job no longer listed (history trimmed) is long finished: the rescan has happened.
    const job = this.state.jobs.find((j) => j.id === entry.jobId);
    return Boolean(job) && !TERMINAL_JOB_STATES.has(job.state);
  }

  /** Keys that Download all would fetch: missing, not running, a confident or user-made choice. */
  downloadAllKeys() {
    return this.state.references
      .filter((r) => r.status === "missing")
      .map(refKey)
      .filter((key) => !this.isActive(key) && !this.awaitingRescan(key))
      .filter((key) => {
        const choice = this.choiceFor(key);
        // Optional (muted/bypassed) nodes are fetched only when the user chose explicitly.
        return choice && (!this.refByKey(key).optional || choice.explicit);
      });
  }

  relinkableKeys() {
    return this.state.references
      .filter((r) => r.status === "elsewhere" && relinkTarget(r).value)
      .map(refKey);
  }

  // ---------------------------------------------------------------- scan / resolve

  /**
   * Scan the loaded graph, then search the hubs for missing files.
   * `resolve`: "auto" (only keys not resolved yet), "force" (all missing), "never".
   */
  async check({ resolve = "auto", refresh = false } = {}) {
    const seq = ++this.checkSeq;
    const s = this.state;
    let workflow;
    try {
      workflow = serializeWorkflow(this.app);
    } catch (e) {
      s.phase = "error";
      s.error = { type: "Error", message: e.message };
      this.emit();
      return;
    }
    s.phase = "scanning";
    s.error = null;
    this.emit();
    this.refreshJobs(); // in parallel: rows show running/finished downloads
    this.loadFolders(); // extra_model_paths.yaml may have changed: read ComfyUI's table each time
    if (!s.settings) this.loadSettings();
    let scan;
    try {
      scan = await api.scan(workflow);
    } catch (e) {
      if (seq !== this.checkSeq) return;
      s.phase = "error";
      s.error = { type: e.type, message: e.message, helpUrl: e.helpUrl };
      this.emit();
      return;
    }
    if (seq !== this.checkSeq) return;
    this.applyScan(scan);
    const missing = s.references.filter((r) => r.status === "missing").map(refKey);
    const unresolved = resolve === "force" ? missing : missing.filter((k) => !s.resolutions[k]);
    if (resolve === "never" || unresolved.length === 0) {
      s.phase = "ready";
      this.emit();
      return;
    }
    s.phase = "resolving";
    s.resolveError = null;
    this.emit();
    try {
      const res = await api.resolve(workflow, { refresh });
      if (seq !== this.checkSeq) return;
      this.applyScan(res);
      if (refresh) s.resolutions = {};
      for (const r of res.resolutions ?? []) {
        s.resolutions[r.key] = {
          candidates: Array.isArray(r.candidates) ? r.candidates : [],
          chosen: Number.isInteger(r.chosen) ? r.chosen : null,
          errors: Array.isArray(r.errors) ? r.errors : [],
        };
      }
    } catch (e) {
      if (seq !== this.checkSeq) return;
      s.resolveError = { type: e.type, message: e.message, helpUrl: e.helpUrl };
    }
    s.phase = "ready";
    this.emit();
  }

  /** Scan only (no hub search): used by the automatic check when a workflow loads. */
  async quickScan() {
    return this.check({ resolve: "never" });
  }

  /** Re-check: scan again and search the hubs; after failed lookups, past the server's cache. */
  recheck() {
    return this.check({ resolve: "force", refresh: this.hasFailedLookups() });
  }

  applyScan(scan) {
    const s = this.state;
    s.references = Array.isArray(scan?.references) ? scan.references : [];
    // "Present" is only true when the node's widget names a file ComfyUI lists.
    for (const ref of s.references) {
      if (ref.status !== "present") continue;
      try {
        ref.listed = listedByComfyUI(this.app, ref);
      } catch {
        ref.listed = null;
      }
    }
    s.summary = scan?.summary ?? null;
    s.warnings = Array.isArray(scan?.warnings) ? scan.warnings : [];
  }

  async loadFolders() {
    try {
      const data = await api.folders();
      const table = data?.folders;
      this.state.folders = table && typeof table === "object" && !Array.isArray(table) ? table : {};
      this.emit();
    } catch (e) {
      console.warn("[ComfyFixer] could not list the model folders", e);
    }
  }

  // ---------------------------------------------------------------- jobs

  async refreshJobs() {
    try {
      const data = await api.listJobs();
      for (const job of (data?.jobs ?? []).slice().reverse()) this.applyJob(job, { quiet: true });
      this.emit();
    } catch (e) {
      console.warn("[ComfyFixer] could not list jobs", e);
    }
  }

  /** A Job dict from an event, a poll or a route answer. */
  applyJob(job, { quiet = false } = {}) {
    if (!job || typeof job.id !== "string") return;
    const s = this.state;
    const at = s.jobs.findIndex((j) => j.id === job.id);
    if (at >= 0) s.jobs[at] = job;
    else s.jobs.push(job);
    s.jobs.sort((a, b) => jobTime(b) - jobTime(a));
    if (s.jobs.length > MAX_JOBS_SHOWN) s.jobs.length = MAX_JOBS_SHOWN;
    for (const item of job.items ?? []) {
      const key = itemKey(item);
      const prev = s.items[key];
      // The newest job wins a file; an older job's late event must not hide a newer retry.
      if (!prev || prev.jobId === job.id || jobTime(job) >= jobTime(s.jobs.find((j) => j.id === prev.jobId))) {
        s.items[key] = { jobId: job.id, item: { ...item } };
      }
    }
    const terminal = TERMINAL_JOB_STATES.has(job.state);
    if (terminal && this.watched.has(job.id)) {
      this.watched.delete(job.id);
      this.finishing.add(job.id);
      this.finish(job).finally(() => {
        this.finishing.delete(job.id);
        this.emit();
      });
    }
    this.ensurePolling();
    if (!quiet) this.emit();
  }

  /**
   * A row event (bytes throttled, every state change sent): update one row in place.  The
   * whole job (comfyfixer.job) only comes on job-level changes and at most ~2/s otherwise.
   */
  applyProgress(p) {
    if (!p || typeof p.key !== "string") return;
    const entry = this.state.items[p.key];
    if (!entry || entry.jobId !== p.job_id) {
      // First news of a job this page has not seen: fetch it (its items map keys to rows).
      if (!this.state.jobs.some((j) => j.id === p.job_id)) this.pollJob(p.job_id);
      return;
    }
    for (const field of ["downloaded", "total", "speed", "eta", "state", "error", "save_path", "sha256"]) {
      if (p[field] !== undefined) entry.item[field] = p[field];
    }
    // Only the progress part of the row changes: a select the user has open stays open.
    this.emit({ kind: "progress", key: p.key });
  }

  async pollJob(jobId) {
    try {
      this.applyJob(await api.getJob(jobId));
    } catch (e) {
      if (e.status === 404) this.watched.delete(jobId);
      else console.warn("[ComfyFixer] poll failed", e);
    }
  }

  /** Poll active jobs while any runs: websocket events can be lost (reconnects, proxies). */
  ensurePolling() {
    const active = this.state.jobs.filter((j) => !TERMINAL_JOB_STATES.has(j.state)).map((j) => j.id);
    const ids = new Set([...active, ...this.watched]);
    if (ids.size && !this.pollTimer) {
      this.pollTimer = setInterval(() => {
        const now = new Set([
          ...this.state.jobs.filter((j) => !TERMINAL_JOB_STATES.has(j.state)).map((j) => j.id),
          ...this.watched,
        ]);
        if (!now.size) {
          clearInterval(this.pollTimer);
          this.pollTimer = null;
          return;
        }
        for (const id of now) this.pollJob(id);
      }, POLL_MS);
    }
  }

  /** The frontend's own refresh (model lists, missing-model markers, redraw); never throws. */
  async refreshFrontend() {
    try {
      await this.hooks.refreshFrontend?.();
    } catch (e) {
      console.warn("[ComfyFixer] the frontend refresh failed", e);
    }
  }

  /**
   * A job started here ended: refresh ComfyUI's lists and missing-model markers, point the
   * widgets at the files, rescan, and say exactly what was and was not fixed.
   */
  async finish(job) {
    const items = job.items ?? [];
    const done = items.filter((i) => i.state === "done" || i.state === "skipped");
    const failed = items.filter((i) => i.state === "failed");
    const cancelled = items.filter((i) => i.state === "cancelled");
    if (done.length) {
      await this.refreshFrontend();
      // The widgets name the files the way ComfyUI now lists them (spelling, sub-folder).
      for (const item of done) {
        const ref = this.refByKey(itemKey(item));
        if (ref) {
          try {
            setReferenceValue(this.app, ref, ref.filename);
          } catch (e) {
            console.warn("[ComfyFixer] could not update the widget", e);
          }
        }
      }
    }
    await this.check({ resolve: "never" }); // rows turn present
    let embedded = null;
    if (done.length && this.embedAfter()) embedded = this.embedFor(done.map(itemKey), { quiet: true });
    const names = (list) => list.map((i) => basename(i.filename)).join(", ");
    const failedText = failed.map((i) => `${basename(i.filename)} (${explainError(i.error)?.hint || i.error?.message || "failed"})`);
    const notFixed = [
      failed.length ? `Failed: ${failedText.join("; ")}.` : "",
      cancelled.length ? `Cancelled: ${names(cancelled)}.` : "",
    ].filter(Boolean).join(" ");
    const detail = [
      done.length ? `${done.length} downloaded and verified: ${names(done)}.` : "",
      notFixed ? `Not fixed: ${notFixed}` : "",
      embedded?.entries ? `Sources embedded in ${embedded.nodes} node(s); save the workflow to keep them.` : "",
    ].filter(Boolean).join(" ");
    const total = items.length;
    if (done.length && !notFixed) this.notify("success", "Missing models fixed", detail);
    else if (done.length) this.notify("warn", `${done.length} of ${total} models fixed`, detail);
    else if (failed.length) this.notify("error", "Download failed", detail);
    else this.notify("warn", "Download cancelled", `Nothing was downloaded. ${notFixed}`.trim());
  }

  // ---------------------------------------------------------------- user actions

  pick(key, index) {
    this.state.picks[key] = { index };
    this.emit({ kind: "row", key });
    this.emit({ kind: "toolbar" });
  }

  /** The user typed or pasted a URL for `key` ("" goes back to the candidates). */
  pasteUrl(key, url) {
    const text = String(url ?? "").trim();
    if (!text) delete this.state.picks[key];
    else this.state.picks[key] = { url: text };
    // The input keeps its focus: only the row's buttons and the toolbar follow.
    this.emit({ kind: "pick", key });
    this.emit({ kind: "toolbar" });
  }

  /** Download `key` into path `index` of its folder key (see folderPaths). */
  setTarget(key, index) {
    const count = this.folderPaths(this.refByKey(key)).length;
    if (Number.isInteger(index) && index > 0 && index < count) this.state.targets[key] = index;
    else delete this.state.targets[key];
    this.emit({ kind: "row", key });
  }

  /** Download the given keys (default: what Download all would take) in one job. */
  async download(keys = null) {
    const s = this.state;
    const wanted = keys ?? this.downloadAllKeys();
    const items = [];
    const bad = [];
    for (const key of wanted) {
      const ref = this.refByKey(key);
      const choice = this.choiceFor(key);
      if (!ref || !choice) continue;
      if (!safeHref(choice.url)) {
        bad.push(ref.filename);
        continue;
      }
      const item = { filename: ref.filename, directory: ref.directory, url: choice.url };
      if (choice.sha256) item.sha256 = choice.sha256;
      // A pickle format (.ckpt/.pt/.bin) is only fetched when the user picked it: that pick is
      // the confirmation the server asks for.
      if (choice.explicit && (choice.candidate?.pickle || PICKLE_NAME.test(ref.filename))) item.allow_pickle = true;
      if (choice.size) item.size = choice.size;
      // Several paths for this key (extra_model_paths.yaml): say which one, the default included.
      if (this.folderPaths(ref).length > 1) item.folder_index = this.targetIndex(key);
      items.push({ key, item, choice });
    }
    if (bad.length) this.notify("warn", "Not a download URL", `Paste an http(s) link for: ${bad.join(", ")}`);
    if (!items.length) {
      if (!bad.length) this.notify("info", "Nothing to download", "No missing file has a confident candidate: pick one or paste a URL.");
      return null;
    }
    s.downloadAllBusy = true;
    for (const { key } of items) s.busy[key] = true;
    this.emit();
    try {
      const res = await api.download(items.map((x) => x.item));
      const jobId = res.job_id;
      for (const { key, choice } of items) {
        const url = choice.candidate ? canonicalHubUrl(choice.candidate.download_url, choice.candidate.backend) : choice.url;
        this.sources[key] = { url, sha256: choice.sha256 };
      }
      this.watched.add(jobId);
      // Small files can be done before this answer arrives: the job in it may be final already.
      if (res.job?.id === jobId) this.applyJob(res.job);
      else await this.pollJob(jobId);
      return jobId;
    } catch (e) {
      this.notifyError("Download refused", e);
      return null;
    } finally {
      s.downloadAllBusy = false;
      for (const { key } of items) delete s.busy[key];
      this.ensurePolling();
      this.emit();
    }
  }

  async rowRequest(key, fn) {
    const entry = this.state.items[key];
    if (!entry) return;
    this.state.busy[key] = true;
    this.emit({ kind: "row", key });
    try {
      const out = await fn(entry.jobId, entry.item.id);
      if (out && Array.isArray(out.items)) this.applyJob(out);
      else await this.pollJob(entry.jobId);
    } catch (e) {
      this.notifyError(`Could not update ${basename(entry.item.filename)}`, e);
    } finally {
      delete this.state.busy[key];
      this.emit({ kind: "row", key });
    }
  }

  cancel(key) {
    return this.rowRequest(key, (jobId, itemId) => api.cancelItem(jobId, itemId));
  }

  retry(key) {
    const entry = this.state.items[key];
    if (entry) this.watched.add(entry.jobId);
    return this.rowRequest(key, (jobId, itemId) => api.retryItem(jobId, itemId));
  }

  /** Retry every failed row (Retry failed (n)). */
  async retryFailed() {
    const keys = this.failedKeys();
    await Promise.all(keys.map((key) => this.retry(key)));
    return keys.length;
  }

  /** Select and center a node that uses `key`: the first, then the next one on each call. */
  locate(key) {
    const ref = this.refByKey(key);
    const nodes = ref ? uniqueNodes(ref) : [];
    this.locateNext ??= {};
    const index = this.locateNext[key] ?? 0;
    this.locateNext[key] = (index + 1) % Math.max(1, nodes.length);
    const loc = nodes[index % Math.max(1, nodes.length)];
    if (!loc || !locateNode(this.app, loc)) {
      this.notify("warn", "Node not found", `No node of the loaded graph uses ${basename(ref?.filename ?? key)} any more.`);
      return false;
    }
    return true;
  }

  /**
   * Fix an "elsewhere" row without a download, on the server: "link" (hard link, else a copy),
   * "move", or "relink" (the node loads the file where it is).  Then point the widgets at it.
   */
  async placeFile(key, mode) {
    const ref = this.refByKey(key);
    if (!ref) return null;
    const s = this.state;
    s.busy[key] = true;
    this.emit({ kind: "row", key });
    try {
      const source = ref.local_path;
      if (!source || !/^([/\\]|[A-Za-z]:)/.test(source)) throw new Error("The server did not say where the file is (no absolute path).");
      const name = mode === "relink" ? (relinkTarget(ref).value ?? ref.filename) : ref.filename;
      const out = await api.relink({ source, folder: ref.directory, name, mode });
      await this.refreshFrontend();
      // The node loads the file by the name the server answers (relink: where it already is).
      setReferenceValue(this.app, ref, typeof out?.name === "string" && out.name ? out.name : name);
      const verb = { link: "Linked", move: "Moved", relink: "Relinked" }[mode] ?? "Done";
      this.notify("success", `${verb}: ${basename(ref.filename)}`,
        out?.sha256 ? `sha256 ${String(out.sha256).slice(0, 12)}… verified at ${out.path ?? ""}` : (out?.path ?? ""));
      return out;
    } catch (e) {
      this.notifyError(`Could not ${mode} ${basename(ref.filename)}`, e);
      return null;
    } finally {
      delete s.busy[key];
      await this.check({ resolve: "never" });
    }
  }

  async cancelJob(jobId) {
    try {
      this.applyJob(await api.cancelJob(jobId));
    } catch (e) {
      this.notifyError("Could not cancel the job", e);
    }
  }

  /** Point the node(s) at the file found in another sub-folder, then rescan. */
  async relink(keys) {
    let changed = 0;
    const problems = [];
    for (const key of keys) {
      const ref = this.refByKey(key);
      if (!ref) continue;
      try {
        changed += relinkReference(this.app, ref);
      } catch (e) {
        problems.push(e.message);
      }
    }
    if (changed) await this.refreshFrontend();
    if (changed) this.notify("success", "Relinked", `${changed} widget(s) now point at the files on disk.`);
    if (problems.length) this.notify("warn", "Some files could not be relinked", problems.join("\n"));
    await this.check({ resolve: "never" });
  }

  /** Embed what we know (downloads started here, else the chosen candidate) for `keys`. */
  embedFor(keys, { quiet = false } = {}) {
    const sources = [];
    for (const key of keys) {
      const ref = this.refByKey(key);
      if (!ref) continue;
      const item = this.state.items[key]?.item;
      const known = this.sources[key];
      const choice = this.choiceFor(key);
      // The canonical hub URL (huggingface.co, civitai.com), never the configured mirror endpoint.
      const url = known?.url ?? (choice?.candidate
        ? canonicalHubUrl(choice.candidate.download_url, choice.candidate.backend)
        : choice?.url) ?? ref.url;
      const sha256 = (item?.state === "done" && item.sha256) || known?.sha256 || choice?.sha256 || ref.hash;
      if (url) sources.push({ ref, url, sha256 });
    }
    const out = embedSources(this.app, sources);
    if (!quiet) {
      if (out.entries) {
        this.notify("success", "Sources embedded",
          `${out.entries} model source(s) written into ${out.nodes} node(s) (properties.models). Save the workflow to keep them.`);
      } else {
        this.notify("info", "Nothing to embed", "No resolved source with a shareable URL yet.");
      }
    }
    return out;
  }

  /**
   * Embed sources for every file of the workflow: the server finds a source for each (present
   * files by sha256, canonical hub URLs); what it cannot source falls back to what this page
   * resolved or downloaded.
   */
  async embedAll() {
    let found = null;
    try {
      found = await api.sources(serializeWorkflow(this.app));
    } catch (e) {
      if (e.status !== 404) {
        this.notifyError("Could not look up the sources", e);
        return null;
      }
    }
    if (!found) return this.embedFor(this.state.references.map(refKey)); // an older server
    const byKey = new Map((Array.isArray(found.sources) ? found.sources : []).map((x) => [x.key, x]));
    const list = [];
    for (const ref of this.state.references) {
      const src = byKey.get(refKey(ref));
      if (src?.url) list.push({ ref, url: src.url, sha256: src.sha256 });
    }
    const sourced = new Set(list.map((x) => refKey(x.ref)));
    const rest = this.state.references.map(refKey).filter((k) => !sourced.has(k));
    const out = embedSources(this.app, list);
    const extra = rest.length ? this.embedFor(rest, { quiet: true }) : { nodes: 0, entries: 0 };
    const entries = out.entries + extra.entries;
    const missing = this.state.references.length - entries;
    if (entries) {
      this.notify(missing ? "warn" : "success", "Sources embedded",
        `${entries} of ${this.state.references.length} model source(s) written into the loaders (properties.models).` +
        (missing ? ` No source found for ${missing}.` : "") + " Save the workflow to keep them.");
    } else {
      this.notify("info", "Nothing to embed", "No source was found for the files of this workflow.");
    }
    return { nodes: out.nodes + extra.nodes, entries };
  }

  async loadSettings() {
    try {
      this.state.settings = await api.getSettings();
      this.emit({ kind: "settings" });
    } catch (e) {
      console.warn("[ComfyFixer] could not read settings", e);
    }
  }

  /** values: {civitai_token?, hf_token?, min_confidence?}; null clears a token. */
  async saveSettings(values) {
    try {
      this.state.settings = await api.saveSettings(values);
      this.notify("success", "Settings saved", "Tokens are stored on the ComfyUI server only.");
    } catch (e) {
      this.notifyError("Settings not saved", e);
    }
    this.emit({ kind: "settings" });
  }

  setEmbedAfterFix(on) {
    this.state.embedAfterFix = Boolean(on);
  }

  /** Embed sources after a download: the server's setting when it has one, else the page's. */
  embedAfter() {
    const server = this.state.settings?.embed_after_download;
    return typeof server === "boolean" ? server : this.state.embedAfterFix;
  }

  notifyError(summary, e) {
    const ex = explainError({ type: e?.type, message: e?.message });
    this.notify("error", summary, [ex?.hint, ex?.message].filter(Boolean).join(" "));
  }
}
