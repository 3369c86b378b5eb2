"""ModelInventory: which model files are on disk, and is a workflow's reference among them.

The inventory indexes every folder ComfyUI would search for each folder key: outside
ComfyUI ``build(comfyui_root)`` reads ``models/`` and ``extra_model_paths.yaml`` (see
``extra_paths.py``); inside ComfyUI ``build_from_folders(folder_paths...)`` takes its table.

A reference (folder key + relative path) is

* ``present``   when ComfyUI would load it: one of its folder's directories holds a regular
  file (links followed) listed under exactly that relative path.  ComfyUI lists files with
  ``os.walk`` and checks a widget's value with ``value in get_filename_list(key)``, character
  for character, so ``model.safetensors`` is not ``Model.safetensors`` (even on Windows and
  macOS) and an NFC name is not its NFD twin; sub-folder separators ``/`` and ``\\`` are alike.
  FIFOs, devices and broken links are never present (``get_full_path`` needs ``isfile``);
* ``elsewhere`` when a file of the same name sits in another sub-folder or folder, or a
  file already hashed has the reference's sha256: ``found_path`` = ``folder/rel/path`` and
  ``local_path`` tell where, so it can be linked or moved instead of downloaded;
* ``missing``   otherwise.

The ``elsewhere`` search by file name ignores case and Unicode normalisation (a
``Model.safetensors`` is worth reporting for ``model.safetensors``), preferring exact case.
``case_sensitive=`` is accepted for compatibility and no longer changes matching.

Building avoids ``stat``: directory entries give the type for free, and size/mtime are read
only when a ``ModelInfo`` is asked for.  sha256 sums are computed only on demand and cached
(``hashing.HashCache``) by (path, size, mtime_ns) in ``config.cache_dir``.
"""

from __future__ import annotations

import os
import sys
import threading
import unicodedata
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, FrozenSet, Iterable, Iterator, List, Mapping, Optional, Sequence, Set, Tuple, Union

from .datamodel import ELSEWHERE, MISSING, PRESENT, ModelInfo, ModelReference
from .errors import ConfigurationError, UnsafePathError, ValidationError
from .extra_paths import model_folders_only
from .fileutils import save_json_file
from .folders import canonical_folder, check_folder_key, folder_for, models_root_of, type_for
from .hashing import FileKey, HashCache, normalize_sha256
from .logs import get_logger
from .root_folders import key_extensions, root_folder_paths
from .security import exact_relative_path, safe_join, validate_relative_path
from .settings import Config, get_config

log = get_logger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: extensions ComfyUI tries, in order, for an embedding named without one (comfy/sd1_clip.py)
EMBEDDING_EXTENSIONS = (".safetensors", ".pt", ".bin", ".pth")
#: directories never descended into (ComfyUI skips ``.git`` too)
_SKIP_DIRS = frozenset({".git", "__pycache__"})
HASH_DB_NAME = "hashes.sqlite3"


def _platform_case_sensitive() -> bool:
    return not (sys.platform == "win32" or sys.platform == "darwin")


@dataclass(slots=True)
class _Entry:
    """One indexed file; ``info`` is built (with a stat) on first use."""

    folder: str
    rel: str  # '/' separated, relative to root
    root: str
    path: str  # absolute
    root_index: int
    info: Optional[ModelInfo] = None


_Key = Tuple[str, int, str]  # (folder key, root index, rel path)


