"""Workflow file -> dict: JSON, PNG (tEXt / iTXt / zTXt chunks) and WebP (EXIF) files.

ComfyUI writes the UI graph under the key ``workflow`` and the API prompt under ``prompt``:
in PNG text chunks, and in WebP as EXIF strings ``"workflow:{...}"`` (tag 0x010F) and
``"prompt:{...}"`` (tag 0x0110).  Every failure becomes a ``WorkflowParseError`` (path + reason).
"""

from __future__ import annotations

import json
import os
import stat
import struct
import zlib
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Tuple, Union

from ..errors import NotAWorkflowError, WorkflowParseError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Default cap on a workflow file read from disk (``Config.max_workflow_bytes``; a
#: 100,000-node graph is ~50 MB of JSON).
MAX_FILE_BYTES = 64 * 1024 * 1024
#: Cap on a decompressed zTXt/iTXt chunk: a zip bomb must not exhaust memory.
MAX_TEXT_BYTES = 256 * 1024 * 1024

WORKFLOW_EXTENSIONS = (".json", ".png", ".webp")

Source = Union[str, bytes, bytearray, memoryview]


def load_workflow(path: os.PathLike | str, *, max_bytes: int = MAX_FILE_BYTES) -> Dict[str, Any]:
    """Read a workflow file (``.json``, ``.png``, ``.webp``) and return the graph dict.

    Images: the UI ``workflow`` is preferred, the API ``prompt`` is used when it is the only one.
    """
    return load_workflow_ex(path, max_bytes=max_bytes)[0]


def load_workflow_ex(path: os.PathLike | str, *, max_bytes: int = MAX_FILE_BYTES) -> Tuple[Dict[str, Any], str]:
    """Like ``load_workflow`` but also says where the graph came from (``json``, ``png:workflow``...)."""
    p = Path(path)
    return parse_workflow_bytes(read_regular_file(p, max_bytes), p)


#: open() flags: never block on a FIFO (opening one for reading waits for a writer), and
#: no controlling terminal from a tty; both flags are absent on Windows, where neither applies
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)


