// The server-side options (tokens, confidence, downloads, network) as form controls: in the
// panel's Settings tab and, one control each, in ComfyUI's own Settings dialog.  Tokens are
// write-only: the page sends them and only ever hears back "set" / "not set".
// Only options the server reports (GET /comfyfixer/settings) are shown.
import { h } from "./dom.js";
import { button } from "./widgets.js";

/**
 * kind: token (write-only), percent (server 0..1, shown 0..100), int, text, bool, list (a
 * comma-separated list of names).  `keys`: the server's name(s) for it, the first reported wins.
 */
export const SERVER_FIELDS = [
  { id: "civitai_token", keys: ["civitai_token"], kind: "token", label: "Civitai API key", setKey: "civitai_token_set",
    help: "Civitai downloads that need a login use it. Stored on the ComfyUI server only." },
  { id: "hf_token", keys: ["hf_token"], kind: "token", label: "Hugging Face token", setKey: "hf_token_set",
    help: "Gated or private Hugging Face files need it. Stored on the ComfyUI server only." },
  { id: "min_confidence", keys: ["min_confidence"], kind: "percent", label: "Take a match automatically from (%)", min: 80, max: 100,
    help: "Download all picks a candidate by itself only when the match is at least this sure (never below 80%)." },
  { id: "concurrency", keys: ["download_concurrency"], kind: "int",
    label: "Downloads at once", min: 1, max: 64, help: "How many files download at the same time." },
  { id: "allowed_hosts", keys: ["allowed_hosts_extra"], kind: "list",
    label: "Also allow downloads from", placeholder: "host.example, mirror.example",
    help: "Host names added to the download allow-list (Civitai and Hugging Face are always allowed)." },
  { id: "hf_endpoint", keys: ["hf_endpoint"], kind: "text", label: "Hugging Face endpoint or mirror", placeholder: "https://huggingface.co",
    help: "Where Hugging Face files are fetched from. Workflows keep huggingface.co links." },
  { id: "proxy", keys: ["proxy"], kind: "text", label: "Proxy", placeholder: "http://proxy:3128",
    help: "An HTTP(S) proxy for the hubs and downloads; empty for none." },
  { id: "auto_resume", keys: ["auto_resume"], kind: "bool", label: "Resume downloads after a restart",
    help: "Downloads that were running when ComfyUI stopped continue by themselves from their partial files." },
  { id: "allow_pickle", keys: ["allow_pickle"], kind: "bool", label: "Allow pickle formats (.ckpt, .pt, .bin)",
    help: "Pickle files can run code when loaded; off means they are never downloaded automatically." },
  { id: "embed_after_download", keys: ["embed_after_download"], kind: "bool", label: "Embed sources after download",
    help: "Writes each downloaded file's hub URL and checksum into its loader (marks the workflow changed)." },
];

/** The server's key for `field` in `settings`, or null when the server does not have it. */
export function serverKey(field, settings) {
  if (!settings) return null;
  if (field.kind === "token") return field.setKey in settings ? field.id : null;
  return field.keys.find((k) => k in settings) ?? null;
}

function shown(field, value) {
  if (field.kind === "percent") return typeof value === "number" ? String(Math.round(value * 100)) : "";
  if (field.kind === "list") return Array.isArray(value) ? value.join(", ") : String(value ?? "");
  return value === null || value === undefined ? "" : String(value);
}

function parsed(field, text) {
  const t = String(text ?? "").trim();
  if (field.kind === "percent") return t === "" ? undefined : Number(t) / 100;
  if (field.kind === "int") return t === "" ? undefined : Math.round(Number(t));
  if (field.kind === "list") return t ? t.split(/[\s,]+/).filter(Boolean) : [];
  return t;
}

/**
 * One control for `field`, saving to the server on change (tokens: on Save).
 * -> HTMLElement (testid comfyfixer-setting-<id>).
 */
export function fieldControl(controller, field) {
  const st = controller.state.settings;
  const key = serverKey(field, st);
  const wrap = h("span", { class: "cf-field", testid: `comfyfixer-setting-${field.id}` });
  if (field.kind === "token") {
    const isSet = Boolean(st?.[field.setKey]);
    const input = h("input", {
      type: "password", autocomplete: "off", "aria-label": field.label, class: "cf-input",
      placeholder: isSet ? "set (type a new one to replace)" : "not set",
    });
    const save = () => {
      const v = input.value.trim();
      input.value = "";
      if (v) controller.saveSettings({ [field.id]: v });
    };
    input.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); save(); } });
    wrap.append(input,
      button("Save", { kind: "small", testid: `comfyfixer-save-${field.id}`, onClick: save }),
      isSet ? button("Clear", { kind: "small", onClick: () => controller.saveSettings({ [field.id]: null }) }) : null,
      h("span", { class: isSet ? "cf-good" : "cf-muted", testid: `comfyfixer-${field.id}-status` }, isSet ? "set" : "not set"));
    return wrap;
  }
  if (!key) return wrap;
  const value = st[key];
  let input;
  if (field.kind === "bool") {
    input = h("input", { type: "checkbox", checked: Boolean(value), "aria-label": field.label });
    input.addEventListener("change", () => controller.saveSettings({ [key]: input.checked }));
  } else {
    const numeric = field.kind === "percent" || field.kind === "int";
    input = h("input", {
      type: numeric ? "number" : "text", class: "cf-input", "aria-label": field.label, value: shown(field, value),
      min: field.min, max: field.max, step: numeric ? "1" : null, placeholder: field.placeholder ?? null, spellcheck: "false",
    });
    input.addEventListener("change", () => {
      const v = parsed(field, input.value);
      if (v === undefined || (typeof v === "number" && !Number.isFinite(v))) return;
      controller.saveSettings({ [key]: v });
    });
  }
  wrap.append(input);
  return wrap;
}

/** The Settings tab: every option the server has, plus the page's own (embed after download). */
export class SettingsView {
  constructor(controller, { embedAfter } = {}) {
    this.c = controller;
    this.embedAfter = embedAfter; // {get(): bool, set(bool)} (a ComfyUI setting)
    this.el = h("div", { class: "cf-settings", testid: "comfyfixer-settings" });
  }

  render() {
    const st = this.c.state.settings;
    const rows = [];
    for (const field of SERVER_FIELDS) {
      if (!serverKey(field, st)) continue;
      rows.push(h("label", { class: "cf-setting-label", title: field.help }, field.label), fieldControl(this.c, field));
    }
    if (st && !("embed_after_download" in st)) {
      // An older server: the page keeps this one in ComfyUI's settings.
      const embed = h("input", {
        type: "checkbox", checked: Boolean(this.embedAfter?.get()), "aria-label": "Embed sources after download",
      });
      embed.addEventListener("change", () => this.embedAfter?.set(embed.checked));
      rows.push(h("label", { class: "cf-setting-label" }, "Embed sources after download"),
        h("span", { class: "cf-field", testid: "comfyfixer-setting-embed_after_download" }, embed));
    }
    this.el.replaceChildren(
      h("div", { class: "cf-muted", hidden: Boolean(st) }, "Reading the server's settings…"),
      h("div", { class: "cf-form" }, rows),
      h("div", { class: "cf-hint" }, "Saved on the ComfyUI server as you change them; tokens are never sent back to the page. ",
        "The same options are in ComfyUI's Settings under ComfyFixerSmart."),
    );
  }
}
