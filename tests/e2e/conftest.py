"""Fixtures that run a REAL ComfyUI (v0.3.75, CPU) with this repo as a custom node, and a REAL
Chromium driven by Playwright.

Skipped only when ``COMFYFIXER_E2E=0``; otherwise they run (CI runs them).  The first use
prepares the cache (``tests/e2e/comfyui_setup.py``, ~1.5 min from nothing, then instant).

Fixtures
--------
comfyui_install  (session)  -> comfyui_setup.ComfyUIInstall
    .python, .comfyui_dir, .comfyui_version, .frontend_pinned_version,
    .frontend_pinned_static, .frontend_newest_version, .frontend_newest_static, .cache_dir

start_comfyui    (function) -> factory
    start_comfyui(base_directory, front_end_root=None, env=None, *, extra_args=(),
                  link="symlink", user_settings=DEFAULT_USER_SETTINGS, timeout=120.0) -> ComfyUIServer
    Every server it started is stopped at teardown.  ``env`` is laid over a scrubbed copy of
    os.environ (inherited COMFYFIXER_*, HF_TOKEN, HF_ENDPOINT, CIVITAI_* are removed; a value
    of None removes a key).  ``user_settings`` are merged into
    user/default/comfy.settings.json (default: skip the first-run templates dialog).

start_comfyui_session (session) -> the same factory, for module/session-scoped servers; stop
    them yourself (``server.stop()``) in your fixture's teardown, or they live to the session end.

comfyui          (function) -> ComfyUIServer on a fresh tmp base dir, pinned frontend, no extra env

browser          (session)  -> playwright.sync_api.Browser (Debian's /usr/bin/chromium)
page             (function) -> playwright.sync_api.Page in a fresh context; screenshot saved to
                               tests/e2e/_artifacts/ when the test fails
page_logs        (function) -> PageLogs(.console: list[str], .errors: list[str]) for ``page``
open_comfyui     (function) -> open_comfyui(server, page=None, timeout=60.0) -> Page; loads the UI
                               and waits until ``window.app`` is set up
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]          # the repo root holds the custom node's __init__.py
ARTIFACTS = HERE / "_artifacts"      # git-ignored: ComfyUI logs, failure screenshots
CUSTOM_NODE_NAME = "ComfyFixerSmart"
CHROMIUM = os.environ.get("COMFYFIXER_E2E_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# Written to <base>/user/default/comfy.settings.json before start: without it both frontends
# open the "Templates" dialog over the canvas on a first run.
DEFAULT_USER_SETTINGS = {"Comfy.TutorialCompleted": True}
E2E_DISABLED = os.environ.get("COMFYFIXER_E2E") == "0"
SKIP_REASON = "e2e tests disabled by COMFYFIXER_E2E=0"

# Inherited variables a test ComfyUI must not see unless the test passes them itself:
# real tokens or a real hub endpoint must never reach it (tests only talk to 127.0.0.1).
_SCRUBBED_ENV = re.compile(r"^(COMFYFIXER_(?!E2E)\w*|HF_TOKEN|HF_ENDPOINT|HUGGING_FACE_HUB_TOKEN|"
                           r"HF_HUB_OFFLINE|CIVITAI_\w*|PYTEST_\w*)$")


def _load_setup_module():
    # Loaded by path: the repo runs pytest with --import-mode=importlib (no sys.path insert).
    name = "comfyfixer_e2e_comfyui_setup"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HERE / "comfyui_setup.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


comfyui_setup = _load_setup_module()


def _skip_if_disabled() -> None:
    if E2E_DISABLED:
        pytest.skip(SKIP_REASON)


# ---------------------------------------------------------------- ComfyUI server

def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class HttpResponse:
    status: int
    headers: dict
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)


@dataclasses.dataclass
class ComfyUIServer:
    """A running ComfyUI.  ``url`` has no trailing slash (``http://127.0.0.1:PORT``)."""

    url: str
    port: int
    base_directory: Path
    log_path: Path
    custom_node_dir: Path             # base_directory/custom_nodes/ComfyFixerSmart
    front_end_root: Path | None       # None: the pinned frontend from ComfyUI's requirements
    env: dict
    cmd: list
    process: subprocess.Popen | None = None
    boot_seconds: float = 0.0

    # -- HTTP (stdlib only, so the test interpreter needs nothing extra)
    def http(self, method: str, path: str, json_body: Any = None, timeout: float = 30.0,
             headers: dict | None = None) -> HttpResponse:
        data = None
        hdrs = dict(headers or {})
        if json_body is not None:
            data = json.dumps(json_body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return HttpResponse(r.status, dict(r.headers), r.read())
        except urllib.error.HTTPError as e:
            return HttpResponse(e.code, dict(e.headers or {}), e.read())

    def get(self, path: str, timeout: float = 30.0) -> HttpResponse:
        return self.http("GET", path, timeout=timeout)

    def get_json(self, path: str, timeout: float = 30.0) -> Any:
        r = self.get(path, timeout=timeout)
        assert r.status == 200, f"GET {path} -> {r.status}: {r.text[:500]}"
        return r.json()

    # -- log
    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # -- lifecycle
    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 120.0) -> "ComfyUIServer":
        assert not self.running, "already running"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        with open(self.log_path, "ab") as log:
            log.write(f"\n$ {' '.join(map(str, self.cmd))}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [str(c) for c in self.cmd], cwd=str(self.base_directory), env=self.env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: teardown kills only what we started
            )
        deadline = t0 + timeout
        last_err = "no answer yet"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.process.returncode} while starting;"
                                   f" log {self.log_path}:\n{self.log_tail()}")
            try:
                r = self.get("/object_info", timeout=10)
                if r.status == 200:
                    self.boot_seconds = time.monotonic() - t0
                    return self
                last_err = f"HTTP {r.status}"
            except (OSError, urllib.error.URLError) as e:
                last_err = str(e)
            time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"ComfyUI did not answer /object_info within {timeout:.0f}s ({last_err});"
                           f" log {self.log_path}:\n{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        p, self.process = self.process, None
        if p is None or p.poll() is not None:
            return
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(10)

    def restart(self, timeout: float = 120.0) -> "ComfyUIServer":
        """Stop and start again on the same port, base directory and environment."""
        self.stop()
        return self.start(timeout=timeout)


