// Tiny DOM builder.  Every string goes in as text (textContent, setAttribute), never parsed as HTML:
// file names, URLs and messages come from workflows and hubs and are hostile input.

const SAFE_PROTOCOLS = new Set(["http:", "https:"]);

/** Return `url` if it is an absolute http(s) URL, else null (no javascript:, data:, ...). */
export function safeHref(url) {
  if (typeof url !== "string" || !url) return null;
  try {
    const u = new URL(url);
    return SAFE_PROTOCOLS.has(u.protocol) ? u.href : null;
  } catch {
    return null;
  }
}

/**
 * h("div", {class: "x", testid: "y", dataset: {k: v}, on: {click: fn}, title: "..."}, ...children)
 * Children: Node, string/number (text), arrays (flattened), null/false/undefined (skipped).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = Array.isArray(value) ? value.filter(Boolean).join(" ") : value;
    else if (name === "testid") el.dataset.testid = value;
    else if (name === "dataset") for (const [k, v] of Object.entries(value)) { if (v != null) el.dataset[k] = String(v); }
    else if (name === "on") for (const [ev, fn] of Object.entries(value)) el.addEventListener(ev, fn);
    else if (name === "style" && typeof value === "object") Object.assign(el.style, value);
    else if (name === "href") { const safe = safeHref(value); if (safe) el.setAttribute("href", safe); }
    else if (name === "value") el.value = value;
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

/** An external link that opens in a new tab; plain text when the URL is not http(s). */
export function link(url, text) {
  const href = safeHref(url);
  if (!href) return h("span", {}, text);
  return h("a", { href, target: "_blank", rel: "noopener noreferrer" }, text);
}
