"""Red team: hostile file names from workflows, servers and callers; generated scripts run
for real against a local server.  Nothing is written outside the model folder, nothing
clobbers another download's working files, no name becomes code in a script."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from comfyfixersmart.core import ComfyFixerCore
from comfyfixersmart.download import DownloadManager
from comfyfixersmart.download.script import _ps_quote, generate_script
from comfyfixersmart.errors import UnsafePathError
from comfyfixersmart.inventory import ModelInventory
from comfyfixersmart.datamodel import ModelReference
from comfyfixersmart.security import safe_join, validate_relative_path
from dlserver import FileServer, loopback_config, payload

HOSTILE = [
    "../../x.safetensors", "/abs/x.safetensors", "C:\\x.safetensors", "c:x.safetensors", "\\\\srv\\share\\x.safetensors",
    "//srv/share/x.safetensors", "a/../../x.safetensors", "x\0.safetensors", "CON.safetensors", "aux.tar.safetensors",
    "COM1", "a" * 256 + ".safetensors", "ok/" * 400 + "x.safetensors", "x\u202egnp.ckpt", "\u2066x.safetensors",
    "x/./y.safetensors", "x:stream.safetensors", "x?.safetensors", "trailingdot.", "..", ".",
]


@pytest.mark.parametrize("name", HOSTILE, ids=lambda n: repr(n)[:30])
def test_hostile_relative_names_are_refused(name, tmp_path):
    with pytest.raises(UnsafePathError):
        validate_relative_path(name)
    with pytest.raises(UnsafePathError):
        safe_join(tmp_path, name)


@pytest.mark.parametrize("name", ["mod\u00e8le.safetensors", "e\u0301.safetensors", "日本語/モデル.safetensors",
                                  "sub\\dir\\x.safetensors", "x..y.safetensors", "-rf.safetensors"])
def test_odd_but_harmless_names_stay_inside(name, tmp_path):
    path = safe_join(tmp_path, name)
    assert os.path.commonpath([str(tmp_path.resolve()), str(path)]) == str(tmp_path.resolve())


# -- working-file names ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["x.safetensors.part", "x.safetensors.part.json", "X.SAFETENSORS.PART"])
def test_a_target_named_like_a_part_file_is_refused(server, make_config, tmp_path, name):
    server.add("/f", payload(100))
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "x.safetensors.part").write_bytes(b"half of another download")
    with DownloadManager(loopback_config(make_config)) as m:
        with pytest.raises(UnsafePathError):
            m.download_model(server.url("/f"), folder / name)
        [r] = m.download_models([{"url": server.url("/f"), "filename": name}], folder)
    assert not r.success and r.error_type == "UnsafePathError"
    assert (folder / "x.safetensors.part").read_bytes() == b"half of another download"
    assert server.requests == []


@pytest.mark.parametrize("disposition,kind", [
    ('attachment; filename="x.safetensors.part"', "UnsafePathError"),
    ('attachment; filename="../../../x.safetensors.part.json"', "UnsafePathError"),
    ("attachment; filename*=UTF-8''..%2F..%2Fevil.safetensors", None),
    ('attachment; filename="C:\\\\Windows\\\\evil.safetensors"', None),
    ('attachment; filename="CON"', None),
    ('attachment; filename=".."', "UnsafePathError"),
    ('attachment; filename="' + "a" * 300 + '.safetensors"', "UnsafePathError"),
])
def test_server_given_names_stay_in_the_folder(server, make_config, tmp_path, disposition, kind):
    data = payload(100)
    server.add("/f", data, disposition=disposition)
    folder = tmp_path / "a" / "models"
    folder.mkdir(parents=True)
    (folder / "x.safetensors.part").write_bytes(b"keep")
    with DownloadManager(loopback_config(make_config)) as m:
        r = m.download_model(server.url("/f"), folder)
    if kind:
        assert not r.success and r.error_type == kind
    else:
        assert r.success, r.error_message
        saved = Path(r.save_path)
        assert saved.parent == folder and saved.read_bytes() == data
    outside = [p for p in (tmp_path / "a").rglob("*") if p.is_file() and folder not in p.parents]
    assert outside == []
    assert (folder / "x.safetensors.part").read_bytes() == b"keep"


@pytest.fixture
def server():
    with FileServer() as srv:
        yield srv


# -- workflows through the core -----------------------------------------------------------------------

def test_hostile_workflow_names_fail_their_own_item_and_write_nothing_outside(make_config, tmp_path, server):
    root = tmp_path / "ComfyUI"
    (root / "models" / "checkpoints").mkdir(parents=True)
    (tmp_path / "x.safetensors").write_bytes(b"outside the models folder")
    data = payload(64)
    server.add("/ok.safetensors", data)
    config = loopback_config(make_config, comfyui_root=root)
    names = ["../../x.safetensors", "/etc/x.safetensors", "C:\\x.safetensors", "ok/../../../x.safetensors",
             "x.safetensors.part", "ok.safetensors"]
    specs = [{"url": server.url("/ok.safetensors"), "filename": n, "directory": "checkpoints"} for n in names]
    with ComfyFixerCore(config) as core:
        results = core.download_models(specs)
    by_name = {r.filename: r for r in results}
    assert by_name["ok.safetensors"].success
    assert sum(r.success for r in results) == 1
    assert (tmp_path / "x.safetensors").read_bytes() == b"outside the models folder"
    files = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()}
    assert {f for f in files if not f.startswith(("ComfyUI", "state", "cache", "logs", "output"))} == {
        "x.safetensors"}


def test_found_path_never_points_outside_the_model_folders(make_config, tmp_path):
    root = tmp_path / "ComfyUI"
    models = root / "models"
    (models / "checkpoints").mkdir(parents=True)
    (models / "loras").mkdir()
    (root / "secret.safetensors").write_bytes(b"s")
    (tmp_path / "secret.safetensors").write_bytes(b"s")
    (models / "loras" / "moved.safetensors").write_bytes(b"m")
    inv = ModelInventory(make_config(comfyui_root=root)).build_from_folders(
        {"checkpoints": [str(models / "checkpoints")], "loras": [str(models / "loras")]})
    for name in ("../../secret.safetensors", "../secret.safetensors", str(root / "secret.safetensors"),
                 "..\\..\\secret.safetensors", "moved.safetensors"):
        ref = inv.check(ModelReference(filename=name, node_type="CheckpointLoaderSimple",
                                       expected_type="checkpoint", expected_directory="checkpoints"))
        if name == "moved.safetensors":
            assert ref.status == "elsewhere" and ref.found_path == "loras/moved.safetensors"
        else:
            assert ref.status == "missing" and ref.found_path is None and ref.local_path is None, name


# -- scripts -------------------------------------------------------------------------------------------

SCRIPT_NAMES = ["$(touch PWNED).safetensors", "`touch PWNED`.safetensors", "a'b;touch PWNED&.safetensors",
                "x $HOME ${IFS}.safetensors", "-rf.safetensors", "quote\u2019s.safetensors", "sub/dir/ok.safetensors"]


@pytest.mark.skipif(not shutil.which("bash") or not shutil.which("curl"), reason="needs bash and curl")
def test_the_bash_script_downloads_hostile_names_literally(make_config, tmp_path):
    data = payload(3000)
    sha = hashlib.sha256(data).hexdigest()
    models_dir = tmp_path / "models $(touch PWNED)"
    work = tmp_path / "cwd"
    work.mkdir()
    with FileServer() as srv:
        srv.add("/m.safetensors", data)
        config = loopback_config(make_config, output_dir=models_dir)
        text = generate_script([{"url": srv.url("/m.safetensors"), "filename": n, "directory": "checkpoints",
                                 "sha256": sha} for n in SCRIPT_NAMES], config)
        script = tmp_path / "get.sh"
        script.write_text(text)
        env = {k: v for k, v in os.environ.items() if k not in ("MODELS_DIR",)}
        proc = subprocess.run(["bash", str(script)], cwd=work, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for name in SCRIPT_NAMES:
        assert (models_dir / "checkpoints" / name).read_bytes() == data, name
    assert not list(tmp_path.rglob("PWNED")) and not (work / "PWNED").exists()


def powershell_literal(text: str) -> str:
    """Parse a '...' literal the way PowerShell's tokenizer does (any of its four single-quote
    characters ends the string; two in a row stand for one)."""
    quotes = "'\u2018\u2019\u201a\u201b"
    assert text[0] in quotes
    out, i = [], 1
    while i < len(text):
        c = text[i]
        if c in quotes:
            if i + 1 < len(text) and text[i + 1] in quotes:
                out.append(text[i + 1])
                i += 2
                continue
            assert i == len(text) - 1, f"string ends early at {i}: the rest would run as code: {text[i:]!r}"
            return "".join(out)
        out.append(c)
        i += 1
    raise AssertionError("unterminated")


@pytest.mark.parametrize("name", SCRIPT_NAMES + ["\u2018x\u201a\u201by\u2019'.safetensors", "''"])
def test_powershell_literals_cannot_be_broken_out_of(name):
    assert powershell_literal(_ps_quote(name)) == name


def test_powershell_script_quotes_every_hostile_name(make_config, tmp_path):
    config = make_config(output_dir=tmp_path / "m\u2019; Remove-Item -Recurse ~; \u2019")
    text = generate_script([{"url": "https://huggingface.co/o/r/resolve/main/x.safetensors",
                             "filename": "a\u2019; Start-Process calc; \u2019.safetensors",
                             "directory": "checkpoints"}], config, shell="powershell")
    line = next(li for li in text.splitlines() if li.startswith("if (-not (Get-Model"))
    start = line.index("(Join-Path $ModelsDir ") + len("(Join-Path $ModelsDir ")
    literal = line[start:line.index(")", start)]
    assert powershell_literal(literal) == "checkpoints/a\u2019; Start-Process calc; \u2019.safetensors"
