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

/** Header line: "3 missing · 2 present · 1 elsewhere" (zero counts left out, except missing). */
export function summaryText(summary) {
  if (!summary) return "";
  const parts = [`${summary.missing ?? 0} missing`];
  if (summary.present) parts.push(`${summary.present} present`);
  if (summary.elsewhere) parts.push(`${summary.elsewhere} elsewhere`);
  if (summary.optional_missing) parts.push(`${summary.optional_missing} optional`);
  return parts.join(" · ");
}

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
  AuthRequiredError: "Login required: add your token under Tokens below, then Retry.",
  GatedRepoError: "Gated model: accept its licence on the model page, add your Hugging Face token under Tokens, then Retry.",
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
