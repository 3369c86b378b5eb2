"""What the CLI prints is safe for a terminal (issue 10.5) and fits 80 columns (issue 11.9).

A workflow's strings are untrusted: escape sequences (OSC 52 writes the clipboard, CSI moves
the cursor), C1 controls and bidi overrides never reach the terminal, while ``--json`` keeps
the same data (written as ``\\uXXXX``).  In 80 columns file names stay whole on one line,
or are cut in the middle when they cannot fit.
"""

from __future__ import annotations

import json

import pytest
from rich.cells import cell_len

from comfyfixersmart import cli
from comfyfixersmart.cli import _fit_middle
from comfyfixersmart.textsafe import escape_json_controls, strip_controls

ATTACKS = {
    "osc52_bel": "\x1b]52;c;ZXZpbCBjb21tYW5k\x07",
    "osc52_st": "\x1b]52;c;ZXZpbA==\x1b\\",
    "osc8_link": "\x1b]8;;http://evil.example\x1b\\click\x1b]8;;\x1b\\",
    "csi_clear": "\x1b[2J\x1b[H",
    "csi_cursor": "\x1b[1A\x1b[2K",
    "c1_csi": "\x9b2J",
    "c1_osc": "\x9d52;c;eA==\x9c",
    "dcs": "\x1bPq#0;2;0;0;0\x1b\\",
    "reset": "\x1bc",
    "bidi": "\u202etxt.exe\u202c",
    "isolate": "\u2066x\u2069",
    "cr_overwrite": "\rsafe_name",
    "bell_backspace": "\x07\x08\x08",
    "nul_del": "\x00\x7f",
}
BAD = ["\x1b", "\x9b", "\x9d", "\x9c", "\u202e", "\u202c", "\u2066", "\u2069", "\r", "\x07", "\x08", "\x00", "\x7f"]


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_strip_controls_removes_every_kind(name):
    text = f"model{ATTACKS[name]}.safetensors"
    clean = strip_controls(text)
    assert not any(c in clean for c in BAD), repr(clean)
    assert clean.startswith("model") and clean.endswith(".safetensors")
    assert strip_controls("tab\tand\nnewline kept, ünïcödé too 日本") == "tab\tand\nnewline kept, ünïcödé too 日本"


def test_json_escaping_is_lossless():
    data = {"n": "a\x9bb\u202ec\x7fd\u2028"}
    text = escape_json_controls(json.dumps(data, ensure_ascii=False))
    assert not any(c in text for c in ("\x9b", "\u202e", "\x7f", "\u2028"))
    assert json.loads(text) == data


def hostile_workflow(tmp_path):
    nodes = [{"id": i + 1, "type": "LoraLoader", "mode": 0, "properties": {},
              "widgets_values": [f"lora_{name}{ATTACKS[name]}.safetensors", 1, 1]}
             for i, name in enumerate(sorted(ATTACKS))]
    nodes.append({"id": 99, "type": f"Evil{ATTACKS['osc52_bel']}Node", "mode": 0, "properties": {},
                  "widgets_values": [f"x{ATTACKS['csi_clear']}.safetensors"]})
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps({"last_node_id": 99, "nodes": nodes, "links": [], "version": 0.4}))
    return path


@pytest.mark.parametrize("verbose", [[], ["-vv"]])
def test_scan_never_prints_escapes(tmp_path, capsys, monkeypatch, verbose):
    monkeypatch.setenv("COLUMNS", "200")
    root = tmp_path / "ComfyUI"
    (root / "models" / "loras").mkdir(parents=True)
    path = hostile_workflow(tmp_path)
    cli.main([*verbose, "scan", str(path), "--comfyui-root", str(root)])
    out, err = capsys.readouterr()
    for stream in (out, err):
        assert not any(c in stream for c in BAD), [c for c in BAD if c in stream]
    assert "lora_bidi" in out and "txt.exe" in out  # the rest of the name is still shown


def test_scan_json_keeps_the_data_but_no_raw_controls(tmp_path, capsys):
    root = tmp_path / "ComfyUI"
    (root / "models" / "loras").mkdir(parents=True)
    path = hostile_workflow(tmp_path)
    cli.main(["scan", str(path), "--comfyui-root", str(root), "--json"])
    out = capsys.readouterr().out
    assert not any(c in out for c in BAD)
    names = {r["filename"] for wf in json.loads(out)["workflows"] for r in wf["references"]}
    assert any("\x9b" in n for n in names)  # lossless: the report still says what the file is called


# -- 80 columns ----------------------------------------------------------------------------------------

LONG = [
    "sdxl/juggernautXL_juggXIByRundiffusion.safetensors",
    "flux1-dev-fp8-e4m3fn-with-a-long-suffix-v2.safetensors",
    "wan2.1_i2v_720p_14B_fp8_e4m3fn_scaled.safetensors",
    "日本語のモデル名_とても長い名前_v1.safetensors",
]


def long_workflow(tmp_path, extra=()):
    names = [*LONG, *extra]
    nodes = [{"id": i + 1, "type": "CheckpointLoaderSimple", "mode": 0, "properties": {},
              "widgets_values": [n]} for i, n in enumerate(names)]
    path = tmp_path / "long.json"
    path.write_text(json.dumps({"last_node_id": len(nodes), "nodes": nodes, "links": [], "version": 0.4}))
    return path


@pytest.mark.parametrize("columns", [80, 100])
def test_scan_keeps_file_names_whole_in_narrow_terminals(tmp_path, capsys, monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", str(columns))
    root = tmp_path / "ComfyUI"
    (root / "models" / "checkpoints").mkdir(parents=True)
    cli.main(["scan", str(long_workflow(tmp_path)), "--comfyui-root", str(root)])
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert max(cell_len(line.rstrip()) for line in lines) <= columns
    for name in LONG:
        assert any(name in line for line in lines), name  # whole, on one line


def test_a_name_too_long_for_the_terminal_is_cut_in_the_middle(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    huge = "a_really_" + "very_" * 20 + "long_name_final_v3.safetensors"
    root = tmp_path / "ComfyUI"
    (root / "models" / "checkpoints").mkdir(parents=True)
    cli.main(["scan", str(long_workflow(tmp_path, [huge])), "--comfyui-root", str(root)])
    lines = capsys.readouterr().out.splitlines()
    assert max(cell_len(line.rstrip()) for line in lines) <= 80
    cut = [line for line in lines if "a_really_" in line]
    assert len(cut) == 1 and "…" in cut[0] and "final_v3.safetensors" in cut[0]


def test_json_is_the_same_at_any_width(tmp_path, capsys, monkeypatch):
    root = tmp_path / "ComfyUI"
    (root / "models" / "checkpoints").mkdir(parents=True)
    path = long_workflow(tmp_path)
    outs = []
    for columns in ("40", "80", "250"):
        monkeypatch.setenv("COLUMNS", columns)
        cli.main(["scan", str(path), "--comfyui-root", str(root), "--json"])
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1] == outs[2]
    assert {r["filename"] for r in json.loads(outs[0])["workflows"][0]["references"]} == set(LONG)


@pytest.mark.parametrize("text,width", [("abcdefghijklmnopqrstuvwxyz.safetensors", 20),
                                        ("日本語のモデル名_とても長い名前.safetensors", 21), ("short", 20),
                                        ("x" * 100, 5)])
def test_fit_middle(text, width):
    out = _fit_middle(text, width)
    assert cell_len(out) <= max(width, 5)
    if cell_len(text) <= width:
        assert out == text
    else:
        assert "…" in out and text.startswith(out.split("…")[0]) and text.endswith(out.split("…")[1])
