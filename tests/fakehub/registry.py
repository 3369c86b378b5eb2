"""What the fake hub knows: Civitai models/versions/files and Hugging Face repos/files,
with their hashes, and the JSON shapes of the real APIs (see tests/fixtures/api-samples/)."""

from __future__ import annotations

import hashlib
import json
import random
import struct
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, List, Mapping, Optional, Union

from dlserver import safetensors_header

#: extensions Hugging Face's default .gitattributes stores in LFS
HF_LFS_EXTENSIONS = (
    ".safetensors", ".sft", ".bin", ".ckpt", ".pt", ".pth", ".gguf", ".onnx", ".h5", ".msgpack",
    ".model", ".pkl", ".pt2", ".ot", ".tflite", ".npz",
)


def blob(size: int, seed: Union[int, str] = 0) -> bytes:
    """Deterministic pseudo-random bytes (fast, reproducible test payloads), starting with a
    safetensors header when ``size`` leaves room for one: downloads refuse a ``.safetensors``
    file whose first bytes are not a header (other formats ignore it)."""
    data = bytearray(random.Random(seed).randbytes(size))
    # a string seed ("catalogue:official:ae.safetensors") is written into the header as a number
    number = seed if isinstance(seed, int) else int(hashlib.sha256(str(seed).encode()).hexdigest()[:12], 16)
    header = safetensors_header(size, number)
    if header is not None and len(header) == size and b'"s"' not in header:
        # too small for the seed in the metadata ("{}" padded): vary where the "}" sits, so
        # small payloads of different seeds still differ (JSON allows the whitespace)
        n = size - 8
        k = number % (n - 1)
        header = header[:8] + (b"{" + b" " * k + b"}").ljust(n)
    if header is not None:
        data[:len(header)] = header
    return bytes(data)


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def civitai_hashes(data: bytes, name: str = "") -> Dict[str, str]:
    """The hash set Civitai shows for a file (upper-case hex, as Civitai prints them)."""
    sha = hashlib.sha256(data).hexdigest().upper()
    out = {"AutoV2": sha[:10], "SHA256": sha, "CRC32": f"{zlib.crc32(data) & 0xFFFFFFFF:08X}"}
    if len(data) >= 2 * 1024 * 1024:  # null on Civitai below 2 MiB: omitted here
        out["AutoV1"] = hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8].upper()
    if name.lower().endswith(".safetensors") and len(data) >= 8:
        (header_len,) = struct.unpack("<Q", data[:8])
        if 8 + header_len <= len(data):
            out["AutoV3"] = hashlib.sha256(data[8 + header_len:]).hexdigest()[:12].upper()
    try:
        import blake3  # type: ignore

        out["BLAKE3"] = blake3.blake3(data).hexdigest().upper()
    except ImportError:
        pass
    return out


