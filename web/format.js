// Pure formatting helpers (no DOM, no ComfyUI): unit-tested with `node --test`.

const UNITS = ["B", "KB", "MB", "GB", "TB"];

/** 1536 -> "1.5 KB"; null/undefined/negative -> "?" (size unknown). */
export function formatBytes(n) {
  if (typeof n !== "number" || !Number.isFinite(n) || n < 0) return "?";
  let i = 0;
  let v = n;
  // Compare what will be shown: 1048575 B is "1.0 MB", not "1024 KB".
  const shown = (x, unit) => (unit === 0 ? String(Math.round(x)) : x.toFixed(x >= 100 ? 0 : 1));
  while (Number(shown(v, i)) >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${shown(v, i)} ${UNITS[i]}`;
}

/** Bytes per second -> "12.3 MB/s"; "" when unknown or zero. */
export function formatSpeed(bps) {
  if (typeof bps !== "number" || !Number.isFinite(bps) || bps <= 0) return "";
  return `${formatBytes(bps)}/s`;
}

/** Seconds -> "0:42", "12:05", "1:02:03"; "" when unknown. */
export function formatEta(sec) {
  if (typeof sec !== "number" || !Number.isFinite(sec) || sec < 0) return "";
  const s = Math.round(sec);
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return hh > 0 ? `${hh}:${String(mm).padStart(2, "0")}:${ss}` : `${mm}:${ss}`;
}

/** 0.923 -> "92%"; non-numbers -> "". */
export function formatPercent(x) {
  if (typeof x !== "number" || !Number.isFinite(x)) return "";
  return `${Math.round(Math.max(0, Math.min(1, x)) * 100)}%`;
}

/** Fraction done in [0, 1], or null when the total is unknown (indeterminate bar). */
export function progressFraction(downloaded, total) {
  if (typeof total !== "number" || total <= 0 || typeof downloaded !== "number") return null;
  return Math.max(0, Math.min(1, downloaded / total));
}

/**
 * Header line: "3 missing · 1 elsewhere · 2 present · 1 optional" (zero counts left out, except
 * missing).  Built from the same counts as the badge and the group headers (see countRows).
 */
export function summaryText(summary) {
  if (!summary) return "";
  const parts = [`${summary.missing ?? 0} missing`];
  if (summary.elsewhere) parts.push(`${summary.elsewhere} elsewhere`);
  if (summary.present) parts.push(`${summary.present} present`);
  if (summary.optional_missing) parts.push(`${summary.optional_missing} optional`);
  return parts.join(" · ");
}

/**
 * The row group a reference belongs to: "missing" (needed, not on disk), "optional" (missing
 * but only muted/bypassed nodes use it), "elsewhere" (on disk under another folder) or "present".
 */
export function rowGroup(ref) {
  if (ref?.status === "missing") return ref.optional ? "optional" : "missing";
  if (ref?.status === "elsewhere") return "elsewhere";
  if (ref?.status === "present") return "present";
  return "missing";
}

/** {missing, optional_missing, elsewhere, present}: one count per row, the badge's included. */
export function countRows(refs) {
  const out = { missing: 0, optional_missing: 0, elsewhere: 0, present: 0 };
  for (const ref of refs ?? []) {
    const g = rowGroup(ref);
    out[g === "optional" ? "optional_missing" : g] += 1;
  }
  return out;
}

/** The distinct nodes of a reference (a node listed twice, by widget and by properties.models, counts once). */
export function uniqueNodes(ref) {
  const seen = new Map();
  const list = Array.isArray(ref?.nodes) && ref.nodes.length
    ? ref.nodes
    : ref?.node_id !== undefined && ref?.node_id !== null ? [{ node_id: ref.node_id, node_type: ref.node_type }] : [];
  for (const loc of list) {
    if (loc?.node_id === undefined || loc?.node_id === null) continue;
    const path = Array.isArray(loc.subgraph_path) ? loc.subgraph_path : [];
    const id = `${path.join(":")}:${loc.node_id}`;
    if (!seen.has(id)) seen.set(id, { ...loc, subgraph_path: path });
  }
  return [...seen.values()];
}

/** "similar name (0.60), precision differs" -> "similar name, 60% alike, precision differs". */
export function plainReason(reason) {
  return String(reason ?? "")
    .replace(/similar name \((0?\.\d+|1(?:\.0+)?)\)/g, (_, x) => `similar name, ${Math.round(Number(x) * 100)}% alike`)
    .replace(/\bsha256\b/g, "checksum");
}

const FOLDER_WORDS = { unet: "diffusion_models", clip: "text_encoders" };

/**
 * Labels for the paths of one folder key, for the "Save to" choice: the first (ComfyUI's
 * default) by the key's name ("diffusion_models (default)", never its legacy "models/unet"),
 * the others by the shortest distinct tail.  Paths under ComfyUI's output/ are left out (index
 * kept: the server's folder_index counts every path).  -> [{index, label, path}]
 */
export function folderChoices(directory, paths) {
  const list = (paths ?? []).map((path, index) => ({ index, path: String(path ?? "") }));
  const usable = list.filter(({ path, index }) => index === 0 || !/(^|[\\/])output[\\/][^\\/]+[\\/]?$/.test(path));
  const labels = shortPaths(usable.map((x) => x.path));
  const key = FOLDER_WORDS[directory] ?? directory ?? "";
  return usable.map((x, i) => ({ ...x, label: x.index === 0 ? `${key} (default)` : labels[i] }));
}

/** Which hub an error or a candidate is about: "Civitai", "Hugging Face" or "". */
export function hubName(value) {
  const s = String(value ?? "").toLowerCase();
  if (s.includes("civitai")) return "Civitai";
  if (s.includes("hugging") || s === "hf" || s.includes("hf_endpoint")) return "Hugging Face";
  return "";
}

/** Error types that mean "the hub did not answer" (a banner with Retry, not a row error). */
export const UNREACHABLE_TYPES = new Set(["NetworkError", "RateLimitedError", "APISearchError", "TimeoutError"]);

/** One progress line: "12.0 MB / 2.0 GB · 5.0 MB/s · ETA 0:42". */
export function progressText(item) {
  if (!item) return "";
  const done = formatBytes(item.downloaded ?? 0);
  const total = typeof item.total === "number" && item.total > 0 ? formatBytes(item.total) : "?";
  const parts = [`${done} / ${total}`];
  const speed = formatSpeed(item.speed);
  if (speed && item.state === "downloading") parts.push(speed);
  const eta = formatEta(item.eta);
  if (eta && item.state === "downloading") parts.push(`ETA ${eta}`);
  return parts.join(" · ");
}

/** Last path component of a '/' or '\' separated name. */
export function basename(name) {
  const s = String(name ?? "");
  const i = Math.max(s.lastIndexOf("/"), s.lastIndexOf("\\"));
  return i >= 0 ? s.slice(i + 1) : s;
}

// What the user can do about a failure, keyed by the server's exception class.
const ERROR_HELP = {
  AuthRequiredError: "Login required: add your token under Settings, then Retry.",
  GatedRepoError: "Gated model: accept its licence on the model page, add your Hugging Face token under Settings, then Retry.",
  EarlyAccessError: "Early access on Civitai: not downloadable yet without access.",
  AccessDeniedError: "The hub refused access: check the model page and your token.",
  NotFoundError: "Not found on the hub any more (removed or renamed): pick another candidate or paste a URL.",
  RateLimitedError: "The hub is rate limiting: wait a minute, then Retry.",
  NetworkError: "The hub could not be reached: check the connection, then Retry.",
  IntegrityError: "The file did not match its checksum and was discarded: Retry or pick another candidate.",
  InsufficientSpaceError: "Not enough free disk space in the models folder.",
  HostNotAllowedError: "Downloads from this host are not allowed (COMFYFIXER_ALLOWED_HOSTS).",
  FileExistsConflictError: "A different file with this name is already there.",
  DownloadCancelledError: "Cancelled.",
  ValidationError: "The request was refused as invalid.",
  UnsafePathError: "The file name would escape its models folder: refused.",
};

/** {type, message} -> {hint, message}: a plain-language hint plus the server's own message. */
export function explainError(error) {
  if (!error) return null;
  const type = typeof error.type === "string" ? error.type : "";
  const message = typeof error.message === "string" ? error.message : String(error.message ?? "");
  return { hint: ERROR_HELP[type] ?? "", message, type };
}

/** ISO date or epoch seconds -> short local time ("14:05" today, else "Nov 3, 14:05"). */
export function formatWhen(value, now = new Date()) {
  if (value === null || value === undefined || value === "") return "";
  const d = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(d.getTime())) return "";
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (d.toDateString() === now.toDateString()) return time;
  return `${d.toLocaleDateString([], { month: "short", day: "numeric" })}, ${time}`;
}

/**
 * Short labels for a list of folder paths: the fewest trailing components that still tell
 * them apart ("…/models/loras", "…/extra/loras"), the whole path when nothing shorter does.
 */
export function shortPaths(paths, minParts = 2) {
  const split = paths.map((p) => String(p ?? "").replace(/\\/g, "/").replace(/\/+$/, "").split("/"));
  const longest = Math.max(0, ...split.map((parts) => parts.length));
  for (let n = minParts; n < longest; n += 1) {
    const labels = split.map((parts) => (parts.length > n ? `…/${parts.slice(-n).join("/")}` : parts.join("/")));
    if (new Set(labels).size === labels.length) return labels;
  }
  return split.map((parts) => parts.join("/"));
}

const CANONICAL_HUBS = { huggingface: "https://huggingface.co", civitai: "https://civitai.com" };

/**
 * The URL to write into a shared workflow for a hub candidate: the same path on the public hub
 * (huggingface.co, civitai.com), never the mirror or endpoint this server is configured with.
 * Other URLs (pasted by the user) are returned as they are.
 */
export function canonicalHubUrl(url, backend) {
  const base = CANONICAL_HUBS[String(backend ?? "").toLowerCase()];
  if (!base || typeof url !== "string") return url ?? null;
  try {
    const u = new URL(url);
    const canon = new URL(base);
    if (String(backend).toLowerCase() === "huggingface" && !/\/resolve\//.test(u.pathname)) return url;
    if (String(backend).toLowerCase() === "civitai" && !/^\/api\/download\/models\//.test(u.pathname)) return url;
    u.protocol = canon.protocol;
    u.host = canon.host;
    u.port = "";
    return u.href;
  } catch {
    return url;
  }
}