class _Index:
    """Everything one build found; replaced as a whole by ``refresh`` (readers never see half).

    Only what a presence check needs is built eagerly, with C-speed dict operations: per key
    the relative paths of each root, and ``folded rel -> root index`` (first root wins, as in
    ComfyUI).  File objects, the by-name and by-path indexes are built on first use.
    """

    def __init__(self, folders: Dict[str, List[Path]], models_root: Optional[Path]):
        self.folders = folders
        self.models_root = models_root
        #: folder -> [(root dir, [rel paths])], in root order
        self.files: Dict[str, List[Tuple[str, List[str]]]] = {}
        #: folder -> folded rel -> index of the first root holding it
        self.by_rel: Dict[str, Dict[str, int]] = {}
        self.built_at = 0.0
        self._entries: Dict[_Key, _Entry] = {}
        self._by_name: Optional[Dict[str, List[_Key]]] = None
        self._by_path: Optional[Dict[str, _Key]] = None
        self._lock = threading.Lock()

    def add(self, folder: str, roots: List[Tuple[str, List[str]]]) -> None:
        self.files[folder] = roots
        rel_map: Dict[str, int] = {}
        # names are keys exactly as listed, on every platform: ComfyUI checks a widget's value
        # with ``value in get_filename_list(key)``, so "model.safetensors" does not load
        # "Model.safetensors" even where the filesystem would open it, nor an NFC name its
        # NFD twin (such near misses are reported "elsewhere", to relink)
        for i in range(len(roots) - 1, -1, -1):  # reversed, so the first root wins
            rel_map.update(dict.fromkeys(roots[i][1], i))
        self.by_rel[folder] = rel_map

    def __len__(self) -> int:
        return sum(len(rels) for roots in self.files.values() for _root, rels in roots)

    def lookup(self, folder: str, rel: str) -> Optional[_Entry]:
        """The file ComfyUI would load for ``folder``/``rel`` (spelled exactly so), or None."""
        rel_map = self.by_rel.get(folder)
        if not rel_map:
            return None
        i = rel_map.get(rel)
        if i is None:
            return None
        return self.entry((folder, i, rel))

    def entry(self, key: _Key) -> _Entry:
        entry = self._entries.get(key)
        if entry is None:
            folder, i, rel = key
            root = self.files[folder][i][0]
            path = os.path.join(root, rel if os.sep == "/" else rel.replace("/", os.sep))
            entry = self._entries.setdefault(key, _Entry(folder, rel, root, path, i))
        return entry

    def keys(self, folder: Optional[str] = None) -> Iterator[_Key]:
        """Every file (of one folder key), in folder and root order."""
        for name in ([folder] if folder is not None else list(self.files)):
            for i, (_root, rels) in enumerate(self.files.get(name, ())):
                for rel in rels:
                    yield (name, i, rel)

    @property
    def by_name(self) -> Dict[str, List[_Key]]:
        """base name folded (``name_fold``: case and Unicode form) -> files; built on first use."""
        if self._by_name is None:
            with self._lock:
                if self._by_name is None:
                    index: Dict[str, List[_Key]] = {}
                    for key in self.keys():
                        index.setdefault(name_fold(key[2].rpartition("/")[2]), []).append(key)
                    self._by_name = index
        return self._by_name

    @property
    def by_path(self) -> Dict[str, _Key]:
        """absolute path -> file; built on first use."""
        if self._by_path is None:
            with self._lock:
                if self._by_path is None:
                    index: Dict[str, _Key] = {}
                    for key in self.keys():
                        folder, i, rel = key
                        root = self.files[folder][i][0]
                        index.setdefault(os.path.join(root, rel if os.sep == "/" else rel.replace("/", os.sep)), key)
                    self._by_path = index
        return self._by_path

    def entry_at(self, path: str) -> Optional[_Entry]:
        key = self.by_path.get(path)
        return self.entry(key) if key is not None else None


