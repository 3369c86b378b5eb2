"""Red team: where files may be written, and pickles named by a workflow (issue 10.2, 10.3).

Every class is tried with several variations: a workflow ``directory`` shaped like a path,
ComfyUI's output/input/temp/custom_nodes under any key or behind a symlink, an
``--output-dir`` pointing at them, and pickle formats with and without a confirmation.
"""

from __future__ import annotations

import os
import types
from pathlib import Path

import pytest

from fakehub.fixtures import fake_hub  # noqa: F401

from comfyfixersmart.comfyui.paths import ComfyFolders
from comfyfixersmart.core import ComfyFixerCore
from comfyfixersmart.datamodel import AnalysisResult, ModelReference, Resolution, SearchResult
from comfyfixersmart.errors import ConfigurationError, UnsafePathError, ValidationError
from comfyfixersmart.inventory import ModelInventory
from comfyfixersmart.pickles import PICKLE_CONFIRMATION
from comfyfixersmart.report import resolution_to_json
from comfyfixersmart.service.routes import FixerRoutes
from comfyfixersmart.write_policy import folder_key, model_folder_table, protected_roots
from routes_support import mount_routes

HOSTILE_DIRECTORIES = ["../../x", "/etc", "C:\\x", "models/loras", "loras/../../x", "loras/", "..", "~",
                       "\\\\server\\share", "output", "input", "temp", "custom_nodes", "nope", ""]
URL = "https://huggingface.co/org/repo/resolve/main/model.safetensors"


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "ComfyUI"
    for key in ("checkpoints", "loras", "diffusion_models"):
        (root / "models" / key).mkdir(parents=True)
    for name in ("output", "input", "temp", "custom_nodes"):
        (root / name).mkdir()
    return root


def _ref(name, directory):
    return ModelReference(filename=name, node_type="X", expected_type="x", expected_directory=directory)


def _cand(name, confidence=0.95, url=None, **meta):
    return SearchResult(backend="huggingface", model_id="org/repo", name=name, filename=name, model_type="x",
                        download_url=url or f"https://huggingface.co/org/repo/resolve/main/{name}",
                        confidence=confidence, metadata={"reason": "exact name", **meta})


def _analysis(*pairs):
    return AnalysisResult(resolutions=[Resolution(reference=ref, candidates=list(cands)) for ref, cands in pairs])


def _core(make_config, root, **kw):
    config = make_config(comfyui_root=root, **kw)
    return ComfyFixerCore(config, inventory=ModelInventory(config).build(root))


# -- folder keys only -----------------------------------------------------------------------------

@pytest.mark.parametrize("directory", HOSTILE_DIRECTORIES)
def test_folder_key_refuses_everything_but_a_key(directory):
    with pytest.raises(ValidationError):
        folder_key(directory, ["checkpoints", "loras", "output", "custom_nodes"])


def test_folder_key_accepts_keys_and_legacy_names():
    assert folder_key("loras", ["loras"]) == "loras"
    assert folder_key(" loras ", ["loras"]) == "loras"
    assert folder_key("unet", ["diffusion_models"]) == "diffusion_models"
    with pytest.raises(UnsafePathError):
        folder_key("loras/../../x", ["loras"])


@pytest.mark.parametrize("directory", [d for d in HOSTILE_DIRECTORIES if d != "nope"])  # see below for "nope"
@pytest.mark.parametrize("use_output_dir", [False, True])
def test_plan_refuses_hostile_directories(make_config, root, tmp_path, directory, use_output_dir):
    core = _core(make_config, root)
    out = tmp_path / "models-out" if use_output_dir else None
    analysis = _analysis((_ref("model.safetensors", directory), [_cand("model.safetensors")]),
                         (_ref("ok.safetensors", "loras"), [_cand("ok.safetensors")]))
    specs, failures = core.plan(analysis, output_dir=out)
    assert [s["filename"] for s in specs] == ["ok.safetensors"]
    assert len(failures) == 1 and failures[0].error_type in ("ValidationError", "UnsafePathError")
    base = out if out is not None else root / "models"
    assert specs[0]["save_path"] == str((base / "loras" / "ok.safetensors").resolve()) or \
        Path(specs[0]["save_path"]).resolve() == (base / "loras" / "ok.safetensors").resolve()
    assert not any(p for p in tmp_path.rglob("*") if p.name == "x")


