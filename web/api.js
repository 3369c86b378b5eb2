// The only module that talks to the server: every call goes through ComfyUI's `api.fetchApi`
// (adds the /api prefix and the Comfy-User header) and every websocket event through
// `api.addEventListener`.  Routes: /comfyfixer/* (see docs/ARCHITECTURE.md, route contract).
import { api } from "../../scripts/api.js";

export const EVENT_JOB = "comfyfixer.job";
export const EVENT_PROGRESS = "comfyfixer.progress";

/** A failed call: `type` is the server's exception class (or NetworkError / HTTP <status>). */
export class ApiError extends Error {
  constructor(status, type, message, data = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.type = type;
    this.helpUrl = data.help_url ?? null;
    this.data = data;
  }
}

async function call(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await api.fetchApi(`/comfyfixer${path}`, init);
  } catch (e) {
    throw new ApiError(0, "NetworkError", `ComfyUI did not answer (${e?.message ?? e})`);
  }
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null; // a proxy's HTML error page: reported below by status
  }
  if (!resp.ok) {
    const err = (data && typeof data.error === "object" && data.error) || {};
    const message = typeof err.message === "string" && err.message
      ? err.message
      : resp.status === 404 && !data
        ? "ComfyFixerSmart routes not found: is the custom node loaded on the server?"
        : `${method} ${path} failed with HTTP ${resp.status}`;
    throw new ApiError(resp.status, err.type || `HTTP ${resp.status}`, message, err);
  }
  if (data === null && text) throw new ApiError(resp.status, "BadResponse", `${method} ${path}: not JSON`);
  return data;
}

const enc = encodeURIComponent;

export const health = () => call("GET", "/health");
export const folders = () => call("GET", "/folders");
/** Scan the workflow against the local folders (fast, no network). */
export const scan = (workflow) => call("POST", "/scan", { workflow });
/**
 * Scan + search the hubs for every missing file (can take seconds).  `refresh`: ask the hubs
 * again instead of answering from the server's search cache (Re-check after failed lookups).
 */
export const resolve = (workflow, { refresh = false } = {}) =>
  call("POST", "/resolve", refresh ? { workflow, refresh: true } : { workflow });
/** Start downloading `items` ([{filename, directory, url, sha256?, size?}]) -> {job_id}. */
export const download = (items) => call("POST", "/download", { items });
/** Scan + resolve + download the confident candidates on the server -> {job_id}. */
export const fix = (workflow, minConfidence) =>
  call("POST", "/fix", minConfidence == null ? { workflow } : { workflow, min_confidence: minConfidence });
export const listJobs = () => call("GET", "/jobs");
export const getJob = (jobId) => call("GET", `/jobs/${enc(jobId)}`);
export const cancelJob = (jobId) => call("DELETE", `/jobs/${enc(jobId)}`);
export const cancelItem = (jobId, itemId) => call("POST", `/jobs/${enc(jobId)}/items/${enc(itemId)}/cancel`, {});
export const retryItem = (jobId, itemId) => call("POST", `/jobs/${enc(jobId)}/items/${enc(itemId)}/retry`, {});
/**
 * Put a file found under another folder where the node looks for it:
 * {source: absolute path, folder: folder key, name: file name the node wants,
 *  mode: "link" (hard link, else copy) | "move" | "relink"} -> {path, mode, sha256}.
 */
export const relink = (body) => call("POST", "/relink", body);
/**
 * Sources for every file the workflow names, present ones included (found by sha256), with
 * canonical hub URLs -> {sources: [{key, name, directory, url, sha256, found_by}], unsourced}.
 */
export const sources = (workflow) => call("POST", "/sources", { workflow });
export const getSettings = () => call("GET", "/settings");
/** Store tokens on the server (null clears one); the page never reads a token back. */
export const saveSettings = (values) => call("POST", "/settings", values);

function listen(name, callback) {
  const handler = (event) => callback(event.detail);
  api.addEventListener(name, handler);
  return () => api.removeEventListener(name, handler);
}

/** Job dict on every state change; returns an unsubscribe function. */
export const onJob = (callback) => listen(EVENT_JOB, callback);
/** Throttled per-item progress; returns an unsubscribe function. */
export const onProgress = (callback) => listen(EVENT_PROGRESS, callback);
/** The websocket came back after a drop: events may have been missed, poll once. */
export const onReconnected = (callback) => listen("reconnected", () => callback());
