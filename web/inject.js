// "Fix with ComfyFixerSmart" in the frontend's own missing-model UI, found by the DOM each
// frontend renders (no public API offers a slot there):
//   1.32.x: the "Missing models" dialog (its list has class comfy-missing-models); the button
//           closes the dialog (it is modal) and opens the panel
//   1.58.x: the "N issues found" overlay (data-testid="error-overlay") and the missing-model
//           card of the Issues tab (data-testid="missing-model-*")
// Called after DOM changes; adds each button once.
import { h } from "./dom.js";

const MARK = "comfyfixer-inject";
export const FIX_WITH_TESTID = "comfyfixer-fix-with";

function fixButton(where, onFix, extraClass = "") {
  return h("button", {
    type: "button", class: [MARK, "comfyfixer-fix-with", extraClass], testid: FIX_WITH_TESTID,
    dataset: { where }, title: "Find, download and verify the missing models with ComfyFixerSmart",
    on: { click: (e) => { e.stopPropagation(); onFix(where, e.currentTarget); } },
  }, h("i", { class: "pi pi-wrench", "aria-hidden": "true" }), "Fix with ComfyFixerSmart");
}

function hasOurs(el) {
  return Boolean(el?.querySelector(`:scope > .${MARK}`));
}

/** Close the PrimeVue dialog around `el` with its own close button (else Esc on it). */
export function closeDialogAround(el) {
  const dialog = el?.closest?.(".p-dialog");
  if (!dialog) return false;
  const close = dialog.querySelector(".p-dialog-close-button, .p-dialog-header-close, button[aria-label='Close']");
  if (close) close.click();
  else dialog.dispatchEvent(new KeyboardEvent("keydown", { key: "Escape", bubbles: true }));
  return true;
}

/** Add the buttons where the frontend shows missing models; `onFix(where, button)`. */
export function injectFixButtons(onFix) {
  // 1.32.x: the missing-models dialog.
  for (const list of document.querySelectorAll(".comfy-missing-models")) {
    const parent = list.parentElement;
    if (parent && !hasOurs(parent)) parent.insertBefore(fixButton("dialog", onFix, "cf-inject-block"), list);
  }
  // 1.58.x: the error overlay, next to its "View details".
  for (const see of document.querySelectorAll('[data-testid="error-overlay-see-errors"]')) {
    const row = see.parentElement;
    if (row && !hasOurs(row)) row.insertBefore(fixButton("overlay", onFix, "cf-inject-inline"), see);
  }
  // 1.58.x: the Issues tab's missing-model card.
  const sections = document.querySelectorAll(
    '[data-testid="missing-model-importable-rows"], [data-testid="missing-model-import-not-supported-section"]');
  for (const section of sections) {
    const card = section.parentElement;
    if (card && !hasOurs(card)) card.appendChild(fixButton("issues", onFix, "cf-inject-block"));
  }
}
