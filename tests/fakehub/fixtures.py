"""pytest fixtures for the fake hub.  Import them explicitly in a test module:

    from fakehub.fixtures import fake_hub, hub_config  # noqa: F401
"""

from __future__ import annotations

from typing import Iterator

import pytest

from comfyfixersmart.settings import Config

from .hub import FakeHub


@pytest.fixture
def fake_hub() -> Iterator[FakeHub]:
    """A fresh, running FakeHub (stopped after the test)."""
    with FakeHub() as hub:
        yield hub


def config_for_hub(hub: FakeHub, tmp_path, **overrides) -> Config:
    """A Config pointing Civitai and Hugging Face at ``hub``, every dir under ``tmp_path``,
    loopback hosts allowed, short backoff (tests should not sleep for long)."""
    values = dict(
        civitai_base_url=hub.civitai_url,
        hf_endpoint=hub.hf_url,
        allowed_hosts=["127.0.0.1:*", "localhost:*"],
        output_dir=tmp_path / "output",
        log_dir=tmp_path / "logs",
        state_dir=tmp_path / "state",
        cache_dir=tmp_path / "cache",
        backoff_base=0.01,
        backoff_max=0.2,
        civitai_api_timeout=5,
        download_timeout=10,
    )
    values.update(overrides)
    return Config(**values)


@pytest.fixture
def hub_config(fake_hub: FakeHub, tmp_path) -> Config:
    """Config for ``fake_hub`` (see ``config_for_hub``); build variants with
    ``config_for_hub(fake_hub, tmp_path, **overrides)`` or ``hub_config.replace(...)``."""
    return config_for_hub(fake_hub, tmp_path)
