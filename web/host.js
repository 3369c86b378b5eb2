// How the panel lives inside ComfyUI's frontend (1.32.9 and 1.58.1 tested):
//   - a sidebar tab (app.extensionManager.registerSidebarTab), else a panel docked on the left
//   - toasts through the frontend's toast service (placed by the frontend, away from the panel)
//   - the frontend's own refresh of model lists and missing-model markers after a fix
//   - Esc closes the panel from anywhere; focus goes back to what opened it
// No server calls and no rendering of rows here.
import { h } from "./dom.js";

export const SIDEBAR_TAB_ID = "comfyfixer";
const OPEN_TESTID = "comfyfixer-open";

/** Toast through the frontend's toast service; a small DOM toast where there is none. */
export function makeNotify(app) {
  return (severity, summary, detail = "") => {
    const toast = app.extensionManager?.toast;
    if (toast?.add) {
      toast.add({ severity, summary, detail, life: severity === "error" || severity === "warn" ? 10000 : 6000 });
      return;
    }
    const el = h("div", { class: `comfyfixer-toast comfyfixer-toast-${severity}`, role: "status", testid: "comfyfixer-toast" },
      h("strong", {}, summary), detail ? h("div", {}, detail) : null);
    document.body.appendChild(el);
    setTimeout(() => el.remove(), 6000);
  };
}

/**
 * The frontend's own refresh after files appeared: on 1.58+ `app.refreshMissingModels()` reloads
 * the node definitions (combo lists) and re-runs its missing-model check, which clears the
 * "N issues found" overlay, the Issues tab entries, the red node outlines and the Run warning;
 * older frontends only have `refreshComboInNodes()`.  Then a redraw.
 */
export async function refreshFrontend(app) {
  if (typeof app.refreshMissingModels === "function") {
    await app.refreshMissingModels({ silent: true });
  } else {
    await app.refreshComboInNodes?.();
  }
  app.canvas?.setDirty?.(true, true);
}

function visible(el) {
  return Boolean(el?.isConnected && el.getClientRects().length > 0);
}

/** Another modal (a frontend dialog) is open: its own Esc handling comes first. */
function otherModalOpen(panelRoot) {
  for (const el of document.querySelectorAll('.p-dialog-mask, [role="dialog"][aria-modal="true"], [role="alertdialog"]')) {
    if (visible(el) && !panelRoot.contains(el)) return true;
  }
  return false;
}

/**
 * Where the panel is shown.  -> {open(), close(), toggle(), isOpen, mode: "sidebar"|"docked"}
 * `onShow` / `onHide` are called when it becomes visible / hidden (whatever hid it).
 */
export function createDock(app, panel, { onShow, onHide } = {}) {
  const manager = app.extensionManager;
  const sidebar = manager?.sidebarTab;
  const canSidebar = typeof manager?.registerSidebarTab === "function" || typeof sidebar?.registerSidebarTab === "function";
  let opener = null;

  const shown = () => {
    panel.setVisible(true);
    onShow?.();
  };
  const hidden = () => {
    panel.setVisible(false);
    onHide?.();
  };

  let dock;
  if (canSidebar) {
    const tab = {
      id: SIDEBAR_TAB_ID,
      icon: "pi pi-wrench",
      title: "Fix models",
      tooltip: "Fix missing models (ComfyFixerSmart)",
      label: "Fix models",
      type: "custom",
      render: (container) => {
        container.classList.add("comfyfixer-sidebar");
        container.appendChild(panel.root);
        shown();
      },
      // Vue may mount a new slot before unmounting the old one (1.32 does on some re-renders):
      // the panel is hidden only when our tab is really no longer the active one.
      destroy: () => {
        requestAnimationFrame(() => {
          if (!active() || !panel.root.isConnected) hidden();
        });
      },
    };
    if (typeof sidebar?.registerSidebarTab === "function") sidebar.registerSidebarTab(tab);
    else manager.registerSidebarTab(tab);
    const active = () => app.extensionManager.sidebarTab?.activeSidebarTabId === SIDEBAR_TAB_ID;
    const toggleTab = () => {
      const store = app.extensionManager.sidebarTab;
      if (typeof store?.toggleSidebarTab === "function") store.toggleSidebarTab(SIDEBAR_TAB_ID);
      else app.extensionManager.command?.execute?.(`Workspace.ToggleSidebarTab.${SIDEBAR_TAB_ID}`);
    };
    dock = {
      mode: "sidebar",
      get isOpen() {
        return active() && panel.root.isConnected;
      },
      open() {
        if (!active()) toggleTab();
      },
      close() {
        if (active()) toggleTab();
      },
    };
  } else {
    panel.root.classList.add("comfyfixer-docked");
    panel.root.hidden = true;
    document.body.appendChild(panel.root);
    dock = {
      mode: "docked",
      get isOpen() {
        return !panel.root.hidden;
      },
      open() {
        if (!panel.root.hidden) return;
        panel.root.hidden = false;
        shown();
      },
      close() {
        if (panel.root.hidden) return;
        panel.root.hidden = true;
        hidden();
      },
    };
  }

  const api = {
    mode: dock.mode,
    get isOpen() {
      return dock.isOpen;
    },
    open() {
      const active = document.activeElement;
      if (active && active !== document.body && !panel.root.contains(active)) opener = active;
      dock.open();
      // The sidebar renders on Vue's next tick: focus the panel once it is there.
      requestAnimationFrame(() => panel.root.focus({ preventScroll: true }));
    },
    /** Close and give the focus back to the Fix models button (else to what opened the panel). */
    close() {
      dock.close();
      const button = document.querySelector(`[data-testid="${OPEN_TESTID}"]`);
      const back = visible(button) ? button : opener;
      opener = null;
      back?.focus?.({ preventScroll: true });
    },
    toggle() {
      if (dock.isOpen) api.close();
      else api.open();
    },
  };

  // Esc closes the panel wherever the focus is (canvas, sidebar, panel), unless a dialog of the
  // frontend is open on top (its own Esc closes it first).
  window.addEventListener("keydown", (e) => {
    if (e.key !== "Escape" || e.defaultPrevented || !dock.isOpen || otherModalOpen(panel.root)) return;
    e.preventDefault();
    e.stopPropagation();
    api.close();
  }, true);
  return api;
}
