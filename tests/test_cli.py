"""``comfyfixer`` run in-process (``cli.main([...])``) against the fake hub on 127.0.0.1."""

from __future__ import annotations

import copy
import io
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from comfyfixersmart import cli
from fakehub.fixtures import fake_hub  # noqa: F401
from fakehub.registry import blob
from test_core_support import DETAIL, MY_VAE, build_world, closed_port, node, sha, ui_workflow, write_json, cli_world, run_cli  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_WORKFLOW = REPO / "examples" / "workflows" / "example_workflow.json"
EXAMPLE_ROOT = REPO / "examples" / "ComfyUI"
CIVITAI_TOKEN = "civitai-MARKER-7c1e55d0a9"
HF_TOKEN = "hf_MARKERtoken0123456789abcdefXYZ"

REFERENCE_KEYS = {"key", "filename", "directory", "type", "status", "node_id", "node_type", "nodes", "optional",
                  "source", "confidence"}


@pytest.fixture(autouse=True)
def wide(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # no folding: assertions can look for whole names




# -- scan ------------------------------------------------------------------------------------

def test_scan_example_prints_a_table_and_exits_1(capsys):
    code, out, err = run_cli(capsys, "scan", EXAMPLE_WORKFLOW, "--comfyui-root", EXAMPLE_ROOT)
    assert code == 1
    assert "2 present · 1 elsewhere · 2 missing" in out
    rows = {line.split()[2]: line.split()[:2] for line in out.splitlines()
            if line.strip().startswith(("present", "missing", "elsewhere"))}
    assert rows == {
        "sd_xl_base_1.0.safetensors": ["present", "checkpoints"],
        "negativeXL_D": ["missing", "embeddings"],
        "sdxl/add-detail-xl.safetensors": ["elsewhere", "loras"],
        "4x-UltraSharp.pth": ["present", "upscale_models"],
        "sdxl_vae.safetensors": ["missing", "vae"],
    }
    assert "found at loras/style/add-detail-xl.safetensors" in out
    assert "https://huggingface.co/stabilityai/sdxl-vae/resolve/main/sdxl_vae.safetensors" in out
    assert "VAELoader #7 (+1)" in out and "CheckpointLoaderSimple #1" in out
    assert err == ""


def test_scan_json_is_stable_and_machine_readable(capsys):
    code, out, _ = run_cli(capsys, "scan", EXAMPLE_WORKFLOW, "--comfyui-root", EXAMPLE_ROOT, "--json")
    assert code == 1
    report = json.loads(out)
    assert set(report) == {"report_version", "comfyui_root", "checked", "workflows", "errors", "summary"}
    assert report["report_version"] == 1 and report["checked"] is True and report["errors"] == []
    assert report["summary"] == {"total": 5, "present": 2, "elsewhere": 1, "missing": 2, "optional_missing": 0}
    (wf,) = report["workflows"]
    assert set(wf) == {"path", "format", "warnings", "custom_node_types", "references", "summary", "missing_packs",
                       "informational_references"}
    assert wf["format"] == "ui" and wf["path"] == str(EXAMPLE_WORKFLOW)
    refs = {r["key"]: r for r in wf["references"]}
    assert all(REFERENCE_KEYS <= set(r) for r in refs.values())
    assert refs["loras/sdxl/add-detail-xl.safetensors"]["found_path"] == "loras/style/add-detail-xl.safetensors"
    vae = refs["vae/sdxl_vae.safetensors"]
    assert vae["status"] == "missing" and vae["url"].startswith("https://huggingface.co/stabilityai/")
    assert vae["hash_type"] == "sha256" and len(vae["nodes"]) == 2
    # the same input gives the same report
    assert run_cli(capsys, "scan", EXAMPLE_WORKFLOW, "--comfyui-root", EXAMPLE_ROOT, "--json")[1] == out


def test_scan_a_directory_of_workflows(capsys, tmp_path, world):
    folder = tmp_path / "many"
    folder.mkdir()
    shutil.copy(EXAMPLE_WORKFLOW, folder / "example.json")
    shutil.copy(world.workflow, folder / "sub-world.json")
    (folder / "notes.txt").write_text("not a workflow")
    code, out, err = run_cli(capsys, "scan", folder, "--comfyui-root", world.root)
    assert code == 1
    assert "example.json (ui)" in out and "sub-world.json (ui)" in out
    assert "2 workflows: 11 model reference(s)" in out
    code, out, _ = run_cli(capsys, "scan", folder, "--comfyui-root", world.root, "--json")
    assert [Path(w["path"]).name for w in json.loads(out)["workflows"]] == ["example.json", "sub-world.json"]


def test_broken_json_is_an_error_but_the_others_are_still_shown(capsys, tmp_path):
    folder = tmp_path / "wfs"
    folder.mkdir()
    shutil.copy(EXAMPLE_WORKFLOW, folder / "good.json")
    (folder / "broken.json").write_text('{"nodes": [{"id": 1,', encoding="utf-8")
    code, out, err = run_cli(capsys, "scan", folder, "--comfyui-root", EXAMPLE_ROOT)
    assert code == 2
    assert "good.json (ui)" in out
    assert "cannot read" in err and "broken.json" in err
    code, out, err = run_cli(capsys, "scan", folder / "broken.json", "--json")
    assert code == 2
    report = json.loads(out)
    assert report["workflows"] == [] and report["errors"][0]["path"].endswith("broken.json")
    code, _, err = run_cli(capsys, "scan", tmp_path / "missing.json")
    assert code == 2 and "file not found" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, "scan", tmp_path / "empty")
    assert code == 2 and "no workflow files" in err


