"""Background refresh of the known-model index from the same packages it was built from.

At most once a week (``REFRESH_EVERY``), and only when ``Config.index_refresh`` is on (the
CLI and ComfyUI turn it on through ``Config.load``; tests and a ``Config`` built in code leave
it off): PyPI's JSON API (``Config.index_refresh_url``) is asked for the newest
``comfyui-workflow-templates`` (whose ``Requires-Dist`` pins the ``-json`` package) and
``comfyui-manager``, with the ETags of the last answers (a 304 costs nothing).  When a
version changed, the wheels are downloaded (sha256 checked against PyPI's digest), the index
is rebuilt (``index_build``) and written atomically to ``<cache_dir>/known_models.json``,
which later lookups use.  It runs in a daemon thread, never blocks a lookup, and any failure
only logs: the bundled snapshot keeps working.

Every request goes through ``net.redirects.follow`` (each redirect hop checked) with an
allow-list of exactly the ``index_refresh_url`` origin and ``https://files.pythonhosted.org``
(where PyPI's wheels live): a hop elsewhere, a plain-http downgrade or a private address is
refused, and no hub token is ever sent.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from ..fileutils import atomic_write_bytes, save_json_file
from ..logs import get_logger
from ..net.redirects import follow
from . import index_build
from .known_models import REFRESHED, KnownModelIndex

log = get_logger(__name__)

REFRESH_EVERY = 7 * 24 * 3600
#: after a failed refresh (offline, PyPI down), the next try waits this long
RETRY_AFTER_FAILURE = 24 * 3600
STATE_FILE = "known_models.refresh.json"
#: a wheel bigger than this is not one of ours (the -json package is ~4 MB)
MAX_WHEEL_BYTES = 64 * 1024 * 1024
#: a rebuilt index with fewer entries means the packages changed shape: keep the old one
MIN_MODELS = 100
#: where PyPI serves the wheels its JSON API links to (the only origin besides index_refresh_url)
FILES_ORIGIN = "https://files.pythonhosted.org"

_started: Dict[str, threading.Thread] = {}
_started_lock = threading.Lock()


def maybe_refresh(config, *, now: Optional[float] = None) -> Optional[threading.Thread]:
    """Start the background refresh if it is on and due; return its thread (None if not started)."""
    if not getattr(config, "index_refresh", False) or getattr(config, "known_models_file", None) is not None:
        return None
    key = str(Path(config.cache_dir))
    with _started_lock:
        if key in _started:
            return None  # once per process and cache folder
        state = _read_state(Path(config.cache_dir))
        if (now or time.time()) - float(state.get("checked") or 0) < REFRESH_EVERY:
            return None
        thread = threading.Thread(target=_run, args=(config,), name="comfyfixer-index-refresh", daemon=True)
        _started[key] = thread
    thread.start()
    return thread


def _run(config) -> None:
    try:
        changed = refresh_index(config)
        log.info("known-model index refresh: %s", "rebuilt" if changed else "up to date")
    except Exception as exc:  # never fatal: the bundled snapshot still answers
        log.info("known-model index refresh skipped: %s", exc)
        # an offline machine should not ask again at every start: try again in a day
        cache_dir = Path(config.cache_dir)
        state = _read_state(cache_dir)
        state["checked"] = max(float(state.get("checked") or 0),
                               time.time() - REFRESH_EVERY + RETRY_AFTER_FAILURE)
        _write_state(cache_dir, state)


class RefreshConfig:
    """``config`` seen by the network layer during a refresh: its only endpoint is
    ``index_refresh_url``, its allow-list only ``FILES_ORIGIN``, and it holds no hub tokens
    (the URL policy, the connect-time address check and the redirect follower read these)."""

    def __init__(self, config):
        self._config = config
        self.index_refresh_url = config.index_refresh_url
        self.allowed_hosts = (FILES_ORIGIN,)
        self.civitai_base_url = ""
        self.hf_endpoint = ""
        self.civitai_token = None
        self.hf_token = None

    def __getattr__(self, name: str):  # user agent, proxy, timeouts... as configured
        return getattr(self._config, name)


def refresh_index(config, session=None) -> bool:
    """Check PyPI and rebuild the cached index if a source package has a new version.
    Returns True when a new index was written.  Raises on network/parse failures (a refused
    redirect hop raises ``HostNotAllowedError``)."""
    from .http import make_session

    net = RefreshConfig(config)
    cache_dir = Path(config.cache_dir)
    state = _read_state(cache_dir)
    etags: Dict[str, str] = dict(state.get("etags") or {})
    own = session is None
    session = session or make_session(net, pool_size=2)
    try:
        meta, meta_tag = _pypi_json(session, net, index_build.TEMPLATES_PACKAGE, etags.get("templates"))
        manager, manager_tag = _pypi_json(session, net, index_build.MANAGER_PACKAGE, etags.get("manager"))
        state["checked"] = time.time()
        if meta is None and manager is None:
            _write_state(cache_dir, state)
            return False  # both 304: nothing changed since the last check
        if meta is None or manager is None:  # one 304: fetch the full answers to rebuild
            meta, meta_tag = _pypi_json(session, net, index_build.TEMPLATES_PACKAGE, None)
            manager, manager_tag = _pypi_json(session, net, index_build.MANAGER_PACKAGE, None)
        json_pin = _pinned(meta, "comfyui-workflow-templates-json")
        if json_pin is None:
            raise ValueError("comfyui-workflow-templates no longer requires a -json package")
        wanted = {"comfyui-workflow-templates-json": json_pin,
                  index_build.MANAGER_PACKAGE: str(manager["info"]["version"])}
        current = {s.get("package"): s.get("version") for s in KnownModelIndex.for_config(config).sources_loaded()}
        if all(current.get(k) == v for k, v in wanted.items()):
            etags.update(templates=meta_tag or "", manager=manager_tag or "")
            state["etags"] = etags
            _write_state(cache_dir, state)
            return False
        via = {"comfyui-workflow-templates-json": f"{meta['info']['name']} {meta['info']['version']}"}
        with tempfile.TemporaryDirectory(dir=str(cache_dir) if cache_dir.is_dir() else None) as tmp:
            wheels = []
            json_release, _ = _pypi_json(session, net, f"comfyui-workflow-templates-json/{json_pin}", None)
            for release in (json_release, manager):
                wheels.append(_download_wheel(session, net, release, Path(tmp)))
            data = index_build.build_index(wheels, via=via)
        if len(data["models"]) < MIN_MODELS:
            raise ValueError(f"the rebuilt index has only {len(data['models'])} entries: not used")
        cache_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(cache_dir / REFRESHED, index_build.dumps_index(data))
        etags.update(templates=meta_tag or "", manager=manager_tag or "")
        state.update(etags=etags, versions=wanted)
        _write_state(cache_dir, state)
        return True
    finally:
        if own:
            session.close()


def _pypi_json(session, config, name: str, etag: Optional[str]) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    """PyPI's JSON for a project (``name`` may be ``project/version``); (None, etag) on 304."""
    url = f"{config.index_refresh_url}/pypi/{name}/json"
    headers = {"If-None-Match": etag} if etag else {}
    response = follow(session, url, config, headers=headers,
                      timeout=(10.0, float(config.civitai_api_timeout))).response
    with response:
        if response.status_code == 304:
            return None, etag
        response.raise_for_status()
        return response.json(), response.headers.get("ETag")


