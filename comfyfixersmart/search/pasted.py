"""Pasted URLs: turn what people copy from a browser into the file to download.

``resolve_pasted_url(url, *, search, reference=None) -> SearchResult`` accepts

* Hugging Face file links in every form: ``/blob/`` pages, ``/resolve/`` and ``/raw/`` links,
  ``/tree/<rev>/<path to a file>``, ``hf.co/...``, with or without ``https://`` and
  ``?download=true``.  With a ``reference``, a repo page or a folder (``/tree/main/split_files``)
  is searched for the reference's file name;
* Civitai model pages (``/models/123``, ``/models/123/some-name``,
  ``/models/123?modelVersionId=456``) and download links (``/api/download/models/456``,
  ``?fileId=``/``type=``/``format=``): the version is read through the API and its file chosen
  by the reference's name, then its precision (``_fp16``), then Civitai's primary file;
* any other ``http(s)`` link whose path ends in a model file name (used as is).

A page that is not one file (a repo root without a reference, a folder, a user page, a
search page) raises ``NotAFileUrlError`` (a ``ValidationError``) saying what to copy instead.
A file the hub does not have raises ``NotFoundError``.  The result's ``download_url`` is on the
configured endpoints (``Config.hf_endpoint``, ``Config.civitai_base_url``);
``metadata["canonical_url"]`` keeps the public ``https://huggingface.co/...`` link for
embedding.  Its confidence is 1.0: the user chose the file.

For the CLI's ``comfyfixer fix --url NAME=URL``: build the reference NAME names, then
``resolve_pasted_url(URL, search=search, reference=ref)`` and download
``result.download_url`` to ``ref.filename`` in ``ref.expected_directory`` with
``expected_sha256=result.hash_sha256``.  The HTTP route uses ``resolve_download_items``.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional
from urllib.parse import parse_qs, unquote, urlsplit

from ..datamodel import ModelReference, SearchResult
from ..errors import ComfyFixerError, GatedRepoError, NetworkError, NotAFileUrlError, NotFoundError
from ..folders import canonical_folder, type_for
from ..security import check_url, redact_url
from . import names
from .civitai import CivitaiBackend, folder_for_civitai, pick_file
from .huggingface import HuggingFaceBackend
from .index_build import HF_CANONICAL, hf_url

_HF_HOSTS = ("huggingface.co", "www.huggingface.co", "hf.co")
_CIVITAI_HOSTS = ("civitai.com", "www.civitai.com", "civitai.red", "www.civitai.red")
_HF_NOT_REPOS = {"models", "datasets", "spaces", "docs", "search", "settings", "join", "login", "blog",
                 "collections", "organizations", "papers", "pricing", "api", "new", "tasks", "learn"}


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def _netloc(url: str) -> str:
    return urlsplit(url).netloc.lower()


def _with_scheme(url: str) -> str:
    text = url.strip()
    if "://" not in text and re.match(r"^(www\.)?(huggingface\.co|hf\.co|civitai\.(com|red))/", text, re.I):
        text = "https://" + text
    return text


def is_hf_url(url: str, config) -> bool:
    return _host(url) in _HF_HOSTS or _netloc(url) == _netloc(config.hf_endpoint)


def is_civitai_url(url: str, config) -> bool:
    return _host(url) in _CIVITAI_HOSTS or _netloc(url) == _netloc(config.civitai_base_url)


def needs_resolving(url: Any, config) -> bool:
    """True for a hub link that is not already a download link on the configured endpoint
    (a page, ``hf.co``, a public link while a mirror or test hub is configured)."""
    if not isinstance(url, str) or not url.strip():
        return False
    url = _with_scheme(url)
    if is_hf_url(url, config):
        parts = [p for p in urlsplit(url).path.split("/") if p]
        direct = len(parts) >= 5 and parts[2] == "resolve" and not urlsplit(url).query
        return not (direct and _netloc(url) == _netloc(config.hf_endpoint))
    if is_civitai_url(url, config):
        direct = re.match(r"^/api/download/models/\d+/?$", urlsplit(url).path) is not None
        return not (direct and _netloc(url) == _netloc(config.civitai_base_url))
    return False


def resolve_pasted_url(url: str, *, search, reference: Optional[ModelReference] = None) -> SearchResult:
    """The file a pasted ``url`` names (see the module docstring).  ``search``: a
    ``ModelSearch`` (its config, HTTP client and cache are used)."""
    if not isinstance(url, str) or not url.strip():
        raise NotAFileUrlError("the pasted URL is empty")
    url = check_url(_with_scheme(url))  # http(s), no credentials, no whitespace
    config = search.config
    if is_hf_url(url, config):
        return _huggingface(url, HuggingFaceBackend(config, search.api), reference)
    if is_civitai_url(url, config):
        return _civitai(url, CivitaiBackend(config, search.api), reference)
    return _plain(url, reference)


# -- Hugging Face ------------------------------------------------------------------------------

def _huggingface(url: str, hf: HuggingFaceBackend, reference: Optional[ModelReference]) -> SearchResult:
    segs = [unquote(p) for p in urlsplit(url).path.split("/") if p]
    safe = redact_url(url)
    if not segs:
        raise NotAFileUrlError("that is the Hugging Face home page, not a file: open the model's file and copy "
                               "its link", url=safe)
    if segs[0] in ("datasets", "spaces"):
        raise NotAFileUrlError(f"that is a Hugging Face {segs[0][:-1]}, not a model repository: only model files "
                               "can be downloaded here", url=safe)
    if segs[0] in _HF_NOT_REPOS:
        raise NotAFileUrlError("that is a Hugging Face search or listing page, not a file: open the model's "
                               "'Files' tab and copy the file's link", url=safe)
    if len(segs) == 1:
        raise NotAFileUrlError(f"that is the page of the user or organisation {segs[0]!r}, not a file: open one "
                               "of its models and copy the file's link", url=safe)
    repo_id = f"{segs[0]}/{segs[1]}"
    kind = segs[2] if len(segs) > 2 else None
    revision = segs[3] if len(segs) > 3 else "main"
    path = "/".join(segs[4:])
    if kind in ("resolve", "blob", "raw") and path:
        return _hf_file(hf, repo_id, revision, path, url, reference)
    if kind in ("resolve", "blob", "raw") and not path:
        raise NotAFileUrlError("that link names no file inside the repository", url=safe)
    if kind == "tree" and path and names.has_model_extension(path):
        return _hf_file(hf, repo_id, revision, path, url, reference)
    if kind in (None, "tree"):
        where = f"the folder {path!r} of {repo_id}" if path else f"the repository page of {repo_id}"
        if reference is None:
            raise NotAFileUrlError(f"that is {where}, not a file: open the file and copy its link (…/blob/"
                                   f"{revision}/<file>) or its download link", url=safe)
        return _hf_find(hf, repo_id, revision, path, url, reference, where)
    raise NotAFileUrlError(f"that is a '{kind}' page of {repo_id}, not a file: open the 'Files' tab and copy the "
                           "file's link", url=safe)


def _hf_find(hf: HuggingFaceBackend, repo_id: str, revision: str, folder: str, url: str,
             reference: ModelReference, where: str) -> SearchResult:
    """The reference's file inside a repo (or one of its folders), by exact name, then case."""
    files = [f["path"] for f in hf.repo_files(repo_id, revision if revision != "main" else None)["files"]]
    prefix = folder.strip("/") + "/" if folder else ""
    inside = [p for p in files if p.startswith(prefix)]
    wanted = reference.basename
    hits = [p for p in inside if names.basename(p) == wanted] or \
        [p for p in inside if names.basename(p).lower() == wanted.lower()]
    if len(hits) != 1:
        what = "no file" if not hits else f"{len(hits)} files"
        raise NotAFileUrlError(f"that is {where}, not a file, and it holds {what} named {wanted!r}: open the "
                               "file you want and copy its link", url=redact_url(url))
    return _hf_file(hf, repo_id, revision, hits[0], url, reference)


