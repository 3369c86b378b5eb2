"""StateManager: history, jobs that survive a crash, concurrent writers, corrupt/locked DB."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from comfyfixersmart.errors import StateError, ValidationError
from comfyfixersmart.security import register_secret
from comfyfixersmart.state import StateManager

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def state(make_config):
    with StateManager(make_config()) as sm:
        yield sm


def test_history_roundtrip(state, tmp_path):
    f = tmp_path / "m.safetensors"
    f.write_bytes(b"x")
    rec = state.record_download("sd15/m.safetensors", "civitai", 123, path=str(f), sha256="ab" * 32, size=1,
                                url="https://civitai.com/api/download/models/1?token=SECRETVALUE", note="hi")
    state.record_download("gone.safetensors", "huggingface", "o/r", path=str(tmp_path / "gone.safetensors"))
    assert rec.source_id == "123" and "SECRETVALUE" not in rec.url
    assert state.is_downloaded("sd15/m.safetensors") and state.is_downloaded("m.safetensors")
    assert state.is_downloaded(str(f))
    assert not state.is_downloaded("gone.safetensors")  # recorded, but the file is not there any more
    assert not state.is_downloaded("other.safetensors")
    history = state.get_download_history()
    assert [h.filename for h in history] == ["sd15/m.safetensors", "gone.safetensors"]
    assert history[0].sha256 == "ab" * 32 and history[0].size == 1
    out = state.export_json(tmp_path / "export" / "state.json")
    data = json.loads(out.read_text())
    assert [d["filename"] for d in data["downloads"]] == ["sd15/m.safetensors", "gone.safetensors"]
    assert "SECRETVALUE" not in out.read_text()
    assert state.clear_history() == 2
    assert state.get_download_history() == [] and not state.is_downloaded("m.safetensors")


def test_default_location_is_the_state_dir(make_config, tmp_path, monkeypatch):
    from comfyfixersmart.settings import Config

    monkeypatch.setenv("COMFYFIXER_STATE_DIR", str(tmp_path / "from-env"))
    with StateManager(Config.load()) as sm:
        sm.record_download("a", "s", "1")
        assert sm.path == tmp_path / "from-env" / "state.db" and sm.path.exists()


def test_jobs_lifecycle(state):
    register_secret("tok-ABCDEFGH1234")
    job = state.enqueue_job("download", {"models": ["a", "b"], "auth": "Bearer tok-ABCDEFGH1234"})
    assert state.get_job(job).status == "queued"
    state.update_job(job, status="running")
    state.update_item(job, "a", status="downloading", downloaded=10, total=100, url_hint="x")
    state.update_item(job, "a", downloaded=50)
    state.update_item(job, "b", status="failed", error="HTTP 500")
    got = state.get_job(job)
    assert got.status == "running"
    assert [(i.item_id, i.status, i.downloaded, i.total) for i in got.items] == [
        ("a", "downloading", 50, 100), ("b", "failed", 0, None)]
    assert got.items[0].data == {"url_hint": "x"}
    assert "tok-ABCDEFGH1234" not in json.dumps(got.to_dict())
    state.update_job(job, status="done", result={"ok": 1})
    assert state.get_job(job).result == {"ok": 1}
    assert [j.id for j in state.list_jobs(status="done")] == [job]
    assert state.interrupted_jobs() == []  # finished jobs are not interrupted
    with pytest.raises(ValidationError):
        state.update_job(job, status="exploded")
    with pytest.raises(ValidationError):
        state.update_item("nope", "a", status="done")
    assert state.get_job("nope") is None


CRASHER = textwrap.dedent("""
    import os, signal, sys
    from comfyfixersmart.state import StateManager
    sm = StateManager(path=sys.argv[1])
    job = sm.enqueue_job("download", {"n": 1})
    sm.update_job(job, status="running")
    sm.update_item(job, "a", status="downloading", downloaded=5)
    print(job, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_a_job_running_when_the_process_died_is_interrupted(tmp_path):
    db = tmp_path / "state.db"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", CRASHER, str(db)], capture_output=True, text=True, env=env)
    assert proc.returncode == -signal.SIGKILL
    job_id = proc.stdout.strip()
    with StateManager(path=db) as sm:
        mine = sm.enqueue_job("download", {})
        sm.update_job(mine, status="running")  # alive: ours
        interrupted = sm.interrupted_jobs()
        assert [j.id for j in interrupted] == [job_id]
        assert interrupted[0].items[0].downloaded == 5
        sm.update_job(job_id, status="running")  # resume it
        assert sm.interrupted_jobs() == []
    with StateManager(path=db) as other:  # another live manager in this process does not steal our job
        assert other.interrupted_jobs() == []


def _writer(db: str, tag: str, n: int) -> None:
    sm = StateManager(path=db)
    for i in range(n):
        sm.record_download(f"{tag}-{i}", "test", str(i))
    sm.close()


def test_concurrent_writers_threads_and_processes(tmp_path):
    db = str(tmp_path / "state.db")
    StateManager(path=db).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(db, f"p{i}", 40)) for i in range(3)]
    threads = [threading.Thread(target=_writer, args=(db, f"t{i}", 40)) for i in range(3)]
    shared = StateManager(path=db)
    threads += [threading.Thread(target=lambda k=k: [shared.record_download(f"s{k}-{i}", "x", i) for i in range(40)])
                for k in range(3)]
    for w in procs + threads:
        w.start()
    for w in procs + threads:
        w.join(60)
    assert all(p.exitcode == 0 for p in procs)
    names = {r.filename for r in shared.get_download_history()}
    assert len(names) == 9 * 40
    shared.close()