def test_plan_with_output_dir_stays_inside_the_real_root(make_config, root, tmp_path):
    core = _core(make_config, root)
    out = tmp_path / "out"
    out.mkdir()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (out / "loras").symlink_to(outside)  # a sub-folder swapped for a symlink before planning
    specs, failures = core.plan(_analysis((_ref("a.safetensors", "loras"), [_cand("a.safetensors")]),
                                          (_ref("b.safetensors", "checkpoints"), [_cand("b.safetensors")])),
                                output_dir=out)
    assert [s["directory"] for s in specs] == ["checkpoints"]
    assert failures[0].error_type == "UnsafePathError"


@pytest.mark.parametrize("name", ["output", "input", "temp", "custom_nodes", "output/sub"])
def test_output_dir_may_not_be_a_comfyui_folder(make_config, root, name):
    core = _core(make_config, root)
    (root / name).mkdir(parents=True, exist_ok=True)
    with pytest.raises(ConfigurationError):
        core.check_output_dir(root / name)
    with pytest.raises(ConfigurationError):
        core.check_output_dir(root)  # holds them


def test_models_folder_symlinked_into_output_is_refused(make_config, root):
    (root / "models" / "vae").symlink_to(root / "output", target_is_directory=True)
    core = _core(make_config, root)
    specs, failures = core.plan(_analysis((_ref("v.safetensors", "vae"), [_cand("v.safetensors")])))
    assert specs == [] and failures[0].error_type in ("UnsafePathError", "ValidationError")


def test_download_models_drops_hostile_directories(make_config, root, tmp_path):
    seen = []

    class Recorder:
        def download_models(self, specs, root, **kw):
            seen.extend(specs)
            return []

    config = make_config(comfyui_root=root)
    core = ComfyFixerCore(config, inventory=ModelInventory(config).build(root), downloader=Recorder())
    core._with_target({"url": URL, "filename": "m.safetensors", "directory": "../../x"}, tmp_path / "o")
    spec = core._with_target({"url": URL, "filename": "m.safetensors", "directory": "../../x"}, None)
    assert "save_path" not in spec
    spec = core._with_target({"url": URL, "filename": "m.safetensors", "directory": "output"}, None)
    assert "save_path" not in spec


# -- the folder table -------------------------------------------------------------------------------

def test_model_folder_table_drops_protected_keys_and_paths(root, tmp_path):
    (root / "models" / "sneaky").symlink_to(root / "output", target_is_directory=True)
    table = {
        "checkpoints": [str(root / "models" / "checkpoints"), str(root / "output" / "ckpts")],
        "output": [str(tmp_path / "whatever")],
        "input": [str(root / "input")],
        "temp": [str(root / "temp")],
        "custom_nodes": [str(root / "custom_nodes")],
        "my_outputs": [str(root / "output")],
        "sneaky": [str(root / "models" / "sneaky")],
        "whole_root": [str(root)],
        "loras": [str(root / "models" / "loras")],
    }
    out = model_folder_table(table, protected_roots(root))
    assert out == {"checkpoints": [str(root / "models" / "checkpoints")], "loras": [str(root / "models" / "loras")]}


def _folder_paths(root: Path, output: Path):
    fp = types.ModuleType("folder_paths")
    fp.folder_names_and_paths = {
        "checkpoints": ([str(root / "models" / "checkpoints")], {".safetensors"}),
        "custom_nodes": ([str(root / "custom_nodes")], set()),
        "output_images": ([str(output)], {".safetensors"}),  # a custom node's key
        "output": ([str(root / "models" / "checkpoints")], set()),
    }
    fp.get_folder_paths = lambda key: fp.folder_names_and_paths[key][0]
    fp.get_output_directory = lambda: str(output)
    fp.get_input_directory = lambda: str(root / "input")
    fp.get_temp_directory = lambda: str(root / "temp")
    return fp


