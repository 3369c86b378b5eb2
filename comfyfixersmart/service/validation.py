"""Checks of everything a route receives, before any work or file I/O happens.

Folder keys must exist, file names stay inside their folder (``safe_join``), URLs are
http(s) on an allowed host and carry no credentials, hashes and sizes are well formed.
Failures raise ``ValidationError``/``UnsafePathError``/``HostNotAllowedError`` naming the field.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence
from urllib.parse import parse_qsl, urlsplit

from ..errors import HostNotAllowedError, UnsafePathError, ValidationError, WorkflowParseError
from ..folders import canonical_folder, check_folder_key, models_root_of
from ..net.urls import policy_for
from ..security import check_url, exact_relative_path, redact_url, safe_join
from ..pickles import is_pickle_name
from ..settings import Config
from ..write_policy import REFUSED_KEYS, folder_key

#: Largest request body accepted (a big UI workflow with subgraphs is a few MB).
MAX_BODY_BYTES = 32 * 1024 * 1024
#: Most items one download request may carry.
MAX_ITEMS = 500
#: Folder keys ComfyUI registers that must never receive a download (code runs from there,
#: or ComfyUI serves the files back): see ``write_policy``.
FORBIDDEN_FOLDERS = REFUSED_KEYS
#: Query parameters that put a credential in a URL; tokens belong in the settings.
_CREDENTIAL_PARAMS = frozenset({"token", "api_key", "apikey", "api-key", "access_token", "access-token",
                                "hf_token", "civitai_token"})
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

Folders = Mapping[str, Sequence[str]]


@dataclass(frozen=True)
class DownloadItemSpec:
    """A validated download: where it comes from and the exact file it will become."""

    filename: str  # relative to the folder, '/' separated, sub-folders kept
    directory: str  # folder key (legacy names mapped)
    url: str
    save_path: str  # absolute, inside ``folders[directory][folder_index]``
    folder_index: int = 0
    sha256: Optional[str] = None
    size: Optional[int] = None
    source: Optional[str] = None
    source_id: Optional[str] = None

    @property
    def key(self) -> str:
        return f"{self.directory}/{self.filename}"


def parse_json_body(raw: bytes) -> Dict[str, Any]:
    """The request body as a JSON object."""
    if len(raw) > MAX_BODY_BYTES:
        raise ValidationError(f"request body larger than {MAX_BODY_BYTES // (1024 * 1024)} MiB")
    if not raw.strip():
        raise ValidationError("request body is empty; a JSON object was expected")
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValidationError(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        # json's C decoder recurses per level: '[' * 100000 must be a 400, not a 500
        raise ValidationError("request body is not valid JSON: nested too deeply") from None
    except ValueError as exc:  # NaN/Infinity, or an integer beyond the str->int digit limit
        raise ValidationError(f"request body is not valid JSON: {str(exc)[:120]}") from None
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object")
    return body


def _no_constant(name: str) -> Any:
    """``NaN``/``Infinity`` are not JSON; echoed back they would break the page's parser."""
    raise ValueError(f"{name} is not a JSON value")


def require_workflow(body: Mapping[str, Any]) -> Dict[str, Any]:
    """``body["workflow"]``: a UI (``nodes`` list) or API (``{id: {class_type}}``) graph."""
    workflow = body.get("workflow")
    if not isinstance(workflow, dict):
        raise WorkflowParseError(None, "'workflow' must be a JSON object (a UI or API workflow)")
    return workflow


def optional_min_confidence(body: Mapping[str, Any]) -> Optional[float]:
    """``body["min_confidence"]`` if given: a number in 0..1."""
    value = body.get("min_confidence")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ValidationError("min_confidence must be a number between 0 and 1")
    return float(value)


def optional_allow_pickle(body: Mapping[str, Any]) -> Any:
    """``body["allow_pickle"]`` of a fix request: true (every pickle format planned), or a
    list of file names/keys confirmed one by one; absent: none."""
    value = body.get("allow_pickle")
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, list) and len(value) <= MAX_ITEMS and all(isinstance(v, str) and v.strip() for v in value):
        return [v.strip() for v in value]
    raise ValidationError("allow_pickle must be true/false or a list of file names")


def check_id(value: str, what: str = "id") -> str:
    """A job or item id from a URL path: short and plain."""
    if not isinstance(value, str) or not _ID.match(value):
        raise ValidationError(f"malformed {what}")
    return value


def check_download_url(url: Any, config: Config, field: str = "url") -> str:
    """An http(s) URL on an allowed host without credentials in it."""
    if not isinstance(url, str):
        raise ValidationError(f"{field} must be a string")
    try:
        url = check_url(url, policy_for(config))
    except HostNotAllowedError as exc:
        raise HostNotAllowedError(f"{field}: {exc}", url=exc.url) from None
    params = {k.lower() for k, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True)}
    if params & _CREDENTIAL_PARAMS:
        raise HostNotAllowedError(f"{field}: credentials in the URL are refused; set the token in the settings",
                                  url=redact_url(url))
    return url


