"""One file, one ``Transfer``: part file, resume, segments, verification, atomic rename.

    target exists?  -> verified skip, or FileExistsConflictError (unless overwrite)
    <name>.part + <name>.part.json (locked against a second process)
    probe GET with Range (resume offset or bytes=0-), If-Range = saved validator
        206 -> resume / segmented when big       200 -> start over (Range ignored/changed)
        416 -> part already complete, or start over
    stream (constant memory, sha256 on a helper thread) or segments (pwrite)
    fsync -> size + sha256 check -> os.replace(part, target) -> fsync dir

Bytes already on disk are never thrown away on a transient failure (the part and sidecar
stay for the next run); an integrity error, a cancel or a full disk removes them.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Tuple

from ..datamodel import DownloadResult
from ..errors import (
    DownloadCancelledError,
    DownloadError,
    DownloadStalledError,
    FileExistsConflictError,
    InsufficientSpaceError,
    IntegrityError,
    NotAModelFileError,
    UnsafePathError,
)
from ..logs import get_logger
from ..net.urls import policy_for
from ..security import check_url, redact_url
from . import content, partfile
from .http import (BodyReader, IdleRead, Opened, TruncatedError, content_length, is_transient, open_url,
                   parse_content_range)
from .partfile import PartInfo, Segment
from .progress import ProgressReporter
from .fileio import PartLock, check_inside, is_link, long_path, open_part, pread, pwrite_all
from .segments import ResourceChanged, SegmentJob, plan_segments, run_segments
from .verify import PrefixHasher, StreamHasher, sha256_file

log = get_logger(__name__)

#: how many times a changed remote file may restart one download
MAX_RESTARTS = 3
PICKLE_EXTENSIONS = (".ckpt", ".pt", ".pth", ".bin", ".pkl")
# Measured on loopback (bench/bench_download.py): 1 MiB buffers stay in the CPU's L2 cache
# between the socket copy, the write copy and the hash; 4 MiB ones cost ~40% verified speed.
#: single-stream read buffer
STREAM_BUFFER = 1024 * 1024
#: buffers in flight between the reader and the hashing thread (memory: 8 x 1 MiB)
HASH_BUFFERS = 8
#: a buffer is written out when full or after this long, so slow links still show progress
FILL_SECONDS = 0.1
#: bounds of one socket read while filling a buffer (adapted to the link's speed)
MIN_READ = 16 * 1024
FIRST_READ = 64 * 1024
#: start kernel writeback of every this many bytes, so the final fsync waits for the tail only
WRITEBACK_WINDOW = 8 * 1024 * 1024


@dataclass
class TransferSpec:
    """What to fetch and where; values already validated by the caller."""

    url: str
    target: Path
    expected_sha256: Optional[str] = None
    expected_size: Optional[int] = None
    headers: Optional[Mapping[str, str]] = None
    overwrite: bool = False
    #: the real (resolved) folder the file must stay in, and the real folder of ``target``
    #: found when the download was planned: re-checked before writing and before the rename
    root_real: Optional[Path] = None
    parent_real: Optional[Path] = None


class _Restart(Exception):
    """Internal: throw the part away and start from byte 0."""


_path_locks: Dict[str, threading.Lock] = {}
_path_locks_guard = threading.Lock()


@contextmanager
def _thread_lock(target: Path) -> Iterator[None]:
    # two threads asking for the same file: the second waits, then sees the first's result
    with _path_locks_guard:
        lock = _path_locks.setdefault(str(target), threading.Lock())
    with lock:
        yield


def pickle_warning(name: str) -> Optional[str]:
    if name.lower().endswith(PICKLE_EXTENSIONS):
        return (f"{name} is a pickle-based format that can run code when loaded; "
                "prefer a .safetensors version when one exists")
    return None


class Transfer:
    """Downloads one ``TransferSpec``; ``run()`` returns a DownloadResult or raises."""

    def __init__(self, session, config, spec: TransferSpec, reporter: ProgressReporter,
                 cancel: threading.Event):
        self.session = session
        self.config = config
        self.spec = spec
        self.reporter = reporter
        self.cancel = cancel
        self.target = spec.target
        self.part = partfile.part_path(spec.target)
        self.sidecar = partfile.sidecar_path(spec.target)
        self.expected_sha256 = spec.expected_sha256
        self.expected_size = spec.expected_size
        self.info: Optional[PartInfo] = None
        self.fd = -1
        self._lock: Optional[PartLock] = None
        #: remove the part and sidecar once the part is closed (set by _cleanup_after)
        self._discard = False
        self.resumed_from = 0
        self._started = 0.0
        self._read_size = FIRST_READ
        self._last_byte = 0.0

    # -- entry ------------------------------------------------------------------------
    def run(self) -> DownloadResult:
        self._started = time.monotonic()
        check_url(self.spec.url, policy_for(self.config))
        warning = pickle_warning(self.target.name)
        if warning:
            self.reporter.warn(warning)
            log.warning("%s", warning)
        with _thread_lock(self.target):
            self._check_place()
            if os.path.lexists(self.target) and not self.spec.overwrite:
                return self._existing()
            if self.target.is_dir():
                raise FileExistsConflictError("a folder exists where the file should go", path=self.target)
            os.makedirs(long_path(self.target.parent), exist_ok=True)
            self._check_place()  # a link swapped in meanwhile
            with self._open_part():
                return self._run_locked()

    def _check_place(self) -> None:
        """The target's real folder is still inside the real root it was planned in, and the
        target is not a link (an overwrite would replace the link, a skip would trust it)."""
        check_inside(self.target, self.spec.root_real, self.spec.parent_real)
        if self.spec.overwrite and is_link(self.target):
            raise UnsafePathError(f"{self.target.name} is a symbolic link; a download never replaces one "
                                  "(remove it first)")

    def _existing(self) -> DownloadResult:
        """The target is already there: skip it if it is the right file, else refuse."""
        if self.target.is_file():
            size = self.target.stat().st_size
            if self.expected_sha256:
                self.reporter.set_state("verifying")
                actual = sha256_file(self.target, cancel=self.cancel)
                if actual == self.expected_sha256 and self.expected_size in (None, size):
                    return self._result(size=size, sha=actual, verified=True, skipped=True)
                raise FileExistsConflictError(
                    f"{self.target.name} exists with other content (sha256 {actual[:12]}...); "
                    "pass overwrite=True to replace it", path=self.target)
            if self.expected_size is not None and size == self.expected_size:
                return self._result(size=size, sha=None, verified=False, skipped=True)
        raise FileExistsConflictError(f"{self.target.name} already exists; pass overwrite=True to replace it",
                                      path=self.target)

    @contextmanager
    def _open_part(self) -> Iterator[None]:
        self.fd = open_part(self.part)  # never through a link
        try:
            self._lock = PartLock(self.part, self.fd).acquire()
        except BaseException:
            self._close()
            raise
        try:
            yield
        finally:
            if self._lock.held_by_fd and self._discard:
                self._remove_working_files()  # before the close drops the lock
            self._close()
            if not self._lock.held_by_fd and self._discard:
                self._remove_working_files()  # after the close: Windows cannot remove open files
            self._lock.release()

    def _save_sidecar(self, info: PartInfo) -> None:
        self._check_place()  # the sidecar is written by name: never through a swapped-in link
        partfile.save(self.sidecar, info)

    def _remove_working_files(self) -> None:
        try:
            self._check_place()
        except UnsafePathError:
            log.warning("%s: its folder was replaced by a link; its working files there are left alone",
                        self.target.name)
            return
        partfile.remove(self.part, self.sidecar)

    def _close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _run_locked(self) -> DownloadResult:
        self.info = partfile.load(self.sidecar)
        if self.info is not None and not self._sidecar_matches(self.info):
            log.info("part file of %s is for another URL or hash: starting over", self.target.name)
            self.info = None
        if self.info is not None and self.expected_sha256 is None:
            self.expected_sha256 = self.info.expected_sha256
        failures = 0
        restarts = 0
        stalls = 0
        try:
            while True:
                before = self.reporter.downloaded
                try:
                    return self._attempt()
                except (_Restart, ResourceChanged) as exc:
                    restarts += 1
                    if restarts > MAX_RESTARTS:
                        raise DownloadError(f"the remote file keeps changing: {exc}",
                                            url=redact_url(self.spec.url)) from None
                    log.info("restarting %s from byte 0: %s", self.target.name, exc)
                    self._truncate()
                except Exception as exc:
                    if not is_transient(exc) or self.cancel.is_set():
                        raise
                    # a connection that keeps making progress is not failing; one that keeps
                    # stalling is, whatever it sent in between
                    failures = 0 if self.reporter.downloaded > before else failures + 1
                    stalls += isinstance(exc, DownloadStalledError)
                    if stalls > self.config.http_retries:
                        raise DownloadStalledError(
                            f"{exc}; gave up after {stalls} attempts, each resumed where the last one "
                            "stopped", url=redact_url(self.spec.url), path=self.target) from None
                    if failures > self.config.http_retries:
                        raise
                    delay = getattr(exc, "retry_after", None) or min(
                        self.config.backoff_max, self.config.backoff_base * 2 ** max(0, failures - 1))
                    log.info("retrying %s in %.2fs after: %s", self.target.name, delay, exc)
                    if self.cancel.wait(delay):
                        raise DownloadCancelledError("cancelled", url=redact_url(self.spec.url),
                                                     path=self.target) from None
        except BaseException as exc:
            self._cleanup_after(exc)
            raise

    def _cleanup_after(self, exc: BaseException) -> None:
        """Drop the part when it is worthless or unwanted; keep it when resumable."""
        discard = isinstance(exc, (IntegrityError, InsufficientSpaceError, NotAModelFileError)) or (
            isinstance(exc, DownloadCancelledError) and not getattr(self.cancel, "keep_partial", False))
        try:
            empty = os.fstat(self.fd).st_size == 0
        except OSError:
            empty = True
        if discard or empty or self.info is None:
            self._discard = True  # done by _open_part once the part is closed

    def _sidecar_matches(self, info: PartInfo) -> bool:
        if info.url != redact_url(self.spec.url):
            return False
        if self.expected_sha256 and info.expected_sha256 and info.expected_sha256 != self.expected_sha256:
            return False
        return True

    def _truncate(self) -> None:
        os.ftruncate(self.fd, 0)
        partfile.remove(self.sidecar)
        self.info = None
        self.resumed_from = 0
        self.reporter.reset(0)

    # -- one attempt --------------------------------------------------------------------
    def _attempt(self) -> DownloadResult:
        if self.cancel.is_set():
            raise DownloadCancelledError("cancelled", url=redact_url(self.spec.url), path=self.target)
        info = self.info
        on_disk = os.fstat(self.fd).st_size
        if info is None and on_disk:
            os.ftruncate(self.fd, 0)  # bytes without a sidecar are not trusted
            on_disk = 0
        if info is not None and info.mode == "segmented":
            self.resumed_from = self.resumed_from or info.segments_done()
            return self._segmented(None, info.total or 0, resume=True)
        offset = on_disk
        if info is not None and info.total is not None and offset > info.total:
            raise _Restart("part file is longer than the remote file")
        self.reporter.set_state("connecting")
        opened = open_url(self.session, self.spec.url, self.config, headers=self.spec.headers,
                          range_start=offset, if_range=info.validator if (info and offset) else None,
                          cancel=self.cancel)
        try:
            content.check_not_login(opened.url, self.config)
            return self._answer(opened, offset)
        finally:
            opened.close()

    def _answer(self, opened: Opened, offset: int) -> DownloadResult:
        self._take_hints(opened)
        status = opened.status
        etag = opened.headers.get("ETag")
        modified = opened.headers.get("Last-Modified")
        if status == 416:
            _, _, total = parse_content_range(opened.headers.get("Content-Range"))
            if offset > 0 and total == offset:
                self.resumed_from = offset
                return self._finish(offset, None)  # the part was already complete
            if offset == 0:
                # an empty file, or a server that dislikes "bytes=0-": ask without Range
                opened.close()
                plain = open_url(self.session, self.spec.url, self.config, headers=self.spec.headers,
                                 cancel=self.cancel)
                try:
                    return self._answer(plain, 0) if plain.status != 416 else self._fail_416()
                finally:
                    plain.close()
            raise _Restart("416 Range Not Satisfiable")
        if status == 206:
            start, _end, total = parse_content_range(opened.headers.get("Content-Range"))
            if start != offset:
                raise _Restart(f"asked for byte {offset}, got {start}")
            if offset and self.info and not _same_validators(self.info, etag, modified):
                raise _Restart("the remote file changed (ETag/Last-Modified)")
            if offset == 0 and total is not None and self._segmentable(total):
                return self._segmented(opened, total, etag=etag, modified=modified)
        elif 200 <= status < 300:
            if offset:
                log.info("server answered %s to a Range request: %s starts over", status, self.target.name)
                os.ftruncate(self.fd, 0)
                offset = 0
            total = content_length(opened.response) if status == 200 else None
        else:
            raise DownloadError(f"unexpected HTTP {status}", url=redact_url(self.spec.url), status=status)
        if offset == 0:
            self.resumed_from = 0
        elif not self.resumed_from:
            self.resumed_from = offset
        return self._single(opened, offset, total, etag, modified)

    def _fail_416(self) -> DownloadResult:
        raise DownloadError("server refuses the request (416)", url=redact_url(self.spec.url), status=416)

    def _take_hints(self, opened: Opened) -> None:
        """HF tells the LFS sha256/size on the resolve hop: use them when nothing was promised."""
        if self.expected_sha256 is None and opened.hinted_sha256:
            self.expected_sha256 = opened.hinted_sha256
        if self.expected_size is None and opened.hinted_size is not None:
            self.expected_size = opened.hinted_size

    def _segmentable(self, total: int) -> bool:
        return self.config.download_segments > 1 and total >= self.config.segment_min_size

    # -- single stream ----------------------------------------------------------------
    def _single(self, opened: Opened, offset: int, total: Optional[int], etag: Optional[str],
                modified: Optional[str]) -> DownloadResult:
        self._check_total(total)
        self._preflight(None if total is None else total - offset)
        self.info = PartInfo(url=redact_url(self.spec.url) or "", etag=etag, last_modified=modified,
                             total=total, expected_sha256=self.expected_sha256, mode="single")
        self._save_sidecar(self.info)
        self.reporter.set_total(total)
        self.reporter.reset(offset)
        self.reporter.set_state("downloading")
        # Reused buffers: socket -> buffer (readinto) -> pwrite -> sha256 on the other core.
        # Hashing costs CPU curl does not spend: skip it when nothing asks for it.
        hasher = StreamHasher(buffer_size=STREAM_BUFFER, buffers=HASH_BUFFERS).start(self.part, offset) \
            if (self.expected_sha256 or self.config.verify_downloads) else None
        spare = bytearray(STREAM_BUFFER) if hasher is None else None
        body = BodyReader(opened, fallback_chunk=self.config.chunk_size)
        self._last_byte = time.monotonic()
        writeback = _WriteBehind(self.fd, offset)
        pos = offset
        # is it a model file at all?  Judged on the file's first bytes: from the part file
        # when resuming, from the body as it arrives otherwise (before anything is written)
        head = bytearray(partfile_head(self.fd, offset))
        ctype = opened.headers.get("Content-Type")
        decided = not content.is_checked(self.target.name)
        if offset and not decided:
            decided = content.check_head(self.target.name, bytes(head), total=total, content_type=ctype)
        try:
            while True:
                buf = hasher.acquire() if hasher is not None else spare
                n, ended, failure = self._fill(body, buf)
                if not decided:
                    head += memoryview(buf)[:min(n, content.HEAD_BYTES - len(head))]
                    decided = content.check_head(self.target.name, bytes(head), total=total,
                                                 ended=ended, content_type=ctype)
                if n:
                    self._write(memoryview(buf)[:n], pos)
                    pos += n
                    writeback.wrote(pos)
                if hasher is not None:
                    hasher.feed(buf, n)  # hashed, then back to the pool
                if n:
                    self.reporter.advance(n)
                if total is not None and pos > total:
                    raise IntegrityError(f"the server sent more than the announced {total} bytes",
                                         url=redact_url(self.spec.url), path=self.target)
                if self.expected_size is not None and pos > self.expected_size:
                    # a body with no (or a lying) length must not fill the disk past what we expect
                    raise IntegrityError(f"the server sent more than the expected {self.expected_size} bytes",
                                         url=redact_url(self.spec.url), path=self.target)
                if failure is not None:
                    raise failure  # after writing what came before it: a resume keeps it
                if self.cancel.is_set():
                    raise DownloadCancelledError("cancelled", url=redact_url(self.spec.url), path=self.target)
                if ended:
                    break
            if total is not None and pos < total:
                raise TruncatedError(f"connection closed at {pos} of {total} bytes", url=redact_url(self.spec.url))
        except BaseException:
            if hasher is not None:
                hasher.abort()
            raise
        sha = hasher.result() if hasher is not None else None
        os.fsync(self.fd)
        return self._finish(pos, sha)

    def _fill(self, body: BodyReader, buf: bytearray) -> Tuple[int, bool, Optional[Exception]]:
        """Read into ``buf`` until it is full, the body ends or FILL_SECONDS pass.

        Returns (bytes read, body ended, read failure).  A failure is returned rather than
        raised so the bytes received before it are written first.  The read size adapts so
        one read takes FILL_SECONDS/16 to /4: big reads on a fast link, small ones on a
        slow one so that progress stays prompt.  Reads return at least every
        ``READ_TICK`` even when nothing arrives; ``stall_timeout`` seconds without a byte
        end the attempt with ``DownloadStalledError`` (retried with Range).
        """
        view = memoryview(buf)
        size = len(view)
        n = 0
        step = self._read_size
        started = time.monotonic()
        deadline = started + FILL_SECONDS
        try:
            while n < size:
                try:
                    # one recv per call: a timeout inside it loses nothing (a filling read
                    # would lose what it had taken, and the connection with it)
                    got = body.readinto(view[n:n + step])
                except IdleRead:
                    now = time.monotonic()
                    if self.cancel.is_set() or (n and now >= deadline):
                        break
                    if now - self._last_byte >= self.config.stall_timeout:
                        return n, False, self._stalled()
                    started = now
                    continue
                if not got:
                    return n, True, None
                n += got
                now = time.monotonic()
                self._last_byte = now
                took, started = now - started, now
                if took < FILL_SECONDS / 16:
                    step = min(size, step * 2)
                elif took > FILL_SECONDS / 4:
                    step = max(MIN_READ, step // 2)
                if self.cancel.is_set() or now >= deadline:
                    break
        except Exception as exc:
            return n, False, exc
        finally:
            self._read_size = step
        return n, False, None

    def _stalled(self) -> DownloadStalledError:
        return DownloadStalledError(
            f"{self.target.name}: the server sent no data for {self.config.stall_timeout:g} s "
            "(stall_timeout)", url=redact_url(self.spec.url), path=self.target)

    def _write(self, chunk, pos: int) -> None:
        try:
            pwrite_all(self.fd, chunk, pos)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise InsufficientSpaceError(f"disk full while writing {self.target.name}",
                                             path=self.target) from None
            raise

    # -- segmented ----------------------------------------------------------------------
    def _segmented(self, first: Optional[Opened], total: int, *, etag: Optional[str] = None,
                   modified: Optional[str] = None, resume: bool = False) -> DownloadResult:
        if not resume:
            self._check_total(total)
            self.info = PartInfo(url=redact_url(self.spec.url) or "", etag=etag, last_modified=modified,
                                 total=total, expected_sha256=self.expected_sha256, mode="segmented",
                                 segments=plan_segments(total, self.config.download_segments))
            self.resumed_from = 0
            self._preallocate(total)
            self._save_sidecar(self.info)
        info = self.info
        assert info is not None
        if resume:
            self._preflight(info.total - info.segments_done() if info.total else None, allocated=True)
            if os.fstat(self.fd).st_size != info.total:
                raise _Restart("segmented part file has the wrong size")
            self.reporter.set_state("connecting")
        self.reporter.set_total(info.total)
        self.reporter.reset(info.segments_done())
        self.reporter.set_state("downloading")

        # sha256 is sequential: hash the written prefix while the other segments still run
        prefix = PrefixHasher(self.part, self.cancel).start() \
            if (self.expected_sha256 or self.config.verify_downloads) else None
        if prefix is not None:
            prefix.extend(contiguous_prefix(info.segments))

        head = bytearray()
        decided = [False]

        def on_head(pos: int, data: bytes) -> None:
            # fail fast: the first bytes of the file, as the segment at 0 receives them
            if decided[0] or pos != len(head):
                return
            head.extend(data[:content.HEAD_BYTES - len(head)])
            decided[0] = content.check_head(self.target.name, bytes(head), total=info.total,
                                            ended=len(head) >= (info.total or 0))

        def checkpoint(segments) -> None:
            # the sidecar may only claim bytes that are really in the file
            os.fdatasync(self.fd) if hasattr(os, "fdatasync") else os.fsync(self.fd)
            self._save_sidecar(dataclasses.replace(info, segments=segments))
            if prefix is not None:
                prefix.extend(contiguous_prefix(segments))

        job = SegmentJob(
            session=self.session, config=self.config, url=self.spec.url,
            direct_url=first.url if first is not None else None, headers=self.spec.headers,
            fd=self.fd, info=info, cancel=self.cancel, advance=self.reporter.advance, checkpoint=checkpoint,
            chunk_size=self.config.chunk_size, retries=self.config.http_retries,
            backoff_base=self.config.backoff_base, backoff_max=self.config.backoff_max,
            stall_timeout=self.config.stall_timeout,
            on_head=on_head if content.is_checked(self.target.name) else None,
        )
        try:
            try:
                run_segments(job, first)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise InsufficientSpaceError(f"disk full while writing {self.target.name}",
                                                 path=self.target) from None
                raise
            os.fsync(self.fd)
            total = info.total or 0
            sha = None
            if prefix is not None and os.fstat(self.fd).st_size == total:
                sha = prefix.result(total)  # a wrong size is reported by _finish
        finally:
            if prefix is not None:
                prefix.abort()
        return self._finish(total, sha)

    def _preallocate(self, total: int) -> None:
        self._preflight(total)
        os.ftruncate(self.fd, 0)
        try:
            os.posix_fallocate(self.fd, 0, total)
        except AttributeError:  # pragma: no cover - not on this OS
            os.ftruncate(self.fd, total)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise InsufficientSpaceError(
                    f"not enough disk space for {self.target.name} ({_mb(total)} needed)", path=self.target) from None
            os.ftruncate(self.fd, total)  # the file system cannot preallocate: a sparse file will do

    # -- checks ------------------------------------------------------------------------
    def _check_total(self, total: Optional[int]) -> None:
        if total is not None and self.expected_size is not None and total != self.expected_size:
            raise IntegrityError(
                f"the server offers {total} bytes but {self.expected_size} were expected",
                url=redact_url(self.spec.url), path=self.target)

    def _preflight(self, needed: Optional[int], *, allocated: bool = False) -> None:
        if not needed or allocated:
            return
        free = shutil.disk_usage(self.target.parent).free
        if needed > free:
            raise InsufficientSpaceError(
                f"not enough disk space for {self.target.name}: {_mb(needed)} needed, "
                f"{_mb(free)} free in {self.target.parent}", path=self.target)

    def _finish(self, size: int, sha: Optional[str]) -> DownloadResult:
        """Verify the part file, then move it to the final name atomically."""
        self.reporter.set_state("verifying")
        actual_size = os.fstat(self.fd).st_size
        if self.info is not None and self.info.total is not None and actual_size != self.info.total:
            raise IntegrityError(f"got {actual_size} bytes, the server announced {self.info.total}",
                                 url=redact_url(self.spec.url), path=self.target)
        if self.expected_size is not None and actual_size != self.expected_size:
            raise IntegrityError(f"got {actual_size} bytes, expected {self.expected_size}",
                                 url=redact_url(self.spec.url), path=self.target)
        if sha is None and (self.expected_sha256 or self.config.verify_downloads):
            sha = sha256_file(self.part, cancel=self.cancel)
        if self.expected_sha256 and sha != self.expected_sha256:
            raise IntegrityError(
                f"sha256 mismatch for {self.target.name}: expected {self.expected_sha256}, got {sha}",
                url=redact_url(self.spec.url), path=self.target)
        content.check_file(self.target.name, self.fd, actual_size)  # again, from the file's start
        if os.path.lexists(self.target) and not self.spec.overwrite:
            # appeared while we downloaded: keep the verified part (a rerun finishes at once)
            raise FileExistsConflictError(f"{self.target.name} appeared meanwhile; not overwritten",
                                          path=self.target)
        self._check_place()
        if is_link(self.target):
            raise UnsafePathError(f"{self.target.name} became a symbolic link; not replaced")
        if not self._lock.held_by_fd:
            self._close()  # Windows cannot rename an open file; the lock file spans the rename
        os.replace(long_path(self.part), long_path(self.target))
        _fsync_dir(self.target.parent)
        partfile.remove(self.sidecar)
        self.info = PartInfo(url="")  # the part is gone: nothing to clean up
        return self._result(size=actual_size, sha=sha, verified=bool(self.expected_sha256), skipped=False)

    def _result(self, *, size: int, sha: Optional[str], verified: bool, skipped: bool) -> DownloadResult:
        return DownloadResult(
            filename=self.target.name, success=True, save_path=str(self.target),
            size_downloaded=0 if skipped else max(0, size - self.resumed_from),
            duration=time.monotonic() - self._started, verified=verified, sha256=sha,
            url=redact_url(self.spec.url), resumed_from=self.resumed_from, skipped=skipped,
            warnings=list(self.reporter.warnings),
        )


def partfile_head(fd: int, offset: int) -> bytes:
    """The first bytes of a part file resumed at ``offset`` (none for a fresh one)."""
    return pread(fd, min(offset, content.HEAD_BYTES), 0) if offset else b""


def contiguous_prefix(segments: List[Segment]) -> int:
    """How many bytes from the start of the file the segments say are written."""
    covered = 0
    for seg in sorted(segments, key=lambda s: s.start):
        if seg.start > covered:
            break
        covered = max(covered, seg.start + min(seg.done, seg.length))
        if not seg.complete:
            break
    return covered


class _WriteBehind:
    """Starts kernel writeback of each written window (Linux ``sync_file_range``).

    The closing fsync stays (only durable bytes may be renamed into place), but with the
    writeback already under way it waits for the last window instead of the whole file.
    Without ``sync_file_range`` this does nothing and the fsync does all the work.
    """

    def __init__(self, fd: int, start: int):
        self.fd = fd
        self.mark = start
        self._start = _sync_file_range()

    def wrote(self, end: int) -> None:
        if self._start is not None and end - self.mark >= WRITEBACK_WINDOW:
            self._start(self.fd, self.mark, end - self.mark)
            self.mark = end


_SFR_UNSET = object()
_sfr = _SFR_UNSET


def _sync_file_range():
    """``sync_file_range(fd, off, n, SYNC_FILE_RANGE_WRITE)`` via libc, or None (looked up once)."""
    global _sfr
    if _sfr is _SFR_UNSET:
        _sfr = None
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                libc = ctypes.CDLL(None, use_errno=True)
                func = libc.sync_file_range
                func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
                func.restype = ctypes.c_int

                def start(fd: int, offset: int, length: int) -> None:
                    func(fd, offset, length, 2)  # SYNC_FILE_RANGE_WRITE: start, do not wait

                _sfr = start
            except (OSError, AttributeError):  # no libc symbol: the fsync does it all
                _sfr = None
    return _sfr


def _same_validators(info: PartInfo, etag: Optional[str], modified: Optional[str]) -> bool:
    if info.etag:
        return etag == info.etag
    if info.last_modified:
        return modified == info.last_modified
    return True


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"
