"""JobManager: real downloads (DownloadManager + StateManager) from a local file server."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from dlserver import payload
from dlserver.fixtures import server  # noqa: F401

from comfyfixersmart.errors import JobConflictError, JobNotFoundError
from comfyfixersmart.service.jobs import JobManager, MemoryJobStore, PlanOutcome
from comfyfixersmart.service.store import StateJobStore
from comfyfixersmart.service.validation import validate_download_item

REPO = Path(__file__).resolve().parents[1]


class Events:
    """Collects what the page would receive over the websocket."""

    def __init__(self):
        self.lock = threading.Lock()
        self.items = []

    def __call__(self, event, data):
        with self.lock:
            self.items.append((time.monotonic(), event, json.loads(json.dumps(data))))

    def of(self, event):
        with self.lock:
            return [(t, d) for t, e, d in self.items if e == event]


class ManualClock:
    """A clock that moves only when the test says so (thread-safe enough: one float)."""

    def __init__(self, now=100.0):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


@pytest.fixture
def models(tmp_path):
    root = tmp_path / "models"
    for key in ("checkpoints", "loras"):
        (root / key).mkdir(parents=True)
    return {"checkpoints": [str(root / "checkpoints")], "loras": [str(root / "loras")]}


@pytest.fixture
def config(make_config):
    return make_config(allowed_hosts=["127.0.0.1:*"], chunk_size=16 * 1024, download_timeout=10)


@pytest.fixture
def manager_factory(config):
    made = []

    def factory(**kw):
        kw.setdefault("store", StateJobStore.from_config(config))
        kw.setdefault("emit", Events())
        manager = JobManager(kw.pop("config", config), **kw)
        manager.events = kw["emit"]
        made.append(manager)
        return manager

    yield factory
    for manager in made:
        manager.shutdown(wait=True)


def spec(server, models, config, path, filename, directory="checkpoints", **extra):
    raw = {"filename": filename, "directory": directory, "url": server.url(path), **extra}
    return validate_download_item(raw, models, config)


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError("condition not reached in time")


def test_download_job_runs_to_done(server, models, config, manager_factory):
    a, b = payload(300_000, 1), payload(70_000, 2)
    server.add("/a.safetensors", a)
    server.add("/b.safetensors", b)
    jobs = manager_factory()
    job = jobs.submit_download([
        spec(server, models, config, "/a.safetensors", "sd15/a.safetensors", sha256=hashlib.sha256(a).hexdigest()),
        spec(server, models, config, "/b.safetensors", "b.safetensors", directory="loras", size=len(b)),
    ])
    assert job["kind"] == "download" and job["state"] in ("queued", "running")
    assert jobs.wait_idle(15)
    done = jobs.get(job["id"])
    assert done["state"] == "done"
    assert done["summary"] == {"total": 2, "done": 2, "failed": 0, "cancelled": 0}
    first = done["items"][0]
    assert first["state"] == "done" and first["downloaded"] == len(a) and first["error"] is None
    assert first["sha256"] == hashlib.sha256(a).hexdigest()
    assert Path(models["checkpoints"][0], "sd15", "a.safetensors").read_bytes() == a
    assert Path(models["loras"][0], "b.safetensors").read_bytes() == b
    # the page heard about it: job states and a final progress event per item (the job is
    # final a moment before its last event is out, hence the wait)
    def job_states():
        return [d["state"] for _, d in jobs.events.of("comfyfixer.job") if d["id"] == job["id"]]

    wait_for(lambda: job_states()[-1] == "done")
    assert "running" in job_states()
    def finals():
        return [d for _, d in jobs.events.of("comfyfixer.progress") if d["state"] == "done"]

    wait_for(lambda: {d["item_id"] for d in finals()} == {"1", "2"})
    finals = finals()
    assert set(finals[0]) == {"job_id", "item_id", "key", "filename", "downloaded", "total", "speed", "eta", "state",
                              "error", "save_path", "sha256"}
    # a finished row is complete from its progress event alone (the panel renders it so)
    final_a = next(d for d in finals if d["item_id"] == "1")
    assert final_a["save_path"] == first["save_path"] and final_a["sha256"] == first["sha256"]
    assert final_a["error"] is None


def test_integrity_failure_marks_item_failed_and_keeps_no_file(server, models, config, manager_factory):
    server.add("/a.safetensors", payload(50_000, 3))
    jobs = manager_factory()
    job = jobs.submit_download([spec(server, models, config, "/a.safetensors", "a.safetensors", sha256="0" * 64)])
    assert jobs.wait_idle(15)
    done = jobs.get(job["id"])
    assert done["state"] == "failed"
    item = done["items"][0]
    assert item["state"] == "failed" and item["error"]["type"] == "IntegrityError" and item["error"]["message"]
    assert not Path(models["checkpoints"][0], "a.safetensors").exists()


def test_cancel_one_item_while_the_other_finishes(server, models, config, manager_factory):
    slow, fast = payload(2_000_000, 4), payload(40_000, 5)
    server.add("/slow.safetensors", slow, rate=200_000)
    server.add("/fast.safetensors", fast)
    jobs = manager_factory()
    job = jobs.submit_download([spec(server, models, config, "/slow.safetensors", "slow.safetensors"),
                                spec(server, models, config, "/fast.safetensors", "fast.safetensors")])
    wait_for(lambda: jobs.get(job["id"])["items"][0]["downloaded"] > 0)
    jobs.cancel_item(job["id"], "1")
    assert jobs.wait_idle(15)
    done = jobs.get(job["id"])
    assert [i["state"] for i in done["items"]] == ["cancelled", "done"]
    assert done["state"] == "done"
    assert not Path(models["checkpoints"][0], "slow.safetensors").exists()


def test_cancel_whole_job(server, models, config, manager_factory):
    for n in range(3):
        server.add(f"/m{n}.safetensors", payload(2_000_000, 10 + n), rate=200_000)
    jobs = manager_factory(max_workers=2)
    job = jobs.submit_download([spec(server, models, config, f"/m{n}.safetensors", f"m{n}.safetensors")
                                for n in range(3)])
    wait_for(lambda: any(i["downloaded"] > 0 for i in jobs.get(job["id"])["items"]))
    cancelled = jobs.cancel_job(job["id"])
    assert cancelled["items"][2]["state"] == "cancelled"  # never started: settled at once
    assert jobs.wait_idle(15)
    done = jobs.get(job["id"])
    assert done["state"] == "cancelled"
    assert done["summary"]["cancelled"] == 3
    assert not any(Path(models["checkpoints"][0], f"m{n}.safetensors").exists() for n in range(3))
    assert jobs.cancel_job(job["id"])["state"] == "cancelled"  # idempotent


def test_retry_a_failed_item(server, models, config, manager_factory):
    data = payload(80_000, 6)
    res = server.add("/flaky.safetensors", data, status=404, body=b"not yet")
    jobs = manager_factory()
    job = jobs.submit_download([spec(server, models, config, "/flaky.safetensors", "flaky.safetensors")])
    assert jobs.wait_idle(15)
    failed = jobs.get(job["id"])
    assert failed["state"] == "failed" and failed["items"][0]["state"] == "failed"
    res.status = None
    retried = jobs.retry_item(job["id"], "1")
    assert retried["items"][0]["state"] in ("queued", "connecting", "downloading", "verifying", "done")
    assert jobs.wait_idle(15)
    assert jobs.get(job["id"])["state"] == "done"
    assert Path(models["checkpoints"][0], "flaky.safetensors").read_bytes() == data
    with pytest.raises(JobConflictError):
        jobs.retry_item(job["id"], "1")


def test_unknown_ids(manager_factory):
    jobs = manager_factory()
    with pytest.raises(JobNotFoundError):
        jobs.get("nope")
    with pytest.raises(JobNotFoundError):
        jobs.cancel_job("nope")


def test_progress_is_throttled_per_item(server, models, config, manager_factory):
    server.add("/slow.safetensors", payload(600_000, 7), rate=400_000)
    jobs = manager_factory(progress_interval=0.5, store=MemoryJobStore())
    started = time.monotonic()
    job = jobs.submit_download([spec(server, models, config, "/slow.safetensors", "slow.safetensors")])
    assert jobs.wait_idle(15)
    elapsed = time.monotonic() - started

    def progress():
        return [d for _, d in jobs.events.of("comfyfixer.progress") if d["job_id"] == job["id"]]

    wait_for(lambda: progress()[-1]["state"] == "done")
    events = progress()
    byte_events = [d for d in events if d["state"] == "downloading"]
    # at most one per 0.5 s, plus the state changes, plus the final one
    assert 1 <= len(byte_events) <= elapsed / 0.5 + 2
    assert events[-1]["state"] == "done" and events[-1]["downloaded"] == 600_000
    downloaded = [d["downloaded"] for d in events]
    assert downloaded == sorted(downloaded)


def test_finished_jobs_survive_a_restart(server, models, config, manager_factory):
    server.add("/a.safetensors", payload(20_000, 8))
    first = manager_factory()
    job = first.submit_download([spec(server, models, config, "/a.safetensors", "a.safetensors")])
    assert first.wait_idle(15)
    first.shutdown(wait=True)
    again = manager_factory()  # a new process would build exactly this from the state dir
    listed = again.list()
    assert [j["id"] for j in listed] == [job["id"]]
    assert listed[0]["state"] == "done" and listed[0]["items"][0]["state"] == "done"
    assert listed[0]["items"][0]["url"] == server.url("/a.safetensors")


def test_list_is_newest_first(server, models, config, manager_factory):
    server.add("/a.safetensors", payload(1000, 9))
    jobs = manager_factory(store=MemoryJobStore())
    ids = []
    for n in range(3):
        ids.append(jobs.submit_download([spec(server, models, config, "/a.safetensors", f"a{n}.safetensors")])["id"])
        time.sleep(0.01)
    assert jobs.wait_idle(15)
    assert [j["id"] for j in jobs.list()] == ids[::-1]


def test_fix_job_runs_planner_then_downloads(server, models, config, manager_factory):
    data = payload(30_000, 11)
    server.add("/x.safetensors", data)
    jobs = manager_factory()
    gate = threading.Event()

    def planner():
        gate.wait(5)
        return PlanOutcome(
            items=[spec(server, models, config, "/x.safetensors", "x.safetensors")],
            unresolved=[{"key": "loras/y.safetensors", "filename": "y.safetensors", "directory": "loras",
                         "error": {"type": "LowConfidenceError", "message": "only 60% sure"}}])

    job = jobs.submit_fix(planner)
    wait_for(lambda: jobs.get(job["id"])["state"] == "resolving")
    gate.set()
    assert jobs.wait_idle(15)
    done = jobs.get(job["id"])
    assert done["kind"] == "fix"
    assert [(i["filename"], i["state"]) for i in done["items"]] == [
        ("x.safetensors", "done"), ("y.safetensors", "failed")]
    assert done["state"] == "failed"  # something the user asked for is still missing
    with pytest.raises(JobConflictError):
        jobs.retry_item(job["id"], "2")  # nothing to download for a row without a source


def test_fix_job_planner_failure_is_reported(manager_factory):
    from comfyfixersmart.errors import WorkflowParseError

    jobs = manager_factory()

    def planner():
        raise WorkflowParseError(None, "not a workflow")

    job = jobs.submit_fix(planner)
    assert jobs.wait_idle(15)
    done = jobs.get(job["id"])
    assert done["state"] == "failed"
    assert done["error"]["type"] == "WorkflowParseError"


CHILD = textwrap.dedent("""
    import sys, time
    from comfyfixersmart.settings import Config
    from comfyfixersmart.service.jobs import JobManager
    from comfyfixersmart.service.store import StateJobStore
    from comfyfixersmart.service.validation import validate_download_item

    state_dir, folder, url = sys.argv[1:4]
    config = Config(state_dir=state_dir, cache_dir=state_dir + "/cache", log_dir=state_dir + "/logs",
                    allowed_hosts=["127.0.0.1:*"], chunk_size=16384)
    jobs = JobManager(config, store=StateJobStore.from_config(config))
    item = validate_download_item({"filename": "big.safetensors", "directory": "checkpoints", "url": url},
                                  {"checkpoints": [folder]}, config)
    job = jobs.submit_download([item])
    while jobs.get(job["id"])["items"][0]["downloaded"] < 200_000:
        time.sleep(0.01)
    print(job["id"], flush=True)
    time.sleep(60)
