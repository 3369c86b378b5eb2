"""pytest fixtures shared by the download tests: ``from dlserver.fixtures import server, dest``."""

from __future__ import annotations

import hashlib

import pytest

from . import FileServer


def sha(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def server():
    """A fresh adversarial FileServer on 127.0.0.1."""
    with FileServer() as srv:
        yield srv


@pytest.fixture
def dest(tmp_path):
    """Where downloads go (the state database lives elsewhere in tmp_path)."""
    path = tmp_path / "models"
    path.mkdir()
    return path