class ModelInventory:
    """Index of the local model files of one ComfyUI install.

    ``ModelInventory(config).build(root)`` (or ``build_from_folders(...)``), then ``check``
    references, look files up, hash them.  Thread-safe for readers while ``refresh`` runs.
    """

    def __init__(self, config: Optional[Config] = None, *, case_sensitive: Optional[bool] = None,
                 hash_cache: Optional[HashCache] = None):
        self.config = config if config is not None else get_config()
        self.case_sensitive = _platform_case_sensitive() if case_sensitive is None else bool(case_sensitive)
        self._extensions = frozenset(e.lower() for e in self.config.model_extensions)
        #: folder key -> the extension set its source declares (ComfyUI's, a root's own sources)
        self._known_exts: Dict[str, Optional[FrozenSet[str]]] = {}
        self._index = _Index({}, None)
        self._source: Optional[Tuple[str, object]] = None
        self._hash_cache = hash_cache
        self._lock = threading.Lock()

    # -- building ------------------------------------------------------------------------
    def build(self, comfyui_root: Optional[PathLike] = None) -> "ModelInventory":
        """Index ``<root>/models`` and the root's ``extra_model_paths.yaml``; returns self."""
        root = comfyui_root if comfyui_root is not None else self.config.comfyui_root
        if root is None:
            raise ConfigurationError("comfyui_root", "no ComfyUI folder given (set COMFYFIXER_COMFYUI_ROOT)")
        root_path = Path(os.path.abspath(os.fspath(Path(root).expanduser())))
        if not root_path.is_dir():
            raise ConfigurationError("comfyui_root", f"{root_path} is not a directory")
        table, known = root_folder_paths(root_path, self.config)
        folders = model_folders_only(table)
        self._known_exts = {k: None if v is None else frozenset(v) for k, v in known.items()}
        self._source = ("root", root_path)
        self._index = self._scan(folders, models_root=root_path / "models")
        return self

    def build_from_folders(self, folders: Mapping[str, Sequence[PathLike]]) -> "ModelInventory":
        """Index the given ``folder key -> [dirs]`` table (ComfyUI's ``folder_paths`` view).

        The first directory of a key is its default download target.  Legacy keys are
        mapped (``unet`` -> ``diffusion_models``) and merged after the canonical key's dirs.
        ComfyUI's own ``folder_names_and_paths`` values, ``([dirs], {extensions})``, are
        accepted as they are.
        """
        if not isinstance(folders, Mapping):
            raise ValidationError("folders must map folder keys to lists of directories")
        merged: Dict[str, List[PathLike]] = {}
        known: Dict[str, Optional[FrozenSet[str]]] = {}
        for key in sorted(folders, key=lambda k: canonical_folder(k) != k):  # canonical first
            if not isinstance(key, str) or not key:
                raise ValidationError(f"folder key must be a non-empty string, got {key!r}")
            paths = folders[key]
            if (isinstance(paths, tuple) and len(paths) == 2 and isinstance(paths[0], list)
                    and isinstance(paths[1], (set, frozenset, list))):
                known.setdefault(canonical_folder(key), frozenset(paths[1]))
                paths = paths[0]  # ComfyUI's (paths, extensions) pair
            paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
            for p in paths:
                if not isinstance(p, (str, os.PathLike)) or not os.fspath(p) or "\0" in os.fspath(p):
                    raise ValidationError(f"folder {key!r}: {p!r} is not a directory path")
            merged.setdefault(canonical_folder(key), []).extend(paths)
        table = model_folders_only(merged)
        self._known_exts = known
        self._source = ("folders", table)
        self._index = self._scan(table, models_root=_guess_models_root(table))
        return self

    def refresh(self) -> "ModelInventory":
        """Re-read the same folders from disk (build from config if never built)."""
        if self._source is None:
            return self.build()
        kind, value = self._source
        if kind == "root":
            return self.build(value)  # type: ignore[arg-type]
        self._index = self._scan(value, models_root=self._index.models_root)  # type: ignore[arg-type]
        return self

    def _scan(self, folders: Dict[str, List[Path]], models_root: Optional[Path]) -> _Index:
        started = time.perf_counter()
        idx = _Index({k: list(v) for k, v in folders.items()}, models_root)
        # each key lists the files of its own extension set, as ComfyUI's get_filename_list does
        exts_of = key_extensions(folders, self.config.model_extensions, self._known_exts)
        every = frozenset().union(*exts_of.values()) if exts_of else frozenset()
        walked: Dict[str, List[str]] = {}  # the same dir under two keys is walked once
        for folder, roots in folders.items():
            exts = exts_of[folder]
            found: List[Tuple[str, List[str]]] = []
            for root in roots:
                root_s = os.fspath(root)
                rels = walked.get(root_s)
                if rels is None:
                    rels = walked[root_s] = self._walk(root_s, every)
                if exts != every:
                    rels = [r for r in rels if _ext_of(r) in exts]
                found.append((root_s, rels))
            idx.add(folder, found)
        idx.built_at = time.time()
        log.info("inventory: %d model files in %d folder keys (%.0f ms)", len(idx),
                 sum(1 for v in idx.by_rel.values() if v), (time.perf_counter() - started) * 1000)
        return idx

    def _walk(self, root: str, exts: FrozenSet[str]) -> List[str]:
        """Relative '/' paths of the files under ``root`` whose extension is in ``exts`` (lower
        case; ``""``: files without one), symbolic links followed, loops cut."""
        out: List[str] = []
        append = out.append
        seen_real: Optional[Set[str]] = None  # real paths of linked dirs, made on the first link
        stack: List[Tuple[str, str]] = [(root, "")]
        while stack:
            path, rel_prefix = stack.pop()
            try:
                it = os.scandir(path)
            except FileNotFoundError:
                continue
            except OSError as exc:  # permission denied, not a dir ...: skip it, as ComfyUI does
                log.warning("cannot list %s: %s", path, exc.strerror or exc)
                continue
            with it:
                for e in it:
                    name = e.name
                    # DirEntry answers is_dir/is_symlink from the directory listing itself:
                    # no stat per file, except for symbolic links
                    try:
                        if e.is_dir():
                            if name in _SKIP_DIRS:
                                continue
                            if e.is_symlink():
                                if seen_real is None:
                                    seen_real = {os.path.realpath(root)}
                                real = os.path.realpath(e.path)
                                if real in seen_real:  # a link back up the tree: no loops
                                    continue
                                seen_real.add(real)
                            stack.append((e.path, rel_prefix + name + "/"))
                            continue
                        dot = name.rfind(".")
                        ext = name[dot:] if dot > 0 else ""
                        if ext not in exts and ext.lower() not in exts:
                            continue
                        if name.startswith("._"):  # macOS resource forks beside the real file
                            continue
                        if not e.is_file():  # FIFO, socket, device, broken link: never loadable
                            continue
                    except OSError:
                        continue
                    append(rel_prefix + name)
        return out

    # -- basic queries -------------------------------------------------------------------
    @property
    def folders(self) -> Dict[str, List[Path]]:
        """Folder key -> directories searched, first one the default download target."""
        return {k: list(v) for k, v in self._index.folders.items()}

    @property
    def built(self) -> bool:
        return self._source is not None

    def __len__(self) -> int:
        return len(self._index)

    def __iter__(self) -> Iterator[ModelInfo]:
        """Every indexed file (stat'ed now; files removed since the build are skipped)."""
        idx = self._index
        for key in idx.keys():
            info = self._info(idx.entry(key))
            if info is not None:
                yield info

    def has_model(self, filename: str, folder: Optional[str] = None) -> bool:
        """True if ``filename`` (a rel path or a bare name) is on disk (in ``folder`` if given)."""
        return self._find(filename, folder) is not None

    def get_model_info(self, filename: str, folder: Optional[str] = None) -> Optional[ModelInfo]:
        """The file for ``filename``: the exact relative path first, then (bare names only) a
        file of that name in any sub-folder.  ``folder`` restricts the search to one key."""
        entry = self._find(filename, folder)
        return self._info(entry) if entry is not None else None

    def get_models_by_type(self, type_or_folder: str) -> List[ModelInfo]:
        """Files of one folder key (``checkpoint`` or ``checkpoints`` both work), sorted."""
        idx = self._index
        key = self._folder_key(idx, type_or_folder)
        if key is None:
            return []
        entries = sorted(idx.keys(key), key=lambda k: (k[1], k[2]))
        return [info for info in (self._info(idx.entry(k)) for k in entries) if info is not None]

    def _find(self, filename: str, folder: Optional[str]) -> Optional[_Entry]:
        idx = self._index  # one snapshot per call: refresh() may swap it meanwhile
        rel = _clean_rel(filename)
        if rel is None:
            return None
        if folder is not None:
            key = self._folder_key(idx, folder)
            keys = [key] if key is not None else []
        else:
            keys = list(idx.by_rel)
        for key in keys:
            entry = self._lookup_rel(idx, key, rel)
            if entry is not None:
                return entry
        if "/" not in rel:
            wanted = set(keys)
            embedding = folder is not None and keys == ["embeddings"]
            for entry in self._candidates_by_name(idx, rel, embedding=embedding):
                if entry.folder in wanted:
                    return entry
        return None

    def _lookup_rel(self, idx: _Index, folder: str, rel: str) -> Optional[_Entry]:
        """The entry ComfyUI would load for ``folder``/``rel`` (embedding stem rule included)."""
        entry = idx.lookup(folder, rel)
        if entry is None and folder == "embeddings" and not self._has_model_ext(rel):
            for ext in EMBEDDING_EXTENSIONS:
                entry = idx.lookup(folder, rel + ext)
                if entry is not None:
                    break
        return entry

    def _lookup_stem(self, idx: _Index, folder: str, rel: str) -> Optional[_Entry]:
        """A ``<lora:name>`` tag's file: the nodes applying tags accept the name with or without
        its extension (``add_detail`` loads ``add_detail.safetensors``, in a sub-folder too)."""
        if self._has_model_ext(rel):
            return None
        for ext in (".safetensors", *sorted(self._extensions)):
            entry = idx.lookup(folder, rel + ext)
            if entry is not None:
                return entry
        base_only = "/" not in rel
        for key in idx.keys(folder):
            name = key[2]
            stem, dot, ext = name.rpartition(".")
            if not dot or "." + ext.lower() not in self._extensions:
                continue
            if stem == rel or (base_only and stem.rpartition("/")[2] == rel):
                return idx.entry(key)
        return None

    def _candidates_by_name(self, idx: _Index, rel: str, embedding: bool = False) -> List[_Entry]:
        base = rel.rpartition("/")[2]
        names = [base]
        if embedding and not self._has_model_ext(base):
            names += [base + ext for ext in EMBEDDING_EXTENSIONS]
        out: List[_Entry] = []
        for name in names:
            found = [idx.entry(k) for k in idx.by_name.get(name_fold(name), ())]
            # exact case before other spellings
            out.extend(sorted(found, key=lambda e: e.rel.rpartition("/")[2] != name))
        return out

    # -- checking references -------------------------------------------------------------
    def check(self, reference: ModelReference) -> ModelReference:
        """Fill ``status``, ``found_path`` and ``local_path`` of ``reference``; return it.

        An unsafe file name (``..``, absolute path ...) can never be present: ``missing``.
        """
        idx = self._index
        reference.status, reference.found_path, reference.local_path = MISSING, None, None
        rel = _clean_rel(reference.filename)
        if rel is None:
            log.warning("reference %r is not a safe relative path; treated as missing", reference.filename)
            return reference
        key = self._folder_key(idx, reference.expected_directory) if reference.expected_directory else None
        keys = [key] if key is not None else ([] if reference.expected_directory else list(idx.by_rel))
        for k in keys:
            entry = self._lookup_rel(idx, k, rel)
            if entry is None and reference.source == "lora_tag":
                entry = self._lookup_stem(idx, k, rel)
            if entry is not None:
                reference.status, reference.local_path = PRESENT, entry.path
                return reference
            local_dir = self._directory_model(idx, k, rel)
            if local_dir is not None:
                reference.status, reference.local_path = PRESENT, local_dir
                return reference
        best = self._elsewhere(idx, reference, rel, key)
        if best is not None:
            reference.status = ELSEWHERE
            reference.found_path = f"{best.folder}/{best.rel}"
            reference.local_path = best.path
        return reference

    def check_all(self, references: Iterable[ModelReference]) -> List[ModelReference]:
        """``check`` each reference; returns them as a list."""
        return [self.check(ref) for ref in references]

    def _elsewhere(self, idx: _Index, ref: ModelReference, rel: str, key: Optional[str]) -> Optional[_Entry]:
        """Best file to relink for ``ref``: same sha256 first, then same name; None if none."""
        want_sha = _reference_sha256(ref)
        ranked: List[Tuple[tuple, _Entry]] = []
        seen: Set[str] = set()
        if want_sha:
            for info in self._find_by_sha256(idx, want_sha):
                entry = idx.entry_at(info.path)
                if entry is not None and entry.path not in seen:
                    seen.add(entry.path)
                    ranked.append(((0, entry.folder != key, entry.rel), entry))
        by_name = [e for e in self._candidates_by_name(idx, rel, embedding=key == "embeddings")
                   if e.path not in seen]
        known = self._known_hashes(e.path for e in by_name) if want_sha and by_name else {}
        for order, entry in enumerate(by_name):
            sha = known.get(entry.path)
            if sha and not sha.startswith(want_sha or ""):
                continue  # same name, known different content: not the file the workflow wants
            ranked.append(((1, entry.folder != key, order), entry))
        if not ranked:
            return None
        ranked.sort(key=lambda pair: pair[0])
        return ranked[0][1]

    def _directory_model(self, idx: _Index, folder: str, rel: str) -> Optional[str]:
        """Models that are folders (diffusers, LLM repos) are referenced by directory name."""
        if self._has_model_ext(rel):
            return None
        for root in idx.folders.get(folder, []):
            candidate = root.joinpath(*rel.split("/"))
            if candidate.is_dir():
                return str(candidate)
        return None

    # -- targets -------------------------------------------------------------------------
    def target_path(self, folder: str, filename: str, root_index: int = 0) -> Path:
        """Where a download of ``folder``/``filename`` goes (sub-folder kept, path checked).

        The folder key's directory number ``root_index`` (0: its default); a key without any
        directory gets ``<models root>/<folder>``.  Raises ``UnsafePathError`` for hostile
        names, ``ValidationError`` for a bad index.
        """
        idx = self._index
        key = self._folder_key(idx, folder)
        if key is None:
            # one safe path component (UnsafePathError otherwise), and a folder key: never
            # 'unknown' or custom_nodes
            key = check_folder_key(validate_relative_path(str(folder), allow_subdirs=False))
        roots = idx.folders.get(key) or []
        if roots:
            if not isinstance(root_index, int) or not -len(roots) <= root_index < len(roots):
                raise ValidationError(f"root_index {root_index!r} out of range: {key!r} has {len(roots)} folders")
            base = roots[root_index]
        else:
            if root_index not in (0, -1):
                raise ValidationError(f"root_index {root_index!r} out of range: {key!r} has no folder yet")
            models_root = idx.models_root
            if models_root is None:
                raise ConfigurationError("comfyui_root", f"no models folder known to put {key!r} files in")
            base = models_root / key
        return safe_join(base, filename)

    # -- hashes --------------------------------------------------------------------------
    @property
    def hash_cache(self) -> HashCache:
        """The sha256 cache (``<cache_dir>/hashes.sqlite3``; in memory if caching is off)."""
        if self._hash_cache is None:
            with self._lock:
                if self._hash_cache is None:
                    db = self.config.cache_dir / HASH_DB_NAME if self.config.cache_enabled else ":memory:"
                    self._hash_cache = HashCache(db)
        return self._hash_cache

    def close(self) -> None:
        """Close the hash cache's database connection (it reopens on the next use)."""
        if self._hash_cache is not None:
            self._hash_cache.close()

    def __enter__(self) -> "ModelInventory":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def hashes_computed(self) -> int:
        """How many files were actually read to hash them (cache misses)."""
        return self._hash_cache.computed if self._hash_cache is not None else 0

    def sha256(self, path_or_info: Union[PathLike, ModelInfo], progress=None) -> str:
        """Lower-case sha256 of a file, from the cache when size and mtime are unchanged."""
        if isinstance(path_or_info, ModelInfo):
            path = path_or_info.path
        elif isinstance(path_or_info, (str, os.PathLike)):
            path = os.fspath(path_or_info)
        else:
            raise ValidationError(f"expected a path or ModelInfo, got {type(path_or_info).__name__}")
        digest = self.hash_cache.sha256(path, progress=progress)
        if isinstance(path_or_info, ModelInfo):
            path_or_info.sha256 = digest
        entry = self._index.entry_at(os.path.abspath(path))
        if entry is not None and entry.info is not None:
            entry.info.sha256 = digest
        return digest

    def find_by_sha256(self, sha256: str) -> List[ModelInfo]:
        """Indexed files whose sha256 (or a prefix of >= 8 digits, e.g. AutoV2) is known to
        match, among files hashed before (nothing is hashed here).  Changed files are skipped."""
        return self._find_by_sha256(self._index, normalize_sha256(sha256, allow_prefix=True))

    def _find_by_sha256(self, idx: _Index, value: str) -> List[ModelInfo]:
        out: List[ModelInfo] = []
        for key in self.hash_cache.lookup_sha256(value):
            entry = idx.entry_at(key.path)
            if entry is None:
                continue
            try:
                if FileKey.of(entry.path) != key:
                    continue
            except OSError:
                continue
            info = self._info(entry)
            if info is not None:
                out.append(info)
        return out

    def _known_hashes(self, paths: Iterable[str]) -> Dict[str, str]:
        """path -> sha256 for those files whose cache entry is still valid (no hashing)."""
        known = self.hash_cache.known(paths)
        out: Dict[str, str] = {}
        for path, (size, mtime_ns, sha) in known.items():
            try:
                st = os.stat(path)
            except OSError:
                continue
            if st.st_size == size and st.st_mtime_ns == mtime_ns:
                out[path] = sha
        return out

    # -- export --------------------------------------------------------------------------
    def export_json(self, path: PathLike) -> Path:
        """Write the inventory (folders and files, known sha256 included) atomically as JSON."""
        # read hashes from an existing cache only: exporting must not create a database
        has_db = self._hash_cache is not None or (
            self.config.cache_enabled and (self.config.cache_dir / HASH_DB_NAME).is_file())
        idx = self._index
        known = self._known_hashes(idx.by_path) if has_db else {}
        models = []
        for folder in sorted(idx.files):
            for key in sorted(idx.keys(folder), key=lambda k: (k[1], k[2])):
                info = self._info(idx.entry(key))
                if info is None:
                    continue
                if info.sha256 is None and info.path in known:
                    info.sha256 = known[info.path]
                models.append(info.to_dict())
        source = self._source[1] if self._source and self._source[0] == "root" else None
        data = {
            "comfyui_root": str(source) if source else None,
            "built_at": idx.built_at,
            "folders": {k: [str(p) for p in v] for k, v in idx.folders.items()},
            "count": len(models),
            "models": models,
        }
        return save_json_file(data, path)

    # -- helpers -------------------------------------------------------------------------
    def _has_model_ext(self, name: str) -> bool:
        dot = name.rfind(".")
        return dot > 0 and name[dot:].lower() in self._extensions

    def _folder_key(self, idx: _Index, type_or_folder: Optional[str]) -> Optional[str]:
        """Folder key for a key, legacy name or type name; keys only found on disk kept as is."""
        if not type_or_folder:
            return None
        name = str(type_or_folder).strip()
        if name in idx.folders:
            return name
        key = folder_for(name)
        if key is not None:
            return key
        canonical = canonical_folder(name)
        return canonical if canonical in idx.folders else None

    def _info(self, entry: _Entry) -> Optional[ModelInfo]:
        if entry.info is None:
            try:
                st = os.stat(entry.path)
            except OSError:
                return None  # removed since the build
            entry.info = ModelInfo(
                filename=entry.rel, folder=entry.folder, path=entry.path, size=st.st_size,
                mtime=st.st_mtime, model_type=type_for(entry.folder), root=entry.root)
        return entry.info


