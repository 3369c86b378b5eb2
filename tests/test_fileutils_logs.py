"""fileutils.py (atomic writes) and logs.py (no secret ever reaches a handler)."""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path

import pytest

from comfyfixersmart import fileutils
from comfyfixersmart.fileutils import atomic_write_bytes, ensure_directory, save_json_file
from comfyfixersmart.logs import RedactingFilter, get_logger
from comfyfixersmart.security import register_secret
from comfyfixersmart.settings import Config


def leftovers(directory: Path, target: str) -> list:
    return sorted(p.name for p in directory.iterdir() if p.name != target)


# -- fileutils ----------------------------------------------------------------------------

def test_atomic_write_creates_parents_and_replaces(tmp_path):
    target = tmp_path / "a" / "b" / "out.json"
    assert atomic_write_bytes(target, b"one") == target
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert leftovers(target.parent, "out.json") == []


@pytest.mark.parametrize("step", ["write", "fsync", "replace"])
def test_failure_mid_write_keeps_the_old_file(tmp_path, monkeypatch, step):
    target = tmp_path / "state.json"
    target.write_bytes(b'{"old": true}')

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    if step == "write":
        real_fdopen = os.fdopen

        def fdopen(fd, *a, **k):
            fh = real_fdopen(fd, *a, **k)
            original = fh.write

            def write(data):
                original(data[: len(data) // 2])  # half the bytes reach the temp file
                raise OSError(28, "No space left on device")
            fh.write = write
            return fh
        monkeypatch.setattr(fileutils.os, "fdopen", fdopen)
    elif step == "fsync":
        monkeypatch.setattr(fileutils.os, "fsync", fail)
    else:
        monkeypatch.setattr(fileutils.os, "replace", fail)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b'{"new": "a much longer replacement body"}')
    assert target.read_bytes() == b'{"old": true}'
    assert leftovers(tmp_path, "state.json") == []


def test_interrupt_mid_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "state.json"
    target.write_bytes(b"old")

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(fileutils.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path, "state.json") == []


def test_save_json_file(tmp_path):
    class Obj:
        def to_dict(self):
            return {"x": 1}

    target = save_json_file({"set": {3, 1}, "path": Path("/a/b"), "obj": Obj(), "ü": "é"}, tmp_path / "d.json")
    text = target.read_text(encoding="utf-8")
    assert json.loads(text) == {"set": [1, 3], "path": "/a/b", "obj": {"x": 1}, "ü": "é"}
    assert text.endswith("\n") and "ü" in text  # readable UTF-8, not \\u escapes


def test_save_json_unserialisable_leaves_the_file_alone(tmp_path):
    target = tmp_path / "d.json"
    target.write_text('{"keep": 1}')
    with pytest.raises(TypeError):
        save_json_file({"bad": object()}, target)
    assert json.loads(target.read_text()) == {"keep": 1}
    assert leftovers(tmp_path, "d.json") == []


def test_ensure_directory(tmp_path):
    d = ensure_directory(tmp_path / "x" / "y")
    assert d.is_dir()
    assert ensure_directory(str(d)) == d


# -- logs ---------------------------------------------------------------------------------

@pytest.fixture
def captured():
    """A handler on the root logger, as an application would install one."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    logging.getLogger("comfyfixersmart").setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(old_level)


def test_registered_token_never_reaches_handlers(captured):
    config = Config(civitai_token="civ-0123456789-secret", hf_token="hf_aaaaaaaaaaaaaaaaaaaaaaaaaaaa")
    log = get_logger("comfyfixersmart.test_a")
    log.info("token is %s", config.civitai_token)
    log.warning("hf %s and %r", config.hf_token, {"Authorization": f"Bearer {config.hf_token}"})
    log.error(f"inline {config.civitai_token}")
    out = captured.getvalue()
    assert "civ-0123456789-secret" not in out and "hf_aaaaaaaaaaaaaaaaaaaaaaaaaaaa" not in out
    assert out.count("***") >= 3


def test_unregistered_bearer_and_query_tokens_are_redacted(captured):
    log = get_logger("test_b")  # short names are put under comfyfixersmart.
    assert log.name == "comfyfixersmart.test_b"
    log.info("headers %s", {"Authorization": "Bearer eyJunregistered.jwt.value"})
    log.info("GET https://civitai.com/api/download/models/1?type=Model&token=querytokenvalue")
    log.info("redirect https://x.r2.cloudflarestorage.com/f?X-Amz-Signature=deadbeefcafe&X-Amz-Credential=AKIAX")
    log.info("proxy http://user:hunter2@proxy.local:3128")
    out = captured.getvalue()
    for secret in ("eyJunregistered", "querytokenvalue", "deadbeefcafe", "AKIAX", "hunter2"):
        assert secret not in out, secret
    assert "type=Model" in out


def test_tracebacks_are_redacted(captured):
    register_secret("tb-secret-value-42")
    log = get_logger("comfyfixersmart.test_c")
    try:
        raise RuntimeError("request failed for https://h/x?token=tb-secret-value-42 Bearer tb-secret-value-42")
    except RuntimeError:
        log.exception("download failed")
    log.info("stack", stack_info=True)
    out = captured.getvalue()
    assert "RuntimeError" in out and "download failed" in out
    assert "tb-secret-value-42" not in out


def test_bad_format_string_does_not_break_logging(captured):
    log = get_logger("comfyfixersmart.test_d")
    log.info("100%% done %s %s", "only-one-arg")  # noqa: PLE1206 - on purpose
    log.info("still logging")
    assert "still logging" in captured.getvalue()


def test_filter_installed_once_per_logger():
    a = get_logger("comfyfixersmart.test_e")
    b = get_logger("comfyfixersmart.test_e")
    assert a is b
    assert sum(isinstance(f, RedactingFilter) for f in a.filters) == 1
    assert get_logger() is logging.getLogger("comfyfixersmart")
    assert get_logger("comfyfixersmart") is logging.getLogger("comfyfixersmart")


def test_root_package_logger_redacts_its_own_records(captured):
    register_secret("root-level-secret-99")
    get_logger().warning("root-level-secret-99")
    assert "root-level-secret-99" not in captured.getvalue()
