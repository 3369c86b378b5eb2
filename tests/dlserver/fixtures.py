"""pytest fixtures shared by the download tests: ``from dlserver.fixtures import server, dest``."""

from __future__ import annotations

import hashlib

import pytest

from . import FileServer, portable


def sha(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def server():
    """A fresh adversarial FileServer on 127.0.0.1."""
    with FileServer() as srv:
        yield srv


@pytest.fixture(params=["posix", "portable"])
def platform_api(request):
    """Run a test twice: with this system's APIs, and as on Windows (``dlserver.portable``:
    no pwrite/pread/fcntl/O_NOFOLLOW, open part files cannot be renamed or removed).
    Yields None or the tracked handles (``refusals`` lists what Windows would have refused)."""
    if request.param == "posix":
        yield None
        return
    undo = portable.install()
    try:
        yield undo.handles
    finally:
        undo()
    assert undo.handles.refusals == [], "an open part file was renamed or removed"


@pytest.fixture
def dest(tmp_path):
    """Where downloads go (the state database lives elsewhere in tmp_path)."""
    path = tmp_path / "models"
    path.mkdir()
    return path
