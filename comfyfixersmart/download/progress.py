"""Throttled progress of one download, as ``ProgressEvent``s.

The engine calls ``advance`` for every chunk (from several threads when segmented); the
reporter turns that into at most a few events per second for renderers (a rich bar in the
CLI, websocket messages in ComfyUI) plus the seed's ``progress_callback(filename, done,
total)``.  State changes (connecting, downloading, verifying, done...) are always sent.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable, Deque, List, Optional, Tuple

from ..datamodel import ProgressEvent
from ..errors import DownloadCancelledError
from ..logs import get_logger

log = get_logger(__name__)

EventCallback = Callable[[ProgressEvent], None]
ProgressCallback = Callable[[str, int, Optional[int]], None]

#: seconds between two "downloading" events
DEFAULT_INTERVAL = 0.25
#: the speed is the rate over this many recent seconds
_SPEED_WINDOW = 3.0


class ProgressReporter:
    """Counts bytes of one file and emits throttled ``ProgressEvent``s (thread-safe)."""

    def __init__(
        self,
        filename: str,
        total: Optional[int] = None,
        *,
        on_event: Optional[EventCallback] = None,
        progress_callback: Optional[ProgressCallback] = None,
        interval: float = DEFAULT_INTERVAL,
        job_id: Optional[str] = None,
        item_id: Optional[str] = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.filename = filename
        self.total = total
        self.downloaded = 0
        self.state = "queued"
        self.warnings: List[str] = []
        self._on_event = on_event
        self._progress_callback = progress_callback
        self._interval = interval
        self._job_id = job_id
        self._item_id = item_id
        self._clock = clock
        self._lock = threading.Lock()
        self._last_emit = float("-inf")
        self._samples: Deque[Tuple[float, int]] = deque()

    # -- counting -----------------------------------------------------------------
    def set_total(self, total: Optional[int]) -> None:
        with self._lock:
            self.total = total

    def reset(self, downloaded: int = 0) -> None:
        """Start counting again from ``downloaded`` bytes (restart, resume offset)."""
        with self._lock:
            self.downloaded = downloaded
            self._samples.clear()

    def advance(self, nbytes: int) -> None:
        """Count ``nbytes`` more; emits an event when the interval has passed."""
        now = self._clock()
        with self._lock:
            self.downloaded += nbytes
            self._samples.append((now, self.downloaded))
            if now - self._last_emit < self._interval:
                return
            self._last_emit = now
            event = self._event_locked(now)
        self._emit(event)

    def set_state(self, state: str, *, error: Optional[str] = None, error_type: Optional[str] = None) -> None:
        """Change state and always emit an event."""
        now = self._clock()
        with self._lock:
            self.state = state
            self._last_emit = now
            event = self._event_locked(now, error=error, error_type=error_type)
        self._emit(event)

    def warn(self, message: str) -> None:
        with self._lock:
            if message not in self.warnings:
                self.warnings.append(message)

    def snapshot(self) -> ProgressEvent:
        with self._lock:
            return self._event_locked(self._clock())

    # -- internals ----------------------------------------------------------------
    def _speed_locked(self, now: float) -> float:
        while len(self._samples) > 2 and now - self._samples[0][0] > _SPEED_WINDOW:
            self._samples.popleft()
        if len(self._samples) < 2:
            return 0.0
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0

    def _event_locked(self, now: float, error: Optional[str] = None,
                      error_type: Optional[str] = None) -> ProgressEvent:
        speed = self._speed_locked(now)
        eta = None
        if self.total is not None and speed > 0:
            eta = max(0.0, (self.total - self.downloaded) / speed)
        event = ProgressEvent(
            filename=self.filename, downloaded=self.downloaded, total=self.total, state=self.state,
            speed=speed, eta=eta, error=error, error_type=error_type,
            job_id=self._job_id, item_id=self._item_id,
        )
        if self.warnings and hasattr(event, "warnings"):
            event.warnings = list(self.warnings)
        return event

    def _emit(self, event: ProgressEvent) -> None:
        # A broken renderer must not break the download, but a callback may cancel it.
        if self._on_event is not None:
            try:
                self._on_event(event)
            except DownloadCancelledError:
                raise
            except Exception:
                log.exception("progress on_event callback failed")
        total = event.total
        if total is None and event.state == "done":
            total = event.downloaded  # a body without a length: known only at the end
        # The seed's callback computes downloaded / total: call it only once total is known
        # (not while queued or connecting, nor for a body whose length is unknown).
        if self._progress_callback is not None and total:
            try:
                self._progress_callback(event.filename, event.downloaded, total)
            except DownloadCancelledError:
                raise
            except Exception:
                log.exception("progress_callback failed")
