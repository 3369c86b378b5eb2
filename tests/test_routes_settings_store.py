"""The server-side settings file behind GET/POST /comfyfixer/settings."""

from __future__ import annotations

import json
import os
import stat
import sys

import pytest

from comfyfixersmart.errors import ValidationError
from comfyfixersmart.service.tokens import TokenStore


def test_empty_store_reports_config_values(make_config, tmp_path):
    config = make_config(min_confidence=0.95)
    store = TokenStore(tmp_path / "state")
    view = store.public_view(config)
    assert {k: view[k] for k in ("civitai_token_set", "hf_token_set", "min_confidence")} == \
        {"civitai_token_set": False, "hf_token_set": False, "min_confidence": 0.95}
    assert store.apply(config) is config


def test_token_from_environment_counts_as_set(make_config, tmp_path):
    config = make_config(hf_token="hf_" + "a" * 30)
    assert TokenStore(tmp_path).public_view(config)["hf_token_set"] is True


def test_set_and_clear_tokens(make_config, tmp_path):
    config = make_config()
    store = TokenStore(tmp_path / "state")
    secret = "civ_" + "x" * 28
    store.update({"civitai_token": secret, "min_confidence": 0.85})
    view = store.public_view(config)
    assert {k: view[k] for k in ("civitai_token_set", "hf_token_set", "min_confidence")} == \
        {"civitai_token_set": True, "hf_token_set": False, "min_confidence": 0.85}
    assert secret not in json.dumps(view)
    assert store.apply(config).civitai_token == secret
    # a fresh store (server restart) reads the file
    again = TokenStore(tmp_path / "state")
    assert again.apply(config).civitai_token == secret
    if sys.platform != "win32":
        assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    store.update({"civitai_token": None})
    assert store.public_view(config)["civitai_token_set"] is False
    assert secret not in store.path.read_text()
    # keys not mentioned are kept
    assert store.public_view(config)["min_confidence"] == 0.85


@pytest.mark.parametrize("changes", [
    {"civitai_token": "two words"}, {"hf_token": "line\nbreak"}, {"hf_token": 5},
    {"min_confidence": 2}, {"min_confidence": "0.9"}, {"password": "x"},
])
def test_bad_values_rejected_and_nothing_written(tmp_path, changes):
    store = TokenStore(tmp_path)
    with pytest.raises(ValidationError):
        store.update(changes)
    assert not store.path.exists()


def test_empty_string_clears(make_config, tmp_path):
    store = TokenStore(tmp_path)
    store.update({"hf_token": "hf_" + "b" * 30})
    store.update({"hf_token": ""})
    assert store.public_view(make_config())["hf_token_set"] is False


def test_damaged_file_is_moved_aside_not_lost(make_config, tmp_path):
    path = tmp_path / TokenStore.FILENAME
    path.write_text("{not json")
    store = TokenStore(tmp_path)
    assert store.public_view(make_config())["civitai_token_set"] is False
    assert (tmp_path / (TokenStore.FILENAME + ".corrupt")).read_text() == "{not json"