def test_missing_root_and_bad_settings_exit_2_naming_the_setting(capsys, tmp_path, monkeypatch):
    code, out, err = run_cli(capsys, "scan", EXAMPLE_WORKFLOW, "--comfyui-root", tmp_path / "no-such-dir")
    assert code == 2 and "ConfigurationError" in err and "comfyui_root" in err and "not a directory" in err
    monkeypatch.setenv("COMFYFIXER_DOWNLOAD_CONCURRENCY", "lots")
    code, out, err = run_cli(capsys, "scan", EXAMPLE_WORKFLOW, "--json")
    assert code == 2 and "download_concurrency" in err
    assert json.loads(out)["error"]["setting"] == "download_concurrency"
    monkeypatch.delenv("COMFYFIXER_DOWNLOAD_CONCURRENCY")
    code, _, err = run_cli(capsys, "fix", EXAMPLE_WORKFLOW, "--dry-run", "--min-confidence", "1.5")
    assert code == 2 and "min_confidence" in err
    code, _, err = run_cli(capsys, "resolve", EXAMPLE_WORKFLOW, "--backends", "civitai,bogus")
    assert code == 2 and "unknown backend 'bogus'" in err
    with pytest.raises(SystemExit) as info:  # argparse: bad arguments
        cli.main(["scan"])
    assert info.value.code == 2


def test_verbose_logging_goes_to_stderr_and_json_stays_clean(capsys, world):
    code, out, err = run_cli(capsys, "-vv", "fix", world.workflow, "--comfyui-root", world.root, "--yes", "--json")
    assert code == 1 and json.loads(out)["models_resolved"] == 2
    assert "downloaded my_vae.safetensors" in err
    from comfyfixersmart.logs import get_logger

    assert not any(type(h).__name__ == "RichHandler" for h in get_logger().handlers)  # undone after main()


def test_scan_without_root_checks_nothing_and_nothing_missing_exits_0(capsys, tmp_path):
    code, out, err = run_cli(capsys, "scan", EXAMPLE_WORKFLOW)
    assert code == 0 and "not checked against the disk" in out and "unchecked" in out
    assert "no --comfyui-root" in err
    root = tmp_path / "ComfyUI"
    (root / "models" / "checkpoints").mkdir(parents=True)
    (root / "models" / "checkpoints" / "a.safetensors").write_bytes(b"a")
    wf = write_json(tmp_path / "wf.json", ui_workflow([node(1, "CheckpointLoaderSimple", ["a.safetensors"])]))
    assert run_cli(capsys, "scan", wf, "--comfyui-root", root)[0] == 0


