"""Run ``comfyfixer`` end to end, offline, against the test suite's fake Civitai + Hugging Face.

    python examples/demo_fakehub.py            # prints scan, resolve, fix --dry-run, fix --yes, scan
    python examples/demo_fakehub.py --keep     # and leaves the temp folder for a look

The example ComfyUI folder and workflow are copied to a temp folder; the fake hub (tests/fakehub,
loopback only) is given the two files the example is missing: ``sdxl_vae.safetensors`` in the
Hugging Face repo ``stabilityai/sdxl-vae`` the workflow links to, and ``negativeXL_D`` as a
Civitai textual-inversion model.  The fake files are random bytes, so the copy's embedded sha256
is replaced by theirs (the real one could not match).  The CLI then runs in a subprocess with
its endpoints pointed at the fake hub, exactly as a user would run it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))  # the fake hub lives with the tests

from fakehub import FakeHub, blob  # noqa: E402

VAE = blob(3 * 1024 * 1024, seed=7)
EMBEDDING = blob(96 * 1024, seed=8)


def prepare(tmp: Path) -> Path:
    """Copy examples/ into ``tmp``; point the workflow's sha256 at the fake VAE's bytes."""
    shutil.copytree(HERE / "ComfyUI", tmp / "ComfyUI")
    shutil.copytree(HERE / "extra_models", tmp / "extra_models")  # extra_model_paths.yaml: ../extra_models
    workflow = json.loads((HERE / "workflows" / "example_workflow.json").read_text(encoding="utf-8"))
    for entry in workflow.get("models", []):
        if entry.get("name") == "sdxl_vae.safetensors":
            entry["hash"] = hashlib.sha256(VAE).hexdigest()
    (tmp / "workflows").mkdir()
    target = tmp / "workflows" / "example_workflow.json"
    target.write_text(json.dumps(workflow, indent=2), encoding="utf-8")
    return target


def cli_env(hub: FakeHub, tmp: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMFYFIXER_", "CIVITAI_", "HF_"))}
    env.update({
        "COMFYFIXER_CIVITAI_BASE_URL": hub.civitai_url,
        "HF_ENDPOINT": hub.hf_url,
        "COMFYFIXER_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "XDG_DATA_HOME": str(tmp / "xdg-data"),  # history DB, logs
        "XDG_CACHE_HOME": str(tmp / "xdg-cache"),  # search cache
        "XDG_CONFIG_HOME": str(tmp / "xdg-config"),  # no personal config file
        "COLUMNS": os.environ.get("COLUMNS", "110"),
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    })
    return env


def run(args, env, cwd) -> int:
    shown = " ".join(a if " " not in a else repr(a) for a in args)
    print(f"$ comfyfixer {shown}", flush=True)
    done = subprocess.run([sys.executable, "-m", "comfyfixersmart", *args], env=env, cwd=cwd,
                          stdin=subprocess.DEVNULL)
    print(f"[exit code {done.returncode}]\n", flush=True)
    return done.returncode


def main() -> int:
    keep = "--keep" in sys.argv
    tmp = Path(tempfile.mkdtemp(prefix="comfyfixer-demo-"))
    try:
        workflow = prepare(tmp)
        with FakeHub() as hub:
            hub.add_hf_repo("stabilityai/sdxl-vae", {"sdxl_vae.safetensors": VAE}, downloads=900_000)
            hub.add_civitai_model("negativeXL", {"negativeXL_D.safetensors": EMBEDDING}, type="TextualInversion",
                                  base_model="SDXL 1.0", downloads=120_000)
            env = cli_env(hub, tmp)
            rel = [workflow.relative_to(tmp).as_posix(), "--comfyui-root", "ComfyUI"]
            run(["scan", *rel], env, tmp)
            run(["resolve", *rel], env, tmp)
            run(["fix", *rel, "--dry-run"], env, tmp)
            code = run(["fix", *rel, "--yes"], env, tmp)
            run(["scan", *rel], env, tmp)
        return code
    finally:
        if keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
