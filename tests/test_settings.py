"""settings.py: precedence defaults < TOML file < environment < arguments, validation, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfyfixersmart.errors import ConfigurationError
from comfyfixersmart.settings import (
    DEFAULT_ALLOWED_HOSTS,
    DEFAULT_MODEL_EXTENSIONS,
    Config,
    get_config,
    set_config,
)


def write_toml(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- precedence -----------------------------------------------------------------------------

def test_defaults(tmp_path):
    c = Config.load(env={})
    assert c.comfyui_root is None
    assert c.civitai_base_url == "https://civitai.com"
    assert c.civitai_api_base == "https://civitai.com/api/v1"
    assert c.civitai_download_base == "https://civitai.com/api/download/models"
    assert c.hf_endpoint == "https://huggingface.co"
    assert c.download_concurrency == 3 and c.verify_downloads is True
    assert c.model_extensions == DEFAULT_MODEL_EXTENSIONS
    assert c.allowed_hosts == DEFAULT_ALLOWED_HOSTS
    assert c.civitai_token is None and c.hf_token is None


def test_user_dirs_follow_xdg_at_construction(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xc"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xd"))
    c = Config()
    assert c.cache_dir == tmp_path / "xc" / "comfyfixersmart"
    assert c.state_dir == tmp_path / "xd" / "comfyfixersmart"
    assert c.log_dir == tmp_path / "xd" / "comfyfixersmart" / "logs"


def test_file_then_env_then_args(tmp_path):
    cfg = write_toml(tmp_path, """
