"""``StateManager``: download history and a restart-proof job queue in SQLite.

One database file, ``<state_dir>/state.db`` (``COMFYFIXER_STATE_DIR``; default a per-user
data dir).  WAL journal + ``busy_timeout`` let threads and processes write at once; every
write is a short ``BEGIN IMMEDIATE`` transaction retried with backoff while the file is
locked, then ``StateError``.  A corrupt file is moved aside as ``state.db.corrupt-<ts>``
(rows that can still be read are copied into the fresh database) and the event is logged.

Jobs: ``enqueue_job`` -> ``update_job(status="running")`` claims it for this process ->
``update_item`` per file -> ``update_job(status="done"|"failed"|"cancelled")``.  A job still
"running" whose process is gone is reported by ``interrupted_jobs()`` so the next start can
resume it (the download engine resumes its ``.part`` files).
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, TypeVar

from .datamodel import DownloadRecord
from .errors import StateError, ValidationError
from .fileutils import save_json_file
from .logs import get_logger
from .security import redact_text, redact_url
from .settings import Config, get_config

log = get_logger(__name__)

T = TypeVar("T")
DB_NAME = "state.db"
SCHEMA_VERSION = 1
JOB_STATES = ("queued", "running", "done", "failed", "cancelled", "interrupted")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS downloads (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    filename TEXT NOT NULL,
    basename TEXT NOT NULL,
    source TEXT NOT NULL,
    source_id TEXT NOT NULL DEFAULT '',
    path TEXT,
    sha256 TEXT,
    size INTEGER,
    url TEXT,
    status TEXT NOT NULL DEFAULT 'success',
    timestamp REAL NOT NULL,
    details TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS downloads_filename ON downloads(filename);
CREATE INDEX IF NOT EXISTS downloads_basename ON downloads(basename);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    payload TEXT NOT NULL DEFAULT '{}',
    result TEXT,
    error TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    owner TEXT,
    owner_pid INTEGER,
    owner_start TEXT
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status);
CREATE TABLE IF NOT EXISTS job_items (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    item_id TEXT NOT NULL,
    status TEXT NOT NULL,
    downloaded INTEGER NOT NULL DEFAULT 0,
    total INTEGER,
    error TEXT,
    data TEXT NOT NULL DEFAULT '{}',
    updated REAL NOT NULL,
    PRIMARY KEY (job_id, item_id)
);
"""

_RECORD_COLUMNS = ("path", "sha256", "size", "url", "status", "timestamp")


@dataclass
class JobItem:
    """One file of a job."""

    item_id: str
    status: str
    downloaded: int = 0
    total: Optional[int] = None
    error: Optional[str] = None
    data: Dict[str, Any] = field(default_factory=dict)
    updated: float = 0.0

    def to_dict(self) -> Dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Job:
    """A queued/running/finished unit of work (e.g. "download these models")."""

    id: str
    kind: str
    status: str
    payload: Dict[str, Any] = field(default_factory=dict)
    result: Any = None
    error: Optional[str] = None
    created: float = 0.0
    updated: float = 0.0
    items: List[JobItem] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "items"}
        out["items"] = [i.to_dict() for i in self.items]
        return out