def test_corrupt_database_is_moved_aside_and_replaced(tmp_path, caplog):
    db = tmp_path / "state.db"
    db.write_bytes(b"this is not a sqlite database at all" * 100)
    caplog.set_level(logging.WARNING, logger="comfyfixersmart")
    with StateManager(path=db) as sm:
        sm.record_download("a.safetensors", "civitai", "1")
        assert sm.is_downloaded("a.safetensors")
    aside = list(tmp_path.glob("state.db.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not")
    assert "corrupt" in caplog.text and aside[0].name in caplog.text


def test_readable_rows_of_a_damaged_database_are_kept(tmp_path):
    db = tmp_path / "state.db"
    with StateManager(path=db) as sm:
        for i in range(300):
            sm.record_download(f"m{i}.safetensors", "civitai", str(i), url="https://civitai.com/x" * 5)
    # damage the index pages only: the table still reads, but the integrity check fails
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = [r[0] for r in conn.execute(
        "SELECT pageno FROM dbstat WHERE name = 'downloads_basename'")] if _has_dbstat(conn) else []
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    if not pages:
        pytest.skip("sqlite has no dbstat to find index pages")
    with open(db, "r+b") as fh:
        for p in pages:
            fh.seek((p - 1) * page_size + 100 if p == 1 else (p - 1) * page_size)
            fh.write(b"\xff" * 64)
    with StateManager(path=db) as sm:
        names = {r.filename for r in sm.get_download_history()}
    assert list(tmp_path.glob("state.db.corrupt-*"))
    assert len(names) == 300


def _has_dbstat(conn) -> bool:
    try:
        conn.execute("SELECT 1 FROM dbstat LIMIT 1")
        return True
    except sqlite3.Error:
        return False


def test_locked_database_retries_then_state_error(tmp_path):
    db = tmp_path / "state.db"
    StateManager(path=db).close()
    blocker = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN EXCLUSIVE")
    sm = StateManager(path=db, busy_timeout=0.05, retries=2)
    with pytest.raises(StateError, match="locked"):
        sm.record_download("a", "s", "1")
    # a lock released while we back off is waited for
    timer = threading.Timer(0.1, lambda: blocker.execute("COMMIT"))
    timer.start()
    patient = StateManager(path=db, busy_timeout=0.05, retries=8)
    patient.record_download("b", "s", "1")
    timer.join()
    assert [r.filename for r in patient.get_download_history()] == ["b"]
    blocker.close()
    sm.close()
    patient.close()


def test_unwritable_state_dir_is_a_state_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StateError):
        StateManager(path=blocker / "sub" / "state.db").record_download("a", "s", "1")