def resolve_folder(directory: Any, folders: Folders, canonical: Callable[[str], str] = canonical_folder,
                   field: str = "directory", known: Iterable[str] = ()) -> str:
    """The folder key for ``directory`` (legacy names mapped): a key of the model folder table
    (never a path, never output/input/temp/custom_nodes) with a path, or any other
    well-formed key, which lives in ``<models>/<key>`` (``folder_roots``).  ``known``: every key
    ComfyUI lists, model folder or not; such a key is never redirected to ``<models>/<key>``
    (ComfyUI would not look there, and it may have been refused for pointing at ``output``)."""
    known = set(known)
    usable = [k for k in folders if k not in FORBIDDEN_FOLDERS]
    if isinstance(directory, str) and directory.strip():
        name = directory.strip()
        if name not in folders and canonical(name) not in folders and name not in known \
                and canonical(name) not in known and not any(c in name for c in "/\\:\0") \
                and name.lower() not in FORBIDDEN_FOLDERS and canonical(name).lower() not in FORBIDDEN_FOLDERS:
            try:
                key = check_folder_key(name)
            except ValidationError as exc:
                raise ValidationError(f"{field}: {exc}") from None
            if models_root_of(folders) is None:
                raise ValidationError(f"{field}: no models folder known to create {key!r} in")
            return key
    key = folder_key(directory, usable, canonical, field=field)
    if not folders[key]:
        raise ValidationError(f"{field}: model folder {key!r} has no path configured")
    return key


def folder_roots(folders: Folders, key: str) -> List[str]:
    """The directories of folder ``key``; ``[<models>/<key>]`` for a key ComfyUI does not list."""
    if key in folders:
        return [str(p) for p in folders[key]]
    root = models_root_of(folders)
    if root is None:
        raise ValidationError(f"no models folder known to create {key!r} in")
    return [str(root / check_folder_key(key))]


def target_path(folders: Folders, key: str, filename: str, folder_index: int = 0) -> Path:
    """Absolute path of ``filename`` in path ``folder_index`` of folder ``key`` (guarded)."""
    roots = folder_roots(folders, key)
    if not 0 <= folder_index < len(roots):
        raise ValidationError(f"folder_index {folder_index} is out of range: {key!r} has {len(roots)} path(s)")
    path = safe_join(roots[folder_index], filename)
    if path.is_dir():
        # the downloader would take a folder as "save under the server's name, in here"
        raise ValidationError(f"filename {filename!r} is an existing folder in {key!r}, not a file name")
    return path


def validate_download_item(
    raw: Any,
    folders: Folders,
    config: Config,
    *,
    canonical: Callable[[str], str] = canonical_folder,
    where: str = "item",
    known: Iterable[str] = (),
) -> DownloadItemSpec:
    """One ``{"filename", "directory", "url", "sha256"?, "size"?, "folder_index"?}`` object."""
    if not isinstance(raw, Mapping):
        raise ValidationError(f"{where} must be a JSON object")
    key = resolve_folder(raw.get("directory"), folders, canonical, field=f"{where}.directory", known=known)
    filename = raw.get("filename")
    try:
        filename = exact_relative_path(filename)
    except UnsafePathError as exc:
        raise UnsafePathError(f"{where}.filename: {exc}") from None
    extensions = {e.lower() for e in config.model_extensions}
    suffix = Path(filename).suffix.lower()
    if suffix not in extensions:
        raise ValidationError(f"{where}.filename: {suffix or 'no extension'!r} is not a model file extension")
    url = check_download_url(raw.get("url"), config, field=f"{where}.url")
    allow_pickle = raw.get("allow_pickle", False)
    if not isinstance(allow_pickle, bool):
        raise ValidationError(f"{where}.allow_pickle must be true or false")
    url_name = urlsplit(url).path.rsplit("/", 1)[-1]
    if (is_pickle_name(filename) or ("." in url_name and is_pickle_name(url_name))) \
            and not (allow_pickle or config.allow_pickle):
        raise ValidationError(f"{where}: {filename!r} is a pickle format that can run code when loaded; "
                              "confirm this file with \"allow_pickle\": true")
    sha256 = raw.get("sha256")
    if sha256 is not None:
        if not isinstance(sha256, str) or not _SHA256.match(sha256.strip()):
            raise ValidationError(f"{where}.sha256 must be 64 hexadecimal characters")
        sha256 = sha256.strip().lower()
    size = raw.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise ValidationError(f"{where}.size must be a whole number of bytes")
    index = raw.get("folder_index", 0)
    if index is None:
        index = 0
    if isinstance(index, bool) or not isinstance(index, int):
        raise ValidationError(f"{where}.folder_index must be a whole number")
    try:
        path = target_path(folders, key, filename, index)
    except UnsafePathError as exc:
        raise UnsafePathError(f"{where}.filename: {exc}") from None
    except ValidationError as exc:
        raise ValidationError(f"{where}.{exc}") from None
    source = raw.get("source")
    source_id = raw.get("source_id")
    return DownloadItemSpec(
        filename=filename, directory=key, url=url, save_path=str(path), folder_index=index,
        sha256=sha256, size=size,
        source=source if isinstance(source, str) else None,
        source_id=str(source_id) if isinstance(source_id, (str, int)) and not isinstance(source_id, bool) else None,
    )


def validate_download_items(
    raw_items: Any,
    folders: Folders,
    config: Config,
    *,
    canonical: Callable[[str], str] = canonical_folder,
    known: Iterable[str] = (),
) -> List[DownloadItemSpec]:
    """Every item of a download request; all valid or a ``ValidationError`` naming the first bad one."""
    if not isinstance(raw_items, list) or not raw_items:
        raise ValidationError("'items' must be a non-empty list")
    if len(raw_items) > MAX_ITEMS:
        raise ValidationError(f"at most {MAX_ITEMS} items per request")
    known = set(known)
    specs = [validate_download_item(raw, folders, config, canonical=canonical, where=f"items[{i}]", known=known)
             for i, raw in enumerate(raw_items)]
    seen: Dict[str, int] = {}
    for i, spec in enumerate(specs):
        # two items writing the same file would race on its .part file
        if spec.save_path in seen:
            raise ValidationError(f"items[{i}] writes the same file as items[{seen[spec.save_path]}]")
        seen[spec.save_path] = i
    return specs
