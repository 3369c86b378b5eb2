"""Shared fixtures.  Helpers for fake servers live in their own modules under tests/
(``fakehub``, ``dlserver``) and are imported by the tests that use them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from comfyfixersmart.settings import Config, set_config

FIXTURES = Path(__file__).resolve().parent / "fixtures"

# CI must be repeatable: the same examples every run (developers keep random exploration,
# and any failure found that way gets pinned with @example).
from hypothesis import settings as _hyp_settings  # noqa: E402

_hyp_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    _hyp_settings.load_profile("ci")


def pytest_configure(config):
    """Ctrl-C is part of what is tested: make sure SIGINT reaches Python.  A runner started in
    the background (``cmd &`` in a script, ``nohup``) inherits SIGINT *ignored*; Python then
    installs no handler, ``_thread.interrupt_main()`` does nothing, the subprocesses the tests
    signal ignore it too, and the Ctrl-C tests fail for a reason that is not in the code."""
    import signal

    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path_factory):
    """No test reads the developer's tokens, config file or data dirs."""
    for var in ("CIVITAI_API_TOKEN", "CIVITAI_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "COMFYFIXER_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    # the known-model index refresh asks pypi.org: never from a test (subprocesses inherit this)
    monkeypatch.setenv("COMFYFIXER_INDEX_REFRESH", "0")
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    set_config(None)
    yield
    set_config(None)


@pytest.fixture
def make_config(tmp_path):
    """Build a Config whose dirs live in this test's temp dir; keyword args override."""

    def factory(**overrides) -> Config:
        base = dict(
            output_dir=tmp_path / "output",
            log_dir=tmp_path / "logs",
            state_dir=tmp_path / "state",
            cache_dir=tmp_path / "cache",
            backoff_base=0.01,
            backoff_max=0.05,
        )
        base.update(overrides)
        return Config(**base)

    return factory


@pytest.fixture
def fixtures_dir() -> Path:
    """tests/fixtures: real public workflows and API bodies kept in the repository with their
    sources and licences (tests/fixtures/SOURCES.md), so no test depends on an outside folder."""
    return FIXTURES


def pytest_collection_modifyitems(config, items):
    """Run the end-to-end tests last.

    Playwright's sync API keeps an asyncio loop running in the main thread while its
    session-scoped browser lives; async tests collected after it would fail with
    "Runner.run() cannot be called from a running event loop".
    """
    e2e_dir = Path(__file__).parent / "e2e"
    for item in items:
        if e2e_dir in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)
    items.sort(key=lambda item: e2e_dir in Path(str(item.fspath)).parents)