def read_regular_file(path: Path, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of ``path`` if it is a regular file (links followed) of at most ``max_bytes``.

    FIFOs, sockets and devices (``/dev/zero`` behind a link named ``wf.json``) are refused
    after an ``open`` that cannot block and before any read; the read stops at the cap even if
    the file grows meanwhile.  Every failure is a ``WorkflowParseError``.
    """
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except IsADirectoryError:
        raise WorkflowParseError(path, "is a directory") from None
    except FileNotFoundError:
        raise WorkflowParseError(path, "file not found") from None
    except OSError as exc:
        raise WorkflowParseError(path, f"cannot read file: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise WorkflowParseError(path, "is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise WorkflowParseError(path, f"not a regular file ({_kind(st.st_mode)}); only files are read")
        if st.st_size > max_bytes:
            raise WorkflowParseError(path, f"file too large ({st.st_size} bytes; the limit is {max_bytes}: "
                                           "COMFYFIXER_MAX_WORKFLOW_BYTES)")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        chunks = []
        left = max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > max_bytes:
            raise WorkflowParseError(path, f"file too large (grew beyond the limit of {max_bytes} bytes while read)")
        return data
    except OSError as exc:
        raise WorkflowParseError(path, f"cannot read file: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def parse_workflow_bytes(data: Source, path: Any = None) -> Tuple[Dict[str, Any], str]:
    """Decode workflow content (JSON text/bytes, PNG or WebP bytes) by sniffing its first bytes."""
    if isinstance(data, str):
        return decode_json(data, path), "json"
    raw = bytes(data)
    if raw.startswith(PNG_SIGNATURE):
        return _from_texts(png_text_chunks(raw, path, keys=_WORKFLOW_KEYS), path, "png")
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        return _from_texts(webp_exif_texts(raw, path), path, "webp")
    return decode_json(raw, path), "json"


def decode_json(data: Union[str, bytes], path: Any = None) -> Dict[str, Any]:
    """``json.loads`` that raises WorkflowParseError, including for absurd nesting."""
    try:
        if isinstance(data, (bytes, bytearray)):
            data = bytes(data).decode("utf-8-sig")
        elif data.startswith("\ufeff"):
            data = data[1:]
        value = json.loads(data)
    except UnicodeDecodeError as exc:
        raise WorkflowParseError(path, f"not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        if not data.strip():
            raise WorkflowParseError(path, "empty file") from None
        raise WorkflowParseError(path, f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise WorkflowParseError(path, "invalid JSON: nested too deeply") from None
    except ValueError as exc:  # e.g. huge integers beyond the str->int digit limit
        raise WorkflowParseError(path, f"invalid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise NotAWorkflowError(path, f"expected a JSON object, got {type(value).__name__}")
    return value


def decode_json_value(text: str) -> Any:
    """``json.loads`` for small embedded values (``proxyWidgets`` as a string); None when invalid."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _from_texts(texts: Dict[str, str], path: Any, kind: str) -> Tuple[Dict[str, Any], str]:
    errors = []
    for key in ("workflow", "prompt"):
        text = texts.get(key)
        if text is None:
            continue
        try:
            return decode_json(text, path), f"{kind}:{key}"
        except WorkflowParseError as exc:
            errors.append(f"{key}: {exc.reason}")
    if errors:
        raise WorkflowParseError(path, f"{kind.upper()} metadata is not a valid workflow ({'; '.join(errors)})")
    raise NotAWorkflowError(path, f"{kind.upper()} file has no embedded ComfyUI workflow")


# -- PNG --------------------------------------------------------------------------------

#: the text keys ComfyUI writes into images (the UI graph, the API prompt)
_WORKFLOW_KEYS = ("workflow", "prompt")


def png_text_chunks(data: bytes, path: Any = None, keys: Optional[Iterable[str]] = None) -> Dict[str, str]:
    """Text chunks (tEXt, zTXt, iTXt) of a PNG as ``{keyword: text}``; first one of a keyword wins.

    ``keys``: only these keywords are read.  A chunk is skipped *before* it is inflated when
    its keyword is not wanted or already read, so a file full of small zip bombs under
    other keywords costs nothing (each alone may be under ``MAX_TEXT_BYTES``).
    """
    if not data.startswith(PNG_SIGNATURE):
        raise WorkflowParseError(path, "not a PNG file")
    wanted = None if keys is None else set(keys)
    out: Dict[str, str] = {}
    pos, end = len(PNG_SIGNATURE), len(data)
    while pos + 8 <= end:
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        body_start = pos + 8
        body_end = body_start + length
        if body_end + 4 > end:
            # truncated file: keep what was read (ComfyUI writes text chunks before IDAT)
            break
        if ctype in (b"tEXt", b"zTXt", b"iTXt"):
            sep = data.find(b"\0", body_start, min(body_end, body_start + 80))  # keywords are 1-79 bytes
            keyword = data[body_start:sep].decode("latin-1") if sep > body_start else None
            if keyword is None or keyword in out or (wanted is not None and keyword not in wanted):
                pos = body_end + 4
                continue
            item = _png_text(ctype, data[body_start:body_end], path)
            if item is not None and item[0] not in out:
                out[item[0]] = item[1]
        elif ctype == b"IEND":
            break
        pos = body_end + 4  # skip CRC: a bad CRC on an image chunk should not hide the workflow
    return out


def _png_text(ctype: bytes, body: bytes, path: Any) -> Optional[Tuple[str, str]]:
    sep = body.find(b"\0")
    if sep <= 0:
        return None
    key = body[:sep].decode("latin-1")
    rest = body[sep + 1:]
    try:
        if ctype == b"tEXt":
            return key, _decode_text(rest)
        if ctype == b"zTXt":
            if not rest or rest[0] != 0:
                return None
            return key, _decode_text(_inflate(rest[1:], path))
        # iTXt: compression flag, method, language\0, translated keyword\0, text (UTF-8)
        if len(rest) < 2:
            return None
        flag, method = rest[0], rest[1]
        lang_end = rest.find(b"\0", 2)
        if lang_end < 0:
            return None
        trans_end = rest.find(b"\0", lang_end + 1)
        if trans_end < 0:
            return None
        text = rest[trans_end + 1:]
        if flag == 1:
            if method != 0:
                return None
            text = _inflate(text, path)
        return key, text.decode("utf-8", "replace")
    except zlib.error as exc:
        raise WorkflowParseError(path, f"corrupt compressed PNG text chunk {key!r}: {exc}") from None


def _decode_text(raw: bytes) -> str:
    # tEXt/zTXt are Latin-1 by spec, but writers (PIL for ComfyUI) put UTF-8 JSON in them
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _inflate(data: bytes, path: Any) -> bytes:
    d = zlib.decompressobj()
    out = d.decompress(data, MAX_TEXT_BYTES)
    if d.unconsumed_tail:
        raise WorkflowParseError(path, "compressed text chunk expands beyond the size limit")
    return out


# -- WebP -------------------------------------------------------------------------------

def webp_exif_texts(data: bytes, path: Any = None) -> Dict[str, str]:
    """``{"workflow": ..., "prompt": ...}`` from the EXIF chunk of a WebP file."""
    if not (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
        raise WorkflowParseError(path, "not a WebP file")
    out: Dict[str, str] = {}
    pos, end = 12, len(data)
    while pos + 8 <= end:
        ctype = data[pos:pos + 4]
        (length,) = struct.unpack("<I", data[pos + 4:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if ctype == b"EXIF":
            for text in exif_strings(body):
                key, sep, value = text.partition(":")
                if sep and key in ("workflow", "prompt") and key not in out:
                    out[key] = value
        pos += 8 + length + (length & 1)  # chunks are padded to even size
    return out


_TIFF_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8}


def exif_strings(exif: bytes) -> list:
    """ASCII/UNDEFINED values of the EXIF IFD0 (and the Exif sub-IFD) entries, decoded as text."""
    if exif.startswith(b"Exif\0\0"):
        exif = exif[6:]
    if len(exif) < 8 or exif[:2] not in (b"II", b"MM"):
        return []
    order = "<" if exif[:2] == b"II" else ">"
    (ifd,) = struct.unpack(order + "I", exif[4:8])
    texts: list = []
    seen = set()
    queue = [ifd]
    while queue and len(seen) < 8:
        ifd = queue.pop(0)
        if ifd in seen or ifd + 2 > len(exif):
            continue
        seen.add(ifd)
        (count,) = struct.unpack(order + "H", exif[ifd:ifd + 2])
        for k in range(min(count, 1024)):
            off = ifd + 2 + 12 * k
            if off + 12 > len(exif):
                break
            tag, typ, n = struct.unpack(order + "HHI", exif[off:off + 8])
            if tag == 0x8769:  # Exif sub-IFD pointer
                queue.append(struct.unpack(order + "I", exif[off + 8:off + 12])[0])
                continue
            if typ not in (2, 7):
                continue
            size = n * _TIFF_TYPE_SIZES.get(typ, 1)
            if size <= 4:
                raw = exif[off + 8:off + 8 + size]
            else:
                (ptr,) = struct.unpack(order + "I", exif[off + 8:off + 12])
                raw = exif[ptr:ptr + size]
            texts.append(raw.rstrip(b"\0").decode("utf-8", "replace"))
    return texts
