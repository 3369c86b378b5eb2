"""Property test: ModelInventory.check agrees with a brute-force oracle on random trees."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comfyfixersmart.datamodel import ELSEWHERE, MISSING, PRESENT, ModelReference
from comfyfixersmart.errors import UnsafePathError
from comfyfixersmart.inventory import ModelInventory
from comfyfixersmart.security import validate_relative_path
from comfyfixersmart.settings import Config

FOLDERS = ["loras", "checkpoints", "vae"]
DIRS = ["", "a/", "b/", "A/", "a/b/"]
NAMES = ["x.safetensors", "X.safetensors", "y.pt", "notes.txt", "z.gguf"]
ROOTS = ["models", "extra"]  # loras and vae have two roots

files_st = st.lists(st.tuples(st.sampled_from(ROOTS), st.sampled_from(FOLDERS), st.sampled_from(DIRS),
                              st.sampled_from(NAMES)), max_size=12)
refs_st = st.lists(st.tuples(st.sampled_from(FOLDERS),
                             st.sampled_from(DIRS + ["../", "/", "c/"]), st.sampled_from(NAMES + ["w.pt"])),
                   min_size=1, max_size=8)


def _roots(base: Path):
    return {
        "loras": [base / "models" / "loras", base / "extra" / "loras"],
        "checkpoints": [base / "models" / "checkpoints"],
        "vae": [base / "extra" / "vae", base / "models" / "vae"],
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files=files_st, refs=refs_st)
def test_check_matches_oracle(files, refs):
    # these keys list ComfyUI's supported_pt_extensions: a .gguf there is never offered
    exts = {".safetensors", ".pt"}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for root, folder, d, name in files:
            path = base / root / folder / d / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"m")
        roots = _roots(base)
        config = Config(cache_dir=base / "cache", state_dir=base / "state", log_dir=base / "logs")
        inv = ModelInventory(config, case_sensitive=True).build_from_folders(roots)

        on_disk = []  # (folder, rel, abs) of every model file the oracle knows
        for folder, dirs in roots.items():
            for r in dirs:
                for dirpath, _dirs, names in os.walk(r):
                    for n in names:
                        if os.path.splitext(n)[1] in exts:
                            full = os.path.join(dirpath, n)
                            on_disk.append((folder, os.path.relpath(full, r).replace(os.sep, "/"), full))

        for folder, d, name in refs:
            ref = ModelReference(d + name, "Loader", folder, folder)
            inv.check(ref)
            try:
                rel = validate_relative_path(d + name)
            except UnsafePathError:
                assert ref.status == MISSING
                continue
            holders = [r for r in roots[folder] if (r / rel).is_file() and os.path.splitext(rel)[1] in exts]
            if holders:
                assert ref.status == PRESENT, (ref, files)
                assert ref.local_path == str(holders[0] / rel)  # the first root wins
                continue
            same_name = [f for f in on_disk if f[1].rsplit("/", 1)[-1].casefold() == name.casefold()]
            if same_name:
                assert ref.status == ELSEWHERE, (ref, files)
                found_folder, found_rel = ref.found_path.split("/", 1)
                assert (found_folder, found_rel, ref.local_path) in same_name
                # its own folder is preferred when it has a candidate
                if any(f[0] == folder for f in same_name):
                    assert found_folder == folder
            else:
                assert ref.status == MISSING, (ref, files)
                assert ref.found_path is None and ref.local_path is None
