"""``DownloadManager``: the public face of the download engine.

It validates what callers ask for, limits how many files download at once, wires progress
and cancellation, turns failures into ``DownloadResult(success=False)`` and records
successful downloads in the ``StateManager``.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, List, Mapping, Optional, Set, Tuple, Union
from urllib.parse import urlsplit

import requests

from ..datamodel import DownloadResult, ProgressEvent
from ..errors import ComfyFixerError, DownloadCancelledError, StateError, UnsafePathError, ValidationError
from ..logs import get_logger
from ..security import redact_text, redact_url, safe_join, validate_relative_path
from ..settings import Config, get_config
from .content import check_not_login
from .engine import Transfer, TransferSpec
from .fileio import real_path
from .http import filename_from_disposition, filename_from_url, make_session, open_url, safe_server_filename
from .progress import EventCallback, ProgressCallback, ProgressReporter
from .script import generate_script
from .verify import check_safetensors, parse_sha256, verify_file

log = get_logger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: after a Ctrl-C, how long a batch waits for its downloads to stop (they notice within ~1 s)
INTERRUPT_WAIT = 1.5


class _Cancel:
    """A cancel flag that is also set when the caller's own ``threading.Event`` is."""

    def __init__(self, external: Optional[threading.Event] = None):
        self._own = threading.Event()
        self._external = external

    def set(self) -> None:
        self._own.set()

    def is_set(self) -> bool:
        return self._own.is_set() or (self._external is not None and self._external.is_set())

    def wait(self, timeout: Optional[float] = None) -> bool:
        if self._external is None:
            return self._own.wait(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.is_set():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            self._own.wait(0.05 if left is None else min(0.05, left))
        return True


@dataclass
class _Active:
    keys: Set[str]
    cancel: _Cancel
    started: float = field(default_factory=time.monotonic)


class DownloadManager:
    """Downloads model files safely: ``.part`` + resume + verification + atomic rename."""

    def __init__(self, config: Optional[Config] = None, state: Any = None):
        self.config = config if config is not None else get_config()
        self._state = state
        self._owns_state = False
        self._session: Optional[requests.Session] = None
        self._lock = threading.Lock()
        # the limit across every download of this manager, whoever starts them
        self._slots = threading.BoundedSemaphore(self.config.download_concurrency)
        self._active: List[_Active] = []

    # -- lifecycle ----------------------------------------------------------------------
    @property
    def session(self) -> requests.Session:
        with self._lock:
            if self._session is None:
                pool = max(8, self.config.download_concurrency * (self.config.download_segments + 1))
                self._session = make_session(self.config, pool_size=pool)
            return self._session

    @property
    def state(self):
        """The StateManager downloads are recorded in (created on first use)."""
        with self._lock:
            if self._state is None:
                from ..state import StateManager

                self._state = StateManager(self.config)
                self._owns_state = True
            return self._state

    def close(self) -> None:
        """Cancel running downloads and release connections."""
        self.cancel()
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None
            if self._owns_state and self._state is not None:
                self._state.close()
                self._state = None
                self._owns_state = False

    def __enter__(self) -> "DownloadManager":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- public API ---------------------------------------------------------------------
    def download_model(
        self,
        url: str,
        save_path: PathLike,
        progress_callback: Optional[ProgressCallback] = None,
        *,
        expected_sha256: Optional[str] = None,
        expected_size: Optional[int] = None,
        headers: Optional[Mapping[str, str]] = None,
        overwrite: bool = False,
        on_event: Optional[EventCallback] = None,
        cancel_event: Optional[threading.Event] = None,
        job_id: Optional[str] = None,
        item_id: Optional[str] = None,
    ) -> DownloadResult:
        """Download ``url`` to ``save_path`` (a file, or a folder: then the server names it).

        Never raises for a failed download: the result has ``success=False``,
        ``error_message`` and ``error_type``.  Raises ValidationError/TypeError for bad
        arguments.
        """
        expected = parse_sha256(expected_sha256)
        self._check_args(url, save_path, expected_size, headers)
        if not _is_folder(save_path):
            _check_working_name(Path(save_path))
        target = Path(save_path).expanduser()
        folder = _is_folder(save_path)
        return self._download(url, target, progress_callback, expected, expected_size,
                              headers, overwrite, on_event, cancel_event, job_id, item_id,
                              server_names=folder, source=None, source_id=None, rel_name=None,
                              place=_plan_place(target, None, folder))

    def download_models(
        self,
        models: List[Mapping[str, Any]],
        output_dir: PathLike,
        concurrency: int = 3,
        *,
        on_event: Optional[EventCallback] = None,
        job_id: Optional[str] = None,
        overwrite: bool = False,
    ) -> List[DownloadResult]:
        """Download several files, ``concurrency`` at a time (also capped by the manager's
        ``config.download_concurrency``); results in the order of ``models``.

        Each model: ``url``, ``filename`` (relative, sub-folders kept; omitted = the server's
        name), optional ``directory`` (folder key under ``output_dir``) or absolute
        ``save_path``, ``sha256``, ``size``, ``source``, ``source_id``, ``item_id``.
        """
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValidationError(f"concurrency must be a positive whole number, got {concurrency!r}")
        if not isinstance(models, (list, tuple)):
            raise ValidationError("models must be a list of dicts")
        if not models:
            return []
        jobs = [self._model_job(m, output_dir, on_event, job_id, overwrite) for m in models]
        pool = ThreadPoolExecutor(max_workers=min(concurrency, len(jobs)), thread_name_prefix="cfs-dl")
        futures = [pool.submit(run) for run, _active in jobs]
        try:
            # Waiting in slices on an Event keeps the calling thread where a KeyboardInterrupt
            # lands at once; `with ThreadPoolExecutor` would join every worker first.
            for future in futures:
                while not _wait_future(future, 0.1):
                    pass
        except BaseException:
            # an interruption (Ctrl-C) stops this batch but keeps its part files (resumable)
            for _run, active in jobs:
                if active is not None:
                    self._cancel_active(active, keep_partial=True)
            for future, (_run, active) in zip(futures, jobs):
                if future.cancel() and active is not None:  # never started: unregister it here
                    with self._lock:
                        self._active.remove(active)
            deadline = time.monotonic() + INTERRUPT_WAIT
            for future in futures:
                _wait_future(future, max(0.0, deadline - time.monotonic()))
            pool.shutdown(wait=False)
            raise
        pool.shutdown(wait=True)
        return [f.result() for f in futures]

    def cancel(self, key: Optional[PathLike] = None, *, keep_partial: bool = False) -> int:
        """Cancel the download of ``key`` (save path, item id or file name), or all when None.
        Returns how many were cancelled.  A cancelled download's part file is removed, unless
        ``keep_partial`` (an interruption such as Ctrl-C: the next run resumes it)."""
        wanted = None if key is None else _keys_for(key)
        count = 0
        with self._lock:
            for active in self._active:
                if wanted is None or active.keys & wanted:
                    self._cancel_active(active, keep_partial=keep_partial)
                    count += 1
        return count

    @staticmethod
    def _cancel_active(active: "_Active", *, keep_partial: bool) -> None:
        active.cancel.keep_partial = keep_partial  # read by the engine when it stops
        active.cancel.set()

    def generate_script(self, missing_models: List[Any], template: Optional[str] = None, *,
                        shell: str = "bash") -> str:
        """A bash or PowerShell script that downloads ``missing_models`` with curl (resume,
        sha256 check, ``.part`` then rename); tokens are read from the environment."""
        return generate_script(missing_models, self.config, template=template, shell=shell)

    def verify_download(self, path: PathLike, expected_hash: Optional[str] = None) -> bool:
        """True if ``path`` exists and matches ``expected_hash`` (sha256); without a hash, a
        non-empty file (a ``.safetensors`` must also be structurally complete)."""
        expected = parse_sha256(expected_hash)
        p = Path(path).expanduser()
        if not p.is_file():
            return False
        if expected is not None:
            return verify_file(p, expected)
        if p.stat().st_size == 0:
            return False
        if p.suffix.lower() in (".safetensors", ".sft"):
            return check_safetensors(p)
        return True

    # -- internals ----------------------------------------------------------------------
    def _check_args(self, url: Any, save_path: Any, expected_size: Any, headers: Any) -> None:
        if not isinstance(url, str):
            raise TypeError(f"url must be a string, got {type(url).__name__}")
        if not isinstance(save_path, (str, os.PathLike)) or not str(save_path) or "\0" in str(save_path):
            raise ValidationError(f"save_path must be a non-empty path, got {save_path!r}")
        if expected_size is not None and (isinstance(expected_size, bool) or not isinstance(expected_size, int)
                                          or expected_size < 0):
            raise ValidationError(f"expected_size must be a byte count, got {expected_size!r}")
        if headers is not None and not (isinstance(headers, Mapping) and all(
                isinstance(k, str) and isinstance(v, str) and "\n" not in v and "\r" not in v
                for k, v in headers.items())):
            raise ValidationError("headers must map strings to single-line strings")

    def _model_job(self, model: Mapping[str, Any], output_dir: PathLike, on_event: Optional[EventCallback],
                   job_id: Optional[str], overwrite: bool) -> Tuple[Callable[[], DownloadResult], Optional[_Active]]:
        """Validate one model dict now; return the call that downloads it (or reports why not)
        and its cancel registration (None when it failed validation)."""
        try:
            if not isinstance(model, Mapping):
                raise ValidationError("each model must be a dict")
            url = model.get("url") or model.get("download_url")
            if not isinstance(url, str) or not url:
                raise ValidationError("model has no url")
            sha = parse_sha256(model.get("sha256") or model.get("hash_sha256"))
            size = model.get("size", model.get("size_bytes"))
            self._check_args(url, model.get("save_path") or output_dir, size, model.get("headers"))
            filename = model.get("filename") or model.get("save_as")
            rel = validate_relative_path(filename) if filename else None
            if model.get("save_path"):
                target = Path(model["save_path"]).expanduser()
                if not target.is_absolute():
                    raise ValidationError("save_path must be absolute (or use directory + filename)")
                server_names = _is_folder(model["save_path"])
                place = _plan_place(target, None, server_names)
            else:
                folder = Path(output_dir).expanduser()
                if model.get("directory"):
                    folder = safe_join(folder, validate_relative_path(str(model["directory"])))
                target = safe_join(folder, rel) if rel else folder
                server_names = rel is None
                place = _plan_place(target, Path(output_dir).expanduser(), server_names)
            if not server_names:
                _check_working_name(target)
        except (ComfyFixerError, TypeError) as exc:
            name = str(model.get("filename") or model.get("url") or "?") if isinstance(model, Mapping) else "?"
            failed = _failure_result(name, "", exc, None, 0.0)
            return (lambda: failed), None
        item_id = None if model.get("item_id") is None else str(model["item_id"])
        # registered now, so cancel() reaches items still waiting for a worker
        active = self._register(target, item_id, rel, None)
        return (lambda: self._download(
            url, target, None, sha, size, model.get("headers"), bool(model.get("overwrite", overwrite)), on_event,
            None, job_id, item_id, server_names=server_names,
            source=model.get("source"), source_id=model.get("source_id"), rel_name=rel, active=active,
            place=place)), active

    def _register(self, target: Path, item_id: Optional[str], rel_name: Optional[str],
                  cancel_event: Optional[threading.Event]) -> _Active:
        active = _Active(keys=_keys_for(target) | ({item_id} if item_id else set())
                         | ({rel_name} if rel_name else set()), cancel=_Cancel(cancel_event))
        with self._lock:
            self._active.append(active)
        return active

    def _download(self, url: str, target: Path, progress_callback: Optional[ProgressCallback],
                  expected_sha256: Optional[str], expected_size: Optional[int],
                  headers: Optional[Mapping[str, str]], overwrite: bool, on_event: Optional[EventCallback],
                  cancel_event: Optional[threading.Event], job_id: Optional[str], item_id: Optional[str], *,
                  server_names: bool, source: Optional[str], source_id: Optional[str],
                  rel_name: Optional[str], active: Optional[_Active] = None,
                  place: Tuple[Optional[Path], Optional[Path]] = (None, None)) -> DownloadResult:
        started = time.monotonic()
        if active is None:
            active = self._register(target, item_id, rel_name, cancel_event)
        cancel = active.cancel
        reporter = ProgressReporter(rel_name or target.name, expected_size,
                                    on_event=self._state_hook(on_event, job_id, item_id or rel_name or target.name),
                                    progress_callback=progress_callback, job_id=job_id, item_id=item_id)
        acquired = False
        try:
            reporter.set_state("queued")
            while not self._slots.acquire(timeout=0.1):
                if cancel.is_set():
                    raise DownloadCancelledError("cancelled before it started", url=redact_url(url))
            acquired = True
            if cancel.is_set():  # cancelled while queued: touch nothing (an old .part stays resumable)
                raise DownloadCancelledError("cancelled before it started", url=redact_url(url))
            if server_names:
                target = self._server_named_target(url, target, headers, cancel)
                active.keys |= _keys_for(target)
                reporter.filename = rel_name or target.name
            spec = TransferSpec(url=url, target=target, expected_sha256=expected_sha256,
                                expected_size=expected_size, headers=headers, overwrite=overwrite,
                                root_real=place[0], parent_real=place[1])
            result = Transfer(self.session, self.config, spec, reporter, cancel).run()
        except (ComfyFixerError, OSError, requests.RequestException) as exc:
            failed = _failure_result(reporter.filename, str(target), exc, url, time.monotonic() - started)
            failed.warnings = list(reporter.warnings)
            state = "cancelled" if isinstance(exc, DownloadCancelledError) else "failed"
            log.warning("download of %s %s: %s", reporter.filename, state, failed.error_message)
            reporter.set_state(state, error=failed.error_message, error_type=failed.error_type)
            return failed
        finally:
            if acquired:
                self._slots.release()
            with self._lock:
                self._active.remove(active)
        result.duration = time.monotonic() - started
        if rel_name:
            result.filename = rel_name
        reporter.set_state("done")
        if not result.skipped:
            self._record(result, url, source, source_id)
        log.info("downloaded %s (%d bytes, %.1fs%s)", result.filename, result.size_downloaded, result.duration,
                 ", verified" if result.verified else "")
        return result

    def _server_named_target(self, url: str, folder: Path, headers: Optional[Mapping[str, str]],
                             cancel: _Cancel) -> Path:
        """Ask the server for the file name (Content-Disposition, else the URL) and place it
        safely inside ``folder``."""
        opened = open_url(self.session, url, self.config, headers=headers, range_start=0, range_end=0,
                          cancel=cancel)  # type: ignore[arg-type]
        try:
            check_not_login(opened.url, self.config)
            name = filename_from_disposition(opened.headers.get("Content-Disposition")) \
                or filename_from_url(opened.url)
        finally:
            opened.close()
        safe = safe_server_filename(name)
        if safe != name:
            log.warning("server file name %r sanitised to %r", redact_text(name or ""), safe)
        target = safe_join(folder, safe)
        _check_working_name(target)
        return target

    def _state_hook(self, on_event: Optional[EventCallback], job_id: Optional[str],
                    item_id: str) -> Optional[EventCallback]:
        """Pass events on; with a job, mirror state changes into the job queue."""
        if job_id is None:
            return on_event
        last = {"state": None}

        def hook(event: ProgressEvent) -> None:
            if event.state != last["state"]:
                last["state"] = event.state
                try:
                    self.state.update_item(job_id, item_id, status=event.state, downloaded=event.downloaded,
                                           total=event.total, error=event.error)
                except StateError as exc:
                    log.warning("could not update job %s: %s", job_id, exc)
            if on_event is not None:
                on_event(event)

        return hook

    def _record(self, result: DownloadResult, url: str, source: Optional[str], source_id: Optional[str]) -> None:
        try:
            self.state.record_download(
                result.filename, source or _source_for(url, self.config), str(source_id or ""),
                path=result.save_path, sha256=result.sha256,
                size=os.path.getsize(result.save_path) if os.path.exists(result.save_path) else None,
                url=redact_url(url), status="success")
        except StateError as exc:  # the file is fine; only the history missed it
            log.warning("could not record download of %s: %s", result.filename, exc)


#: names the engine gives its own working files next to a target (see partfile.py)
_WORKING_SUFFIXES = (".part", ".part.json", ".part.lock")


def _check_working_name(target: Path) -> None:
    """A download may not be named like another download's ``.part``/``.part.json`` file:
    writing ``x.safetensors.part`` would clobber the half-done bytes of ``x.safetensors``."""
    if target.name.lower().endswith(_WORKING_SUFFIXES):
        raise UnsafePathError(f"{target.name!r} is the name of a download's working file; not a target")


def _plan_place(target: Path, root: Optional[Path], is_folder: bool) -> Tuple[Path, Path]:
    """(real root, real folder of the file) as planned now; the engine checks both again
    before it writes and before it renames (a folder swapped for a link is refused)."""
    folder = target if is_folder else target.parent
    parent_real = real_path(folder)
    return (real_path(root) if root is not None else parent_real), parent_real


def _wait_future(future: Future, timeout: float) -> bool:
    """True when ``future`` is done; waits at most ``timeout`` (interruptible)."""
    done, _ = wait_futures([future], timeout=timeout)
    return bool(done)


def _is_folder(path: PathLike) -> bool:
    text = os.fspath(path)
    return text.endswith(("/", os.sep)) or Path(text).expanduser().is_dir()


def _keys_for(key: Any) -> Set[str]:
    text = os.fspath(key) if isinstance(key, (str, os.PathLike)) else str(key)
    keys = {text}
    try:
        keys.add(str(Path(text).expanduser().resolve()))
    except (OSError, RuntimeError, ValueError):
        pass
    return keys


def _source_for(url: str, config: Config) -> str:
    host = (urlsplit(url).hostname or "").lower()
    civitai = (urlsplit(config.civitai_base_url).hostname or "").lower()
    if host == civitai or host.endswith(("civitai.com", "civitai.red")):
        return "civitai"
    if host == (urlsplit(config.hf_endpoint).hostname or "").lower() or host.endswith(("huggingface.co", "hf.co")):
        return "huggingface"
    return host or "url"


def _failure_result(name: str, save_path: str, exc: BaseException, url: Optional[str],
                    duration: float) -> DownloadResult:
    message = redact_text(str(exc)) or type(exc).__name__
    # report the public class (errors.py), not an engine-internal subclass
    from .. import errors

    error_type = next((c.__name__ for c in type(exc).__mro__ if getattr(errors, c.__name__, None) is c),
                      type(exc).__name__)
    if isinstance(exc, requests.RequestException) or error_type in ("OSError", "Exception"):
        error_type = "NetworkError" if isinstance(exc, requests.RequestException) else "DownloadError"
    return DownloadResult(filename=name, success=False, save_path=save_path, duration=duration,
                          error_message=message, error_type=error_type, url=redact_url(url))
