"""Static reader of ComfyUI node definitions: which node input lists which model folder.

Reads Python sources with ``ast`` (never imports or runs them) and finds, per node class:

* V1 ``INPUT_TYPES`` dicts whose options come from ``folder_paths.get_filename_list("vae")``,
  also ``["None"] + get_filename_list(...)``, ``sorted(...)``, comprehensions, names assigned
  in the same function, class or module, helper methods (``s.vae_list(s)``), ``from
  folder_paths import get_filename_list`` and ``get_filename_list_(...)[0]``;
* V3 ``define_schema`` returning ``io.Schema(node_id=..., inputs=[io.Combo.Input("x",
  options=folder_paths.get_filename_list("k")), ...])``;
* ``NODE_CLASS_MAPPINGS`` (class -> node type; V3 classes carry their ``node_id``);
* folder keys a pack registers (``folder_paths.add_model_folder_path("k", ...)``,
  ``folder_paths.folder_names_and_paths["k"] = (paths, extensions)``).

Legacy keys are mapped (``clip`` -> ``text_encoders``, ``unet`` -> ``diffusion_models``).  The
widget position of each input (``index`` in a UI node's ``widgets_values``) is computed when every
input before it could be classified, else left unknown.

``read_source(text)`` reads one file; ``collect(files)`` joins the files of one package (a class
and its ``NODE_CLASS_MAPPINGS`` entry often live in different files) into ``NodeDefs``.
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

from ..folders import canonical_folder
from ..logs import get_logger

log = get_logger(__name__)

#: bump when the reader's output changes, so cached results of older readers are not reused
READER_VERSION = 3

_WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
#: V3 ``io.X.Input`` classes that are widgets (others are sockets)
_V3_WIDGETS = frozenset({"Combo", "MultiCombo", "Int", "Float", "String", "Boolean"})
_V3_NUMBERS = frozenset({"Int", "Float"})
_SEED_NAMES = frozenset({"seed", "noise_seed"})
_UPLOAD_KEYS = frozenset({"image_upload", "video_upload", "audio_upload", "upload", "model_upload"})
_WRAPPERS = frozenset({"sorted", "list", "tuple", "set", "reversed", "frozenset"})
_MAX_DEPTH = 12
_GFL = b"get_filename_list"
#: a dict comprehension over ``range`` expands to at most this many inputs
_MAX_EXPAND = 200

#: ``folder_paths.supported_pt_extensions`` (ComfyUI 0.3.x)
PT_EXTENSIONS = (".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft")


@dataclass(frozen=True)
class FolderInput:
    """One input whose options are the files of a model folder."""

    input: str
    folder: str
    #: position in a UI node's ``widgets_values``; None when it could not be worked out
    index: Optional[int] = None
    #: constant options offered besides the files (``"None"``): they name no file
    extras: Tuple[str, ...] = ()


@dataclass
class ClassDef:
    """What one class statement says about its inputs."""

    name: str
    bases: Tuple[str, ...] = ()
    #: V3 ``Schema(node_id=...)``
    node_id: Optional[str] = None
    #: None when the class defines neither INPUT_TYPES nor define_schema (it inherits them)
    inputs: Optional[Tuple[FolderInput, ...]] = None


@dataclass
class FileDefs:
    """The node-related facts of one source file."""

    classes: Dict[str, ClassDef] = field(default_factory=dict)
    #: class name -> node types, from NODE_CLASS_MAPPINGS
    mappings: Dict[str, List[str]] = field(default_factory=dict)
    #: folder keys registered by this file -> their extensions (None when not readable)
    folders: Dict[str, Optional[Tuple[str, ...]]] = field(default_factory=dict)
    #: folder key -> directories this file adds to it (``add_model_folder_path``), where the path
    #: expression could be read: absolute paths, or ``{models_dir}/...`` (ComfyUI's models folder)
    paths: Dict[str, List[str]] = field(default_factory=dict)

    def to_json(self) -> Dict[str, Any]:
        return {
            "classes": [[c.name, list(c.bases), c.node_id,
                         None if c.inputs is None else [[i.input, i.folder, i.index, list(i.extras)] for i in c.inputs]]
                        for c in self.classes.values()],
            "mappings": self.mappings,
            "folders": {k: None if v is None else list(v) for k, v in self.folders.items()},
            "paths": self.paths,
        }

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "FileDefs":
        classes = {}
        for name, bases, node_id, inputs in data["classes"]:
            classes[name] = ClassDef(name, tuple(bases), node_id, None if inputs is None else tuple(
                FolderInput(i[0], i[1], i[2], tuple(i[3])) for i in inputs))
        return cls(classes, {k: list(v) for k, v in data["mappings"].items()},
                   {k: None if v is None else tuple(v) for k, v in data["folders"].items()},
                   {k: list(v) for k, v in data.get("paths", {}).items()})


@dataclass
class NodeDef:
    """A node type with its folder inputs."""

    node_type: str
    class_name: str
    inputs: Tuple[FolderInput, ...]


@dataclass
class NodeDefs:
    """Node types of a set of sources: their folder inputs, and the folder keys registered."""

    nodes: Dict[str, NodeDef] = field(default_factory=dict)
    #: every node type named by a mapping or a V3 schema (with or without folder inputs)
    node_types: Set[str] = field(default_factory=set)
    folders: Dict[str, Optional[Tuple[str, ...]]] = field(default_factory=dict)
    #: folder key -> directories registered for it (see ``FileDefs.paths``)
    paths: Dict[str, List[str]] = field(default_factory=dict)

    def update(self, other: "NodeDefs") -> None:
        self.nodes.update(other.nodes)
        self.node_types |= other.node_types
        for key, exts in other.folders.items():
            if self.folders.get(key) is None:
                self.folders[key] = exts
        _add_paths(self.paths, other.paths)


def _add_paths(into: Dict[str, List[str]], more: Dict[str, List[str]]) -> None:
    for key, dirs in more.items():
        mine = into.setdefault(key, [])
        mine.extend(d for d in dirs if d not in mine)


# -- reading one file ------------------------------------------------------------------------

def read_source(text: Union[str, bytes], path: str = "<source>") -> FileDefs:
    """Read one Python source; a file that does not parse gives empty FileDefs."""
    try:
        tree = ast.parse(text, filename=path)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return FileDefs()
    raw = text.encode("utf-8", "replace") if isinstance(text, str) else text
    # walking every node for registrations costs more than the parse: only where they can be
    registers = b"add_model_folder_path" in raw or b"folder_names_and_paths" in raw
    try:
        return _FileReader(tree, raw, path).read(registers)
    except RecursionError:
        return FileDefs()
    except Exception:  # a shape of code the reader did not foresee: that file says nothing
        log.debug("node definitions of %s not read", path, exc_info=True)
        return FileDefs()


class _Unknown:
    """An input whose kind could not be worked out: positions after it are unknown."""


_UNKNOWN = _Unknown()


@dataclass
class _D:
    """A dict value being evaluated: ordered key -> expression (or nested _D)."""

    items: Dict[str, Any] = field(default_factory=dict)
    uncertain: bool = False

    def copy(self) -> "_D":
        return _D(dict(self.items), self.uncertain)


@dataclass
class _Opts:
    folders: Tuple[str, ...] = ()
    extras: Tuple[str, ...] = ()

    def __add__(self, other: "_Opts") -> "_Opts":
        return _Opts(_uniq(self.folders + other.folders), _uniq(self.extras + other.extras))


@dataclass
class _Scope:
    func: Optional[ast.AST] = None
    cls: Optional[ast.ClassDef] = None
    #: parameters of ``func`` bound to constants: its defaults, and the caller's constant arguments
    bindings: Dict[str, str] = field(default_factory=dict)


def _uniq(items: Sequence[str]) -> Tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _const_str(node: Any) -> Optional[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _walk_body(body: Sequence[ast.stmt]) -> Iterable[ast.stmt]:
    """Statements in order, descending into if/for/while/with/try blocks (not functions)."""
    for stmt in body:
        yield stmt
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for name in ("body", "orelse", "finalbody"):
            inner = getattr(stmt, name, None)
            if isinstance(inner, list):
                yield from _walk_body(inner)
        for handler in getattr(stmt, "handlers", []) or []:
            yield from _walk_body(handler.body)


class _FileReader:
    def __init__(self, tree: ast.Module, raw: bytes = b"", path: str = "<source>"):
        self.tree = tree
        self.path = path
        self.lines = raw.split(b"\n") if raw else []
        self.classes: Dict[str, ast.ClassDef] = {}
        self.functions: Dict[str, ast.AST] = {}
        self.assigns: Dict[str, List[ast.expr]] = {}
        self.fp_modules: Set[str] = {"folder_paths"}
        self.gfl_names: Set[str] = set()
        self.out = FileDefs()
        self._class_dicts: Dict[str, Optional[Tuple[_D, _Scope]]] = {}

    # -- module level ------------------------------------------------------------------
    def read(self, registrations: bool = True) -> FileDefs:
        for stmt in _walk_body(self.tree.body):
            if isinstance(stmt, ast.ClassDef):
                self.classes.setdefault(stmt.name, stmt)
            elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.functions.setdefault(stmt.name, stmt)
            elif isinstance(stmt, ast.Assign):
                for target in stmt.targets:
                    if isinstance(target, ast.Name):
                        self.assigns.setdefault(target.id, []).append(stmt.value)
            elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
                self.assigns.setdefault(stmt.target.id, []).append(stmt.value)
            elif isinstance(stmt, ast.Import):
                for alias in stmt.names:
                    if alias.name == "folder_paths" or alias.name.endswith(".folder_paths"):
                        self.fp_modules.add(alias.asname or alias.name.split(".")[0])
            elif isinstance(stmt, ast.ImportFrom):
                for alias in stmt.names:
                    if alias.name == "folder_paths":
                        self.fp_modules.add(alias.asname or alias.name)
                    elif (stmt.module or "").endswith("folder_paths") and alias.name.startswith("get_filename_list"):
                        self.gfl_names.add(alias.asname or alias.name)
        if registrations:
            self._read_registrations()
        self._read_mappings()
        # a class whose text neither lists files nor reaches a base's inputs has no folder
        # input: skip evaluating its inputs (most classes), unless module-level code lists files
        outside = not self.lines or any(
            _GFL in self._text(stmt) for stmt in self.tree.body if not isinstance(stmt, ast.ClassDef))
        for name, node in self.classes.items():
            self.out.classes[name] = self._read_class(node, outside or any(
                marker in self._text(node) for marker in (_GFL, b"INPUT_TYPES(", b"super(")))
        return self.out

    def _text(self, node: Any) -> bytes:
        start, end = getattr(node, "lineno", None), getattr(node, "end_lineno", None)
        if not start or not end:
            return _GFL  # unknown extent: treat as relevant
        return b"\n".join(self.lines[start - 1:end])

    def _is_fp(self, node: Any) -> bool:
        """``folder_paths`` (or its alias) as an expression."""
        if isinstance(node, ast.Name):
            return node.id in self.fp_modules
        return isinstance(node, ast.Attribute) and node.attr == "folder_paths"

    def _is_fnp(self, node: Any) -> bool:
        """``folder_paths.folder_names_and_paths`` (or the name imported from it)."""
        if isinstance(node, ast.Attribute):
            return node.attr == "folder_names_and_paths" and self._is_fp(node.value)
        return isinstance(node, ast.Name) and node.id == "folder_names_and_paths"

    def _read_registrations(self) -> None:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
                if name == "add_model_folder_path" and node.args:
                    key = self._str(node.args[0], _Scope()) or self._class_const(node.args[0])
                    if key:
                        self._register(key, None)
                        where = self._path(node.args[1]) if len(node.args) > 1 else None
                        if where is not None:
                            self._register_path(key, where)
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Subscript) and self._is_fnp(target.value):
                        key = self._str(target.slice, _Scope())
                        if key:
                            exts = None
                            if isinstance(node.value, ast.Tuple) and len(node.value.elts) == 2:
                                exts = self._extensions(node.value.elts[1])
                            self._register(key, exts)

    def _class_const(self, node: Any) -> Optional[str]:
        """``Folders.ANIMATEDIFF_MODELS``: a string constant of a class of this module."""
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in self.classes:
            for stmt in self.classes[node.value.id].body:
                if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == node.attr
                                                        for t in stmt.targets):
                    return _const_str(stmt.value)
        return None

    def _name_str(self, node: Any) -> Optional[str]:
        return self._str(node, _Scope()) or self._class_const(node)

    def _path(self, node: Any, depth: int = 0) -> Optional[Tuple[str, Tuple[str, ...]]]:
        """A directory expression as ``(base, parts)``: base ``file`` (this source file; ``..``
        is its folder) or ``models`` (``folder_paths.models_dir``); None when not readable.

        Understands ``__file__``, ``folder_paths.models_dir``, ``os.path.dirname/abspath/realpath/
        normpath/join``, ``Path(...)``, ``.parent``, ``/``, ``str(...)`` and module-level names."""
        if node is None or depth > _MAX_DEPTH:
            return None
        if isinstance(node, ast.Name):
            if node.id == "__file__":
                return ("file", ())
            values = self.assigns.get(node.id)
            return self._path(values[-1], depth + 1) if values and len(values) == 1 else None
        if isinstance(node, ast.Attribute):
            if node.attr == "models_dir" and self._is_fp(node.value):
                return ("models", ())
            if node.attr == "parent":
                inner = self._path(node.value, depth + 1)
                return None if inner is None else (inner[0], inner[1] + ("..",))
            return None
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            left, right = self._path(node.left, depth + 1), self._name_str(node.right)
            return None if left is None or right is None else (left[0], left[1] + (right,))
        if not isinstance(node, ast.Call) or node.keywords:
            return None
        name = _call_name(node.func)
        args = node.args
        if name in ("str", "Path", "abspath", "realpath", "normpath") and len(args) == 1:
            return self._path(args[0], depth + 1)
        if name == "resolve" and not args and isinstance(node.func, ast.Attribute):
            return self._path(node.func.value, depth + 1)
        if name == "dirname" and len(args) == 1:
            inner = self._path(args[0], depth + 1)
            return None if inner is None else (inner[0], inner[1] + ("..",))
        if name in ("join", "joinpath") and args:
            first, rest = (args[0], args[1:]) if name == "join" else (node.func.value, args)  # type: ignore[union-attr]
            base = self._path(first, depth + 1)
            parts = [self._name_str(a) for a in rest]
            if base is None or any(p is None for p in parts):
                return None
            return (base[0], base[1] + tuple(p for p in parts if p))
        return None

    def _register_path(self, key: str, where: Tuple[str, Tuple[str, ...]]) -> None:
        base, parts = where
        if base == "file":
            if not os.path.isabs(self.path):
                return  # a source read without its place on disk: its folder is unknown
            path = os.path.normpath(os.path.join(self.path, *parts))
        else:
            rel = os.path.normpath(os.path.join(*parts)).replace(os.sep, "/") if parts else "."
            if rel.startswith(".."):
                return
            path = "{models_dir}" if rel == "." else "{models_dir}/" + rel
        dirs = self.out.paths.setdefault(canonical_folder(key), [])
        if path not in dirs:
            dirs.append(path)

    def _register(self, key: str, exts: Optional[Tuple[str, ...]]) -> None:
        key = canonical_folder(key)
        if self.out.folders.get(key) is None:
            self.out.folders[key] = exts

    def _extensions(self, node: Any, depth: int = 0) -> Optional[Tuple[str, ...]]:
        if depth > _MAX_DEPTH:
            return None
        if isinstance(node, (ast.Attribute, ast.Name)):
            name = node.attr if isinstance(node, ast.Attribute) else node.id
            if name == "supported_pt_extensions":
                return PT_EXTENSIONS
            if isinstance(node, ast.Name):
                for value in reversed(self.assigns.get(node.id, [])):
                    return self._extensions(value, depth + 1)
            return None
        if isinstance(node, (ast.Set, ast.List, ast.Tuple)):
            out = [_const_str(e) for e in node.elts]
            return tuple(e for e in out if e is not None) if all(e is not None for e in out) else None
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.BitOr, ast.Add)):
            left, right = self._extensions(node.left, depth + 1), self._extensions(node.right, depth + 1)
            return None if left is None or right is None else _uniq(left + right)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _WRAPPERS and node.args:
            return self._extensions(node.args[0], depth + 1)
        return None

    def _read_mappings(self) -> None:
        def is_mapping(node: Any) -> bool:
            return isinstance(node, ast.Name) and node.id.endswith("NODE_CLASS_MAPPINGS")

        for stmt in _walk_body(self.tree.body):
            if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                for target in targets:
                    if is_mapping(target) and stmt.value is not None:
                        self._mapping_dict(stmt.value)
                    elif isinstance(target, ast.Subscript) and is_mapping(target.value):
                        key = self._str(target.slice, _Scope())
                        cls = _class_ref(stmt.value)
                        if key and cls:
                            self._map(cls, key)
            elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
                func = stmt.value.func
                if isinstance(func, ast.Attribute) and func.attr == "update" and is_mapping(func.value):
                    for arg in stmt.value.args:
                        self._mapping_dict(arg)
                    for kw in stmt.value.keywords:
                        cls = _class_ref(kw.value)
                        if kw.arg and cls:
                            self._map(cls, kw.arg)

    def _mapping_dict(self, node: Any) -> None:
        if isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values):
                if k is None:
                    continue
                key, cls = self._str(k, _Scope()), _class_ref(v)
                if key and cls:
                    self._map(cls, key)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
            for kw in node.keywords:
                cls = _class_ref(kw.value)
                if kw.arg and cls:
                    self._map(cls, kw.arg)
        elif isinstance(node, ast.DictComp) and isinstance(node.value, ast.Name):
            # {c.__name__: c for c in [A, B]}: the node types are the class names
            key = node.key
            gen = node.generators[0] if node.generators else None
            if (gen is not None and isinstance(key, ast.Attribute) and key.attr == "__name__"
                    and isinstance(gen.iter, (ast.List, ast.Tuple))):
                for elt in gen.iter.elts:
                    cls = _class_ref(elt)
                    if cls:
                        self._map(cls, cls)

    def _map(self, cls: str, node_type: str) -> None:
        types = self.out.mappings.setdefault(cls, [])
        if node_type not in types:
            types.append(node_type)

    # -- classes -----------------------------------------------------------------------
    def _read_class(self, node: ast.ClassDef, relevant: bool = True) -> ClassDef:
        bases = tuple(b for b in (_class_ref(b) for b in node.bases) if b)
        methods = {m.name: m for m in node.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))}
        out = ClassDef(node.name, bases)
        if "define_schema" in methods:
            node_id, items = self._v3(methods["define_schema"], node, relevant)
            out.node_id = node_id
            if items is not None:
                out.inputs = self._folder_inputs(items)
        if out.inputs is None and "INPUT_TYPES" in methods:
            items = self._v1(methods["INPUT_TYPES"], node) if relevant else []
            out.inputs = self._folder_inputs(items if items is not None else [])
        return out

    def _folder_inputs(self, items: List[Tuple[str, Any, bool]]) -> Tuple[FolderInput, ...]:
        """(name, kind, optional) in declaration order -> FolderInputs with widget positions.

        ``kind`` is an _Opts (a folder combo), an int (how many widget values the input
        takes: 0 for a socket) or _UNKNOWN.  The frontend lays required inputs before optional
        ones, each group in order.
        """
        ordered = [i for i in items if not i[2]] + [i for i in items if i[2]]
        out: List[FolderInput] = []
        pos: Optional[int] = 0
        for name, kind, _optional in ordered:
            if isinstance(kind, _Opts):
                if kind.folders:
                    for folder in kind.folders[:1]:
                        out.append(FolderInput(name, folder, pos, kind.extras))
                width = 1
            elif isinstance(kind, int):
                width = kind
            else:
                width = None
            pos = None if pos is None or width is None else pos + width
        return tuple(out)

    # V1 -----------------------------------------------------------------------------
    def _v1(self, func: ast.AST, cls: ast.ClassDef) -> Optional[List[Tuple[str, Any, bool]]]:
        scope = _Scope(func, cls)
        top = self._func_dict(func, scope, 0)
        if top is None:
            return None
        items: List[Tuple[str, Any, bool]] = []
        for section, optional in (("required", False), ("optional", True)):
            sec = top.items.get(section)
            if sec is None:
                continue
            sec_d = sec if isinstance(sec, _D) else self._dict(sec, scope, {}, 0)
            if sec_d is None:
                items.append(("", _UNKNOWN, optional))
                continue
            for name, spec in sec_d.items.items():
                items.append((name, self._v1_kind(name, spec, scope), optional))
            if sec_d.uncertain:
                items.append(("", _UNKNOWN, optional))
        if top.uncertain:
            items.append(("", _UNKNOWN, True))
        return items

    def _func_dict(self, func: Any, scope: _Scope, depth: int) -> Optional[_D]:
        """The dict a function returns, following assignments and updates in its body."""
        if depth > _MAX_DEPTH:
            return None
        env: Dict[str, _D] = {}
        result: Optional[_D] = None
        for stmt in _walk_body(func.body):
            if isinstance(stmt, ast.Assign):
                value = stmt.value
                for target in stmt.targets:
                    if isinstance(target, ast.Name):
                        d = self._dict(value, scope, env, depth + 1)
                        if d is not None:
                            env[target.id] = d
                    elif isinstance(target, ast.Subscript):
                        holder = self._holder(target.value, env, scope, depth)
                        key = self._str(target.slice, scope)
                        if holder is not None:
                            if key is None:
                                holder.uncertain = True
                            else:
                                d = self._dict(value, scope, env, depth + 1) if isinstance(value, (ast.Dict, ast.Name)) \
                                    else None
                                holder.items[key] = d if d is not None else value
            elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
                call = stmt.value
                if isinstance(call.func, ast.Attribute) and call.func.attr in ("update", "setdefault"):
                    holder = self._holder(call.func.value, env, scope, depth)
                    if holder is None:
                        continue
                    if call.func.attr == "update":
                        for arg in call.args:
                            d = self._dict(arg, scope, env, depth + 1)
                            if d is None:
                                holder.uncertain = True
                            else:
                                holder.items.update(d.items)
                                holder.uncertain |= d.uncertain
                        for kw in call.keywords:
                            if kw.arg:
                                holder.items[kw.arg] = kw.value
                    elif len(call.args) == 2:
                        key = self._str(call.args[0], scope)
                        if key is not None and key not in holder.items:
                            holder.items[key] = self._dict(call.args[1], scope, env, depth + 1) or call.args[1]
            elif isinstance(stmt, ast.Return) and stmt.value is not None:
                d = self._dict(stmt.value, scope, env, depth + 1)
                if d is not None:
                    result = d
                    break
        return result

    def _holder(self, node: Any, env: Dict[str, _D], scope: _Scope, depth: int) -> Optional[_D]:
        """The _D a subscript/update target refers to (``inputs`` or ``inputs["required"]``)."""
        if isinstance(node, ast.Name):
            return env.get(node.id)
        if isinstance(node, ast.Subscript):
            parent = self._holder(node.value, env, scope, depth)
            key = self._str(node.slice, scope)
            if parent is None or key is None:
                return None
            value = parent.items.get(key)
            if isinstance(value, _D):
                return value
            if value is not None:
                d = self._dict(value, scope, env, depth + 1)
                if d is not None:
                    parent.items[key] = d
                    return d
            return None
        return None

    def _dict(self, node: Any, scope: _Scope, env: Dict[str, _D], depth: int) -> Optional[_D]:
        if depth > _MAX_DEPTH or node is None:
            return None
        if isinstance(node, ast.Dict):
            out = _D()
            for k, v in zip(node.keys, node.values):
                if k is None:
                    inner = self._dict(v, scope, env, depth + 1)
                    if inner is None:
                        out.uncertain = True
                    else:
                        out.items.update(inner.items)
                        out.uncertain |= inner.uncertain
                    continue
                key = self._str(k, scope)
                if key is None:
                    out.uncertain = True
                    continue
                if isinstance(v, (ast.Dict, ast.DictComp)) or (isinstance(v, ast.Name) and v.id in env):
                    inner = self._dict(v, scope, env, depth + 1)
                    out.items[key] = inner if inner is not None else v
                else:
                    out.items[key] = v
            return out
        if isinstance(node, ast.DictComp):
            return self._dict_comp(node, scope)
        if isinstance(node, ast.Name):
            if node.id in env:
                return env[node.id].copy()
            value = self._lookup(node.id, scope)
            return self._dict(value, _Scope(None, scope.cls), {}, depth + 1) if value is not None else None
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "dict":
                out = _D()
                for arg in node.args:
                    inner = self._dict(arg, scope, env, depth + 1)
                    if inner is None:
                        out.uncertain = True
                    else:
                        out.items.update(inner.items)
                for kw in node.keywords:
                    if kw.arg:
                        out.items[kw.arg] = kw.value
                    else:
                        inner = self._dict(kw.value, scope, env, depth + 1)
                        if inner is None:
                            out.uncertain = True
                        else:
                            out.items.update(inner.items)
                return out
            if isinstance(func, ast.Attribute) and func.attr in ("copy", "deepcopy"):
                target = func.value if func.attr == "copy" else (node.args[0] if node.args else None)
                return self._dict(target, scope, env, depth + 1)
            if isinstance(func, ast.Attribute) and func.attr == "INPUT_TYPES":
                # super().INPUT_TYPES() / Base.INPUT_TYPES(): the base class's dict
                return self._base_input_dict(func.value, scope, depth)
            called = self._callee(func, scope)
            if called is not None:
                fn, fscope = called
                fscope.bindings = self._bind(fn, node, scope)
                return self._func_dict(fn, fscope, depth + 1)
        return None

    def _dict_comp(self, node: ast.DictComp, scope: _Scope) -> Optional[_D]:
        # {f"lora_{i}": (loras,) for i in range(1, 11)}
        if len(node.generators) != 1:
            return None
        gen = node.generators[0]
        if gen.ifs or not isinstance(gen.target, ast.Name):
            return None
        values = _range_values(gen.iter)
        if values is None:
            return None
        out = _D()
        for i in values:
            key = _format_key(node.key, gen.target.id, i)
            if key is None:
                return None
            out.items[key] = node.value
        return out

    def _base_input_dict(self, node: Any, scope: _Scope, depth: int) -> Optional[_D]:
        cls = scope.cls
        base_name = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super" and cls:
            base_name = next((b for b in (_class_ref(b) for b in cls.bases) if b), None)
        else:
            base_name = _class_ref(node)
        base = self.classes.get(base_name or "")
        if base is None or base is cls:
            return None
        for m in base.body:
            if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) and m.name == "INPUT_TYPES":
                return self._func_dict(m, _Scope(m, base), depth + 1)
        return None

    def _v1_kind(self, name: str, spec: Any, scope: _Scope) -> Any:
        if isinstance(spec, _D):
            return _UNKNOWN
        spec = self._resolve_expr(spec, scope, (ast.Tuple, ast.List))
        if not isinstance(spec, (ast.Tuple, ast.List)) or not spec.elts:
            return _UNKNOWN
        first = spec.elts[0]
        opts = self._dict(spec.elts[1], scope, {}, 0) if len(spec.elts) > 1 else _D()
        options = opts.items if opts is not None else {}

        def truthy(key: str) -> bool:
            v = options.get(key)
            return isinstance(v, ast.Constant) and bool(v.value)

        folder_opts = self._options(first, scope, 0)
        if folder_opts is not None and folder_opts.folders:
            return folder_opts
        type_name = self._type_name(first, scope)
        if type_name is None:
            if folder_opts is not None or _is_list_expr(first):
                type_name = "COMBO"
            else:
                return _UNKNOWN
        if type_name not in _WIDGET_TYPES:
            return 0
        if truthy("forceInput"):
            return 0
        width = 1
        if type_name == "INT" and (name in _SEED_NAMES or truthy("control_after_generate")):
            width += 1
        elif type_name == "COMBO" and (truthy("control_after_generate") or any(truthy(k) for k in _UPLOAD_KEYS)):
            width += 1
        return width

    def _type_name(self, node: Any, scope: _Scope) -> Optional[str]:
        """``"INT"`` / ``IO.INT`` / ``"MODEL"`` -> the type string; None if not a type."""
        s = self._str(node, scope)
        if s is not None:
            return s.upper() if s.upper() in _WIDGET_TYPES else s
        if isinstance(node, ast.Attribute) and node.attr.isupper():
            return node.attr
        return None

    # V3 -----------------------------------------------------------------------------
    def _v3(self, func: Any, cls: ast.ClassDef,
            relevant: bool = True) -> Tuple[Optional[str], Optional[List[Tuple[str, Any, bool]]]]:
        scope = _Scope(func, cls)
        schema = None
        for stmt in _walk_body(func.body):
            value = stmt.value if isinstance(stmt, (ast.Return, ast.Assign)) else None
            if isinstance(value, ast.Call) and _call_name(value.func) in ("Schema", "SchemaV3"):
                schema = value
                if isinstance(stmt, ast.Return):
                    break
        if schema is None:
            return None, None
        kwargs = {kw.arg: kw.value for kw in schema.keywords if kw.arg}
        node_id = self._str(kwargs.get("node_id"), scope)
        inputs = kwargs.get("inputs")
        if inputs is None or not relevant:
            return node_id, []
        elts = self._list_elts(inputs, scope, 0)
        if elts is None:
            return node_id, [("", _UNKNOWN, False)]
        items = []
        for elt in elts:
            items.append(self._v3_input(elt, scope))
        return node_id, items

    def _list_elts(self, node: Any, scope: _Scope, depth: int) -> Optional[List[Any]]:
        if depth > _MAX_DEPTH:
            return None
        node = self._resolve_expr(node, scope, (ast.List, ast.Tuple, ast.BinOp))
        if isinstance(node, (ast.List, ast.Tuple)):
            out: List[Any] = []
            for elt in node.elts:
                if isinstance(elt, ast.Starred):
                    inner = self._list_elts(elt.value, scope, depth + 1)
                    out.extend(inner if inner is not None else [None])
                else:
                    out.append(elt)
            return out
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            left, right = self._list_elts(node.left, scope, depth + 1), self._list_elts(node.right, scope, depth + 1)
            return (left or [None]) + (right or [None]) if left is not None or right is not None else None
        return None

    def _v3_input(self, elt: Any, scope: _Scope) -> Tuple[str, Any, bool]:
        if not isinstance(elt, ast.Call) or not isinstance(elt.func, ast.Attribute) or elt.func.attr != "Input":
            return ("", _UNKNOWN, False)
        owner = elt.func.value
        type_name = _call_name(owner) if not isinstance(owner, ast.Call) else "Custom"
        kwargs = {kw.arg: kw.value for kw in elt.keywords if kw.arg}
        name = self._str(elt.args[0], scope) if elt.args else self._str(kwargs.get("id"), scope)
        optional_node = kwargs.get("optional")
        optional = isinstance(optional_node, ast.Constant) and bool(optional_node.value)
        if name is None:
            return ("", _UNKNOWN, optional)

        def truthy(key: str) -> bool:
            v = kwargs.get(key)
            return isinstance(v, ast.Constant) and bool(v.value)

        if type_name in ("Combo", "MultiCombo"):
            options = kwargs.get("options", elt.args[1] if len(elt.args) > 1 else None)
            opts = self._options(options, scope, 0) if options is not None else None
            if opts is not None and opts.folders:
                return (name, opts, optional)
            width = 1 + (1 if truthy("control_after_generate") or kwargs.get("upload") is not None else 0)
            return (name, width, optional)
        if type_name in _V3_WIDGETS:
            if truthy("force_input") or truthy("socketless"):
                return (name, 0, optional)
            width = 1
            if type_name in _V3_NUMBERS and (truthy("control_after_generate")
                                             or (type_name == "Int" and name in _SEED_NAMES)):
                width += 1
            return (name, width, optional)
        if type_name in ("Autogrow", "DynamicCombo", "DynamicSlot", "MatchType", "MultiType"):
            return (name, _UNKNOWN, optional)
        return (name, 0, optional)

    # -- expressions -------------------------------------------------------------------
    def _options(self, node: Any, scope: _Scope, depth: int) -> Optional[_Opts]:
        """The folder keys (and constant extras) a combo's options expression lists, or None."""
        if depth > _MAX_DEPTH or node is None:
            return None
        if isinstance(node, ast.Call):
            func = node.func
            if self._is_gfl(func) and node.args:
                key = self._str(node.args[0], scope)
                return _Opts((canonical_folder(key),)) if key else None
            if isinstance(func, ast.Name) and func.id in _WRAPPERS and node.args:
                return self._options(node.args[0], scope, depth + 1)
            if isinstance(func, ast.Name) and func.id == "filter" and len(node.args) == 2:
                return self._options(node.args[1], scope, depth + 1)
            if isinstance(func, ast.Attribute) and func.attr == "copy":
                return self._options(func.value, scope, depth + 1)
            called = self._callee(func, scope)
            if called is not None:
                fn, fscope = called
                fscope.bindings = self._bind(fn, node, scope)
                return self._returns(fn, fscope, depth + 1)
            return None
        if isinstance(node, ast.Subscript):
            value = node.value
            if isinstance(value, ast.Call) and self._is_gfl(value.func):  # get_filename_list_(k)[0]
                return self._options(value, scope, depth + 1)
            if isinstance(node.slice, ast.Slice):
                return self._options(value, scope, depth + 1)
            return None
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.BitOr)):
            left, right = self._options(node.left, scope, depth + 1), self._options(node.right, scope, depth + 1)
            if left is None and right is None:
                return None
            return (left or _Opts()) + (right or _Opts())
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            out = _Opts()
            found = False
            for elt in node.elts:
                if isinstance(elt, ast.Starred):
                    inner = self._options(elt.value, scope, depth + 1)
                else:
                    s = _const_str(elt)
                    inner = _Opts((), (s,)) if s is not None else self._options(elt, scope, depth + 1)
                if inner is not None:
                    found = found or bool(inner.folders)
                    out = out + inner
            return out if found or out.extras else _Opts()
        if isinstance(node, (ast.ListComp, ast.GeneratorExp, ast.SetComp)):
            return self._options(node.generators[0].iter, scope, depth + 1) if node.generators else None
        if isinstance(node, ast.IfExp):
            a, b = self._options(node.body, scope, depth + 1), self._options(node.orelse, scope, depth + 1)
            if a is None and b is None:
                return None
            return (a or _Opts()) + (b or _Opts())
        if isinstance(node, ast.Name):
            return self._name_options(node.id, scope, depth)
        if isinstance(node, ast.Attribute) and _is_self(node.value, scope):
            value = self._class_attr(node.attr, scope.cls)
            return self._options(value, _Scope(None, scope.cls), depth + 1) if value is not None else None
        return None

    def _name_options(self, name: str, scope: _Scope, depth: int) -> Optional[_Opts]:
        values: List[Any] = []
        extras: List[str] = []
        if scope.func is not None:
            for stmt in _walk_body(scope.func.body):
                if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in stmt.targets):
                    values.append(stmt.value)
                elif isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name) and stmt.target.id == name:
                    values.append(stmt.value)
                elif (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)
                      and isinstance(stmt.value.func, ast.Attribute) and isinstance(stmt.value.func.value, ast.Name)
                      and stmt.value.func.value.id == name and stmt.value.func.attr in ("append", "insert", "extend")):
                    for arg in stmt.value.args:
                        s = _const_str(arg)
                        if s is not None:
                            extras.append(s)
            params = scope.func.args.args if isinstance(scope.func, (ast.FunctionDef, ast.AsyncFunctionDef)) else []
            if not values and any(arg.arg == name for arg in params):
                return None  # a parameter: its value is not known here
        inner_scope = scope
        if not values:
            value = self._lookup(name, _Scope(None, scope.cls))
            if value is None:
                return None
            values = [value]
            inner_scope = _Scope(None, scope.cls)
        out: Optional[_Opts] = None
        for value in values:
            opts = self._options(value, inner_scope, depth + 1)
            if opts is not None:
                out = opts if out is None else out + opts
        if out is not None and extras:
            out = out + _Opts((), tuple(extras))
        return out

    def _returns(self, func: Any, scope: _Scope, depth: int) -> Optional[_Opts]:
        out: Optional[_Opts] = None
        for stmt in _walk_body(func.body):
            if isinstance(stmt, ast.Return) and stmt.value is not None:
                opts = self._options(stmt.value, scope, depth + 1)
                if opts is not None:
                    out = opts if out is None else out + opts
        return out

    def _is_gfl(self, func: Any) -> bool:
        if isinstance(func, ast.Attribute):
            return func.attr in ("get_filename_list", "get_filename_list_") and self._is_fp(func.value)
        return isinstance(func, ast.Name) and func.id in self.gfl_names

    def _callee(self, func: Any, scope: _Scope) -> Optional[Tuple[Any, _Scope]]:
        """A function defined in this file that ``func`` calls (module function or method)."""
        if isinstance(func, ast.Name) and func.id in self.functions:
            fn = self.functions[func.id]
            return fn, _Scope(fn, None)
        if isinstance(func, ast.Attribute) and scope.cls is not None and _is_self(func.value, scope):
            cls: Optional[ast.ClassDef] = scope.cls
            seen: Set[str] = set()
            while cls is not None and cls.name not in seen:
                seen.add(cls.name)
                for m in cls.body:
                    if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) and m.name == func.attr:
                        return m, _Scope(m, cls)
                base = next((b for b in (_class_ref(b) for b in cls.bases) if b), None)
                cls = self.classes.get(base or "")
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in self.classes:
            cls = self.classes[func.value.id]
            for m in cls.body:
                if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)) and m.name == func.attr:
                    return m, _Scope(m, cls)
        return None

    def _lookup(self, name: str, scope: _Scope) -> Optional[Any]:
        """The last value assigned to ``name`` in the class body, else at module level."""
        if scope.cls is not None:
            value = self._class_attr(name, scope.cls)
            if value is not None:
                return value
        values = self.assigns.get(name)
        return values[-1] if values else None

    def _class_attr(self, name: str, cls: Optional[ast.ClassDef]) -> Optional[Any]:
        seen: Set[str] = set()
        while cls is not None and cls.name not in seen:
            seen.add(cls.name)
            for stmt in cls.body:
                if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in stmt.targets):
                    return stmt.value
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.target.id == name:
                    return stmt.value
            base = next((b for b in (_class_ref(b) for b in cls.bases) if b), None)
            cls = self.classes.get(base or "")
        return None

    def _resolve_expr(self, node: Any, scope: _Scope, kinds: Tuple[type, ...]) -> Any:
        """Follow a Name to the value assigned to it (function, class or module) when that has ``kinds``."""
        for _ in range(_MAX_DEPTH):
            if not isinstance(node, ast.Name):
                return node
            value = None
            if scope.func is not None:
                for stmt in _walk_body(scope.func.body):
                    if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == node.id
                                                            for t in stmt.targets):
                        value = stmt.value
            if value is None:
                value = self._lookup(node.id, scope)
            if value is None:
                return node
            node = value
        return node

    def _bind(self, fn: Any, call: ast.Call, scope: _Scope) -> Dict[str, str]:
        """Parameters of ``fn`` with a constant string value: defaults, then the call's arguments."""
        args = getattr(fn, "args", None)
        if args is None:
            return {}
        params = args.posonlyargs + args.args
        out: Dict[str, str] = {}
        for param, default in zip(params[len(params) - len(args.defaults):], args.defaults):
            value = _const_str(default)
            if value is not None:
                out[param.arg] = value
        decorators = {_call_name(d) for d in getattr(fn, "decorator_list", [])}
        # a classmethod (or a method called on an instance) gets its first parameter implicitly
        positional = params[1:] if "classmethod" in decorators or (
            "staticmethod" not in decorators and params and params[0].arg in ("self", "cls")) else params
        for param, arg in zip(positional, call.args):
            value = self._str(arg, scope)
            if value is not None:
                out[param.arg] = value
        for kw in call.keywords:
            value = self._str(kw.value, scope) if kw.arg else None
            if value is not None:
                out[kw.arg] = value
        return out

    def _str(self, node: Any, scope: _Scope, depth: int = 0) -> Optional[str]:
        """A string constant, or a name/attribute bound to one."""
        if node is None or depth > _MAX_DEPTH:
            return None
        s = _const_str(node)
        if s is not None:
            return s
        if isinstance(node, ast.Name) and node.id in scope.bindings:
            return scope.bindings[node.id]
        if isinstance(node, ast.Name):
            value = self._resolve_expr(node, scope, (ast.Constant,))
            return _const_str(value)
        if isinstance(node, ast.Attribute) and scope.cls is not None and _is_self(node.value, scope):
            return _const_str(self._class_attr(node.attr, scope.cls))
        return None


