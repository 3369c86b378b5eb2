"""Segmented download: several ``Range`` requests written with positional writes into one
preallocated part file.

Servers (and CDNs) often cap each connection; N parallel ranges then give ~N times the
speed.  A worker that finishes early splits the largest remaining segment (work stealing),
so one slow connection does not hold back the end of the file.  Segment progress lives in
the sidecar, so a killed process resumes each segment where it stopped.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Callable, List, Mapping, Optional

from ..errors import DownloadCancelledError, DownloadError, DownloadStalledError, HostNotAllowedError, ValidationError
from ..logs import get_logger
from ..security import redact_url
from .http import BodyReader, IdleRead, Opened, TruncatedError, is_transient, open_url, parse_content_range
from .content import HEAD_BYTES
from .fileio import pwrite_all
from .partfile import PartInfo, Segment

log = get_logger(__name__)

#: a segment is never split below this size
MIN_PIECE = 4 * 1024 * 1024
#: seconds between two sidecar checkpoints
CHECKPOINT_INTERVAL = 2.0


class ResourceChanged(DownloadError):
    """The remote file changed (validator/size) or stopped honouring Range: start over."""


def plan_segments(total: int, count: int, min_piece: int = MIN_PIECE) -> List[Segment]:
    """Split ``total`` bytes into at most ``count`` contiguous segments of >= ``min_piece``."""
    if total <= 0:
        return [Segment(0, -1, 0)]
    count = max(1, min(count, total // max(1, min_piece) or 1))
    size = -(-total // count)
    segments = []
    for start in range(0, total, size):
        segments.append(Segment(start, min(total, start + size) - 1))
    return segments


@dataclass
class SegmentJob:
    """What the segment workers share."""

    session: object
    config: object
    url: str
    #: the URL that answered the probe (a signed CDN URL): saves the redirect hops
    direct_url: Optional[str]
    headers: Optional[Mapping[str, str]]
    fd: int
    info: PartInfo
    cancel: threading.Event
    advance: Callable[[int], None]
    #: called with a snapshot of the segments; must make those bytes durable, then save
    checkpoint: Callable[[List[Segment]], None]
    chunk_size: int
    retries: int
    backoff_base: float
    backoff_max: float
    #: seconds without a byte before a connection counts as stalled (then resumed)
    stall_timeout: float = 30.0
    #: called with (offset, bytes) for what arrives in the file's first HEAD_BYTES (may
    #: raise: a file that is not a model stops every segment)
    on_head: Optional[Callable[[int, bytes], None]] = None


def run_segments(job: SegmentJob, first: Optional[Opened] = None) -> None:
    """Fill every segment of ``job.info``; raise the first failure (after a checkpoint)."""
    lock = threading.Lock()
    stop = threading.Event()
    info = job.info
    pending = [s for s in info.segments if not s.complete]
    errors: List[BaseException] = []

    def steal() -> Optional[Segment]:
        # Split the segment with the most bytes left; the split point stays more than one
        # chunk ahead of its worker, whose in-flight read never exceeds one chunk.
        with lock:
            best = max((s for s in info.segments if not s.complete),
                       key=lambda s: s.end - s.position, default=None)
            if best is None:
                return None
            left = best.end - best.position + 1 - job.chunk_size
            if left < 2 * MIN_PIECE:
                return None
            mid = best.position + job.chunk_size + left // 2
            new = Segment(mid, best.end)
            best.end = mid - 1
            info.segments.append(new)
            info.segments.sort(key=lambda s: s.start)
            return new

    def worker(seg: Segment, opened: Optional[Opened]) -> None:
        while seg is not None:
            _fill(job, seg, opened, lock, stop)
            opened = None
            seg = steal() if not stop.is_set() else None

    firsts: List[Optional[Opened]] = [None] * len(pending)
    if first is not None and pending and pending[0].position == 0:
        firsts[0] = first
    elif first is not None:
        first.close()
    pool = ThreadPoolExecutor(max_workers=max(1, len(pending)), thread_name_prefix="cfs-seg")
    try:
        futures = [pool.submit(worker, seg, firsts[i]) for i, seg in enumerate(pending)]
        last = time.monotonic()
        while True:
            done, not_done = wait(futures, timeout=0.2, return_when=FIRST_EXCEPTION)
            for f in done:
                if f.exception() is not None and not stop.is_set():
                    errors.append(f.exception())
                    stop.set()
            if job.cancel.is_set():
                stop.set()
            if not not_done:
                break
            if time.monotonic() - last >= CHECKPOINT_INTERVAL:
                job.checkpoint(_snapshot(info, lock))
                last = time.monotonic()
    finally:
        stop.set()
        pool.shutdown(wait=True)
        job.checkpoint(_snapshot(info, lock))
    if errors:
        raise errors[0]
    if job.cancel.is_set():
        raise DownloadCancelledError("cancelled", url=redact_url(job.url))


def _snapshot(info: PartInfo, lock: threading.Lock) -> List[Segment]:
    # taken before the sync, so the sidecar never claims bytes that were not yet written
    with lock:
        return [Segment(s.start, s.end, s.done) for s in info.segments]


def _fill(job: SegmentJob, seg: Segment, opened: Optional[Opened], lock: threading.Lock,
          stop: threading.Event) -> None:
    """Download ``seg`` to the end, reopening (with resume) after transient failures."""
    failures = 0
    stalls = 0
    url = job.direct_url or job.url
    view = memoryview(bytearray(job.chunk_size))
    while not seg.complete and not stop.is_set():
        progressed = False
        try:
            if opened is None:
                opened = open_url(job.session, url, job.config, headers=job.headers,
                                  range_start=seg.position, range_end=seg.end,
                                  if_range=job.info.validator, cancel=stop)
            _check_range_answer(job, seg, opened)
            body = BodyReader(opened, fallback_chunk=job.chunk_size)
            last_byte = time.monotonic()
            while not stop.is_set():
                with lock:
                    pos, want = seg.position, min(job.chunk_size, seg.end - seg.position + 1)
                if want <= 0:
                    break
                try:
                    # one recv at a time: it returns at least every READ_TICK, so stop is seen
                    got = body.readinto(view[:want])
                except IdleRead:
                    if time.monotonic() - last_byte >= job.stall_timeout:
                        raise DownloadStalledError(
                            f"the server sent no data for {job.stall_timeout:g} s (stall_timeout)",
                            url=redact_url(job.url)) from None
                    continue
                if not got:
                    raise TruncatedError("connection closed early", url=redact_url(job.url))
                last_byte = time.monotonic()
                if pos < HEAD_BYTES and job.on_head is not None:
                    job.on_head(pos, bytes(view[:got]))
                pwrite_all(job.fd, view[:got], pos)
                with lock:
                    seg.done += got
                job.advance(got)
                progressed = True
        except (ResourceChanged, DownloadCancelledError, HostNotAllowedError, ValidationError, OSError) as exc:
            if isinstance(exc, (ResourceChanged, DownloadCancelledError, HostNotAllowedError)) \
                    or not is_transient(exc):
                raise
            failures = 0 if progressed else failures + 1
            stalls += isinstance(exc, DownloadStalledError)
            if stalls > job.retries:
                raise DownloadStalledError(f"{exc}; gave up after {stalls} attempts, each resumed where the "
                                           "last one stopped", url=redact_url(job.url)) from None
            _backoff(job, failures, stop, exc)
        except Exception as exc:
            if url != job.url and getattr(exc, "status", None) in (401, 403, 404, 410):
                url = job.url  # the signed direct URL expired: go through the redirects again
                failures += 1
            elif not is_transient(exc):
                raise
            else:
                failures = 0 if progressed else failures + 1
                _backoff(job, failures, stop, exc)
        finally:
            if opened is not None:
                opened.close()
                opened = None


def _backoff(job: SegmentJob, failures: int, stop: threading.Event, exc: BaseException) -> None:
    if failures > job.retries:
        raise exc
    delay = min(job.backoff_max, job.backoff_base * (2 ** max(0, failures - 1)))
    log.info("segment retry in %.2fs after: %s", delay, exc)
    stop.wait(delay)


def _check_range_answer(job: SegmentJob, seg: Segment, opened: Opened) -> None:
    status = opened.status
    if status != 206:
        raise ResourceChanged(f"server answered {status} to a Range request", url=redact_url(job.url))
    start, _end, total = parse_content_range(opened.headers.get("Content-Range"))
    if start != seg.position or (total is not None and job.info.total is not None and total != job.info.total):
        raise ResourceChanged("server sent another range or size than asked", url=redact_url(job.url))
    etag = opened.headers.get("ETag")
    if job.info.etag and etag and etag != job.info.etag:
        raise ResourceChanged("the remote file changed (ETag)", url=redact_url(job.url))