def _link_repo(custom_nodes: Path, link: str) -> Path:
    dest = custom_nodes / CUSTOM_NODE_NAME
    if dest.is_symlink() or dest.is_file():
        dest.unlink()
    elif dest.exists():
        shutil.rmtree(dest)
    if link == "symlink":
        dest.symlink_to(REPO_ROOT, target_is_directory=True)
    elif link == "copy":
        shutil.copytree(REPO_ROOT, dest, symlinks=True, ignore=shutil.ignore_patterns(
            ".git", "__pycache__", ".pytest_cache", "_artifacts", "bench", ".venv", "venv"))
    else:
        raise ValueError(f"link must be 'symlink' or 'copy', not {link!r}")
    return dest


def _server_env(base: Path, env: dict | None) -> dict:
    out = {k: v for k, v in os.environ.items() if not _SCRUBBED_ENV.match(k)}
    for k in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"):  # the test runner's, not ComfyUI's venv's
        out.pop(k, None)
    out.update({
        "PYTHONUNBUFFERED": "1",
        "HF_HOME": str(base / ".hf-home"),      # never the developer's real HF cache
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "DO_NOT_TRACK": "1",
        "TQDM_DISABLE": "1",
        "COMFYFIXER_INDEX_REFRESH": "0",        # the known-model index refresh would ask pypi.org
    })
    for k, v in (env or {}).items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = str(v)
    return out


def _safe_name(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid)[-120:].strip("_")


@pytest.fixture(scope="session")
def comfyui_install():
    """Prepare (once) the cached ComfyUI install; returns comfyui_setup.ComfyUIInstall."""
    _skip_if_disabled()
    return comfyui_setup.ensure_install()


