"""The download engine: ``DownloadManager`` and its parts.

    http.py       session, redirects by hand (allow-list + token per hop), status -> exception
    engine.py     one file: .part + sidecar, Range resume, verification, atomic rename
    segments.py   parallel Range requests written with os.pwrite
    partfile.py   the .part.json sidecar that makes resume possible
    verify.py     sha256 (streaming on a helper thread), safetensors structure check
    progress.py   throttled ProgressEvent reporter
    script.py     bash / PowerShell download scripts
    manager.py    DownloadManager (public API)
"""

from __future__ import annotations

from .manager import DownloadManager

__all__ = ["DownloadManager"]
