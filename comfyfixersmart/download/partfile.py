"""The ``<name>.part`` file and its ``<name>.part.json`` sidecar.

The sidecar says what the part file holds so a later run can resume it with ``Range``:
the URL (credentials removed), the validators (ETag, Last-Modified) to detect a changed
file, the expected size/sha256, and for segmented downloads how far each segment got.
It never holds a token or a signed URL.
"""

from __future__ import annotations

import json
import os
import stat
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional

from ..fileutils import atomic_write_bytes
from ..logs import get_logger

log = get_logger(__name__)

SIDECAR_VERSION = 1
#: a sidecar holds a URL and a few numbers per segment: anything bigger is not one
MAX_SIDECAR = 1 << 20


@dataclass
class Segment:
    """Bytes ``start..end`` (inclusive) of the file, ``done`` of them already written."""

    start: int
    end: int
    done: int = 0

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    @property
    def position(self) -> int:
        return self.start + self.done

    @property
    def complete(self) -> bool:
        return self.done >= self.length


@dataclass
class PartInfo:
    """Content of a ``.part.json`` sidecar."""

    url: str
    etag: Optional[str] = None
    last_modified: Optional[str] = None
    total: Optional[int] = None
    expected_sha256: Optional[str] = None
    #: "single" (progress = part file size) or "segmented" (progress in ``segments``)
    mode: str = "single"
    segments: List[Segment] = field(default_factory=list)
    version: int = SIDECAR_VERSION
    updated: float = field(default_factory=time.time)

    @property
    def validator(self) -> Optional[str]:
        """What to send as ``If-Range``: a strong ETag, else Last-Modified."""
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified

    def segments_done(self) -> int:
        return sum(min(s.done, s.length) for s in self.segments)


def part_path(target: Path) -> Path:
    return target.with_name(target.name + ".part")


def sidecar_path(target: Path) -> Path:
    return target.with_name(target.name + ".part.json")


def load(path: Path) -> Optional[PartInfo]:
    """The sidecar at ``path``, or None if missing/unreadable (then the part is not trusted)."""
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_SIDECAR:
            # a link, a FIFO or a huge file planted under the sidecar's name is not ours
            log.warning("ignoring %s: not a sidecar file", path)
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("version") != SIDECAR_VERSION:  # damaged or foreign
            return None
        segments = [Segment(int(s["start"]), int(s["end"]), int(s["done"])) for s in data.get("segments", [])]
        return PartInfo(
            url=str(data["url"]), etag=data.get("etag"), last_modified=data.get("last_modified"),
            total=data.get("total"), expected_sha256=data.get("expected_sha256"),
            mode=data.get("mode", "single"), segments=segments, updated=float(data.get("updated", 0)),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        log.warning("ignoring unreadable sidecar %s: %s", path, type(exc).__name__)
        return None


def save(path: Path, info: PartInfo) -> None:
    info.updated = time.time()
    atomic_write_bytes(path, json.dumps(asdict(info), indent=1).encode("utf-8"))


def remove(*paths: Path) -> None:
    for p in paths:
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass
