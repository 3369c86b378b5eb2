// Small DOM pieces shared by the panel's views (buttons, one-line errors, progress bars).
// Rendering only: every string goes in as text (dom.js).
import { h, link } from "./dom.js";
import { explainError, progressFraction, progressText, shortPaths } from "./format.js";
import { ACTIVE_ITEM_STATES } from "./controller.js";

export const STATE_LABELS = {
  queued: "Queued",
  connecting: "Connecting",
  downloading: "Downloading",
  verifying: "Verifying checksum",
  done: "Done",
  failed: "Failed",
  cancelled: "Cancelled",
  skipped: "Already there",
  resolving: "Searching",
  running: "Running",
};

export function button(label, { testid, onClick, disabled = false, kind = "", title, icon, ariaLabel } = {}) {
  return h(
    "button",
    {
      type: "button", class: ["cf-btn", kind && `cf-btn-${kind}`], testid, title, disabled,
      "aria-label": ariaLabel ?? (label ? null : title), on: { click: onClick },
    },
    icon ? h("i", { class: `pi ${icon}`, "aria-hidden": "true" }) : null,
    label || null,
  );
}

/** An icon-only button (row actions): the title is its accessible name. */
export function iconButton(icon, title, { testid, onClick, disabled = false } = {}) {
  return h("button", {
    type: "button", class: "cf-icon-btn", testid, title, "aria-label": title, disabled,
    on: { click: (e) => { e.stopPropagation(); onClick?.(e); } },
  }, h("i", { class: `pi ${icon}`, "aria-hidden": "true" }));
}

/** "…/models/loras": the folder a finished download went to, short. */
export function savedIn(savePath) {
  if (typeof savePath !== "string" || !savePath) return "";
  const parts = savePath.replace(/\\/g, "/").split("/");
  parts.pop();
  return shortPaths([parts.join("/")])[0];
}

/**
 * One line: what went wrong in plain words, with the server's message and a help link behind
 * a click ("Details").
 */
export function errorLine(error, title = "") {
  const ex = explainError(error);
  const helpUrl = error.help_url ?? error.helpUrl;
  const details = h("div", { class: "cf-error-details", hidden: true, testid: "comfyfixer-error-details" },
    ex.message ? h("div", { class: "cf-error-msg" }, ex.message) : null,
    helpUrl ? h("div", {}, link(helpUrl, "Open the page to sign in or accept ↗")) : null);
  const toggle = ex.message || helpUrl
    ? h("button", {
      type: "button", class: "cf-link-btn", testid: "comfyfixer-error-toggle", "aria-expanded": "false",
      on: {
        click: (e) => {
          e.stopPropagation();
          details.hidden = !details.hidden;
          e.currentTarget.setAttribute("aria-expanded", String(!details.hidden));
        },
      },
    }, "Details")
    : null;
  const text = [title, ex.hint || (title ? "" : ex.type || "Error")].filter(Boolean).join(": ");
  return h("div", { class: "cf-error", role: "alert", dataset: { errorType: ex.type } },
    h("div", { class: "cf-error-line" }, h("span", { class: "cf-error-title" }, text || ex.message), toggle),
    details);
}

export function progressBar(item) {
  const frac = item.state === "done" ? 1 : progressFraction(item.downloaded, item.total);
  const pct = frac === null ? null : Math.round(frac * 100);
  const label = STATE_LABELS[item.state] ?? item.state ?? "";
  return h("div", {
    class: ["cf-progress", `cf-progress-${item.state}`, frac === null && ACTIVE_ITEM_STATES.has(item.state) && "cf-indeterminate"],
    testid: "comfyfixer-progress", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100",
    "aria-valuenow": pct === null ? null : String(pct), "aria-label": label, dataset: { state: item.state ?? "" },
    title: typeof item.save_path === "string" && item.save_path ? item.save_path : null,
  },
  h("div", { class: "cf-bar" }, h("div", { class: "cf-fill", style: { width: `${pct ?? 0}%` } })),
  h("div", { class: "cf-progress-text" },
    h("span", { class: "cf-state" }, pct !== null && item.state === "downloading" ? `${label} ${pct}%` : label),
    item.state === "done" || item.state === "skipped"
      ? h("span", { class: "cf-saved-in", title: item.save_path ?? "" }, savedIn(item.save_path))
      : h("span", {}, progressText(item))));
}
