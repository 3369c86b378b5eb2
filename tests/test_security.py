"""security.py: hostile file names, safe joins, URL and host checks, token scoping, redaction."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from comfyfixersmart.errors import HostNotAllowedError, UnsafePathError
from comfyfixersmart.security import (
    auth_headers_for,
    check_url,
    host_matches,
    redact_text,
    redact_url,
    register_secret,
    safe_join,
    same_origin,
    validate_relative_path,
)
from comfyfixersmart.settings import DEFAULT_ALLOWED_HOSTS

# -- validate_relative_path -----------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("model.safetensors", "model.safetensors"),
    ("sdxl/model.safetensors", "sdxl/model.safetensors"),
    ("sdxl\\sub\\model.safetensors", "sdxl/sub/model.safetensors"),  # Windows workflows
    ("a//b.pt", "a/b.pt"),
    ("  spaced.pt  ", "spaced.pt"),
    ("ünïcödé/模型.safetensors", "ünïcödé/模型.safetensors"),
    ("..hidden.pt", "..hidden.pt"),  # dots inside a name are fine
    ("v1.5...final.ckpt", "v1.5...final.ckpt"),
    ("console.safetensors", "console.safetensors"),  # only exact device names are reserved
])
def test_valid_names(name, expected):
    assert validate_relative_path(name) == expected


def test_nfc_normalisation():
    decomposed = "cafe\u0301.pt"
    assert validate_relative_path(decomposed) == "caf\u00e9.pt"


@pytest.mark.parametrize("name", [
    "", "   ", "/", "\\",
    "..", "../x.pt", "a/../../x.pt", "a/./b.pt", "./x.pt", "a/..", "..\\..\\x.pt",
    "/etc/passwd", "\\windows\\x.pt",
    "C:x.pt", "C:\\x.pt", "c:/x.pt", "Z:",
    "\\\\server\\share\\x.pt", "//server/share/x.pt", "\\\\?\\C:\\x.pt",
    "a\0b.pt", "a\nb.pt", "a\tb.pt", "a\x7fb.pt",
    "CON", "con.safetensors", "NUL.txt", "aux", "COM1.pt", "lpt9.bin", "prn.tar.gz", "nul .txt",
    "CONIN$", "sub/CON/x.pt",
    "a<b.pt", "a>b.pt", 'a"b.pt', "a|b.pt", "a?b.pt", "a*b.pt", "file.pt:stream",
    "trailing.", "dir /x.pt", "dir./x.pt",
    "x" * 256 + ".pt",
    ("d" * 200 + "/") * 6 + "x.pt",
])
def test_hostile_names_rejected(name):
    with pytest.raises(UnsafePathError):
        validate_relative_path(name)


def test_non_strings_rejected():
    for value in (None, 3, b"x.pt", Path("x.pt")):
        with pytest.raises(UnsafePathError):
            validate_relative_path(value)  # type: ignore[arg-type]


def test_no_subdirs_when_asked():
    assert validate_relative_path("x.pt", allow_subdirs=False) == "x.pt"
    with pytest.raises(UnsafePathError):
        validate_relative_path("a/x.pt", allow_subdirs=False)


def test_unsafe_path_error_is_a_validation_and_value_error():
    with pytest.raises(ValueError):
        validate_relative_path("../x")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list("ab./\\:\0 ~$C") + ["..", "CON", "nul", "é"]), max_size=30).map("".join))
def test_accepted_names_never_escape(name):
    """Whatever is accepted stays relative, without '..' or '.' components or drive letters."""
    try:
        out = validate_relative_path(name)
    except UnsafePathError:
        return
    parts = out.split("/")
    assert out and not out.startswith("/") and ":" not in out and "\\" not in out and "\0" not in out
    assert all(p not in ("", ".", "..") for p in parts)
    assert validate_relative_path(out) == out  # idempotent


# -- safe_join --------------------------------------------------------------------------

def test_safe_join_inside(tmp_path):
    assert safe_join(tmp_path, "a/b.pt") == tmp_path.resolve() / "a" / "b.pt"
    assert safe_join(str(tmp_path), "a\\b.pt") == tmp_path.resolve() / "a" / "b.pt"


@pytest.mark.parametrize("name", ["../x.pt", "/etc/passwd", "C:\\x", "\\\\srv\\share\\x", "a/../../x", "nul"])
def test_safe_join_rejects_hostile(tmp_path, name):
    with pytest.raises(UnsafePathError):
        safe_join(tmp_path, name)


@pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges on Windows")
def test_safe_join_symlink_escapes(tmp_path):
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "dir_link").symlink_to(outside, target_is_directory=True)
    (outside / "existing.pt").write_bytes(b"x")
    (root / "file_link.pt").symlink_to(outside / "existing.pt")
    (root / "dangling.pt").symlink_to(outside / "not_yet.pt")
    (root / "inside_link").symlink_to(root / "real", target_is_directory=True)
    (root / "real").mkdir()
    for name in ("dir_link/new.pt", "dir_link/deeper/new.pt", "file_link.pt", "dangling.pt"):
        with pytest.raises(UnsafePathError):
            safe_join(root, name)
    # a link that stays inside is fine
    assert safe_join(root, "inside_link/x.pt") == root.resolve() / "inside_link" / "x.pt"


@pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges on Windows")
def test_safe_join_through_symlinked_root(tmp_path):
    real = tmp_path / "real_models"
    real.mkdir()
    (tmp_path / "models").symlink_to(real, target_is_directory=True)
    assert safe_join(tmp_path / "models", "x.pt") == real.resolve() / "x.pt"


# -- hosts and URLs ------------------------------------------------------------------------

@pytest.mark.parametrize("host, ok", [
    ("civitai.com", True), ("CIVITAI.COM", True), ("civitai.com.", True),
    ("api.civitai.com", True), ("huggingface.co", True), ("cdn-lfs.huggingface.co", True),
    ("cas-bridge.xethub.hf.co", True), ("hf.co", True),
    ("bucket.r2.cloudflarestorage.com", True),
    ("evilcivitai.com", False), ("civitai.com.evil.org", False), ("huggingface.co.evil.org", False),
    ("xhuggingface.co", False), ("r2.cloudflarestorage.com.evil", False), ("", False), ("127.0.0.1", False),
])
def test_host_matches_defaults(host, ok):
    assert host_matches(host, DEFAULT_ALLOWED_HOSTS) is ok


def test_host_matches_custom_entries():
    assert host_matches("mirror.example", ["mirror.example"])
    assert not host_matches("sub.mirror.example", ["mirror.example"])  # no dot: exact only
    assert host_matches("sub.mirror.example", [".mirror.example"])
    assert host_matches("mirror.example", [".mirror.example"])
    assert not host_matches("x", ["", "  "])


@pytest.mark.parametrize("url", [
    "https://civitai.com/api/download/models/1",
    "https://huggingface.co/x/resolve/main/y.safetensors",
    "https://huggingface.co:443/x",
])
def test_check_url_accepts(url):
    assert check_url(url, DEFAULT_ALLOWED_HOSTS) == url


@pytest.mark.parametrize("url", [
    "", "   ", "ftp://civitai.com/x", "file:///etc/passwd", "javascript:alert(1)", "civitai.com/x",
    "https://", "https://user:pw@civitai.com/x", "https://civitai.com:99999/x", "https://civitai.com:port/x",
    "https://civitai.com/a b", "https://civitai.com/x\r\nHost: evil", "https://evil.com/x",
    "https://civitai.com@evil.com/x", "https://evil.com#@civitai.com", "https://evil.com\\@civitai.com/",
    "data:text/plain,hi",
    "http://huggingface.co/x/resolve/main/y.safetensors",  # a public hub over plain http
])
def test_check_url_rejects(url):
    with pytest.raises(HostNotAllowedError):
        check_url(url, DEFAULT_ALLOWED_HOSTS)


def test_check_url_without_allow_list_checks_form_only():
    assert check_url("http://127.0.0.1:8080/x") == "http://127.0.0.1:8080/x"
    with pytest.raises(HostNotAllowedError):
        check_url("gopher://127.0.0.1/x")


def test_check_url_error_is_redacted():
    with pytest.raises(HostNotAllowedError) as info:
        check_url("https://evil.com/x?token=supersecretvalue", DEFAULT_ALLOWED_HOSTS)
    assert "supersecretvalue" not in str(info.value.url)
    assert "supersecretvalue" not in str(info.value)


def test_same_origin():
    assert same_origin("https://a.com/x", "https://A.com:443/y")
    assert same_origin("http://127.0.0.1:81/x", "http://127.0.0.1:81")
    assert not same_origin("http://a.com/x", "https://a.com/x")
    assert not same_origin("https://a.com:8443/x", "https://a.com/x")
    assert not same_origin("https://b.a.com/x", "https://a.com/x")


# -- auth_headers_for ------------------------------------------------------------------------

@pytest.fixture
def tokens_config(make_config):
    return make_config(civitai_base_url="http://127.0.0.1:8001", hf_endpoint="http://127.0.0.1:8002",
                       civitai_token="civ-token-1234567", hf_token="hf_abcdefghijklmnopqrstuvwxyz")


def test_auth_headers_only_to_own_origin(tokens_config):
    c = tokens_config
    assert auth_headers_for("http://127.0.0.1:8001/api/v1/models", c) == {"Authorization": "Bearer civ-token-1234567"}
    assert auth_headers_for("http://127.0.0.1:8002/api/models", c) == {
        "Authorization": "Bearer hf_abcdefghijklmnopqrstuvwxyz"}
    for other in ("http://127.0.0.1:8003/x", "http://localhost:8001/x", "https://127.0.0.1:8001/x",
                  "http://127.0.0.2:8001/x", "http://127.0.0.1/x", "not a url", "http://127.0.0.1:bad/x"):
        assert auth_headers_for(other, c) == {}, other


def test_auth_headers_real_hosts(make_config):
    c = make_config(civitai_token="civ-token-1234567", hf_token="hf_abcdefghijklmnopqrstuvwxyz")
    assert auth_headers_for("https://civitai.com/api/download/models/1", c)["Authorization"].endswith("1234567")
    assert auth_headers_for("https://civitai.com:443/api/v1/models", c)  # explicit default port
    assert auth_headers_for("http://civitai.com/api/download/models/1", c) == {}  # never over plain http
    assert auth_headers_for("https://bucket.r2.cloudflarestorage.com/x", c) == {}  # signed redirect
    assert auth_headers_for("https://cdn-lfs.huggingface.co/x", c) == {}
    assert auth_headers_for("https://huggingface.co/x/resolve/main/y", c)["Authorization"].startswith("Bearer hf_")


def test_no_tokens_no_headers(make_config):
    assert auth_headers_for("https://civitai.com/api/v1/models", make_config()) == {}


# -- redaction ----------------------------------------------------------------------------

def test_redact_url():
    url = "https://u:p@civitai.com/api/download/models/1?type=Model&token=abc123&X-Amz-Signature=zz9"
    out = redact_url(url)
    assert "abc123" not in out and "zz9" not in out and "u:p" not in out
    assert "type=Model" in out and out.startswith("https://***@civitai.com/api/download/models/1")
    assert redact_url(None) is None and redact_url("") == ""


def test_redact_text_patterns():
    text = ("GET https://h/x?a=1&token=tok123456 Authorization: Bearer eyJhbGciOi.payload.sig "
            "hf_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345 https://alice:pa55word@host/p ?api_key=k3y&sig=s1g")
    out = redact_text(text)
    for secret in ("tok123456", "eyJhbGciOi", "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345", "pa55word", "k3y", "s1g"):
        assert secret not in out, secret
    assert "https://h/x?a=1" in out


def test_registered_secrets_are_removed_anywhere():
    register_secret("0123456789abcdef0123456789abcdef")
    register_secret("abc")  # too short to be a token: ignored (would wreck ordinary text)
    register_secret(None)
    out = redact_text("key=0123456789abcdef0123456789abcdef; json={\"k\": \"0123456789abcdef0123456789abcdef\"}; abc")
    assert "0123456789abcdef" not in out
    assert out.endswith("abc")


def test_config_registers_its_tokens(make_config):
    make_config(civitai_token="a-civitai-token-that-is-long")
    assert "a-civitai-token-that-is-long" not in redact_text("oops a-civitai-token-that-is-long leaked")