def test_comfyui_folders_refuse_its_output_input_temp(root, tmp_path):
    output = tmp_path / "custom-output"  # --output-directory elsewhere
    output.mkdir()
    folders = ComfyFolders(_folder_paths(root, output))
    assert set(folders()) == {"checkpoints"}
    assert os.path.realpath(output) in folders.protected_roots()


class NoNetwork:
    """Downloader stand-in: these tests check what is accepted, nothing is fetched."""

    calls: list = []

    def download_model(self, url, save_path, **kwargs):
        from comfyfixersmart.datamodel import DownloadResult

        NoNetwork.calls.append(save_path)
        return DownloadResult(filename=Path(save_path).name, success=False, save_path=str(save_path),
                              error_message="no network in tests", error_type="DownloadError")


@pytest.fixture
async def api(aiohttp_client, make_config, root, tmp_path):
    output = tmp_path / "custom-output"
    output.mkdir()
    folders = ComfyFolders(_folder_paths(root, output))
    fixer = FixerRoutes(folders=folders, config=make_config(comfyui_root=root), protected=folders.protected_roots,
                        downloader_factory=lambda config: NoNetwork())
    client = await mount_routes(aiohttp_client, fixer)
    yield client
    fixer.close()


async def test_routes_list_and_accept_only_model_folders(api):
    folders = (await (await api.get("/comfyfixer/folders")).json())["folders"]
    assert set(folders) == {"checkpoints"}
    for directory in ("output", "output_images", "custom_nodes", "input", "temp", "../output", "models/checkpoints",
                      "checkpoints/../../output"):
        item = {"filename": "m.safetensors", "directory": directory, "url": URL}
        resp = await api.post("/comfyfixer/download", json={"items": [item]})
        assert resp.status == 400, (directory, await resp.text())


# -- pickles ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["m.ckpt", "m.pt", "m.pth", "m.bin", "M.PTH"])
def test_pickle_is_never_planned_without_a_yes(make_config, root, name):
    core = _core(make_config, root)
    analysis = _analysis((_ref(name, "checkpoints"), [_cand(name, 1.0)]))
    specs, failures = core.plan(analysis)
    assert specs == [] and failures[0].error_type == PICKLE_CONFIRMATION and "pickle" in failures[0].reason
    specs, failures = core.plan(analysis, allow_pickle=[name])
    assert len(specs) == 1 and specs[0]["pickle"] is True and specs[0]["warnings"] and not failures
    specs, _ = core.plan(analysis, allow_pickle=["other.ckpt"])
    assert specs == []
    asked = []
    specs, _ = core.plan(analysis, allow_pickle=lambda spec: asked.append(spec["filename"]) or False)
    assert specs == [] and asked == [name]
    specs, _ = _core(make_config, root, allow_pickle=True).plan(analysis)
    assert len(specs) == 1


def test_pickle_behind_an_innocent_name_is_caught(make_config, root):
    """A URL ending in .pth saved under a .safetensors name, or a backend's pickle flag."""
    core = _core(make_config, root)
    cand = _cand("m.safetensors", 1.0, url="https://huggingface.co/o/r/resolve/main/evil.pth")
    flagged = _cand("n.safetensors", 1.0, pickle=True)
    specs, failures = core.plan(_analysis((_ref("m.safetensors", "checkpoints"), [cand]),
                                          (_ref("n.safetensors", "checkpoints"), [flagged])))
    assert specs == [] and {f.error_type for f in failures} == {PICKLE_CONFIRMATION}


