"""Generated download scripts: the bash one is run for real against a local server."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from comfyfixersmart.datamodel import SearchResult
from comfyfixersmart.download import DownloadManager
from comfyfixersmart.errors import HostNotAllowedError, UnsafePathError, ValidationError
from dlserver import loopback_config, payload
from dlserver.fixtures import server, sha  # noqa: F401

TOKEN = "civitai-script-token-987654321"
pytestmark = pytest.mark.skipif(shutil.which("curl") is None or shutil.which("bash") is None,
                                reason="bash and curl are needed to run the generated script")




def run_script(text: str, tmp_path, models_dir, **env):
    script = tmp_path / "get_models.sh"
    script.write_text(text)
    full_env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "MODELS_DIR": str(models_dir), **env}
    return subprocess.run(["bash", str(script)], env=full_env, capture_output=True, text=True, timeout=60)


def test_bash_script_downloads_verifies_and_sends_the_token_only_to_civitai(server, make_config, tmp_path):
    a, b = payload(300_000, 1), payload(5000, 2)
    server.add("/api/download/models/1", redirect=server.url("/storage/a?sig=x", host="localhost"))
    server.add("/storage/a", a)
    server.add("/hf/resolve/main/b.safetensors", b)
    cfg = loopback_config(make_config, civitai_base_url=f"http://127.0.0.1:{server.port}", civitai_token=TOKEN)
    models = [
        {"url": server.url("/api/download/models/1?token=leaked"), "filename": "sd15/a.safetensors",
         "directory": "checkpoints", "sha256": sha(a).upper()},
        SearchResult(backend="huggingface", model_id="r", name="b", filename="b.safetensors", model_type="lora",
                     download_url=server.url("/hf/resolve/main/b.safetensors", host="localhost"),
                     hash_sha256=sha(b), directory="loras", save_as="b.safetensors"),
    ]
    with DownloadManager(cfg) as m:
        text = m.generate_script(models)
    assert TOKEN not in text and "leaked" not in text
    assert "$CIVITAI_API_TOKEN" in text or "CIVITAI_API_TOKEN" in text
    assert "--continue-at -" in text and "sha256sum -c" in text and "--fail" in text and "--location" in text
    out = tmp_path / "models"
    proc = run_script(text, tmp_path, out, CIVITAI_API_TOKEN=TOKEN)
    assert proc.returncode == 0, proc.stderr
    assert (out / "checkpoints" / "sd15" / "a.safetensors").read_bytes() == a
    assert (out / "loras" / "b.safetensors").read_bytes() == b
    assert not list(out.rglob("*.part"))
    civitai_hop, storage_hop, hf = server.requests
    assert civitai_hop.header("Authorization") == f"Bearer {TOKEN}"
    assert "token=" not in civitai_hop.path
    assert storage_hop.host == "localhost" and storage_hop.header("Authorization") is None
    assert hf.header("Authorization") is None
    # a second run finds both files and fetches nothing
    again = run_script(text, tmp_path, out, CIVITAI_API_TOKEN=TOKEN)
    assert again.returncode == 0 and len(server.requests) == 3 and "present:" in again.stdout


def test_bash_script_fails_on_a_wrong_hash_and_leaves_no_file(server, make_config, tmp_path):
    server.add("/f", payload(1000))
    server.add("/g", payload(10, 3))
    with DownloadManager(loopback_config(make_config)) as m:
        text = m.generate_script([
            {"url": server.url("/f"), "filename": "f.safetensors", "directory": "loras", "sha256": "ab" * 32},
            {"url": server.url("/g"), "filename": "g.safetensors", "directory": "loras"},
        ])
    out = tmp_path / "models"
    proc = run_script(text, tmp_path, out)
    assert proc.returncode == 1
    assert "sha256 mismatch" in proc.stderr and "1 download(s) failed" in proc.stderr
    assert sorted(p.name for p in (out / "loras").iterdir()) == ["g.safetensors"]


def test_bash_script_resumes_a_part_file(server, make_config, tmp_path):
    data = payload(400_000)
    server.add("/f", data)
    with DownloadManager(loopback_config(make_config)) as m:
        text = m.generate_script([{"url": server.url("/f"), "filename": "f.safetensors", "directory": "vae",
                                   "sha256": sha(data)}])
    out = tmp_path / "models"
    (out / "vae").mkdir(parents=True)
    (out / "vae" / "f.safetensors.part").write_bytes(data[:150_000])
    proc = run_script(text, tmp_path, out)
    assert proc.returncode == 0, proc.stderr
    assert server.requests[0].header("Range") == "bytes=150000-"
    assert (out / "vae" / "f.safetensors").read_bytes() == data


def test_bash_script_restarts_when_the_server_cannot_resume(server, make_config, tmp_path):
    data = payload(200_000)
    server.add("/f", data, ranges=False)
    with DownloadManager(loopback_config(make_config)) as m:
        text = m.generate_script([{"url": server.url("/f"), "filename": "f.safetensors", "sha256": sha(data)}])
    out = tmp_path / "models"
    out.mkdir()
    (out / "f.safetensors.part").write_bytes(b"junk" * 1000)
    proc = run_script(text, tmp_path, out)
    assert proc.returncode == 0, proc.stderr
    assert (out / "f.safetensors").read_bytes() == data


def test_bash_script_quotes_hostile_values(server, make_config, tmp_path):
    data = payload(100)
    server.add("/f", data)
    with DownloadManager(loopback_config(make_config)) as m:
        text = m.generate_script([{"url": server.url("/f") + "?q=$(touch%20pwned)", "filename": "it's $(x).safetensors",
                                   "directory": "loras"}])
    out = tmp_path / "models"
    proc = run_script(text, tmp_path, out)
    assert proc.returncode == 0, proc.stderr
    assert (out / "loras" / "it's $(x).safetensors").read_bytes() == data
    assert not (tmp_path / "pwned").exists()


def test_script_inputs_are_validated(make_config):
    with DownloadManager(make_config()) as m:
        with pytest.raises(UnsafePathError):
            m.generate_script([{"url": "https://civitai.com/api/download/models/1", "filename": "../x"}])
        with pytest.raises(HostNotAllowedError):
            m.generate_script([{"url": "file:///etc/passwd", "filename": "x"}])
        with pytest.raises(ValidationError):
            m.generate_script([], shell="fish")


def test_powershell_script_shape(make_config):
    cfg = make_config(civitai_token=TOKEN, hf_token="hf_" + "x" * 30)
    with DownloadManager(cfg) as m:
        text = m.generate_script([
            {"url": "https://civitai.com/api/download/models/12?fileId=34", "filename": "a.safetensors",
             "directory": "loras", "sha256": "AB" * 32},
            {"url": "https://huggingface.co/o/r/resolve/main/it's.safetensors", "filename": "it's.safetensors",
             "directory": "vae"},
        ], shell="powershell")
    assert TOKEN not in text and "hf_xxx" not in text
    assert "Get-FileHash -Algorithm SHA256" in text and "--continue-at" in text and "curl.exe" in text
    assert "'CIVITAI_API_TOKEN'" in text and "'HF_TOKEN'" in text
    assert "(Join-Path $ModelsDir 'loras/a.safetensors')" in text
    assert "'https://huggingface.co/o/r/resolve/main/it''s.safetensors'" in text
    assert "Move-Item -LiteralPath $part" in text


def test_custom_template(make_config):
    with DownloadManager(make_config()) as m:
        text = m.generate_script([{"url": "https://huggingface.co/o/r/resolve/main/a.sft", "filename": "a.sft"}],
                                 template="# ${count} file(s)\n${helpers}\n${commands}\n")
    assert text.startswith("# 1 file(s)\n") and "fetch https://huggingface.co/o/r/resolve/main/a.sft" in text