def _is_self(node: Any, scope: _Scope) -> bool:
    if not isinstance(node, ast.Name):
        return False
    if node.id in ("s", "cls", "self", "klass"):
        return True
    return scope.cls is not None and node.id == scope.cls.name


def _class_ref(node: Any) -> Optional[str]:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _call_name(node: Any) -> Optional[str]:
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return None


def _is_list_expr(node: Any) -> bool:
    return isinstance(node, (ast.List, ast.Tuple, ast.ListComp, ast.BinOp)) or (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _WRAPPERS)


def _range_values(node: Any) -> Optional[List[int]]:
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range"):
        return None
    args = []
    for a in node.args:
        if not (isinstance(a, ast.Constant) and isinstance(a.value, int)):
            return None
        args.append(a.value)
    if not 1 <= len(args) <= 3:
        return None
    values = list(range(*args)[:_MAX_EXPAND + 1])
    return values if len(values) <= _MAX_EXPAND else None


def _format_key(node: Any, var: str, i: int) -> Optional[str]:
    if isinstance(node, ast.JoinedStr):
        parts = []
        for v in node.values:
            if isinstance(v, ast.Constant):
                parts.append(str(v.value))
            elif isinstance(v, ast.FormattedValue) and isinstance(v.value, ast.Name) and v.value.id == var \
                    and v.format_spec is None:
                parts.append(str(i))
            else:
                return None
        return "".join(parts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left = _const_str(node.left)
        right = node.right
        if left is not None and isinstance(right, ast.Call) and isinstance(right.func, ast.Name) \
                and right.func.id == "str" and right.args and isinstance(right.args[0], ast.Name) \
                and right.args[0].id == var:
            return f"{left}{i}"
    return None


# -- joining the files of a package ------------------------------------------------------------

def collect(files: Iterable[FileDefs]) -> NodeDefs:
    """Join the FileDefs of one package: classes resolved through bases and mappings."""
    classes: Dict[str, ClassDef] = {}
    mappings: Dict[str, List[str]] = {}
    out = NodeDefs()
    for fd in files:
        for name, cls in fd.classes.items():
            # a name defined twice: keep the one that says something about its inputs
            if name not in classes or (classes[name].inputs is None and cls.inputs is not None):
                classes[name] = cls
        for name, types in fd.mappings.items():
            mappings.setdefault(name, []).extend(t for t in types if t not in mappings.get(name, []))
        for key, exts in fd.folders.items():
            if out.folders.get(key) is None:
                out.folders[key] = exts
        _add_paths(out.paths, fd.paths)

    def inputs_of(cls: ClassDef) -> Tuple[FolderInput, ...]:
        seen: Set[str] = set()
        current: Optional[ClassDef] = cls
        while current is not None and current.name not in seen:
            if current.inputs is not None:
                return current.inputs
            seen.add(current.name)
            current = next((classes[b] for b in current.bases if b in classes), None)
        return ()

    mapped: Set[str] = set()
    for class_name, types in mappings.items():
        cls = classes.get(class_name)
        inputs = inputs_of(cls) if cls is not None else ()
        for node_type in types:
            out.node_types.add(node_type)
            if inputs:
                out.nodes[node_type] = NodeDef(node_type, class_name, inputs)
        mapped.add(class_name)
    for cls in classes.values():
        if cls.node_id:
            out.node_types.add(cls.node_id)
            inputs = inputs_of(cls)
            if inputs:
                out.nodes[cls.node_id] = NodeDef(cls.node_id, cls.name, inputs)
            mapped.add(cls.name)
    # loaders no mapping names (registered in a loop, or by a helper): ComfyUI packs mostly use
    # the class name as node type
    for cls in classes.values():
        if cls.name not in mapped and cls.name not in out.nodes and cls.inputs:
            out.nodes[cls.name] = NodeDef(cls.name, cls.name, cls.inputs)
    return out
