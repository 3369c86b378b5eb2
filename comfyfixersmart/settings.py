"""The one settings object, ``Config``, and how it is loaded.

Precedence, lowest first: built-in defaults < a TOML config file < ``COMFYFIXER_*``
environment variables (plus the standard ``CIVITAI_API_TOKEN``/``CIVITAI_API_KEY``,
``HF_TOKEN`` and ``HF_ENDPOINT``) < explicit keyword arguments.

The config file is the first of: the ``config_file`` argument, ``$COMFYFIXER_CONFIG``,
``<user config dir>/comfyfixersmart/config.toml`` (``~/.config/comfyfixersmart/config.toml`` on Linux).  Keys are the field names of ``Config``.

Nothing is read at import time: ``Config.load()`` reads the environment when called,
so tests build their own ``Config`` with endpoints on 127.0.0.1 and paths in a temp dir.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional
from urllib.parse import urlsplit

from .errors import ConfigurationError, HostNotAllowedError
from .net.urls import parse_rule, parse_url
from .security import register_secret

DEFAULT_MODEL_EXTENSIONS = [
    ".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".pt2", ".bin", ".gguf",
    ".onnx", ".pkl", ".model", ".engine", ".yaml",
]

#: Hosts downloads may come from by default; entries starting with "." match sub-domains.
DEFAULT_ALLOWED_HOSTS = [
    "civitai.com",
    "civitai.red",
    ".civitai.com",
    ".civitai.red",
    "huggingface.co",
    ".huggingface.co",
    ".hf.co",
    "hf.co",
    ".xethub.hf.co",
    # Civitai's signed storage redirects
    ".r2.cloudflarestorage.com",
    ".civitaiarchive.com",
    ".b2.civitai.com",
]


def _user_dir(kind: str) -> Path:
    """Per-user ``data``/``config``/``cache`` dir following the platform's convention."""
    home = Path.home()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or os.environ.get("APPDATA") or home / "AppData" / "Local")
        return base / "comfyfixersmart" / kind
    if sys.platform == "darwin":
        sub = {"data": "Application Support", "config": "Application Support", "cache": "Caches"}[kind]
        return home / "Library" / sub / "comfyfixersmart"
    var = {"data": "XDG_DATA_HOME", "config": "XDG_CONFIG_HOME", "cache": "XDG_CACHE_HOME"}[kind]
    default = {"data": home / ".local" / "share", "config": home / ".config", "cache": home / ".cache"}[kind]
    return Path(os.environ.get(var) or default) / "comfyfixersmart"