""")


@pytest.mark.skipif(sys.platform == "win32", reason="uses SIGKILL")
@pytest.mark.parametrize("auto_resume", [True, False])
def test_interrupted_job_resumes_by_itself_or_on_retry(server, models, config, manager_factory, auto_resume):
    data = payload(1_200_000, 12)
    # silent after 400 kB until the child is killed: it cannot finish first, however late a
    # busy machine delivers the kill (2 s of download were a race)
    big = server.add("/big.safetensors", data, rate=600_000, stall_after=400_000)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(config.state_dir), models["checkpoints"][0], server.url("/big.safetensors")],
        stdout=subprocess.PIPE, text=True, cwd=str(REPO))
    try:
        job_id = child.stdout.readline().strip()
        assert job_id, "child did not start its download"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    big.stall_after = None
    jobs = manager_factory(config=config.replace(auto_resume=auto_resume))  # "ComfyUI restarted"
    if auto_resume:
        # no click: the item was queued again at start-up
        assert jobs.wait_idle(30)
        done = jobs.get(job_id)
        assert done["state"] == "done" and done["items"][0]["error"] is None
    else:
        job = jobs.get(job_id)
        assert job["state"] == "failed"
        item = job["items"][0]
        assert item["state"] == "failed" and item["error"]["type"] == "JobInterruptedError"
        jobs.retry_item(job_id, "1")
        assert jobs.wait_idle(20)
        assert jobs.get(job_id)["state"] == "done"
    assert Path(models["checkpoints"][0], "big.safetensors").read_bytes() == data
    # it continued from the .part file instead of starting over
    ranges = [r.header("Range") for r in server.requests_for("/big.safetensors") if r.method == "GET"]
    assert any(r and not r.startswith("bytes=0-") for r in ranges), ranges


def test_retry_failed_reruns_every_failed_row(server, models, config, manager_factory):
    good = payload(30_000, 21)
    jobs = manager_factory()
    job = jobs.submit_download([spec(server, models, config, "/late1.safetensors", "late1.safetensors"),
                                spec(server, models, config, "/late2.safetensors", "late2.safetensors")])
    other = jobs.submit_download([spec(server, models, config, "/late3.safetensors", "late3.safetensors")])
    assert jobs.wait_idle(20)
    assert jobs.get(job["id"])["summary"]["failed"] == 2  # 404: not there yet
    for n in (1, 2, 3):
        server.add(f"/late{n}.safetensors", good)
    out = jobs.retry_failed(job["id"])
    assert out["retried"] == 2 and [j["id"] for j in out["jobs"]] == [job["id"]]
    assert jobs.wait_idle(20)
    assert jobs.get(job["id"])["state"] == "done" and jobs.get(other["id"])["state"] == "failed"
    out = jobs.retry_failed()  # all jobs
    assert out["retried"] == 1 and [j["id"] for j in out["jobs"]] == [other["id"]]
    assert jobs.wait_idle(20) and jobs.get(other["id"])["state"] == "done"
    assert jobs.retry_failed()["retried"] == 0


def test_existing_files_are_never_overwritten(server, models, config, manager_factory):
    data = payload(20_000, 13)
    server.add("/same.safetensors", data)
    server.add("/other.safetensors", payload(20_000, 14))
    folder = Path(models["checkpoints"][0])
    (folder / "same.safetensors").write_bytes(data)
    (folder / "mine.safetensors").write_bytes(b"the user's own file")
    jobs = manager_factory()
    job = jobs.submit_download([
        spec(server, models, config, "/same.safetensors", "same.safetensors", sha256=hashlib.sha256(data).hexdigest()),
        spec(server, models, config, "/other.safetensors", "mine.safetensors"),
    ])
    assert jobs.wait_idle(15)
    same, mine = jobs.get(job["id"])["items"]
    assert same["state"] == "skipped"  # already there and verified: nothing fetched
    assert mine["state"] == "failed" and mine["error"]["type"] == "FileExistsConflictError"
    assert (folder / "mine.safetensors").read_bytes() == b"the user's own file"
    assert jobs.get(job["id"])["summary"] == {"total": 2, "done": 1, "failed": 1, "cancelled": 0}


# -- cost per item change -------------------------------------------------------------------------

def _count_calls(obj, name, counter):
    """Count the calls of a real method (it still runs)."""
    real = getattr(obj, name)

    def counted(*args, **kwargs):
        counter[name] = counter.get(name, 0) + 1
        return real(*args, **kwargs)

    setattr(obj, name, counted)


def test_a_big_job_costs_linear_events_and_store_writes(server, models, config, manager_factory):
    """Each item change is one small store write and one row event; the whole job goes out
    only on job-level changes plus at most ~2/s (it was re-sent on every item change)."""
    n = 200
    for i in range(n):
        if i % 4:  # every 4th file is missing: failed rows travel the same way
            server.add(f"/m{i}.safetensors", payload(2_000 + i, 100 + i))
    store = StateJobStore.from_config(config)
    writes = {}
    _count_calls(store.state, "update_item", writes)
    _count_calls(store.state, "update_job", writes)
    # the manager's clock moves one snapshot interval per tick of this thread: the bound on
    # snapshots below counts ticks, not wall-clock seconds a busy machine can stretch
    clock, ticks, stop = ManualClock(), [], threading.Event()

    def ticking():
        while not stop.wait(0.05):
            clock.advance(0.5)
            ticks.append(clock())

    ticker = threading.Thread(target=ticking, daemon=True)
    jobs = manager_factory(store=store, max_workers=4, clock=clock, snapshot_interval=0.5)
    ticker.start()
    try:
        job = jobs.submit_download([spec(server, models, config, f"/m{i}.safetensors", f"m{i}.safetensors")
                                    for i in range(n)])
        assert jobs.wait_idle(120)
    finally:
        stop.set()
        ticker.join(10)

    def snapshots():
        return [d for _, d in jobs.events.of("comfyfixer.job") if d["id"] == job["id"]]

    wait_for(lambda: snapshots()[-1]["state"] == "failed")
    final = jobs.get(job["id"])
    assert final["summary"] == {"total": n, "done": n - n // 4, "failed": n // 4, "cancelled": 0}
    # job events: created, running, final + the coalesced ones: at most one per interval of
    # the manager's clock (one per tick), +1 for the interval the job started in
    states = [s["state"] for s in snapshots()]
    assert states[0] == "queued" and states.count("running") == len(states) - 2, states
    assert len(snapshots()) <= 3 + len(ticks) + 1, (len(snapshots()), len(ticks))
    assert snapshots()[-1] == final  # the last word is the whole final job
    # store: the item rows at creation, "connecting" and the final state; the job row a few times
    assert writes["update_item"] <= 3 * n, writes
    assert writes["update_job"] <= 6, writes
    # rows: a handful of events per item (states, at most a few byte ticks, the final one) ...
    progress = [d for _, d in jobs.events.of("comfyfixer.progress") if d["job_id"] == job["id"]]
    assert len(progress) <= 6 * n
    # ... and each row's last event is its final state, complete enough to render it
    last = {d["item_id"]: d for d in progress}
    assert set(last) == {it["id"] for it in final["items"]}
    for it in final["items"]:
        row = last[it["id"]]
        assert (row["state"], row["downloaded"], row["error"], row["save_path"]) == (
            it["state"], it["downloaded"], it["error"], it["save_path"])
    # and what was stored is what the routes show (a restart rebuilds the same job)
    stored = next(r for r in StateJobStore.from_config(config).load(10) if r["id"] == job["id"])
    assert [(i["id"], i["state"], i["downloaded"]) for i in stored["items"]] == [
        (i["id"], i["state"], i["downloaded"]) for i in final["items"]]


def test_summary_changes_reach_the_page_while_the_job_runs(server, models, config, manager_factory):
    """No job-level change while one slow file keeps the job running: the Downloads list still
    learns that the fast one finished, from a coalesced snapshot, within the interval."""
    # the slow one goes silent part-way: the job keeps running until the test is done,
    # however late a busy machine runs the snapshot thread (a 2 s download was a race)
    server.add("/slow.safetensors", payload(1_200_000, 20), rate=600_000, stall_after=300_000)
    server.add("/fast.safetensors", payload(10_000, 21))
    jobs = manager_factory(store=MemoryJobStore(), snapshot_interval=0.2)
    job = jobs.submit_download([spec(server, models, config, "/slow.safetensors", "slow.safetensors"),
                                spec(server, models, config, "/fast.safetensors", "fast.safetensors")])

    def running_with_one_done():
        return [d for _, d in jobs.events.of("comfyfixer.job")
                if d["id"] == job["id"] and d["state"] == "running" and d["summary"]["done"] == 1]

    seen = wait_for(running_with_one_done, timeout=60)
    assert seen[0]["items"][1]["state"] == "done"
    assert jobs.get(job["id"])["state"] == "running"  # it came before the job ended
    jobs.cancel_job(job["id"])
    assert jobs.wait_idle(30)


def test_coalescer_flushes_a_burst_once_and_keeps_the_interval():
    """Timing by the Coalescer's own clock (a manual one), so a busy machine cannot bend it:
    a real-time thread only makes the flushes late, never early."""
    from comfyfixersmart.service.jobs import Coalescer

    flushed = []
    lock = threading.Lock()
    clock = ManualClock()

    def flush(key):
        with lock:
            flushed.append((clock(), key))

    def settled(seconds=0.3):
        """Give the flush thread time to act on the current clock (it never acts early)."""
        time.sleep(seconds)
        with lock:
            return list(flushed)

    c = Coalescer(0.25, flush, "test-coalescer", clock=clock)
    try:
        t0 = clock()
        c.mark("a")  # quiet before: at once, the clock does not have to move
        wait_for(lambda: len(flushed) == 1)
        assert flushed[0] == (t0, "a")
        for _ in range(100):  # a burst: b at once, a one more flush an interval after its first
            c.mark("a")
            c.mark("b")
        wait_for(lambda: len(flushed) == 2)
        assert flushed[1] == (t0, "b")
        clock.advance(0.125)  # not yet an interval since a's flush (binary fractions: exact sums)
        assert len(settled()) == 2
        clock.advance(0.125)
        wait_for(lambda: len(flushed) == 3)
        assert flushed[2] == (t0 + 0.25, "a")
        assert len(settled()) == 3  # the burst cost one flush per key
        c.discard("b")  # b was just sent another way: its next mark waits an interval
        t1 = clock()
        c.mark("b")
        assert len(settled()) == 3
        clock.advance(0.25)
        wait_for(lambda: len(flushed) == 4)
        assert flushed[3] == (t1 + 0.25, "b")
    finally:
        c.close()
    c.mark("a")  # closed: ignored
    clock.advance(10)
    assert len(settled()) == 4