def _hf_file(hf: HuggingFaceBackend, repo_id: str, revision: str, path: str, url: str,
             reference: Optional[ModelReference]) -> SearchResult:
    rewritten = "/resolve/" not in urlsplit(url).path or _netloc(url) != _netloc(hf.config.hf_endpoint)
    folder = canonical_folder(reference.expected_directory) if reference and reference.expected_directory else None
    meta: Dict[str, Any] = {
        "reason": "pasted link" + (" (rewritten to the download link)" if rewritten else ""),
        "pasted_url": redact_url(url),
        "canonical_url": hf_url(repo_id, revision, path, HF_CANONICAL),
        "page_url": f"{hf.config.hf_endpoint}/{repo_id}",
        "repo_id": repo_id, "revision": revision, "path": path,
        "pickle": names.is_pickle(path),
    }
    result = SearchResult(
        backend="huggingface", model_id=repo_id, name=repo_id, filename=names.basename(path),
        model_type=type_for(folder), download_url=hf.resolve_url(repo_id, revision, path), metadata=meta,
        confidence=1.0, directory=folder, save_as=reference.filename if reference else names.basename(path))
    try:
        info = hf.file_metadata(repo_id, revision, path)
    except NotFoundError:
        raise  # the hub says there is no such file: tell the user now, not after a failed download
    except GatedRepoError as exc:
        meta.update(access_error=exc.to_dict(), gated=True, requires_auth=True)
        return result
    except (NetworkError, ComfyFixerError) as exc:  # offline: the link is still right
        meta["unchecked"] = str(exc)[:200]
        return result
    result.size_bytes, result.hash_sha256 = info.get("size"), info.get("sha256")
    return result


# -- Civitai ---------------------------------------------------------------------------------------