def _pinned(meta: Dict[str, Any], package: str) -> Optional[str]:
    for req in meta.get("info", {}).get("requires_dist") or []:
        head = req.split(";")[0].replace(" ", "")
        if "extra==" in req.replace(" ", ""):
            continue
        name, _, version = head.partition("==")
        if index_build.normalise_package(name) == package and version:
            return version
    return None


def _download_wheel(session, config, release: Dict[str, Any], folder: Path) -> Path:
    wheel = next((u for u in release.get("urls") or [] if u.get("packagetype") == "bdist_wheel"), None)
    if wheel is None:
        raise ValueError(f"{release.get('info', {}).get('name')}: no wheel on PyPI")
    expected = (wheel.get("digests") or {}).get("sha256")
    path = folder / Path(str(wheel["filename"])).name
    digest = hashlib.sha256()
    size = 0
    followed = follow(session, str(wheel["url"]), config, timeout=(10.0, 60.0), headers={"Accept": "*/*"})
    with followed.response as response:
        response.raise_for_status()
        with open(path, "wb") as fh:
            for chunk in response.iter_content(1 << 20):
                size += len(chunk)
                if size > MAX_WHEEL_BYTES:
                    raise ValueError(f"{path.name} is larger than {MAX_WHEEL_BYTES >> 20} MiB")
                digest.update(chunk)
                fh.write(chunk)
    if expected and digest.hexdigest() != expected:
        raise ValueError(f"{path.name}: sha256 differs from PyPI's digest")
    return path


def _read_state(cache_dir: Path) -> Dict[str, Any]:
    try:
        data = json.loads((cache_dir / STATE_FILE).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_state(cache_dir: Path, state: Dict[str, Any]) -> None:
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        save_json_file(state, cache_dir / STATE_FILE)
    except OSError as exc:
        log.debug("cannot write %s: %s", STATE_FILE, exc)
