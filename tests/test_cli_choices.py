"""``comfyfixer fix --pick NAME=N`` / ``--url NAME=URL`` and the question on a terminal (issue 8.6)."""

from __future__ import annotations

import io
import json

import pytest

from fakehub.fixtures import fake_hub  # noqa: F401
from test_core_support import FUZZY, build_world, cli_world, run_cli  # noqa: F401




class Terminal(io.StringIO):
    def isatty(self):
        return True


CN = "controlnet/fuzzy_cn.safetensors"


@pytest.mark.parametrize("name", ["fuzzy_cn.safetensors", CN])
def test_pick_takes_an_unsure_candidate(capsys, world, name):
    code, out, _ = run_cli(capsys, "fix", world.workflow, "--comfyui-root", world.root, "--yes",
                           "--pick", f"{name}=1", "--json")
    report = json.loads(out)
    assert (world.models / "controlnet" / "fuzzy_cn.safetensors").read_bytes() == FUZZY
    planned = {p["filename"]: p for p in report["plan"]}
    assert planned["fuzzy_cn.safetensors"]["confidence"] == 1.0
    assert "picked by hand" in planned["fuzzy_cn.safetensors"]["reason"]
    assert code == 0 and report["failures"] == []


def test_url_downloads_from_a_pasted_link(capsys, world, fake_hub):  # noqa: F811
    data = b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " + bytes(range(200)) * 50
    fake_hub.add_hf_repo("someone/controlnets", {"cn_v1.safetensors": data})
    url = f"{fake_hub.hf_url}/someone/controlnets/blob/main/cn_v1.safetensors"
    code, out, _ = run_cli(capsys, "fix", world.workflow, "--comfyui-root", world.root, "--yes",
                           "--url", f"fuzzy_cn.safetensors={url}")
    assert code == 0, out
    assert (world.models / "controlnet" / "fuzzy_cn.safetensors").read_bytes() == data


@pytest.mark.parametrize("flag,value,words", [
    ("--pick", "nothing_like_it.safetensors=1", "no missing model"),
    ("--pick", "fuzzy_cn.safetensors=7", "does not exist"),
    ("--pick", "fuzzy_cn.safetensors=one", "candidate number"),
    ("--pick", "fuzzy_cn.safetensors", "NAME=VALUE"),
    ("--url", "fuzzy_cn.safetensors=https://huggingface.co/", "no missing model"),
    ("--url", "fuzzy_cn.safetensors=ftp://example.org/x.safetensors", ""),
])
def test_bad_choices_are_errors(capsys, world, flag, value, words):
    if words == "no missing model" and flag == "--url":
        value = "nothing_like_it.safetensors=https://huggingface.co/a/b/resolve/main/c.safetensors"
    code, out, err = run_cli(capsys, "fix", world.workflow, "--comfyui-root", world.root, "--yes", flag, value)
    assert code == 2, (out, err)
    assert words in " ".join(err.split())
    assert not (world.models / "controlnet" / "fuzzy_cn.safetensors").exists()


def test_terminal_asks_with_the_candidates(capsys, world, monkeypatch):
    # the unsure ControlNet: take candidate 1; then yes to the download
    monkeypatch.setattr("sys.stdin", Terminal("1\ny\n"))
    code, out, _ = run_cli(capsys, "fix", world.workflow, "--comfyui-root", world.root)
    assert "not sure" in out and "fuzzy_cn_v2.safetensors" in out and "61%" in out
    assert (world.models / "controlnet" / "fuzzy_cn.safetensors").read_bytes() == FUZZY
    assert code == 0


def test_terminal_enter_skips(capsys, world, monkeypatch):
    monkeypatch.setattr("sys.stdin", Terminal("\ny\n"))
    code, out, _ = run_cli(capsys, "fix", world.workflow, "--comfyui-root", world.root)
    assert code == 1 and not (world.models / "controlnet" / "fuzzy_cn.safetensors").exists()
    assert (world.models / "vae" / "my_vae.safetensors").exists()