def test_names_from_workflows_are_printed_literally(capsys, tmp_path):
    name = "[bold red]evil[/] [link=http://x]model.safetensors"
    wf = write_json(tmp_path / "wf.json", ui_workflow([node(1, "CheckpointLoaderSimple", [name])]))
    code, out, _ = run_cli(capsys, "scan", wf)
    assert code == 0 and name in out


# -- resolve -----------------------------------------------------------------------------------

def test_resolve_shows_candidates_with_confidence_and_reason(capsys, world):
    code, out, err = run_cli(capsys, "resolve", world.workflow, "--comfyui-root", world.root)
    assert code == 1
    lines = out.splitlines()
    vae = next(line for line in lines if "other_name.safetensors" in line)
    assert vae.split()[:3] == ["→", "100%", "workflow"] and "sha256 match" in vae
    detail = next(line for line in lines if "detail_tweaker.safetensors" in line and "%" in line)
    assert detail.split()[:3] == ["→", "90%", "civitai"] and "exact file name on Civitai" in detail
    fuzzy = next(line for line in lines if "fuzzy_cn_v2.safetensors" in line)
    assert fuzzy.split()[:3] == ["1", "61%", "civitai"] and "similar name" in fuzzy
    assert "missing controlnet/fuzzy_cn.safetensors" in out
    assert "4 to find: 3 sure enough to download" in out  # the optional one is looked up too
    code, out, _ = run_cli(capsys, "resolve", world.workflow, "--comfyui-root", world.root, "--json")
    report = json.loads(out)
    res = {r["key"]: r for r in report["resolutions"]}
    best = res["vae/my_vae.safetensors"]["candidates"][0]
    assert best["confidence"] == 1.0 and "sha256 match" in best["reason"] and best["save_as"] == "my_vae.safetensors"
    assert res["controlnet/fuzzy_cn.safetensors"]["chosen"] is None
    assert report["min_confidence"] == 0.9