@dataclass
class Config:
    """All settings of ComfyFixerSmart.  Build with ``Config.load(...)`` or directly.

    Tokens (``civitai_token``, ``hf_token``) are kept out of ``repr()``.
    """

    # paths
    comfyui_root: Optional[Path] = None
    workflow_dirs: List[Path] = field(default_factory=list)
    output_dir: Path = field(default_factory=lambda: Path("output"))
    log_dir: Path = field(default_factory=lambda: _user_dir("data") / "logs")
    state_dir: Path = field(default_factory=lambda: _user_dir("data"))
    cache_dir: Path = field(default_factory=lambda: _user_dir("cache"))

    # Civitai
    civitai_base_url: str = "https://civitai.com"
    civitai_api_timeout: int = 30
    civitai_token: Optional[str] = field(default=None, repr=False)

    # Hugging Face
    hf_endpoint: str = "https://huggingface.co"
    hf_token: Optional[str] = field(default=None, repr=False)

    # models
    model_extensions: List[str] = field(default_factory=lambda: list(DEFAULT_MODEL_EXTENSIONS))
    #: extra node type -> folder key entries, on top of the built-in loader tables
    model_type_mapping: Dict[str, str] = field(default_factory=dict)
    #: a user loader table (format of comfyfixersmart/data/custom_loaders.json) extending the built-in ones
    loader_table_file: Optional[Path] = None

    # downloads
    download_concurrency: int = 3
    download_timeout: int = 60
    #: seconds a download body may send nothing before it is retried (resumed), then failed
    stall_timeout: float = 30.0
    verify_downloads: bool = True
    download_segments: int = 4
    segment_min_size: int = 64 * 1024 * 1024
    chunk_size: int = 1024 * 1024
    allowed_hosts: List[str] = field(default_factory=lambda: list(DEFAULT_ALLOWED_HOSTS))
    #: download pickle formats (.ckpt/.pt/.pth/.bin) a workflow names without asking per file
    allow_pickle: bool = False
    #: resume the panel's interrupted downloads when ComfyUI starts again
    auto_resume: bool = True
    #: write the sources into the workflow after a download in the panel
    embed_after_download: bool = False
    #: an http(s) proxy for every request to the hubs (None: the environment's, if any)
    proxy: Optional[str] = None

    # scanning
    #: largest workflow file (JSON, PNG, WebP) read from disk; bigger ones are refused
    max_workflow_bytes: int = 64 * 1024 * 1024
    #: outside ComfyUI, read ``comfyui_root``'s node sources (nodes.py, comfy_extras, custom_nodes)
    #: for the loader map; false: the bundled loader tables only
    read_node_sources: bool = True

    # search
    search_concurrency: int = 8
    min_confidence: float = 0.9
    #: most model references one resolve/fix request may look up
    max_references: int = 500
    #: least seconds between two hub lookups of one job (0: no pacing)
    hub_call_interval: float = 0.05
    http_retries: int = 4
    backoff_base: float = 1.0
    backoff_max: float = 30.0

    # caching
    cache_enabled: bool = True
    cache_ttl: int = 24 * 3600

    # known-model index (comfyfixersmart/data/known_models.json, built by scripts/build_model_index.py)
    #: use this index file instead of the bundled snapshot (and of any refreshed copy)
    known_models_file: Optional[Path] = None
    #: refresh the index from PyPI in the background, at most weekly.  Off for a Config built
    #: in code (tests, library users); ``Config.load()`` (the CLI, ComfyUI) turns it on by default.
    index_refresh: bool = False
    #: where the refresh asks for the newest template/manager packages (PyPI's JSON API)
    index_refresh_url: str = "https://pypi.org"

    user_agent: str = "ComfyFixerSmart/2.0.0 (+https://github.com/comfyfixersmart)"

    def __post_init__(self) -> None:
        self.validate()
        object.__setattr__(self, "_ready", True)

    def __setattr__(self, name: str, value: Any) -> None:
        """Settings assigned after construction are checked like loaded ones (a bad value
        raises ``ConfigurationError`` and the old value stays)."""
        d = self.__dict__
        if not d.get("_ready") or d.get("_validating") or name not in _FIELD_NAMES:
            object.__setattr__(self, name, value)
            return
        old = d.get(name)
        object.__setattr__(self, name, value)
        try:
            self.validate()
        except ConfigurationError:
            object.__setattr__(self, name, old)
            raise

    # -- derived -----------------------------------------------------------------
    @property
    def civitai_api_base(self) -> str:
        """``<civitai_base_url>/api/v1``."""
        return self.civitai_base_url.rstrip("/") + "/api/v1"

    @civitai_api_base.setter
    def civitai_api_base(self, value: str) -> None:
        self.civitai_base_url = _as_http_url("civitai_api_base", _strip_suffix(value, "/api/v1"))

    @property
    def civitai_download_base(self) -> str:
        """``<civitai_base_url>/api/download/models``."""
        return self.civitai_base_url.rstrip("/") + "/api/download/models"

    @civitai_download_base.setter
    def civitai_download_base(self, value: str) -> None:
        self.civitai_base_url = _as_http_url("civitai_download_base", _strip_suffix(value, "/api/download/models"))

    @property
    def effective_allowed_hosts(self) -> List[str]:
        """The allow-list plus the hosts of the configured endpoints."""
        hosts = list(self.allowed_hosts)
        for url in (self.civitai_base_url, self.hf_endpoint):
            host = (urlsplit(url).hostname or "").lower()
            if host and host not in hosts:
                hosts.append(host)
        return hosts

    def models_dir(self) -> Optional[Path]:
        return self.comfyui_root / "models" if self.comfyui_root else None

    # -- checks ------------------------------------------------------------------
    def validate(self) -> "Config":
        """Coerce types and check ranges; raise ``ConfigurationError`` naming the setting."""
        object.__setattr__(self, "_validating", True)
        try:
            return self._validate()
        finally:
            object.__setattr__(self, "_validating", False)

    def _validate(self) -> "Config":
        for name in ("output_dir", "log_dir", "state_dir", "cache_dir"):
            setattr(self, name, _as_path(name, getattr(self, name)))
        if self.comfyui_root is not None:
            self.comfyui_root = _as_path("comfyui_root", self.comfyui_root)
        if self.loader_table_file is not None:
            self.loader_table_file = _as_path("loader_table_file", self.loader_table_file)
        if self.known_models_file is not None:
            self.known_models_file = _as_path("known_models_file", self.known_models_file)
        if isinstance(self.workflow_dirs, (str, os.PathLike)):
            self.workflow_dirs = [self.workflow_dirs]  # type: ignore[list-item]
        self.workflow_dirs = [_as_path("workflow_dirs", p) for p in self.workflow_dirs]
        for name in ("civitai_base_url", "hf_endpoint", "index_refresh_url"):
            setattr(self, name, _as_http_url(name, getattr(self, name)))
        for name, low, high in (
            ("civitai_api_timeout", 1, 3600),
            ("download_concurrency", 1, 64),
            ("download_timeout", 1, 24 * 3600),
            ("download_segments", 1, 32),
            ("segment_min_size", 1024, 1 << 40),
            ("chunk_size", 4096, 64 << 20),
            ("search_concurrency", 1, 128),
            ("max_references", 1, 100000),
            ("max_workflow_bytes", 1024, 1 << 34),
            ("http_retries", 0, 20),
            ("cache_ttl", 0, 365 * 24 * 3600),
        ):
            setattr(self, name, _as_int(name, getattr(self, name), low, high))
        for name, low, high in (("min_confidence", 0.0, 1.0), ("backoff_base", 0.0, 60.0), ("backoff_max", 0.0, 3600.0),
                                ("hub_call_interval", 0.0, 60.0), ("stall_timeout", 1.0, 24 * 3600.0)):
            setattr(self, name, _as_float(name, getattr(self, name), low, high))
        if self.proxy is not None:
            self.proxy = _as_http_url("proxy", self.proxy) if str(self.proxy).strip() else None
        for name in ("verify_downloads", "cache_enabled", "allow_pickle", "auto_resume", "embed_after_download",
                     "index_refresh", "read_node_sources"):
            setattr(self, name, _as_bool(name, getattr(self, name)))
        self.model_extensions = [_ext(e) for e in _as_list("model_extensions", self.model_extensions)]
        self.allowed_hosts = [h.strip().lower() for h in _as_list("allowed_hosts", self.allowed_hosts) if h.strip()]
        for entry in self.allowed_hosts:
            try:
                parse_rule(entry)
            except HostNotAllowedError as exc:
                raise ConfigurationError("allowed_hosts", str(exc)) from None
        if not isinstance(self.model_type_mapping, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.model_type_mapping.items()
        ):
            raise ConfigurationError("model_type_mapping", "must map node type names to folder keys")
        for name in ("civitai_token", "hf_token"):
            value = getattr(self, name)
            if isinstance(value, str):
                value = value.strip()  # a token pasted from a file keeps its newline
            if value is not None and (not isinstance(value, str) or any(c in value for c in "\r\n\0")):
                raise ConfigurationError(name, "must be a single-line string")
            setattr(self, name, value or None)
            register_secret(getattr(self, name))
        if not isinstance(self.user_agent, str) or not self.user_agent.strip() or any(
                ord(c) < 32 or ord(c) == 127 for c in self.user_agent):
            # it becomes an HTTP header: a CR/LF would inject headers
            raise ConfigurationError("user_agent", "must be a non-empty single-line string")
        return self

    # -- loading -----------------------------------------------------------------
    @classmethod
    def load(
        cls,
        config_file: Optional[os.PathLike | str] = None,
        env: Optional[Mapping[str, str]] = None,
        **overrides: Any,
    ) -> "Config":
        """Build a Config from defaults < config file < environment < ``overrides``."""
        env = os.environ if env is None else env
        # the applications (CLI, ComfyUI) keep the known-model index fresh unless told not to
        values: Dict[str, Any] = {"index_refresh": True}
        path = config_file or env.get("COMFYFIXER_CONFIG")
        default_path = _user_dir("config") / "config.toml"
        if path is None and default_path.is_file():
            path = default_path
        if path is not None:
            values.update(_read_file(Path(path)))
        from_env = _from_env(env)
        if "allowed_hosts" in from_env:
            # COMFYFIXER_ALLOWED_HOSTS extends the list of the layer below (file or defaults)
            below = values.get("allowed_hosts", DEFAULT_ALLOWED_HOSTS)
            below = _split(below) if isinstance(below, str) else list(below)
            from_env["allowed_hosts"] = below + [h for h in from_env["allowed_hosts"] if h not in below]
        values.update(from_env)
        values.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigurationError(unknown[0], "unknown setting")
        return cls(**values)

    def replace(self, **changes: Any) -> "Config":
        """A copy with some settings changed (validated)."""
        return dataclasses.replace(self, **changes)


