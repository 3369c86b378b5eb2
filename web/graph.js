// Everything that reads or edits the graph loaded in the page: serialise it for the server,
// point a loader's widget at a file already on disk (Relink), and write resolved sources into
// the standard `properties.models` metadata (Embed sources).  No server calls, no rendering.
// Works on the LiteGraph objects of both the pinned (1.32) and the newest ComfyUI frontend.

/** The root graph (never the subgraph the canvas happens to show). */
export function getRootGraph(app) {
  const graph = app?.rootGraph ?? app?.graph;
  if (!graph) throw new Error("No workflow is loaded yet.");
  return graph;
}

/** The loaded workflow as plain JSON (UI format; subgraphs under definitions.subgraphs). */
export function serializeWorkflow(app) {
  const data = getRootGraph(app).serialize();
  // Deep copy through JSON: drops functions/cycles and detaches us from live objects.
  return JSON.parse(JSON.stringify(data));
}

/** Compare file names the way ComfyUI lists them on any OS. */
export function normName(value) {
  return String(value ?? "").replace(/\\/g, "/");
}

function nodeIn(graph, id) {
  if (!graph?.getNodeById) return null;
  return graph.getNodeById(id) ?? (typeof id === "string" && /^-?\d+$/.test(id) ? graph.getNodeById(Number(id)) : null);
}

function subgraphsOf(root) {
  const defs = root?.subgraphs;
  if (!defs) return [];
  return typeof defs.values === "function" ? [...defs.values()] : Object.values(defs);
}

/** The node `nodeId`, reached through the subgraph instance ids `subgraphPath` (outermost first). */
export function findNode(app, nodeId, subgraphPath = []) {
  const root = getRootGraph(app);
  let graph = root;
  for (const instanceId of subgraphPath ?? []) {
    const instance = nodeIn(graph, instanceId);
    graph = instance?.subgraph;
    if (!graph) return null;
  }
  const node = nodeIn(graph, nodeId);
  if (node || (subgraphPath ?? []).length) return node ?? null;
  // A node of a subgraph definition reported without a path: look in every definition.
  for (const sub of subgraphsOf(root)) {
    const found = nodeIn(sub, nodeId);
    if (found) return found;
  }
  return null;
}

/** Widgets of `node` that hold `filename` (by value first, then the input named in `where`). */
export function modelWidgets(node, filename, where = "") {
  const widgets = Array.isArray(node?.widgets) ? node.widgets : [];
  const wanted = normName(filename);
  const byValue = widgets.filter((w) => typeof w?.value === "string" && normName(w.value) === wanted);
  if (byValue.length) return byValue;
  const m = /^inputs\.(.+)$/.exec(where ?? "");
  const named = m ? widgets.find((w) => w?.name === m[1]) : null;
  return named ? [named] : [];
}

/** Locations of a reference that are real nodes of the loaded graph. */
function* refNodes(app, ref) {
  const locations = Array.isArray(ref?.nodes) && ref.nodes.length
    ? ref.nodes
    : [{ node_id: ref?.node_id, node_type: ref?.node_type, where: "", subgraph_path: [] }];
  for (const loc of locations) {
    if (loc?.node_id === undefined || loc?.node_id === null) continue;
    const node = findNode(app, loc.node_id, loc.subgraph_path ?? []);
    if (node) yield { node, loc };
  }
}

/**
 * What Relink would write: the found file's path relative to the reference's own folder.
 * Returns {value} or {reason} when the file sits in another folder (the node could not list it).
 */
export function relinkTarget(ref) {
  const found = normName(ref?.found_path);
  const dir = String(ref?.directory ?? "");
  if (!found) return { reason: "no file was found on disk" };
  const slash = found.indexOf("/");
  const folder = slash >= 0 ? found.slice(0, slash) : "";
  const rel = slash >= 0 ? found.slice(slash + 1) : found;
  if (!rel) return { reason: "no file was found on disk" };
  if (folder && dir && folder !== dir) {
    return { reason: `found in ${folder}/, but ${ref.node_type ?? "the node"} lists ${dir}/ only: move the file` };
  }
  return { value: rel };
}