class StateManager:
    """Download history and job queue on an embedded SQLite database (thread/process safe)."""

    def __init__(self, config: Optional[Config] = None, *, path: Optional[os.PathLike | str] = None,
                 busy_timeout: float = 5.0, retries: int = 6):
        self.config = config if config is not None else (None if path is not None else get_config())
        self.path = Path(path).expanduser() if path is not None else Path(self.config.state_dir) / DB_NAME
        self.busy_timeout = busy_timeout
        self.retries = retries
        #: identifies this manager as the owner of the jobs it runs
        self.instance_id = uuid.uuid4().hex
        self._local = threading.local()
        self._lock = threading.RLock()
        self._connections: List[sqlite3.Connection] = []
        self._ready = False
        self._generation = 0  # bumped when the file is replaced: threads reconnect

    # -- connections ----------------------------------------------------------------------
    def _raw_connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.path), timeout=self.busy_timeout, isolation_level=None,
                               check_same_thread=False)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            conn.close()
            raise
        return conn

    def _ensure_ready(self) -> None:
        """Open (and if needed repair) the database once per manager."""
        with self._lock:
            if self._ready:
                return
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StateError(f"cannot create the state folder {self.path.parent}: {exc}") from None
            try:
                self._open_and_check()
            except sqlite3.OperationalError as exc:
                if _is_busy(exc):
                    raise
                if "unable to open" in str(exc):
                    raise StateError(f"cannot open {self.path}: {exc}") from None
                self._quarantine(exc)
            except sqlite3.DatabaseError as exc:
                self._quarantine(exc)
            self._ready = True

    def _open_and_check(self) -> None:
        conn = self._raw_connect()
        try:
            row = conn.execute("PRAGMA quick_check").fetchone()
            if row is None or row[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {row[0] if row else 'no answer'}")
            conn.executescript(_SCHEMA)
            if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        finally:
            conn.close()

    def _quarantine(self, exc: BaseException) -> None:
        """Move a corrupt database aside, start a fresh one, copy over what can be read."""
        self._close_all()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{os.getpid()}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                try:
                    os.replace(src, Path(str(aside) + suffix))
                except OSError as move_exc:
                    raise StateError(f"{self.path} is corrupt ({exc}) and cannot be moved aside: {move_exc}") from None
        log.error("state database %s is corrupt (%s); moved aside to %s, starting a fresh one",
                  self.path, exc, aside.name)
        self._open_and_check()
        salvaged = self._salvage(aside)
        if salvaged:
            log.warning("recovered %d row(s) from %s", salvaged, aside.name)
        self._generation += 1

    def _salvage(self, aside: Path) -> int:
        """Copy rows that are still readable from a quarantined database."""
        copied = 0
        try:
            old = sqlite3.connect(f"file:{aside}?mode=ro", uri=True)
        except sqlite3.Error:
            return 0
        new = self._raw_connect()
        try:
            for table in ("downloads", "jobs", "job_items"):
                try:
                    rows = old.execute(f"SELECT * FROM {table}").fetchall()
                    cols = [d[0] for d in old.execute(f"SELECT * FROM {table} LIMIT 0").description]
                except sqlite3.Error:
                    continue
                marks = ",".join("?" * len(cols))
                for row in rows:
                    try:
                        new.execute(f"INSERT OR IGNORE INTO {table} ({','.join(cols)}) VALUES ({marks})", row)
                        copied += 1
                    except sqlite3.Error:
                        pass
        finally:
            old.close()
            new.close()
        return copied

    def _conn(self) -> sqlite3.Connection:
        self._ensure_ready()
        local = self._local
        if getattr(local, "conn", None) is None or local.pid != os.getpid() or local.gen != self._generation:
            conn = self._raw_connect()
            with self._lock:
                self._connections.append(conn)
            local.conn, local.pid, local.gen = conn, os.getpid(), self._generation
        return local.conn

    def _close_all(self) -> None:
        with self._lock:
            for conn in self._connections:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._connections.clear()
            self._generation += 1

    def close(self) -> None:
        """Close every connection of this manager (it reopens on next use)."""
        self._close_all()

    def __enter__(self) -> "StateManager":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        """Run ``fn`` in a transaction; retry while locked, repair once if corrupt."""
        repaired = False
        for attempt in range(self.retries + 1):
            try:
                conn = self._conn()
                if not write:
                    return fn(conn)
                conn.execute("BEGIN IMMEDIATE")
                try:
                    out = fn(conn)
                    conn.execute("COMMIT")
                    return out
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                if _is_busy(exc):
                    if attempt < self.retries:
                        time.sleep(min(2.0, 0.05 * 2 ** attempt) * (0.5 + random.random()))
                        continue
                    raise StateError(f"state database {self.path} stays locked: {exc}") from None
                if repaired or not _is_corrupt(exc):
                    raise StateError(f"state database {self.path}: {exc}") from None
                self._repair(exc)
                repaired = True
            except sqlite3.DatabaseError as exc:
                if repaired:
                    raise StateError(f"state database {self.path}: {exc}") from None
                self._repair(exc)
                repaired = True
        raise StateError(f"state database {self.path} stays locked")  # pragma: no cover

    def _repair(self, exc: BaseException) -> None:
        with self._lock:
            self._ready = True
            self._quarantine(exc)

    # -- download history ---------------------------------------------------------------------
    def record_download(self, filename: str, source: str, source_id: Any = "", **details: Any) -> DownloadRecord:
        """Remember a download.  ``details``: path, sha256, size, url, status, timestamp, and any
        other JSON-able keys (kept in ``details``).  URLs and text are stored without secrets."""
        if not isinstance(filename, str) or not filename:
            raise ValidationError("filename must be a non-empty string")
        known = {k: details.pop(k) for k in _RECORD_COLUMNS if k in details}
        record = DownloadRecord(
            filename=filename, source=str(source), source_id=str(source_id if source_id is not None else ""),
            path=None if known.get("path") is None else str(known["path"]),
            sha256=known.get("sha256"), size=known.get("size"),
            url=redact_url(known.get("url")) if known.get("url") else None,
            status=str(known.get("status") or "success"),
            timestamp=float(known.get("timestamp") or time.time()),
        )
        extra = _dumps(details)
        base = filename.replace("\\", "/").rsplit("/", 1)[-1]

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO downloads (filename, basename, source, source_id, path, sha256, size, url, status,"
                " timestamp, details) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (record.filename, base, record.source, record.source_id, record.path, record.sha256, record.size,
                 record.url, record.status, record.timestamp, extra))

        self._run(op)
        return record

    def is_downloaded(self, filename: str) -> bool:
        """True if a successful download of ``filename`` (relative name, base name or path) is
        recorded and its file, when a path was recorded, still exists."""
        rows = self._run(lambda c: c.execute(
            "SELECT path FROM downloads WHERE status = 'success' AND (filename = ? OR basename = ? OR path = ?)",
            (filename, filename, filename)).fetchall(), write=False)
        return any(r["path"] is None or os.path.exists(r["path"]) for r in rows)

    def get_download_history(self) -> List[DownloadRecord]:
        """Every recorded download, oldest first."""
        rows = self._run(lambda c: c.execute(
            "SELECT * FROM downloads ORDER BY timestamp, id").fetchall(), write=False)
        return [DownloadRecord(filename=r["filename"], source=r["source"], source_id=r["source_id"], path=r["path"],
                               sha256=r["sha256"], size=r["size"], url=r["url"], status=r["status"],
                               timestamp=r["timestamp"]) for r in rows]

    def clear_history(self) -> int:
        """Forget the download history (jobs are kept); returns how many records went."""
        return self._run(lambda c: c.execute("DELETE FROM downloads").rowcount)

    def export_json(self, path: os.PathLike | str) -> Path:
        """Write history and jobs to a JSON file (atomically); returns its path."""
        data = {
            "version": SCHEMA_VERSION,
            "exported": time.time(),
            "downloads": [r.to_dict() for r in self.get_download_history()],
            "jobs": [j.to_dict() for j in self.list_jobs()],
        }
        return save_json_file(data, path)

    # -- jobs -------------------------------------------------------------------------------
    def enqueue_job(self, kind: str, payload: Optional[Dict[str, Any]] = None) -> str:
        """Queue a job; returns its id."""
        if not isinstance(kind, str) or not kind:
            raise ValidationError("job kind must be a non-empty string")
        job_id = uuid.uuid4().hex
        now = time.time()
        self._run(lambda c: c.execute(
            "INSERT INTO jobs (id, kind, status, payload, created, updated) VALUES (?,?,?,?,?,?)",
            (job_id, kind, "queued", _dumps(payload or {}), now, now)))
        return job_id

    def update_job(self, job_id: str, *, status: Optional[str] = None, result: Any = None,
                   error: Optional[str] = None, payload: Optional[Dict[str, Any]] = None) -> Job:
        """Change a job; ``status="running"`` makes this process its owner."""
        if status is not None and status not in JOB_STATES:
            raise ValidationError(f"unknown job status {status!r}")
        sets, args = ["updated = ?"], [time.time()]
        if status is not None:
            sets.append("status = ?")
            args.append(status)
            if status == "running":
                sets += ["owner = ?", "owner_pid = ?", "owner_start = ?"]
                args += [self.instance_id, os.getpid(), _process_start(os.getpid())]
        if result is not None:
            sets.append("result = ?")
            args.append(_dumps(result))
        if error is not None:
            sets.append("error = ?")
            args.append(redact_text(str(error)))
        if payload is not None:
            sets.append("payload = ?")
            args.append(_dumps(payload))

        def op(conn: sqlite3.Connection) -> None:
            cur = conn.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?", (*args, job_id))
            if cur.rowcount == 0:
                raise ValidationError(f"no job {job_id!r}")

        self._run(op)
        job = self.get_job(job_id)
        assert job is not None
        return job

    def update_item(self, job_id: str, item_id: str, *, status: Optional[str] = None,
                    downloaded: Optional[int] = None, total: Optional[int] = None,
                    error: Optional[str] = None, **data: Any) -> None:
        """Create or update one item of a job (extra keywords are merged into ``data``)."""
        now = time.time()

        def op(conn: sqlite3.Connection) -> None:
            if conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is None:
                raise ValidationError(f"no job {job_id!r}")
            row = conn.execute("SELECT * FROM job_items WHERE job_id = ? AND item_id = ?",
                               (job_id, str(item_id))).fetchone()
            merged = json.loads(row["data"]) if row else {}
            merged.update(data)
            values = (
                status or (row["status"] if row else "queued"),
                downloaded if downloaded is not None else (row["downloaded"] if row else 0),
                total if total is not None else (row["total"] if row else None),
                redact_text(str(error)) if error is not None else (row["error"] if row else None),
                _dumps(merged), now,
            )
            conn.execute(
                "INSERT INTO job_items (job_id, item_id, status, downloaded, total, error, data, updated)"
                " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(job_id, item_id) DO UPDATE SET status = excluded.status,"
                " downloaded = excluded.downloaded, total = excluded.total, error = excluded.error,"
                " data = excluded.data, updated = excluded.updated",
                (job_id, str(item_id), *values))
            conn.execute("UPDATE jobs SET updated = ? WHERE id = ?", (now, job_id))

        self._run(op)

    def get_job(self, job_id: str) -> Optional[Job]:
        def op(conn: sqlite3.Connection) -> Optional[Job]:
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            items = conn.execute("SELECT * FROM job_items WHERE job_id = ? ORDER BY rowid", (job_id,)).fetchall()
            return _job(row, items)

        return self._run(op, write=False)

    def list_jobs(self, status: Optional[str] = None, kind: Optional[str] = None,
                  limit: Optional[int] = None) -> List[Job]:
        """Jobs, newest first, optionally filtered."""
        where, args = [], []
        if status is not None:
            where.append("status = ?")
            args.append(status)
        if kind is not None:
            where.append("kind = ?")
            args.append(kind)
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY created DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"

        def op(conn: sqlite3.Connection) -> List[Job]:
            jobs = []
            for row in conn.execute(sql, args).fetchall():
                items = conn.execute("SELECT * FROM job_items WHERE job_id = ? ORDER BY rowid", (row["id"],)).fetchall()
                jobs.append(_job(row, items))
            return jobs

        return self._run(op, write=False)

    def interrupted_jobs(self) -> List[Job]:
        """Jobs whose process died while running them (marked ``interrupted``), resumable
        with ``update_job(job_id, status="running")``."""
        def op(conn: sqlite3.Connection) -> None:
            for row in conn.execute("SELECT id, owner, owner_pid, owner_start FROM jobs WHERE status = 'running'"):
                if row["owner"] == self.instance_id:
                    continue
                if not _owner_alive(row["owner_pid"], row["owner_start"]):
                    conn.execute("UPDATE jobs SET status = 'interrupted', updated = ? WHERE id = ?",
                                 (time.time(), row["id"]))

        self._run(op)
        return self.list_jobs(status="interrupted")


# -- helpers ---------------------------------------------------------------------------------

def _dumps(value: Any) -> str:
    # secrets are scrubbed from everything stored (URLs with ?token=, bearer strings, tokens)
    return redact_text(json.dumps(value, default=str, ensure_ascii=False))


def _job(row: sqlite3.Row, items: List[sqlite3.Row]) -> Job:
    return Job(
        id=row["id"], kind=row["kind"], status=row["status"], payload=json.loads(row["payload"] or "{}"),
        result=json.loads(row["result"]) if row["result"] else None, error=row["error"],
        created=row["created"], updated=row["updated"],
        items=[JobItem(item_id=i["item_id"], status=i["status"], downloaded=i["downloaded"], total=i["total"],
                       error=i["error"], data=json.loads(i["data"] or "{}"), updated=i["updated"]) for i in items],
    )


def _is_busy(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _is_corrupt(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text or "corrupt" in text or "disk i/o" in text


def _process_start(pid: int) -> Optional[str]:
    """The start time of ``pid`` (Linux), so a reused pid is not mistaken for the owner."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode("ascii", "replace")
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _owner_alive(pid: Optional[int], start: Optional[str]) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    except OSError:
        return False
    if start is not None:
        return _process_start(pid) == start
    return True