def test_resolve_without_network_is_fast_and_keeps_the_workflow_url(capfd, monkeypatch):
    """Endpoints on closed loopback ports: a NetworkError per backend within seconds, the
    workflow's own URL still offered, and no retry chatter from huggingface_hub on stderr."""
    monkeypatch.setenv("COMFYFIXER_CIVITAI_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("COMFYFIXER_ALLOWED_HOSTS", "127.0.0.1:*")
    began = time.monotonic()
    code = cli.main(["resolve", str(EXAMPLE_WORKFLOW), "--comfyui-root", str(EXAMPLE_ROOT)])
    elapsed = time.monotonic() - began
    out, err = capfd.readouterr()
    assert code == 1
    assert elapsed < 5, elapsed
    assert "civitai: NetworkError" in out and "huggingface: NetworkError" in out
    assert "connection refused" in out.lower()
    vae = next(line for line in out.splitlines() if "sdxl_vae.safetensors" in line and "%" in line)
    # the known-model index lists the workflow's own URL: either backend may present it
    assert vae.split()[0] == "→" and int(vae.split()[1].rstrip("%")) >= 95 and vae.split()[2] in ("index", "workflow")
    assert "Retrying" not in err and "Retry" not in out


# -- fix ---------------------------------------------------------------------------------------

def test_fix_dry_run_prints_the_plan_and_downloads_nothing(capsys, world, fake_hub):
    code, out, err = run_cli(capsys, "fix", world.workflow, "--comfyui-root", world.root, "--dry-run")
    assert code == 1
    assert "download plan (dry run)" in out and "dry run: nothing downloaded" in out
    vae_row = next(line.split() for line in out.splitlines() if line.strip().startswith("vae "))
    assert vae_row[:7] == ["vae", "my_vae.safetensors", "workflow", "100%", "58.6", "KB", "known"]
    flat = " ".join(out.split())
    assert "not downloaded controlnet/fuzzy_cn.safetensors" in flat and "needs 90%" in flat
    assert "left alone upscale_models/4x-elsewhere.pth: found elsewhere: loras/4x-elsewhere.pth" in out
    assert "left alone loras/optional_lora.safetensors" in out
    code, out, _ = run_cli(capsys, "fix", world.workflow, "--comfyui-root", world.root, "--dry-run", "--json")
    report = json.loads(out)
    assert report["dry_run"] is True and report["downloads"] == []
    assert {p["key"] for p in report["plan"]} == {"loras/sdxl/detail_tweaker.safetensors", "vae/my_vae.safetensors"}
    assert fake_hub.find_requests(listener="storage") == [] and fake_hub.request_count("/api/download/*") == 0
    assert not (world.models / "vae" / "my_vae.safetensors").exists()


def test_fix_yes_downloads_with_progress_and_reports(capsys, world):
    code, out, err = run_cli(capsys, "fix", world.workflow, "--comfyui-root", world.root, "--yes")
    assert code == 1  # the 61 % ControlNet stays missing
    assert (world.models / "vae" / "my_vae.safetensors").read_bytes() == MY_VAE
    assert (world.models / "loras" / "sdxl" / "detail_tweaker.safetensors").read_bytes() == DETAIL
    assert f"✓ {world.models / 'vae' / 'my_vae.safetensors'} (sha256 verified)" in out  # outside the cwd
    assert "fixed 2 of 3 missing model(s), 1 optional left alone" in out
    assert any("my_vae.safetensors" in line and "done" in line for line in out.splitlines())  # progress bar
    # a second run finds nothing left to fetch but the look-alike
    code, out, _ = run_cli(capsys, "fix", world.workflow, "--comfyui-root", world.root, "--yes", "--json")
    report = json.loads(out)
    assert report["plan"] == [] and [f["filename"] for f in report["failures"]] == ["fuzzy_cn.safetensors"]


def test_fix_everything_found_exits_0(capsys, world, tmp_path):
    wf = write_json(tmp_path / "ok.json", ui_workflow(
        [node(1, "VAELoader", ["my_vae.safetensors"])], models=world.document["models"]))
    code, out, _ = run_cli(capsys, "fix", wf, "--comfyui-root", world.root, "--yes")
    assert code == 0 and "fixed 1 of 1" in out
    assert run_cli(capsys, "scan", wf, "--comfyui-root", world.root)[0] == 0


def test_fix_asks_first_and_refuses_to_guess_without_a_terminal(capsys, world, fake_hub, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code, out, err = run_cli(capsys, "fix", world.workflow, "--comfyui-root", world.root)
    assert code == 2 and "--yes" in err
    code, out, err = run_cli(capsys, "fix", world.workflow, "--comfyui-root", world.root, "--json")
    assert code == 2 and "--yes" in json.loads(out)["error"]["message"]
    assert fake_hub.requests == []  # refused before any work

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    # Enter: no pick for the unsure ControlNet (asked first), then no to the download
    monkeypatch.setattr("sys.stdin", Terminal("\nn\n"))
    code, out, err = run_cli(capsys, "fix", world.workflow, "--comfyui-root", world.root)
    assert code == 1 and "Download 2 file(s)?" in out and "nothing downloaded" in out
    assert not (world.models / "vae" / "my_vae.safetensors").exists()


def test_min_confidence_below_the_floor_is_explained(capsys, world):
    code, out, err = run_cli(capsys, "fix", world.workflow, "--comfyui-root", world.root, "--dry-run",
                             "--min-confidence", "0.5")
    assert "below the floor" in err and "80%" in err
    assert "needs 80%" in " ".join(out.split())  # the 61 % look-alike is still not taken


def test_fix_include_optional_and_output_dir(capsys, world, tmp_path):
    out_dir = tmp_path / "elsewhere-models"
    code, out, _ = run_cli(capsys, "fix", world.workflow, "--comfyui-root", world.root, "--yes",
                           "--include-optional", "--output-dir", out_dir)
    assert (out_dir / "loras" / "optional_lora.safetensors").exists()
    assert (out_dir / "loras" / "sdxl" / "detail_tweaker.safetensors").exists()
    assert not (world.models / "vae" / "my_vae.safetensors").exists()


# -- annotate and script -------------------------------------------------------------------------

def _without_models(doc):
    doc = copy.deepcopy(doc)
    for n in doc.get("nodes", []):
        n.get("properties", {}).pop("models", None)
    return doc


def test_annotate_adds_only_properties_models(capsys, world, tmp_path):
    target = tmp_path / "annotated.json"
    code, out, err = run_cli(capsys, "annotate", world.workflow, "-o", target, "--comfyui-root", world.root)
    assert code == 0 and "sources embedded for 3 model reference(s)" in out
    assert "no sure source for controlnet/fuzzy_cn.safetensors" in err
    before = json.loads(world.workflow.read_text())
    after = json.loads(target.read_text())
    assert _without_models(after) == _without_models(before)
    models = {n["id"]: n["properties"].get("models") for n in after["nodes"]}
    (lora,) = models[2]
    assert lora["name"] == "sdxl/detail_tweaker.safetensors" and lora["directory"] == "loras"
    assert "/api/download/models/" in lora["url"] and lora["hash"] == sha(DETAIL)
    (vae,) = models[3]
    assert vae["name"] == "my_vae.safetensors" and vae["url"].endswith("/acme/vaes/resolve/main/other_name.safetensors")
    assert models[5] is None  # the 61 % look-alike is not written
    assert models[6][0]["name"] == "optional_lora.safetensors"  # bypassed, but its source is known
    # the annotated workflow scans to the same references, now carrying their URLs
    code, out, _ = run_cli(capsys, "scan", target, "--json")
    refs = {r["key"]: r for r in json.loads(out)["workflows"][0]["references"]}
    assert "/api/download/models/" in refs["loras/sdxl/detail_tweaker.safetensors"]["url"]


def test_script_emits_bash_without_tokens(capsys, world, monkeypatch, tmp_path):
    monkeypatch.setenv("CIVITAI_API_TOKEN", CIVITAI_TOKEN)
    code, out, err = run_cli(capsys, "script", world.workflow, "--comfyui-root", world.root)
    assert code == 1 and "not in the script controlnet/fuzzy_cn.safetensors" in err
    assert out.startswith("#!/usr/bin/env bash")
    assert "/api/download/models/" in out and "/acme/vaes/resolve/main/other_name.safetensors" in out
    assert sha(MY_VAE) in out and sha(DETAIL) in out
    assert "CIVITAI_API_TOKEN" in out and CIVITAI_TOKEN not in out
    assert "sdxl/detail_tweaker.safetensors" in out
    assert subprocess.run(["bash", "-n"], input=out, text=True).returncode == 0
    target = tmp_path / "fetch.sh"
    code, out, _ = run_cli(capsys, "script", world.workflow, "--comfyui-root", world.root, "-o", target)
    assert "wrote" in out and target.read_text().startswith("#!/usr/bin/env bash")
    assert target.stat().st_mode & 0o111


# -- secrets -------------------------------------------------------------------------------------

def test_tokens_never_reach_output_reports_or_files(capsys, world, fake_hub, monkeypatch, tmp_path):
    """With real tokens configured (and needed: the LoRA requires a login), nothing printed,
    reported or written contains them, and they only travel in headers to their own host.
    A token someone pasted into a workflow URL (``?token=``) is not repeated either."""
    monkeypatch.setenv("CIVITAI_API_TOKEN", CIVITAI_TOKEN)
    monkeypatch.setenv("HF_TOKEN", HF_TOKEN)
    pasted = "pastedTOKEN0042"
    fake_hub.add_civitai_token(CIVITAI_TOKEN)
    fake_hub.add_hf_token(HF_TOKEN)
    locked = fake_hub.add_civitai_model("Locked Lora", {"locked_lora.safetensors": blob(5000, seed=77)}, type="LORA",
                                        requires_auth=True)
    wf = write_json(tmp_path / "locked.json", ui_workflow(
        [node(1, "LoraLoader", ["locked_lora.safetensors", 1, 1]), node(2, "VAELoader", ["my_vae.safetensors"])],
        models=[*world.document["models"],
                {"name": "locked_lora.safetensors", "directory": "loras",
                 "url": f"https://civitai.com/api/download/models/{locked.version_id}?token={pasted}"}]))
    texts = []
    root = ["--comfyui-root", world.root]
    for argv in (["scan", wf, *root], ["scan", wf, *root, "--json"], ["resolve", wf, *root],
                 ["resolve", wf, *root, "--json"], ["fix", wf, *root, "--dry-run"],
                 ["fix", wf, *root, "--dry-run", "--json"], ["script", wf, *root],
                 ["annotate", wf, "-o", tmp_path / "annotated.json", *root], ["fix", wf, *root, "--yes", "--json"],
                 ["fix", wf, *root, "--yes"], ["-v", "resolve", wf, *root]):
        code, out, err = run_cli(capsys, *argv)
        assert code in (0, 1), (argv, err)
        texts += [out, err]
    assert (world.models / "loras" / "locked_lora.safetensors").read_bytes() == blob(5000, seed=77)
    annotated = json.loads((tmp_path / "annotated.json").read_text())
    # the document itself is the user's, unchanged; what we added must be clean
    texts.append(json.dumps([n["properties"].get("models") for n in annotated["nodes"]]))
    texts += [p.read_text(errors="replace") for p in Path(world.root).rglob("*.json")]
    # history, job and response-cache databases, logs
    for var in ("XDG_DATA_HOME", "XDG_CACHE_HOME"):
        texts += [p.read_bytes().decode("latin-1") for p in Path(os.environ[var]).rglob("*") if p.is_file()]
    assert len(texts) > 25
    for text in texts:
        for secret in (CIVITAI_TOKEN, HF_TOKEN, pasted):
            assert secret not in text
    for r in fake_hub.requests:
        for secret in (CIVITAI_TOKEN, HF_TOKEN, pasted):
            assert secret not in r.query  # never in a URL
        if r.listener == "storage":
            assert r.authorization is None  # not to another host
    assert any(r.authorization == f"Bearer {CIVITAI_TOKEN}" for r in fake_hub.find_requests(listener="civitai"))


def test_progress_renderer_is_thread_safe_and_stays_closed():
    import threading

    from rich.console import Console

    from comfyfixersmart.datamodel import ProgressEvent

    console = Console(file=io.StringIO(), width=100)
    renderer = cli._ProgressRenderer(console, quiet=False)
    with renderer:
        def feed(i):
            for done in range(0, 101, 10):
                renderer.on_event(ProgressEvent(f"file{i}.safetensors", done, 100, "downloading"))

        threads = [threading.Thread(target=feed, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        progress = renderer.progress
        assert len(renderer.tasks) == 8 and all(t.completed == 100 for t in progress.tasks)
    renderer.on_event(ProgressEvent("late.safetensors", 1, 100, "downloading"))
    assert renderer.progress is None and "late.safetensors" not in renderer.tasks


def test_scan_of_a_folder_skips_non_workflow_json_and_still_reports_missing(tmp_path, capsys):
    import shutil

    from comfyfixersmart import cli

    repo = Path(__file__).resolve().parents[1]
    folder = tmp_path / "wfs"
    folder.mkdir()
    shutil.copy(repo / "examples" / "workflows" / "example_workflow.json", folder / "a.json")
    (folder / "settings.json").write_text('{"theme": "dark"}', encoding="utf-8")  # not a workflow
    code = cli.main(["scan", str(folder), "--comfyui-root", str(repo / "examples" / "ComfyUI")])
    captured = capsys.readouterr()
    assert code == 1  # something required is missing; the stray JSON does not turn it into an error
    assert "skipped" in captured.err and "settings.json" in captured.err
    # a file named on the command line that is not a workflow is an error
    assert cli.main(["scan", str(folder / "settings.json")]) == 2


def test_fix_keeps_a_redacted_log_in_log_dir(capsys, world, tmp_path, monkeypatch):
    monkeypatch.setenv("COMFYFIXER_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("CIVITAI_API_TOKEN", "civitai-SECRET-123456")
    code, _, _ = run_cli(capsys, "fix", world.workflow, "--comfyui-root", world.root, "--yes")
    assert code == 1
    log = (tmp_path / "logs" / "comfyfixer.log").read_text(encoding="utf-8")
    assert "plan: vae/my_vae.safetensors" in log and "downloaded my_vae.safetensors" in log
    assert "not fixed: controlnet/fuzzy_cn.safetensors" in log
    assert "SECRET" not in log