/** Pick the spelling of `value` that the combo offers (keeps Windows back-slashes). */
function comboSpelling(widget, value) {
  const values = widget?.options?.values;
  const list = typeof values === "function" ? safeCall(values) : values;
  if (Array.isArray(list)) {
    const hit = list.find((v) => normName(v) === normName(value));
    if (hit !== undefined) return hit;
  }
  return value;
}

function safeCall(fn) {
  try {
    return fn();
  } catch {
    return null;
  }
}

function setWidget(app, node, widget, value) {
  widget.value = value;
  // Combo callbacks update linked state (e.g. previews); they expect (value, canvas, node).
  try {
    widget.callback?.(value, app?.canvas, node);
  } catch (e) {
    console.warn("[ComfyFixer] widget callback failed", e);
  }
  node.onWidgetChanged?.(widget.name, value, undefined, widget);
}

/** Rename `properties.models` entries of `node` from `oldName` to `newName` (same folder). */
function renameModelEntries(node, oldName, newName, directory) {
  const models = node?.properties?.models;
  if (!Array.isArray(models)) return 0;
  let n = 0;
  for (const entry of models) {
    if (normName(entry?.name) === normName(oldName) && (entry?.directory ?? directory) === directory) {
      entry.name = newName;
      n += 1;
    }
  }
  return n;
}

/**
 * Point every widget of `ref`'s nodes that names `ref.filename` at `value`, and rename the
 * node's `properties.models` entries with it (an old entry would keep the scan reporting the old
 * name).  Returns the number of widgets changed.
 */
export function setReferenceValue(app, ref, value) {
  let changed = 0;
  for (const { node, loc } of refNodes(app, ref)) {
    for (const widget of modelWidgets(node, ref.filename, loc.where)) {
      const spelled = comboSpelling(widget, value);
      if (widget.value !== spelled) setWidget(app, node, widget, spelled);
      changed += 1;
    }
    if (normName(value) !== normName(ref.filename)) renameModelEntries(node, ref.filename, value, ref.directory);
  }
  if (changed) markGraphChanged(app);
  return changed;
}

/**
 * Relink: point every widget that names `ref.filename` at the file already on disk
 * (`ref.found_path`).  Returns the number of widgets changed; throws Error with a reason.
 */
export function relinkReference(app, ref) {
  const target = relinkTarget(ref);
  if (!target.value) throw new Error(`Cannot relink ${ref?.filename}: ${target.reason}`);
  const changed = setReferenceValue(app, ref, target.value);
  if (!changed) throw new Error(`Cannot relink ${ref?.filename}: no widget in the graph holds that name any more`);
  return changed;
}

/**
 * Whether ComfyUI lists `ref.filename` in the combo of every widget that names it: true, false
 * (a widget's list lacks it: the node would fail to load it), or null (no combo list to check).
 */
export function listedByComfyUI(app, ref) {
  let checked = false;
  for (const { node, loc } of refNodes(app, ref)) {
    for (const widget of modelWidgets(node, ref.filename, loc.where)) {
      const values = widget?.options?.values;
      const list = typeof values === "function" ? safeCall(values) : values;
      if (!Array.isArray(list)) continue;
      checked = true;
      if (!list.some((v) => normName(v) === normName(widget.value))) return false;
    }
  }
  return checked ? true : null;
}

/**
 * Locate: select node `loc` ({node_id, subgraph_path}) and center the canvas on it, opening the
 * subgraph(s) it lives in.  Returns true when the node was found.
 */