# -- helpers ------------------------------------------------------------------------

_ENV_ALIASES = {
    "CIVITAI_API_TOKEN": "civitai_token",
    "CIVITAI_API_KEY": "civitai_token",
    "HF_TOKEN": "hf_token",
    "HUGGING_FACE_HUB_TOKEN": "hf_token",
    "HF_ENDPOINT": "hf_endpoint",
}


def _from_env(env: Mapping[str, str]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    # later entries win: CIVITAI_API_TOKEN over CIVITAI_API_KEY, HF_TOKEN over the old name
    for var in ("CIVITAI_API_KEY", "CIVITAI_API_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN", "HF_ENDPOINT"):
        if env.get(var):
            out[_ENV_ALIASES[var]] = env[var]
    fields = {f.name: f for f in dataclasses.fields(Config)}
    for var, value in env.items():
        if not var.startswith("COMFYFIXER_") or var == "COMFYFIXER_CONFIG":
            continue
        name = var[len("COMFYFIXER_"):].lower()
        if name == "allowed_hosts":
            # extends the lower layers rather than replacing them (see Config.load)
            out["allowed_hosts"] = _split(value)
        elif name in fields:
            out[name] = _split(value) if name in ("workflow_dirs", "model_extensions") else value
    return out


def _split(value: str) -> List[str]:
    return [p.strip() for p in value.replace(os.pathsep if os.pathsep != ":" else ",", ",").split(",") if p.strip()]


def _read_file(path: Path) -> Dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the same parser, from PyPI
        import tomli as tomllib  # type: ignore[no-redef]

    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigurationError("config_file", f"{path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError("config_file", f"{path}: {exc}") from None
    # accept either top-level keys or a [comfyfixer] table
    return dict(data.get("comfyfixer", data))


def _as_path(name: str, value: Any) -> Path:
    if isinstance(value, Path):
        return value.expanduser()
    if isinstance(value, (str, os.PathLike)) and str(value) and "\0" not in str(value):
        return Path(value).expanduser()
    raise ConfigurationError(name, f"expected a path, got {value!r}")


def _strip_suffix(value: Any, suffix: str) -> Any:
    if isinstance(value, str) and value.rstrip("/").endswith(suffix):
        return value.rstrip("/")[: -len(suffix)]
    return value


def _as_http_url(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigurationError(name, f"expected a URL, got {value!r}")
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(name, f"expected an http(s) URL, got {value!r}")
    if parts.username or parts.password:
        raise ConfigurationError(name, "credentials must not be put in the URL")
    try:
        # the network layer's own parse: an endpoint it would refuse (backslash, odd IPv4 forms,
        # trailing dot...) is a clear error now, not an endpoint that silently allows nothing
        parse_url(value)
    except HostNotAllowedError as exc:
        raise ConfigurationError(name, str(exc)) from None
    return value.strip().rstrip("/")


def _as_int(name: str, value: Any, low: int, high: int) -> int:
    try:
        if isinstance(value, bool):
            raise TypeError
        number = int(str(value).strip()) if isinstance(value, str) else int(value)
        if isinstance(value, float) and value != number:
            raise ValueError
    except (TypeError, ValueError):
        raise ConfigurationError(name, f"expected a whole number, got {value!r}") from None
    if not low <= number <= high:
        raise ConfigurationError(name, f"{number} is outside {low}..{high}")
    return number


def _as_float(name: str, value: Any, low: float, high: float) -> float:
    try:
        if isinstance(value, bool):
            raise TypeError
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(name, f"expected a number, got {value!r}") from None
    if not low <= number <= high:
        raise ConfigurationError(name, f"{number} is outside {low}..{high}")
    return number


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off"):
        return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ConfigurationError(name, f"expected true or false, got {value!r}")


def _as_list(name: str, value: Any) -> List[str]:
    if isinstance(value, str):
        return _split(value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigurationError(name, f"expected a list of strings, got {value!r}")


def _ext(value: str) -> str:
    value = value.strip().lower()
    return value if value.startswith(".") else "." + value


_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(Config))
_default: Optional[Config] = None


def get_config() -> Config:
    """The process-wide default Config, loaded on first use (not at import)."""
    global _default
    if _default is None:
        _default = Config.load()
    return _default


def set_config(config: Optional[Config]) -> None:
    """Replace (or with None, forget) the process-wide default Config."""
    global _default
    _default = config
