"""The public API of ../shared/api-reference.md is exported, works, and importing does no work."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import comfyfixersmart

REPO = Path(__file__).resolve().parents[1]

REFERENCE_NAMES = [
    "ComfyFixerCore", "WorkflowScanner", "ModelInventory", "ModelSearch", "DownloadManager", "StateManager",
    "WorkflowData", "ModelReference", "SearchResult", "DownloadResult", "config", "save_json_file",
    "ensure_directory", "get_logger", "ComfyFixerError", "ConfigurationError", "WorkflowParseError",
    "APISearchError", "DownloadError", "ValidationError",
]


def test_version():
    assert comfyfixersmart.__version__ == "2.0.0"


def test_every_exported_name_resolves():
    for name in comfyfixersmart.__all__:
        assert getattr(comfyfixersmart, name) is not None, name
    for name in REFERENCE_NAMES:
        assert name in comfyfixersmart.__all__, name


def test_exceptions_form_one_tree():
    errors = [getattr(comfyfixersmart, n) for n in comfyfixersmart.__all__
              if n.endswith("Error") and inspect.isclass(getattr(comfyfixersmart, n))]
    assert len(errors) > 10
    for cls in errors:
        assert issubclass(cls, comfyfixersmart.ComfyFixerError), cls
    assert issubclass(comfyfixersmart.WorkflowParseError, ValueError)
    assert issubclass(comfyfixersmart.DownloadError, OSError)


def test_reference_signatures():
    sig = inspect.signature
    assert list(sig(comfyfixersmart.ComfyFixerCore.run).parameters)[:4] == [
        "self", "workflow_paths", "output_dir", "search_backends"]
    assert list(sig(comfyfixersmart.WorkflowScanner.scan_directory).parameters)[:3] == ["self", "directory", "recursive"]
    assert sig(comfyfixersmart.WorkflowScanner.scan_directory).parameters["recursive"].default is True
    assert list(sig(comfyfixersmart.ModelSearch.search).parameters)[:4] == ["self", "query", "model_type", "backends"]
    assert list(sig(comfyfixersmart.DownloadManager.download_model).parameters)[:4] == [
        "self", "url", "save_path", "progress_callback"]
    assert sig(comfyfixersmart.DownloadManager.download_models).parameters["concurrency"].default == 3
    assert list(sig(comfyfixersmart.StateManager.record_download).parameters)[:4] == [
        "self", "filename", "source", "source_id"]


def test_import_does_no_work_and_needs_no_comfyui():
    # a fresh interpreter: importing the package loads none of the heavy parts and no ComfyUI
    code = (
        "import sys, comfyfixersmart\n"
        "heavy = [m for m in ('requests', 'aiohttp', 'huggingface_hub', 'sqlite3', 'rich', 'server', 'folder_paths')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_root_init_imports_cleanly_outside_comfyui():
    # ComfyUI loads the repo folder as a package under an arbitrary name; outside ComfyUI it does nothing
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('some_custom_node_x', {str(REPO / '__init__.py')!r},"
        f" submodule_search_locations=[{str(REPO)!r}])\n"
        "mod = importlib.util.module_from_spec(spec); sys.modules[spec.name] = mod; spec.loader.exec_module(mod)\n"
        "print(mod.WEB_DIRECTORY, mod.NODE_CLASS_MAPPINGS, 'server' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.split() == ["./web", "{}", "False"]


def test_reference_config_attributes_are_settable(make_config):
    from comfyfixersmart import ConfigurationError

    cfg = make_config()
    cfg.civitai_api_base = "http://127.0.0.1:9/api/v1"
    assert cfg.civitai_base_url == "http://127.0.0.1:9"
    assert cfg.civitai_download_base == "http://127.0.0.1:9/api/download/models"
    cfg.civitai_download_base = "https://civitai.red/api/download/models"
    assert cfg.civitai_api_base == "https://civitai.red/api/v1"
    try:
        cfg.civitai_api_base = "ftp://civitai.com/api/v1"
    except ConfigurationError as exc:
        assert exc.setting == "civitai_api_base"
    else:
        raise AssertionError("an ftp base was accepted")


def test_module_level_config_is_the_default_used_by_components(tmp_path):
    import comfyfixersmart
    from comfyfixersmart import ComfyFixerCore

    comfyfixersmart.config.comfyui_root = tmp_path
    assert ComfyFixerCore().config is comfyfixersmart.config


def test_assigned_settings_are_validated_like_loaded_ones(make_config):
    from comfyfixersmart import ConfigurationError

    cfg = make_config()
    cfg.download_concurrency = "5"  # as the reference shows: plain attribute assignment
    assert cfg.download_concurrency == 5
    for name, bad in (("download_concurrency", 0), ("min_confidence", 1.5), ("hf_endpoint", "file:///etc"),
                      ("verify_downloads", "maybe"), ("comfyui_root", 42)):
        before = getattr(cfg, name)
        try:
            setattr(cfg, name, bad)
        except ConfigurationError as exc:
            assert exc.setting == name
        else:
            raise AssertionError(f"{name}={bad!r} was accepted")
        assert getattr(cfg, name) == before  # the old value stays


def test_config_file_settings_may_sit_in_a_comfyfixer_table(tmp_path):
    from comfyfixersmart.settings import Config

    path = tmp_path / "c.toml"
    path.write_text('[comfyfixer]\ndownload_segments = 2\n', encoding="utf-8")
    assert Config.load(config_file=path, env={}).download_segments == 2


def test_atomic_writes_keep_modes(tmp_path):
    import os
    import stat

    from comfyfixersmart import save_json_file
    from comfyfixersmart.fileutils import atomic_write_bytes

    fresh = save_json_file({"a": 1}, tmp_path / "fresh.json")
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o666 & ~umask  # an export others may read
    shared = tmp_path / "shared.json"
    shared.write_text("{}")
    shared.chmod(0o664)
    save_json_file({"b": 2}, shared)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o664  # replacing keeps the file's mode
    secret = atomic_write_bytes(tmp_path / "tokens.json", b"{}", mode=0o600)
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