def _ext_of(rel: str) -> str:
    """A file's extension in lower case as ComfyUI compares it (``os.path.splitext``)."""
    name = rel.rpartition("/")[2]
    dot = name.rfind(".")
    return name[dot:].lower() if dot > 0 else ""


def name_fold(name: str) -> str:
    """A file name folded for "is this the same file, spelled otherwise?" (case, NFC/NFD)."""
    return unicodedata.normalize("NFC", name).casefold()


def _clean_rel(filename: str) -> Optional[str]:
    """A reference's file name as a safe '/' relative path spelled as given (ComfyUI compares
    names character for character), or None if it is hostile."""
    try:
        return exact_relative_path(filename)
    except UnsafePathError:
        return None


def _reference_sha256(ref: ModelReference) -> Optional[str]:
    """The reference's sha256 (or AutoV2 prefix) when it carries one."""
    if not ref.hash:
        return None
    kind = (ref.hash_type or "").lower().replace("-", "")
    if kind not in ("", "sha256", "autov2"):
        return None
    try:
        return normalize_sha256(ref.hash, allow_prefix=kind == "autov2" or len(ref.hash.strip()) == 10)
    except ValidationError:
        return None


_guess_models_root = models_root_of


__all__ = ["ModelInventory", "EMBEDDING_EXTENSIONS"]