def test_safetensors_version_is_offered_first(make_config, root):
    from comfyfixersmart.pickles import offer_safetensors

    res = Resolution(reference=_ref("sub/model.ckpt", "checkpoints"),
                     candidates=[_cand("model.ckpt", 0.95), _cand("other.safetensors", 0.9),
                                 _cand("model.safetensors", 0.7)])
    alt = offer_safetensors(res)
    assert alt is res.best and alt.filename == "model.safetensors" and alt.confidence == 0.95
    assert "safetensors version" in alt.reason and alt.save_as == "sub/model.safetensors"
    core = _core(make_config, root)
    specs, failures = core.plan(AnalysisResult(resolutions=[res]))
    assert not failures and specs[0]["filename"] == "sub/model.safetensors" and "pickle" not in specs[0]
    assert specs[0]["warnings"]
    # no alternative of the same stem: nothing changes
    res2 = Resolution(reference=_ref("model.pth", "checkpoints"),
                      candidates=[_cand("model.pth"), _cand("model-other.safetensors")])
    assert offer_safetensors(res2) is None and res2.best.filename == "model.pth"


def test_resolution_json_marks_pickles_and_never_chooses_them():
    res = Resolution(reference=_ref("m.pt", "checkpoints"), candidates=[_cand("m.pt", 1.0)])
    row = resolution_to_json(res, 0.9)
    assert row["chosen"] is None and row["pickle"] is True and row["needs_confirmation"] == "pickle"
    assert row["warnings"] and row["candidates"][0]["pickle"] and row["candidates"][0]["warnings"]
    assert resolution_to_json(res, 0.9, allow_pickle=True)["chosen"] == 0
    safe = Resolution(reference=_ref("m.safetensors", "checkpoints"), candidates=[_cand("m.safetensors", 1.0)])
    row = resolution_to_json(safe, 0.9)
    assert row["chosen"] == 0 and row["pickle"] is False and row["warnings"] == []


async def test_download_route_needs_allow_pickle_per_item(api):
    for name in ("m.ckpt", "m.pt", "m.pth", "m.bin"):
        item = {"filename": name, "directory": "checkpoints", "url": f"https://huggingface.co/o/r/resolve/main/{name}"}
        resp = await api.post("/comfyfixer/download", json={"items": [item]})
        assert resp.status == 400 and "allow_pickle" in (await resp.json())["error"]["message"]
        resp = await api.post("/comfyfixer/download", json={"items": [{**item, "allow_pickle": "yes"}]})
        assert resp.status == 400
    item = {"filename": "m.safetensors", "directory": "checkpoints",
            "url": "https://huggingface.co/o/r/resolve/main/m.pth"}
    resp = await api.post("/comfyfixer/download", json={"items": [item]})
    assert resp.status == 400
    resp = await api.post("/comfyfixer/download", json={"items": [{**item, "allow_pickle": True}]})
    assert resp.status == 202, await resp.text()
    job = (await resp.json())["job"]
    await api.delete(f"/comfyfixer/jobs/{job['id']}")


def test_cli_pickle_flags():
    from comfyfixersmart.cli import _pickle_consent, build_parser

    args = build_parser().parse_args(["fix", "wf.json", "--allow-pickle", "a.ckpt", "--allow-pickle", "b.pt"])
    assert _pickle_consent(args, None, False) == {"a.ckpt", "b.pt"}
    args = build_parser().parse_args(["fix", "wf.json", "--allow-pickle-all"])
    assert _pickle_consent(args, None, False) is True
    args = build_parser().parse_args(["fix", "wf.json"])
    assert _pickle_consent(args, None, False) == set()


async def test_a_folder_key_comfyui_does_not_list_is_accepted_into_models_key(api, root):
    """Issue 9.4: any well-formed key is a model folder (``models/<key>``), but never a key ComfyUI
    lists and we refused (``output_images`` above), nor a malformed one."""
    item = {"filename": "sub/net.safetensors", "directory": "background_removal", "url": URL}
    resp = await api.post("/comfyfixer/download", json={"items": [item]})
    assert resp.status == 202, await resp.text()
    job = (await resp.json())["job"]
    assert job["items"][0]["save_path"] == str(root / "models" / "background_removal" / "sub" / "net.safetensors")
    for directory in ("output_images", "unknown", "back ground", "bg/removal", "con", ".hidden"):
        resp = await api.post("/comfyfixer/download", json={"items": [{**item, "directory": directory}]})
        assert resp.status == 400, (directory, await resp.text())