download_concurrency = 5
download_timeout = 120
civitai_api_timeout = 40
comfyui_root = "/from/file"
""")
    env = {"COMFYFIXER_DOWNLOAD_TIMEOUT": "90", "COMFYFIXER_CIVITAI_API_TIMEOUT": "50"}
    c = Config.load(cfg, env=env, civitai_api_timeout=60)
    assert c.download_concurrency == 5  # file beats default
    assert c.download_timeout == 90  # env beats file
    assert c.civitai_api_timeout == 60  # argument beats env
    assert c.comfyui_root == Path("/from/file")


def test_none_arguments_do_not_override(tmp_path):
    c = Config.load(env={"COMFYFIXER_DOWNLOAD_CONCURRENCY": "7"}, download_concurrency=None)
    assert c.download_concurrency == 7


def test_file_from_env_var_and_default_location(tmp_path, monkeypatch):
    cfg = write_toml(tmp_path, "download_concurrency = 6\n")
    assert Config.load(env={"COMFYFIXER_CONFIG": str(cfg)}).download_concurrency == 6
    # the per-user default file (XDG_CONFIG_HOME points into this test's temp dir)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    default = tmp_path / "xdg" / "comfyfixersmart" / "config.toml"
    default.parent.mkdir(parents=True)
    default.write_text("download_concurrency = 9\n")
    assert Config.load(env={}).download_concurrency == 9
    # an explicit file wins over the default one
    assert Config.load(cfg, env={}).download_concurrency == 6


def test_comfyfixer_table_in_file(tmp_path):
    cfg = write_toml(tmp_path, "[comfyfixer]\nmin_confidence = 0.95\nworkflow_dirs = ['a', 'b']\n")
    c = Config.load(cfg, env={})
    assert c.min_confidence == 0.95
    assert c.workflow_dirs == [Path("a"), Path("b")]


def test_env_lists_and_types():
    env = {
        "COMFYFIXER_WORKFLOW_DIRS": "one, two ,,three",
        "COMFYFIXER_MODEL_EXTENSIONS": "safetensors,.GGUF",
        "COMFYFIXER_VERIFY_DOWNLOADS": "no",
        "COMFYFIXER_CACHE_ENABLED": "On",
        "COMFYFIXER_MIN_CONFIDENCE": "0.85",
        "COMFYFIXER_COMFYUI_ROOT": "~/ComfyUI",
        "COMFYFIXER_E2E": "1",  # other COMFYFIXER_* variables (test knobs) are not settings
        "COMFYFIXER_E2E_CACHE": "/x",
    }
    c = Config.load(env=env)
    assert c.workflow_dirs == [Path("one"), Path("two"), Path("three")]
    assert c.model_extensions == [".safetensors", ".gguf"]
    assert c.verify_downloads is False and c.cache_enabled is True
    assert c.min_confidence == 0.85
    assert c.comfyui_root == Path("~/ComfyUI").expanduser()


# -- tokens and endpoints -----------------------------------------------------------------------

@pytest.mark.parametrize("env, expected", [
    ({"CIVITAI_API_KEY": "key-aaaa"}, "key-aaaa"),
    ({"CIVITAI_API_TOKEN": "tok-bbbb"}, "tok-bbbb"),
    ({"CIVITAI_API_KEY": "key-aaaa", "CIVITAI_API_TOKEN": "tok-bbbb"}, "tok-bbbb"),
    ({"CIVITAI_API_TOKEN": "tok-bbbb", "COMFYFIXER_CIVITAI_TOKEN": "own-cccc"}, "own-cccc"),
    ({"CIVITAI_API_TOKEN": ""}, None),
])
def test_civitai_token_sources(env, expected):
    assert Config.load(env=env).civitai_token == expected


def test_hf_token_and_endpoint():
    c = Config.load(env={"HUGGING_FACE_HUB_TOKEN": "hf_old_name_token", "HF_TOKEN": "hf_new_name_token",
                         "HF_ENDPOINT": "http://127.0.0.1:9999/"})
    assert c.hf_token == "hf_new_name_token"
    assert c.hf_endpoint == "http://127.0.0.1:9999"
    assert "127.0.0.1" in c.effective_allowed_hosts
    assert Config.load(env={"HUGGING_FACE_HUB_TOKEN": "hf_old_name_token"}).hf_token == "hf_old_name_token"


def test_tokens_are_stripped_and_single_line():
    assert Config(civitai_token="  abcdef\n").civitai_token == "abcdef"
    assert Config(hf_token="   ").hf_token is None
    for bad in ("two\nlines", "nul\0byte", 1234):
        with pytest.raises(ConfigurationError) as info:
            Config(hf_token=bad)  # type: ignore[arg-type]
        assert info.value.setting == "hf_token"


def test_tokens_absent_from_repr_and_str():
    c = Config(civitai_token="civ-secret-value-1", hf_token="hf_secretvalue1234567890")
    for text in (repr(c), str(c)):
        assert "civ-secret-value-1" not in text and "hf_secretvalue1234567890" not in text
    assert "civitai_base_url" in repr(c)


def test_allowed_hosts_env_extends_defaults_and_file(tmp_path):
    c = Config.load(env={"COMFYFIXER_ALLOWED_HOSTS": "mirror.example, .cdn.example"})
    assert c.allowed_hosts == DEFAULT_ALLOWED_HOSTS + ["mirror.example", ".cdn.example"]
    cfg = write_toml(tmp_path, 'allowed_hosts = ["civitai.com", "file.example"]\n')
    c = Config.load(cfg, env={"COMFYFIXER_ALLOWED_HOSTS": "env.example,civitai.com"})
    assert c.allowed_hosts == ["civitai.com", "file.example", "env.example"]
    # an explicit argument replaces the list
    assert Config.load(env={"COMFYFIXER_ALLOWED_HOSTS": "x.example"}, allowed_hosts=["only.example"]
                       ).allowed_hosts == ["only.example"]


def test_effective_allowed_hosts_include_endpoints():
    c = Config(civitai_base_url="http://127.0.0.1:8001", allowed_hosts=["a.example"])
    assert c.effective_allowed_hosts == ["a.example", "127.0.0.1", "huggingface.co"]


# -- bad values name the setting ------------------------------------------------------------------

@pytest.mark.parametrize("setting, value", [
    ("download_concurrency", "lots"),
    ("download_concurrency", 0),
    ("download_concurrency", 1000),
    ("download_concurrency", True),
    ("download_concurrency", 2.5),
    ("chunk_size", 10),
    ("http_retries", -1),
    ("civitai_api_timeout", "1.5"),
    ("min_confidence", 1.5),
    ("min_confidence", "high"),
    ("backoff_base", -1),
    ("verify_downloads", "maybe"),
    ("verify_downloads", 2),
    ("civitai_base_url", "ftp://civitai.com"),
    ("civitai_base_url", "civitai.com"),
    ("civitai_base_url", "https://user:pw@civitai.com"),
    ("hf_endpoint", 42),
    ("comfyui_root", ""),
    ("comfyui_root", 12),
    ("cache_dir", "a\0b"),
    ("workflow_dirs", [3]),
    ("model_extensions", 5),
    ("model_extensions", [".pt", 3]),
    ("allowed_hosts", {"a": 1}),
    ("model_type_mapping", {"Node": 3}),
    ("model_type_mapping", "x"),
    ("user_agent", "bad\r\nX-Injected: 1"),
    ("user_agent", ""),
])
def test_bad_values_raise_configuration_error(setting, value):
    with pytest.raises(ConfigurationError) as info:
        Config(**{setting: value})
    assert info.value.setting == setting
    assert setting in str(info.value)
    assert isinstance(info.value, ValueError)


def test_bad_env_value_names_the_setting():
    with pytest.raises(ConfigurationError) as info:
        Config.load(env={"COMFYFIXER_DOWNLOAD_SEGMENTS": "many"})
    assert info.value.setting == "download_segments"


def test_unknown_setting_in_file_or_args(tmp_path):
    cfg = write_toml(tmp_path, "downlaod_concurrency = 3\n")
    with pytest.raises(ConfigurationError) as info:
        Config.load(cfg, env={})
    assert info.value.setting == "downlaod_concurrency"
    with pytest.raises(ConfigurationError):
        Config.load(env={}, no_such_thing=1)


def test_bad_config_files(tmp_path):
    with pytest.raises(ConfigurationError) as info:
        Config.load(tmp_path / "missing.toml", env={})
    assert info.value.setting == "config_file"
    bad = write_toml(tmp_path, "this is = = not toml\n", "bad.toml")
    with pytest.raises(ConfigurationError) as info:
        Config.load(bad, env={})
    assert info.value.setting == "config_file" and "bad.toml" in str(info.value)
    with pytest.raises(ConfigurationError):
        Config.load(env={"COMFYFIXER_CONFIG": str(tmp_path / "nope.toml")})


def test_coercion():
    c = Config(download_concurrency="4", min_confidence="0.5", verify_downloads="false", chunk_size=8192.0,
               comfyui_root="~/x", model_extensions="pt, .SFT", civitai_base_url=" https://civitai.com/ ")
    assert c.download_concurrency == 4 and c.min_confidence == 0.5 and c.verify_downloads is False
    assert c.chunk_size == 8192 and isinstance(c.chunk_size, int)
    assert c.comfyui_root == Path.home() / "x"
    assert c.model_extensions == [".pt", ".sft"]
    assert c.civitai_base_url == "https://civitai.com"


def test_replace_validates():
    c = Config()
    d = c.replace(download_concurrency=8)
    assert d.download_concurrency == 8 and c.download_concurrency == 3
    with pytest.raises(ConfigurationError):
        c.replace(download_concurrency=0)


def test_models_dir():
    assert Config().models_dir() is None
    assert Config(comfyui_root="/c").models_dir() == Path("/c/models")


def test_process_default_is_lazy_and_replaceable(monkeypatch):
    monkeypatch.setenv("COMFYFIXER_DOWNLOAD_CONCURRENCY", "5")
    set_config(None)
    first = get_config()
    assert first.download_concurrency == 5
    assert get_config() is first
    mine = Config(download_concurrency=2)
    set_config(mine)
    assert get_config() is mine
    set_config(None)
    assert get_config() is not mine
