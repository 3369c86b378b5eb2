"""Model metadata embedded in workflows: node ``properties.models`` and the top-level ``models``.

The ComfyUI frontend reads entries ``{"name", "url", "directory", "hash", "hash_type"}`` to offer
downloads of missing models; we attach the url/hash to the matching reference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, List, Optional

from ..errors import ComfyFixerError
from ..folders import canonical_folder
from ..security import check_url, exact_relative_path

_HEX = re.compile(r"^[0-9a-fA-F]+$")
_HASH_LENGTHS = {"sha256": 64, "sha1": 40, "md5": 32, "blake3": 64, "autov2": 10, "crc32": 8}


@dataclass(frozen=True)
class ModelMeta:
    """One validated metadata entry."""

    name: str  # relative file name, '/' separated
    directory: Optional[str]  # folder key, legacy names mapped
    url: Optional[str]
    hash: Optional[str]
    hash_type: Optional[str]


def parse_models(value: Any, warnings: List[str], where: str) -> List[ModelMeta]:
    """Validated entries of a ``models`` list; bad entries are skipped with a warning."""
    if value is None:
        return []
    if not isinstance(value, list):
        warnings.append(f"{where}: 'models' is not a list; ignored")
        return []
    out = []
    for n, item in enumerate(value[:10_000]):
        if not isinstance(item, dict):
            continue
        name = item.get("name")
        if not isinstance(name, str):
            warnings.append(f"{where}[{n}]: model entry without a name; ignored")
            continue
        try:
            name = exact_relative_path(name)
        except ComfyFixerError as exc:
            warnings.append(f"{where}[{n}]: unsafe model name ignored ({exc})")
            continue
        directory = item.get("directory")
        directory = canonical_folder(directory.strip().strip("/")) if isinstance(directory, str) and directory.strip() else None
        url = item.get("url")
        if isinstance(url, str) and url.strip():
            try:
                url = check_url(url.strip())
            except ComfyFixerError:
                warnings.append(f"{where}[{n}]: URL of {name!r} is not an http(s) URL; ignored")
                url = None
        else:
            url = None
        hash_value, hash_type = _hash(item.get("hash"), item.get("hash_type"))
        out.append(ModelMeta(name, directory, url, hash_value, hash_type))
    return out


def _hash(value: Any, kind: Any) -> tuple:
    if not isinstance(value, str) or not value.strip():
        return None, None
    value = value.strip()
    if ":" in value and not kind:  # "sha256:abcd..." form
        kind, _, value = value.partition(":")
    kind = (kind or "").strip().lower() if isinstance(kind, str) or kind is None else ""
    if not _HEX.match(value):
        return None, None
    if not kind:
        kind = {64: "sha256", 40: "sha1", 32: "md5"}.get(len(value), "")
    expected = _HASH_LENGTHS.get(kind)
    if expected is not None and len(value) != expected:
        return None, None
    return value.lower(), kind or None
