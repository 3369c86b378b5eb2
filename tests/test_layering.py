"""Architecture rules that keep the repo loadable by ComfyUI and the library free of it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "comfyfixersmart"
COMFYUI_MODULES = {"server", "folder_paths", "comfy", "comfy_extras", "comfy_execution", "nodes", "execution",
                   "app", "latent_preview", "node_helpers"}


def _imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, 0
        elif isinstance(node, ast.ImportFrom):
            yield node.lineno, node.module or "", node.level


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_only_the_comfyui_subpackage_imports_comfyui():
    offenders = []
    for path in _modules():
        if path.relative_to(PACKAGE).parts[0] == "comfyui":
            continue
        for lineno, name, level in _imports(path):
            if level == 0 and name.split(".")[0] in COMFYUI_MODULES:
                offenders.append(f"{path.relative_to(PACKAGE)}:{lineno} imports {name}")
    assert not offenders, offenders


def test_library_imports_itself_relatively():
    # ComfyUI loads the repo under an arbitrary package name: `import comfyfixersmart.x` would break there
    offenders = [f"{path.relative_to(PACKAGE)}:{lineno} imports {name}"
                 for path in _modules() for lineno, name, level in _imports(path)
                 if level == 0 and name.split(".")[0] == "comfyfixersmart"]
    assert not offenders, offenders


def test_no_module_does_work_at_import_time():
    # module bodies hold definitions only: no calls except a few known-pure builders
    allowed_calls = {"getLogger", "get_logger", "compile", "TypeVar", "frozenset", "set", "dict", "tuple", "list",
                     "field", "namedtuple", "RouteTableDef", "Lock", "RLock", "NewType", "object", "range",
                     "sorted", "len", "str", "int", "float", "Path", "update"}  # update: filling constant tables
    offenders = []
    for path in _modules():
        if path.name == "__main__.py":
            continue  # `python -m comfyfixersmart` is meant to run
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for stmt in tree.body:
            if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
                func = stmt.value.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "?")
                if name not in allowed_calls:
                    offenders.append(f"{path.relative_to(PACKAGE)}:{stmt.lineno} calls {name}() at import")
    assert not offenders, offenders
