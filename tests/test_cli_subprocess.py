"""``comfyfixer`` as users run it: a real interpreter (``python -m comfyfixersmart``), a real
environment, real signals.  The fake hub runs in the test process on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dlserver import FileServer, payload
from fakehub.fixtures import fake_hub  # noqa: F401
from test_core_support import MY_VAE, build_world, closed_port, node, ui_workflow, write_json

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_WORKFLOW = REPO / "examples" / "workflows" / "example_workflow.json"
EXAMPLE_ROOT = REPO / "examples" / "ComfyUI"


@pytest.fixture
def env(tmp_path):
    """A clean environment: no tokens, no personal config, data dirs in tmp, wide output."""
    out = {k: v for k, v in os.environ.items() if not k.startswith(("COMFYFIXER_", "CIVITAI_", "HF_", "HUGGING"))}
    out.update(XDG_DATA_HOME=str(tmp_path / "xdg-data"), XDG_CACHE_HOME=str(tmp_path / "xdg-cache"),
               XDG_CONFIG_HOME=str(tmp_path / "xdg-config"), COLUMNS="200", PYTHONUNBUFFERED="1",
               PYTHONPATH=str(REPO) + os.pathsep + out.get("PYTHONPATH", ""))
    return out


def comfyfixer(env, *args, module="comfyfixersmart", timeout=60, cwd=None):
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, cwd=cwd)


def test_version_and_help(env):
    done = comfyfixer(env, "--version")
    assert done.returncode == 0 and done.stdout.strip() == "comfyfixer 2.0.0"
    done = comfyfixer(env, "--help", module="comfyfixersmart.cli")
    assert done.returncode == 0 and "scan" in done.stdout and "exit codes" in done.stdout
    assert comfyfixer(env, "frobnicate").returncode == 2


def test_scan_example_in_a_subprocess(env):
    done = comfyfixer(env, "scan", EXAMPLE_WORKFLOW, "--comfyui-root", EXAMPLE_ROOT)
    assert done.returncode == 1, done.stderr
    assert "2 present · 1 elsewhere · 2 missing" in done.stdout and done.stderr == ""
    done = comfyfixer(env, "scan", EXAMPLE_WORKFLOW, "--comfyui-root", EXAMPLE_ROOT / "nope")
    assert done.returncode == 2 and "comfyui_root" in done.stderr and done.stdout == ""


def test_fix_in_a_subprocess_downloads_from_the_fake_hub(env, fake_hub, tmp_path):
    world = build_world(fake_hub, tmp_path)
    env.update(world.env())
    done = comfyfixer(env, "fix", world.workflow, "--comfyui-root", world.root, "--yes", cwd=tmp_path)
    assert done.returncode == 1, done.stderr  # the look-alike ControlNet stays missing
    assert (world.models / "vae" / "my_vae.safetensors").read_bytes() == MY_VAE
    assert "fixed 2 of 3 missing model(s), 1 optional left alone" in done.stdout
    assert "✓ ComfyUI/models/vae/my_vae.safetensors (sha256 verified)" in done.stdout  # relative to the cwd
    done = comfyfixer(env, "fix", world.workflow, "--comfyui-root", world.root)  # stdin is not a terminal
    assert done.returncode == 2 and "--yes" in done.stderr


def _timed_scan(env) -> float:
    began = time.monotonic()
    assert comfyfixer(env, "scan", EXAMPLE_WORKFLOW, "--comfyui-root", EXAMPLE_ROOT).returncode == 1
    return time.monotonic() - began


def test_offline_resolve_is_fast_and_quiet(env):
    env.update(COMFYFIXER_CIVITAI_BASE_URL=f"http://127.0.0.1:{closed_port()}",
               HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}", COMFYFIXER_ALLOWED_HOSTS="127.0.0.1:*")
    # the baseline: a scan of the same workflow, same interpreter start, measured around the
    # resolve (a wall-clock bound failed with both cores busy: a bare scan took 4-5 s there)
    before = _timed_scan(env)
    began = time.monotonic()
    done = comfyfixer(env, "resolve", EXAMPLE_WORKFLOW, "--comfyui-root", EXAMPLE_ROOT)
    elapsed = time.monotonic() - began
    baseline = max(before, _timed_scan(env))
    assert done.returncode == 1, done.stderr
    # ~1.5x a scan (the search stack's imports, two refused connects); huggingface_hub's
    # retries added 26 s of sleeps, which no load shortens
    assert elapsed < 3 * baseline + 3, (elapsed, baseline)
    assert "civitai: NetworkError" in done.stdout and "huggingface: NetworkError" in done.stdout
    assert "Retry" not in done.stderr and done.stderr.strip() == ""


def test_ctrl_c_during_fix_stops_and_the_next_run_resumes(env, tmp_path):
    """SIGINT while a download trickles: exit 130, the message, the part file kept; the next
    run resumes it with a Range request and the file is right."""
    root = tmp_path / "ComfyUI"
    (root / "models" / "checkpoints").mkdir(parents=True)
    with FileServer() as server:
        # silent after 1 MiB until the interrupt: the first run cannot finish first, however
        # slowly a busy machine starts it
        server.add("/big.safetensors", payload(4 * 1024 * 1024, seed=5), rate=256 * 1024, stall_after=1 << 20)
        wf = write_json(tmp_path / "wf.json", ui_workflow(
            [node(1, "CheckpointLoaderSimple", ["big.safetensors"])],
            models=[{"name": "big.safetensors", "directory": "checkpoints",
                     "url": server.url("/big.safetensors", host="localhost")}]))
        env.update(COMFYFIXER_ALLOWED_HOSTS="127.0.0.1:*,localhost:*", COMFYFIXER_CHUNK_SIZE="16384",
                   COMFYFIXER_CIVITAI_BASE_URL=f"http://127.0.0.1:{closed_port()}",
                   HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}")
        proc = subprocess.Popen([sys.executable, "-m", "comfyfixersmart", "fix", str(wf), "--comfyui-root", str(root),
                                 "--yes"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        part = root / "models" / "checkpoints" / "big.safetensors.part"
        deadline = time.monotonic() + 60
        while not (part.exists() and part.stat().st_size > 0):
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 130, (out, err)
        assert "interrupted" in err and "next run resumes" in err
        kept = part.stat().st_size
        assert kept > 0 and not (root / "models" / "checkpoints" / "big.safetensors").exists()
        server.resources["/big.safetensors"].rate = None  # the second run goes at full speed
        server.resources["/big.safetensors"].stall_after = None
        done = subprocess.run([sys.executable, "-m", "comfyfixersmart", "fix", str(wf), "--comfyui-root", str(root),
                               "--yes"], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (done.stdout, done.stderr)
        ranges = [r.header("Range") for r in server.requests_for("/big.safetensors")]
    assert ranges[-1] and ranges[-1].startswith("bytes=") and ranges[-1] != "bytes=0-"  # resumed, not restarted
    final = root / "models" / "checkpoints" / "big.safetensors"
    assert final.read_bytes() == payload(4 * 1024 * 1024, seed=5)
    assert sorted(p.name for p in final.parent.iterdir()) == ["big.safetensors"]