export function locateNode(app, loc) {
  const canvas = app?.canvas;
  const root = getRootGraph(app);
  if (!canvas) return false;
  let graph = root;
  const hops = [];
  for (const instanceId of loc?.subgraph_path ?? []) {
    const instance = nodeIn(graph, instanceId);
    if (!instance?.subgraph) return false;
    hops.push(instance);
    graph = instance.subgraph;
  }
  let node = nodeIn(graph, loc?.node_id);
  if (!node && !hops.length) {
    // A node of a subgraph definition reported without a path: open it through its first instance.
    for (const sub of subgraphsOf(root)) {
      const found = nodeIn(sub, loc?.node_id);
      const instance = found ? (root.nodes ?? []).find((n) => n?.subgraph === sub) : null;
      if (found && instance) {
        hops.push(instance);
        node = found;
        break;
      }
    }
  }
  if (!node) return false;
  try {
    if (hops.length) {
      if (canvas.graph !== root) canvas.setGraph?.(root);
      for (const instance of hops) canvas.openSubgraph?.(instance.subgraph, instance);
    } else if (canvas.graph && canvas.graph !== root) {
      canvas.setGraph?.(root);
    }
  } catch (e) {
    console.warn("[ComfyFixer] could not open the subgraph", e);
  }
  canvas.deselectAll?.();
  canvas.selectNode?.(node, false);
  canvas.centerOnNode?.(node);
  canvas.setDirty?.(true, true);
  return true;
}

/**
 * A URL safe to keep in a shared workflow: http(s), no user:password, no token-like query
 * parameters (a signed or tokenised link must never be written into a file people share).
 */
export function cleanSourceUrl(url) {
  let u;
  try {
    u = new URL(String(url ?? ""));
  } catch {
    return null;
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") return null;
  if (u.username || u.password) return null;
  for (const key of u.searchParams.keys()) {
    if (/token|key|auth|sig|signature|expires|credential|x-amz-/i.test(key)) return null;
  }
  u.hash = "";
  return u.href;
}

/** A `properties.models` entry, as the ComfyUI frontend's workflow schema defines it. */
export function modelEntry(name, directory, url, sha256) {
  const entry = { name, url, directory };
  if (typeof sha256 === "string" && /^[0-9a-fA-F]{64}$/.test(sha256)) {
    entry.hash = sha256.toLowerCase();
    entry.hash_type = "sha256";
  }
  return entry;
}

/**
 * Embed sources: for each {ref, url, sha256}, write `properties.models` on every loader node
 * of the reference (replacing an older entry with the same name and folder).  Entries whose
 * URL is not shareable are skipped.  Returns {nodes, entries, skipped}.
 */
export function embedSources(app, sources) {
  const touched = new Set();
  let entries = 0;
  let skipped = 0;
  for (const { ref, url, sha256 } of sources ?? []) {
    const clean = cleanSourceUrl(url);
    if (!clean || !ref?.directory) {
      skipped += 1;
      continue;
    }
    let wrote = false;
    for (const { node, loc } of refNodes(app, ref)) {
      if (/^(properties\.models|models)$/.test(loc.where ?? "")) continue;
      // Name it the way the widget spells it: the frontend matches entries to widget values.
      const widget = modelWidgets(node, ref.filename, loc.where)[0];
      const name = typeof widget?.value === "string" ? widget.value : ref.filename;
      node.properties ??= {};
      const old = Array.isArray(node.properties.models) ? node.properties.models : [];
      const keep = old.filter((m) => !(normName(m?.name) === normName(name) && (m?.directory ?? ref.directory) === ref.directory));
      node.properties.models = [...keep, modelEntry(name, ref.directory, clean, sha256)];
      touched.add(node);
      wrote = true;
    }
    if (wrote) entries += 1;
    else skipped += 1;
  }
  if (touched.size) markGraphChanged(app);
  return { nodes: touched.size, entries, skipped };
}

/** Redraw, and let the workflow tab notice the change (unsaved dot, undo history). */
export function markGraphChanged(app) {
  try {
    app?.canvas?.setDirty?.(true, true);
    const graph = app?.rootGraph ?? app?.graph;
    graph?.change?.();
    app?.extensionManager?.workflow?.activeWorkflow?.changeTracker?.checkState?.();
  } catch (e) {
    console.warn("[ComfyFixer] could not mark the workflow as changed", e);
  }
}