def git_blob_oid(data: bytes) -> str:
    """git's object id of a blob: sha1 of ``blob <len>\\0`` + data (HF's ETag for non-LFS files)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


# -- Civitai ----------------------------------------------------------------------------------

@dataclass
class CivitaiFile:
    id: int
    name: str
    data: bytes
    type: str = "Model"
    format: Optional[str] = None
    fp: Optional[str] = None
    size_kind: Optional[str] = "pruned"
    #: True/False as sent; None omits the key (Civitai drift)
    primary: Optional[bool] = True

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def hashes(self) -> Dict[str, str]:
        return civitai_hashes(self.data, self.name)


@dataclass
class CivitaiVersion:
    id: int
    model_id: int
    name: str
    base_model: str = "SD 1.5"
    files: List[CivitaiFile] = field(default_factory=list)
    #: ISO time until which the version is early access (None = public)
    early_access_until: Optional[str] = None
    published_at: str = field(default_factory=_now_iso)
    trained_words: List[str] = field(default_factory=list)
    archived: bool = False


@dataclass
class CivitaiModel:
    id: int
    name: str
    type: str = "Checkpoint"
    nsfw: bool = False
    requires_auth: bool = False
    #: an anonymous download answers 307 to the HTML ``/login`` page instead of a 401 JSON
    login_redirect: bool = False
    versions: List[CivitaiVersion] = field(default_factory=list)
    tags: List[str] = field(default_factory=list)
    creator: str = "someone"
    downloads: int = 0
    #: ``"array"`` (2024+ shape) or ``"string"`` (``"{Image,RentCivit}"``)
    commercial_use_as: str = "array"
    stats_null: bool = False
    description: str = "<p>A model.</p>"


@dataclass(frozen=True)
class CivitaiIds:
    """Ids given to a model added with ``FakeHub.add_civitai_model``."""

    model_id: int
    version_id: int
    file_ids: Dict[str, int]

    @property
    def file_id(self) -> int:
        """The id of the first (or only) file."""
        return next(iter(self.file_ids.values()))


def _stats(model: CivitaiModel, keys: List[str]) -> Dict[str, Any]:
    if model.stats_null:
        return {k: None for k in keys}
    base = {"downloadCount": model.downloads, "thumbsUpCount": model.downloads // 10, "thumbsDownCount": 0,
            "commentCount": 0, "tippedAmountCount": 0, "favoriteCount": 0, "ratingCount": 0, "rating": 0}
    return {k: base[k] for k in keys}


def civitai_file_json(base_url: str, version: CivitaiVersion, f: CivitaiFile) -> Dict[str, Any]:
    fmt = f.format or ("SafeTensor" if f.name.lower().endswith((".safetensors", ".sft")) else
                       "GGUF" if f.name.lower().endswith(".gguf") else "PickleTensor")
    meta: Dict[str, Any] = {"format": fmt}
    if f.size_kind:
        meta["size"] = f.size_kind
    if f.fp:
        meta["fp"] = f.fp
    url = f"{base_url}/api/download/models/{version.id}"
    if not f.primary:
        url += f"?type={f.type.replace(' ', '%20')}&format={fmt}" + (f"&fp={f.fp}" if f.fp else "")
    out: Dict[str, Any] = {
        "id": f.id,
        "sizeKB": f.size / 1024,
        "name": f.name,
        "type": f.type,
        "pickleScanResult": "Success",
        "pickleScanMessage": "No Pickle imports",
        "virusScanResult": "Success",
        "virusScanMessage": None,
        "scannedAt": version.published_at,
        "metadata": meta,
        "hashes": f.hashes,
        "downloadUrl": url,
    }
    if f.primary is not None:
        out["primary"] = f.primary
    return out


def civitai_version_json(base_url: str, model: CivitaiModel, v: CivitaiVersion, *, with_model: bool) -> Dict[str, Any]:
    out: Dict[str, Any] = {
        "id": v.id,
        "index": model.versions.index(v) if v in model.versions else 0,
        "name": v.name,
        "baseModel": v.base_model,
        "baseModelType": "Standard",
        "publishedAt": v.published_at,
        "availability": "EarlyAccess" if v.early_access_until else ("Archived" if v.archived else "Public"),
        "nsfwLevel": 1,
        "description": None,
        "trainedWords": list(v.trained_words),
        "earlyAccessEndsAt": v.early_access_until,
        "stats": _stats(model, ["downloadCount", "thumbsUpCount", "thumbsDownCount"]),
        "files": [civitai_file_json(base_url, v, f) for f in v.files],
        "images": [],
        "downloadUrl": f"{base_url}/api/download/models/{v.id}",
    }
    if with_model:
        out["modelId"] = model.id
        out["model"] = {"name": model.name, "type": model.type, "nsfw": model.nsfw, "poi": False}
    return out


def civitai_model_json(base_url: str, model: CivitaiModel) -> Dict[str, Any]:
    commercial: Union[str, List[str]] = ["Image", "RentCivit"]
    if model.commercial_use_as == "string":
        commercial = "{Image,RentCivit}"
    return {
        "id": model.id,
        "name": model.name,
        "description": model.description,
        "allowNoCredit": True,
        "allowCommercialUse": commercial,
        "allowDerivatives": True,
        "allowDifferentLicense": True,
        "type": model.type,
        "minor": False,
        "sfwOnly": False,
        "poi": False,
        "nsfw": model.nsfw,
        "nsfwLevel": 31 if model.nsfw else 1,
        "availability": "Public",
        "cosmetic": None,
        "supportsGeneration": False,
        "stats": _stats(model, ["downloadCount", "thumbsUpCount", "thumbsDownCount", "commentCount",
                                "tippedAmountCount"]),
        "creator": {"username": model.creator, "image": None},
        "tags": list(model.tags),
        "modelVersions": [civitai_version_json(base_url, model, v, with_model=False) for v in model.versions],
    }


# -- Hugging Face -----------------------------------------------------------------------------

@dataclass
class HfFile:
    path: str
    data: bytes
    lfs: bool

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def oid(self) -> str:
        """git object id: of the LFS pointer for LFS files, of the content otherwise."""
        return git_blob_oid(lfs_pointer(self.sha256, self.size) if self.lfs else self.data)

    @property
    def etag(self) -> str:
        """What HF sends as (X-Linked-)ETag: sha256 for LFS files, the git oid otherwise."""
        return self.sha256 if self.lfs else self.oid

    def tree_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"type": "file", "oid": self.oid, "size": self.size, "path": self.path}
        if self.lfs:
            pointer = lfs_pointer(self.sha256, self.size)
            out["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": len(pointer)}
        return out


@dataclass
class HfRepo:
    repo_id: str
    files: Dict[str, HfFile] = field(default_factory=dict)
    #: False, "auto" or "manual" (what the Hub's API reports)
    gated: Union[bool, str] = False
    private: bool = False
    downloads: int = 0
    likes: int = 0
    tags: List[str] = field(default_factory=list)
    pipeline_tag: Optional[str] = None
    library_name: Optional[str] = None
    created_at: str = field(default_factory=_now_iso)

    @property
    def author(self) -> str:
        return self.repo_id.split("/", 1)[0]

    @property
    def sha(self) -> str:
        """Commit id: changes whenever the files change."""
        h = hashlib.sha1(self.repo_id.encode())
        for path in sorted(self.files):
            h.update(path.encode() + b"\0" + self.files[path].oid.encode())
        return h.hexdigest()

    def list_json(self) -> Dict[str, Any]:
        return {
            "_id": hashlib.md5(self.repo_id.encode()).hexdigest()[:24],
            "id": self.repo_id,
            "likes": self.likes,
            "trendingScore": 0,
            "private": self.private,
            "downloads": self.downloads,
            "tags": list(self.tags),
            "pipeline_tag": self.pipeline_tag,
            "library_name": self.library_name,
            "createdAt": self.created_at,
            "modelId": self.repo_id,
        }

    def info_json(self, *, blobs: bool) -> Dict[str, Any]:
        out = self.list_json()
        out.update({
            "author": self.author,
            "sha": self.sha,
            "lastModified": self.created_at,
            "gated": self.gated,
            "disabled": False,
            "cardData": {"license": "other"},
            "siblings": [self._sibling(f, blobs) for _, f in sorted(self.files.items())],
            "spaces": [],
            "usedStorage": sum(f.size for f in self.files.values()),
        })
        return out

    @staticmethod
    def _sibling(f: HfFile, blobs: bool) -> Dict[str, Any]:
        if not blobs:
            return {"rfilename": f.path}
        out: Dict[str, Any] = {"rfilename": f.path, "blobId": f.oid, "size": f.size}
        if f.lfs:
            out["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": len(lfs_pointer(f.sha256, f.size))}
        return out

    def tree(self, path: str = "", recursive: bool = False) -> List[Dict[str, Any]]:
        """Entries under ``path`` like /api/models/{repo}/tree/{rev}/{path}, directories included."""
        prefix = path.strip("/")
        prefix = prefix + "/" if prefix else ""
        dirs: Dict[str, None] = {}
        files: List[Dict[str, Any]] = []
        for p in sorted(self.files):
            if not p.startswith(prefix):
                continue
            rest = p[len(prefix):]
            parts = rest.split("/")
            if len(parts) == 1:
                files.append(self.files[p].tree_json())
            else:
                for depth in range(1, len(parts) if recursive else 2):
                    dirs.setdefault(prefix + "/".join(parts[:depth]), None)
                if recursive:
                    files.append(self.files[p].tree_json())
        out = [{"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d}
               for d in dirs]
        return sorted(out + files, key=lambda e: e["path"])


def is_lfs_path(path: str, size: int) -> bool:
    return path.lower().endswith(HF_LFS_EXTENSIONS) or size > 10 * 1024 * 1024


def dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def as_bytes(value: Union[bytes, str, Mapping[str, Any], List[Any], None]) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return dumps(value)
