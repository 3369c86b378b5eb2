"""extra_model_paths.yaml read by us and by ComfyUI's own code (the e2e setup's ComfyUI source,
prepared by ``.ci/e2e-deps.sh``), compared."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from comfyfixersmart.extra_paths import comfyui_folder_paths
from test_extra_paths import A1111_AND_COMFY, _yaml

# -- differential test against ComfyUI's own code ------------------------------------------

_RUNNER = """
import json, sys
sys.path.insert(0, sys.argv[1])
import folder_paths
from utils.extra_config import load_extra_path_config
load_extra_path_config(sys.argv[2])
print(json.dumps({k: v[0] for k, v in folder_paths.folder_names_and_paths.items()}))
"""


def test_same_folders_as_comfyui_itself(comfyui_install, tmp_path, monkeypatch):
    """Run ComfyUI's folder_paths + utils/extra_config on the same yaml and compare."""
    src = Path(comfyui_install.comfyui_dir)
    comfy = tmp_path / "ComfyUI"
    for rel in ("folder_paths.py", "utils/__init__.py", "utils/extra_config.py",
                "comfy/cli_args.py", "comfy/options.py"):
        (comfy / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / rel, comfy / rel)
    (comfy / "models" / "weird_extra").mkdir(parents=True)
    monkeypatch.setenv("SHARED_STORE", str(tmp_path / "store"))
    yml = _yaml(tmp_path, A1111_AND_COMFY.format(a1111=tmp_path / "sd-webui") + """
envy:
    base_path: $SHARED_STORE
    is_default: true
    vae: vae
    loras: |
        loras
        /abs/loras
""")
    out = subprocess.run([sys.executable, "-c", _RUNNER, str(comfy), str(yml)], capture_output=True,
                         text=True, timeout=60, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    theirs = json.loads(out.stdout)
    ours = comfyui_folder_paths(comfy)
    for key, their_paths in theirs.items():
        if key == "custom_nodes":
            continue
        their_paths = [os.path.normpath(p) for p in their_paths]
        # our one documented difference: canonical folder before its legacy alias
        models = str(comfy / "models")
        unet, dm = os.path.join(models, "unet"), os.path.join(models, "diffusion_models")
        if unet in their_paths and dm in their_paths:
            i, j = their_paths.index(unet), their_paths.index(dm)
            their_paths[i], their_paths[j] = their_paths[j], their_paths[i]
        assert [str(p) for p in ours[key]] == their_paths, key
    # a models/ sub-folder ComfyUI does not know is a key of ours only (custom nodes register it)
    assert "weird_extra" in ours
