"""Run ``comfyfixer`` end to end, offline, against the test suite's fake Civitai + Hugging Face.

    python examples/demo_fakehub.py            # prints scan, resolve, fix --dry-run, fix --yes, scan
    python examples/demo_fakehub.py --keep     # and leaves the temp folder for a look
    COLUMNS=110 python examples/demo_fakehub.py --markdown docs/cli-output.md   # refresh the docs

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


def run(args, env, cwd, log) -> int:
    """Run ``comfyfixer ARGS`` in a subprocess; print and keep its console output."""
    shown = " ".join(a if " " not in a else repr(a) for a in args)
    done = subprocess.run([sys.executable, "-m", "comfyfixersmart", *args], env=env, cwd=cwd,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    text = "\n".join(line.rstrip() for line in done.stdout.rstrip().splitlines())
    block = f"$ comfyfixer {shown}\n{text}\n[exit code {done.returncode}]"
    print(block + "\n", flush=True)
    log.append((args[0] + (" --dry-run" if "--dry-run" in args else " --yes" if "--yes" in args else ""), block))
    return done.returncode


def write_markdown(path: Path, log) -> None:
    """docs/cli-output.md: the scan of the bundled example, then the demo's blocks."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMFYFIXER_", "CIVITAI_", "HF_"))}
    env["COLUMNS"] = os.environ.get("COLUMNS", "110")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")
    scan = []
    run(["scan", "examples/workflows/example_workflow.json", "--comfyui-root", "examples/ComfyUI"], env, REPO, scan)
    parts = [MARKDOWN_HEAD.format(scan=scan[0][1])]
    seen = set()
    for title, block in log:
        title = title + (" again" if title in seen else "")
        seen.add(title)
        parts.append(f"### {title}\n\n```console\n{block}\n```\n")
    path.write_text("\n".join(parts), encoding="utf-8")
    print(f"wrote {path}")


MARKDOWN_HEAD = """# `comfyfixer` console output

Captured with `COLUMNS=110` (rich tables adapt to the terminal width; colours are not shown here) by
`COLUMNS=110 python examples/demo_fakehub.py --markdown docs/cli-output.md`.

## `scan` of the bundled example

```console
{scan}
```

`elsewhere`: the file exists in another folder (relink it; a fix never downloads it again).
Exit code 1: something required is missing (0: nothing missing, 2: an error).

## A real fix, offline, against the fake hub

`examples/demo_fakehub.py` copies `examples/` to a temp folder, starts the test suite's fake Civitai +
Hugging Face hub on 127.0.0.1 with the two files the example misses (`stabilityai/sdxl-vae` on the fake
Hugging Face, `negativeXL` on the fake Civitai; random bytes, so the copy's embedded sha256 is replaced by
theirs), and runs the CLI in a subprocess with `COMFYFIXER_CIVITAI_BASE_URL` and `HF_ENDPOINT` pointing
at it. The ports in URLs change from run to run.

The VAE comes from the URL the workflow itself carries and is checked against its sha256. The embedding is
named `negativeXL_D` in the prompt (no extension, as ComfyUI allows); the Civitai file
`negativeXL_D.safetensors` is that exact name, so it is downloaded too, into `models/embeddings/`. The
LoRA found in another sub-folder is left alone (relink it), so the exit code is 0 once both are in.
"""


def main() -> int:
    keep = "--keep" in sys.argv
    markdown = Path(sys.argv[sys.argv.index("--markdown") + 1]) if "--markdown" in sys.argv else None
    tmp = Path(tempfile.mkdtemp(prefix="comfyfixer-demo-"))
    log: list = []
    try:
        workflow = prepare(tmp)
        with FakeHub() as hub:
            hub.add_hf_repo("stabilityai/sdxl-vae", {"sdxl_vae.safetensors": VAE}, downloads=900_000)
            hub.add_civitai_model("negativeXL", {"negativeXL_D.safetensors": EMBEDDING}, type="TextualInversion",
                                  base_model="SDXL 1.0", downloads=120_000)
            env = cli_env(hub, tmp)
            rel = [workflow.relative_to(tmp).as_posix(), "--comfyui-root", "ComfyUI"]
            run(["scan", *rel], env, tmp, log)
            run(["resolve", *rel], env, tmp, log)
            run(["fix", *rel, "--dry-run"], env, tmp, log)
            code = run(["fix", *rel, "--yes"], env, tmp, log)
            run(["scan", *rel], env, tmp, log)
        if markdown is not None:
            write_markdown(markdown, log)
        return code
    finally:
        if keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