# -- the whole pipeline: a pickle found on the hub --------------------------------------------------

def test_cli_fix_refuses_a_pickle_until_allowed(fake_hub, tmp_path, monkeypatch, capsys):  # noqa: F811
    import json as _json

    from fakehub.fixtures import config_for_hub

    from comfyfixersmart import cli

    data = b"PK\x03\x04 pretend torch zip " + bytes(range(256)) * 40
    fake_hub.add_hf_repo("acme/toad", {"toad.ckpt": data})
    root = tmp_path / "ComfyUI"
    (root / "models" / "checkpoints").mkdir(parents=True)
    config = config_for_hub(fake_hub, tmp_path)
    for name in ("civitai_base_url", "hf_endpoint", "state_dir", "cache_dir", "log_dir"):
        monkeypatch.setenv(f"COMFYFIXER_{name.upper()}", str(getattr(config, name)))
    monkeypatch.setenv("COMFYFIXER_ALLOWED_HOSTS", "127.0.0.1:*,localhost:*")
    monkeypatch.setenv("COLUMNS", "200")
    wf = tmp_path / "wf.json"
    wf.write_text(_json.dumps({"last_node_id": 1, "links": [], "version": 0.4, "nodes": [
        {"id": 1, "type": "CheckpointLoaderSimple", "mode": 0, "properties": {}, "widgets_values": ["toad.ckpt"]}]}))
    # picked by hand (100 %): still not downloaded, a pickle needs its own yes
    code = cli.main(["fix", str(wf), "--comfyui-root", str(root), "--yes", "--json", "--pick", "toad.ckpt=1"])
    report = _json.loads(capsys.readouterr().out)
    assert [f["error_type"] for f in report["failures"]] == [PICKLE_CONFIRMATION]
    assert code == 1 and report["plan"] == [] and not (root / "models" / "checkpoints" / "toad.ckpt").exists()
    code = cli.main(["resolve", str(wf), "--comfyui-root", str(root)])
    assert "pickle format" in capsys.readouterr().out
    code = cli.main(["fix", str(wf), "--comfyui-root", str(root), "--yes", "--allow-pickle", "toad.ckpt",
                     "--pick", "toad.ckpt=1"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert (root / "models" / "checkpoints" / "toad.ckpt").read_bytes() == data
    assert "pickle" in out  # the warning is on the row


def test_plan_without_a_comfyui_root_uses_the_known_keys(make_config):
    """``comfyfixer script`` without --comfyui-root: nothing on disk, still only folder keys."""
    core = ComfyFixerCore(make_config())
    specs, failures = core.plan(_analysis((_ref("a.safetensors", "loras"), [_cand("a.safetensors")]),
                                          (_ref("b.safetensors", "unet"), [_cand("b.safetensors")]),
                                          (_ref("c.safetensors", "../../x"), [_cand("c.safetensors")]),
                                          (_ref("d.safetensors", "output"), [_cand("d.safetensors")])))
    assert [(s["directory"], "save_path" in s) for s in specs] == [("loras", False), ("diffusion_models", False)]
    assert len(failures) == 2


@pytest.mark.parametrize("directory,ok", [("background_removal", True), ("LLM", True), ("Output", False),
                                          ("CUSTOM_NODES", False), ("TEMP", False), ("a/b", False),
                                          ("..", False), ("nul", False)])
def test_a_well_formed_key_the_install_lacks_goes_to_models(make_config, root, directory, ok):
    core = _core(make_config, root)
    specs, failures = core.plan(_analysis((_ref("m.safetensors", directory), [_cand("m.safetensors")])))
    if ok:
        assert Path(specs[0]["save_path"]) == (root / "models" / directory / "m.safetensors").resolve()
    else:
        assert specs == [] and failures