def _civitai(url: str, civ: CivitaiBackend, reference: Optional[ModelReference]) -> SearchResult:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    safe = redact_url(url)
    m = re.match(r"^/api/download/models/(\d+)/?$", parts.path)
    version_id = int(m.group(1)) if m else None
    file_id = _int(query.get("fileId"))
    if version_id is None:
        m = re.match(r"^/models/(\d+)(/[^/]*)?/?$", parts.path)
        if not m:
            kind = parts.path.strip("/").split("/", 1)[0] or "home"
            what = {"user": "a user page", "search": "a search page", "images": "an image page",
                    "posts": "a post", "home": "the home page", "models": "the model list",
                    "collections": "a collection", "articles": "an article"}.get(kind, f"a '{kind}' page")
            raise NotAFileUrlError(f"that is {what} on Civitai, not a model: open the model and copy its page link "
                                   "or its download link", url=safe)
        version_id = _int(query.get("modelVersionId"))
        if version_id is None:
            model = civ.model(int(m.group(1)))
            versions = [v for v in model.get("modelVersions") or [] if isinstance(v, dict) and v.get("id")]
            if not versions:
                raise NotFoundError("that Civitai model has no downloadable version", url=safe, backend="civitai")
            version_id = int(versions[0]["id"])  # newest first
    version = civ.version(version_id)
    files = [f for f in version.get("files") or [] if isinstance(f, dict)]
    file = _choose_file(files, file_id, query, reference)
    if file is None:
        raise NotFoundError(f"version {version_id} on Civitai has no such file", url=safe, backend="civitai")
    model = dict(version.get("model") or {}, id=version.get("modelId"))
    folder = (canonical_folder(reference.expected_directory) if reference and reference.expected_directory
              else folder_for_civitai(model.get("type"), file.get("type")))
    where = " ".join(str(x) for x in (model.get("name"), version.get("name")) if x)
    result = civ.make_result(model, version, file, folder=folder, confidence=1.0,
                             reason=f"pasted Civitai link: {where}, file {file.get('name')!r}",
                             save_as=reference.filename if reference else None)
    if result is None:
        raise NotFoundError(f"version {version_id} on Civitai has no id", url=safe, backend="civitai")
    result.metadata["pasted_url"] = safe
    return result


def _choose_file(files: List[Dict[str, Any]], file_id: Optional[int], query: Dict[str, List[str]],
                 reference: Optional[ModelReference]) -> Optional[Dict[str, Any]]:
    if file_id is not None:
        return next((f for f in files if f.get("id") == file_id), None)
    kind, fmt = (query.get("type") or [None])[0], (query.get("format") or [None])[0]
    if kind or fmt:
        chosen = [f for f in files if (not kind or f.get("type") == kind)
                  and (not fmt or (f.get("metadata") or {}).get("format") == fmt)]
        if chosen:
            files = chosen
    if reference is not None:
        wanted = reference.basename
        same = [f for f in files if str(f.get("name")) == wanted] or \
            [f for f in files if str(f.get("name", "")).lower() == wanted.lower()]
        if same:
            return same[0]
        return pick_file(files, names.precision(wanted))
    return pick_file(files)


def _int(values: Optional[List[str]]) -> Optional[int]:
    return int(values[0]) if values and values[0].isdigit() else None


# -- anything else ----------------------------------------------------------------------------------

def _plain(url: str, reference: Optional[ModelReference]) -> SearchResult:
    name = unquote(names.basename(urlsplit(url).path))
    if not names.has_model_extension(name):
        raise NotAFileUrlError("that link does not name a model file (no .safetensors, .ckpt, .gguf ... at the "
                               "end): paste the file's own download link", url=redact_url(url))
    folder = canonical_folder(reference.expected_directory) if reference and reference.expected_directory else None
    return SearchResult(backend="url", model_id=url, name=_host(url), filename=name, model_type=type_for(folder),
                        download_url=url, metadata={"reason": "pasted link", "pasted_url": redact_url(url),
                                                     "pickle": names.is_pickle(name)},
                        confidence=1.0, directory=folder, save_as=reference.filename if reference else name)


# -- the download route -------------------------------------------------------------------------------

def resolve_download_items(items: Any, config) -> Any:
    """The download route's items with pasted hub page URLs replaced by download URLs (and
    ``sha256``/``size`` filled from the hub when the item gave none).  Items whose URL is
    already a download link, or not a dict, are returned unchanged (validation follows)."""
    if not isinstance(items, list) or not any(isinstance(i, dict) and needs_resolving(i.get("url"), config)
                                              for i in items):
        return items
    from .search import ModelSearch

    out = []
    with ModelSearch(config, backends=[]) as search:
        for item in items:
            if not (isinstance(item, dict) and needs_resolving(item.get("url"), config)):
                out.append(item)
                continue
            ref = None
            if isinstance(item.get("filename"), str) and item["filename"].strip():
                directory = item.get("directory") if isinstance(item.get("directory"), str) else ""
                ref = ModelReference(filename=item["filename"].strip(), node_type="", expected_type="",
                                     expected_directory=canonical_folder(directory) if directory else "")
            result = resolve_pasted_url(item["url"], search=search, reference=ref)
            new = dict(item, url=result.download_url)
            if result.hash_sha256 and not item.get("sha256"):
                new["sha256"] = result.hash_sha256
            if result.size_bytes and item.get("size") is None:
                new["size"] = result.size_bytes
            out.append(new)
    return out