def _make_starter(install, owner: str, started: list) -> Callable[..., ComfyUIServer]:
    counter = [0]

    def start_comfyui(base_directory, front_end_root=None, env: dict | None = None, *,
                      extra_args=(), link: str = "symlink",
                      user_settings: dict | None = DEFAULT_USER_SETTINGS,
                      timeout: float = 120.0) -> ComfyUIServer:
        base = Path(base_directory).resolve()
        for sub in ("custom_nodes", "models", "input", "output", "user/default", "temp"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        if user_settings:
            settings_file = base / "user" / "default" / "comfy.settings.json"
            current = json.loads(settings_file.read_text()) if settings_file.is_file() else {}
            current.update(user_settings)
            settings_file.write_text(json.dumps(current, indent=1))
        node_dir = _link_repo(base / "custom_nodes", link)
        port = _free_port()
        cmd = [install.python, install.comfyui_dir / "main.py",
               "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch",
               "--base-directory", base,
               # default DB path is inside the shared ComfyUI dir; keep each server's own
               "--database-url", f"sqlite:///{base / 'user' / 'comfyui.db'}"]
        if front_end_root is not None:
            cmd += ["--front-end-root", Path(front_end_root)]
        cmd += list(extra_args)
        counter[0] += 1
        log_path = ARTIFACTS / "logs" / f"{owner}-{counter[0]}-comfyui.log"
        if log_path.exists():
            log_path.unlink()
        server = ComfyUIServer(
            url=f"http://127.0.0.1:{port}", port=port, base_directory=base, log_path=log_path,
            custom_node_dir=node_dir, front_end_root=Path(front_end_root) if front_end_root else None,
            env=_server_env(base, env), cmd=cmd)
        started.append(server)
        return server.start(timeout=timeout)

    return start_comfyui


@pytest.fixture
def start_comfyui(comfyui_install, request) -> Iterator[Callable[..., ComfyUIServer]]:
    """Factory: ``start_comfyui(base_directory, front_end_root=None, env=None, *, extra_args=(),
    link="symlink", timeout=120.0) -> ComfyUIServer`` (stopped at teardown)."""
    started: list[ComfyUIServer] = []
    yield _make_starter(comfyui_install, _safe_name(request.node.nodeid), started)
    for s in started:
        s.stop()


@pytest.fixture(scope="session")
def start_comfyui_session(comfyui_install) -> Iterator[Callable[..., ComfyUIServer]]:
    """Like ``start_comfyui`` but session-scoped (for module-scoped server fixtures)."""
    started: list[ComfyUIServer] = []
    yield _make_starter(comfyui_install, "session", started)
    for s in started:
        s.stop()


@pytest.fixture
def comfyui(start_comfyui, tmp_path) -> ComfyUIServer:
    """A ComfyUI on a fresh base directory (tmp_path/comfy), pinned frontend, default env."""
    return start_comfyui(tmp_path / "comfy")


# ---------------------------------------------------------------- browser

@dataclasses.dataclass
class PageLogs:
    console: list = dataclasses.field(default_factory=list)   # "type: text"
    errors: list = dataclasses.field(default_factory=list)    # uncaught page errors


@pytest.fixture(scope="session")
def browser():
    _skip_if_disabled()
    comfyui_setup.ensure_playwright()
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run `bash .ci/e2e-deps.sh` (installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"_e2e_rep_{rep.when}", rep)


@pytest.fixture
def page_logs() -> PageLogs:
    return PageLogs()


@pytest.fixture
def page(browser, page_logs, request):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    pg.on("console", lambda m: page_logs.console.append(f"{m.type}: {m.text}"))
    pg.on("pageerror", lambda e: page_logs.errors.append(str(e)))
    try:
        yield pg
    finally:
        rep = getattr(request.node, "_e2e_rep_call", None)
        if rep is not None and rep.failed:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            stem = ARTIFACTS / _safe_name(request.node.nodeid)
            try:
                pg.screenshot(path=str(stem) + ".png", full_page=True)
                Path(str(stem) + ".console.txt").write_text(
                    "\n".join(page_logs.console + ["--- page errors ---"] + page_logs.errors))
            except Exception:  # a dead page must not hide the real failure
                pass
        context.close()


# window.app is set by both frontends once app.setup() has run; graph + extensionManager
# mean the UI finished booting (extensions' setup() hooks have been called by then).
APP_READY_JS = "() => !!(window.app && window.app.graph && window.app.extensionManager)"


@pytest.fixture
def open_comfyui(request) -> Callable:
    """``open_comfyui(server, page=None, timeout=60.0) -> Page``: load ComfyUI's UI and wait for
    ``window.app``.  Without ``page`` it uses the ``page`` fixture."""

    def _open(server: ComfyUIServer, page=None, timeout: float = 60.0):
        pg = page if page is not None else request.getfixturevalue("page")
        pg.goto(server.url + "/", wait_until="domcontentloaded", timeout=timeout * 1000)
        pg.wait_for_function(APP_READY_JS, timeout=timeout * 1000)
        return pg

    return _open
