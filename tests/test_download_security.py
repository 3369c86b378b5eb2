"""Tokens, redirects, allow-list and hostile file names."""

from __future__ import annotations

import hashlib
import logging

import pytest

from comfyfixersmart.download import DownloadManager
from comfyfixersmart.download.http import filename_from_disposition, safe_server_filename
from comfyfixersmart.errors import UnsafePathError
from dlserver import FileServer, loopback_config, payload
from dlserver.fixtures import dest, server  # noqa: F401

TOKEN = "civitai-secret-token-0123456789"
HF_TOKEN = "hf_abcdefghijklmnopqrstuvwxyz0123"




def civitai_config(make_config, server, **kw):
    return loopback_config(make_config, civitai_base_url=f"http://127.0.0.1:{server.port}", civitai_token=TOKEN,
                           hf_endpoint="http://hf.invalid", hf_token=HF_TOKEN, **kw)


def test_token_goes_to_its_host_and_is_dropped_on_cross_host_redirect(server, make_config, dest, caplog):
    data = payload(2000)
    # Civitai answers 307 to signed storage on another host (here: "localhost" vs 127.0.0.1)
    server.add("/api/download/models/1", redirect=server.url("/storage/m.safetensors?sig=abc", host="localhost"))
    server.add("/storage/m.safetensors", data)
    caplog.set_level(logging.DEBUG, logger="comfyfixersmart")
    with DownloadManager(civitai_config(make_config, server)) as m:
        result = m.download_model(server.url("/api/download/models/1"), dest / "m.safetensors",
                                  expected_sha256=hashlib.sha256(data).hexdigest())
        history = m.state.get_download_history()
    assert result.success, result.error_message
    first, second = server.requests
    assert first.host == "127.0.0.1" and first.header("Authorization") == f"Bearer {TOKEN}"
    assert second.host == "localhost" and second.header("Authorization") is None
    # the token is nowhere: result, state, logs, URLs
    assert TOKEN not in repr(result) and TOKEN not in repr(history)
    assert TOKEN not in caplog.text
    assert all(TOKEN not in r.path for r in server.requests)


def test_same_host_other_port_gets_no_token(make_config, dest):
    data = payload(100)
    with FileServer() as civitai, FileServer() as other:
        civitai.add("/d", redirect=other.url("/f"))
        other.add("/f", data)
        cfg = civitai_config(make_config, civitai)
        with DownloadManager(cfg) as m:
            assert m.download_model(civitai.url("/d"), dest / "f.safetensors").success
        assert civitai.requests[0].header("Authorization") == f"Bearer {TOKEN}"
        assert other.requests[0].header("Authorization") is None


def test_caller_credentials_do_not_follow_a_redirect_to_another_origin(server, make_config, dest):
    server.add("/a", redirect=server.url("/b", host="localhost"))
    server.add("/b", payload(10))
    with DownloadManager(loopback_config(make_config)) as m:
        r = m.download_model(server.url("/a"), dest / "b.safetensors",
                             headers={"Authorization": "Bearer caller-secret", "Cookie": "s=1", "X-Trace": "1"})
    assert r.success
    a, b = server.requests
    assert a.header("Authorization") == "Bearer caller-secret" and a.header("Cookie") == "s=1"
    assert b.header("Authorization") is None and b.header("Cookie") is None and b.header("X-Trace") == "1"


def test_no_token_for_hosts_that_are_not_the_endpoints(server, make_config, dest):
    server.add("/f", payload(10))
    cfg = loopback_config(make_config, civitai_token=TOKEN, hf_token=HF_TOKEN)  # endpoints stay the real hosts
    with DownloadManager(cfg) as m:
        assert m.download_model(server.url("/f"), dest / "f.safetensors").success
    assert server.requests[0].header("Authorization") is None


def test_first_url_host_must_be_allowed(server, make_config, dest):
    server.add("/f", payload(10))
    with DownloadManager(make_config(allowed_hosts=["civitai.com"])) as m:
        r = m.download_model(server.url("/f"), dest / "f.safetensors")
    assert r.error_type == "HostNotAllowedError" and "COMFYFIXER_ALLOWED_HOSTS" in r.error_message
    assert server.requests == [] and list(dest.iterdir()) == []


def test_every_redirect_hop_is_checked(server, make_config, dest):
    server.add("/a", redirect="http://evil.invalid/x")
    with DownloadManager(loopback_config(make_config)) as m:
        r = m.download_model(server.url("/a"), dest / "x.safetensors")
    assert r.error_type == "HostNotAllowedError" and "evil.invalid" in r.error_message
    assert list(dest.iterdir()) == []


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x", "http://user:pw@127.0.0.1/x", ""])
def test_only_plain_http_urls(make_config, dest, url):
    with DownloadManager(loopback_config(make_config)) as m:
        r = m.download_model(url, dest / "x.safetensors")
    assert not r.success and r.error_type == "HostNotAllowedError"
    assert "pw" not in (r.url or "") and "pw" not in r.error_message


def test_redirect_to_a_non_http_scheme_is_refused(server, make_config, dest):
    server.add("/a", redirect="file:///etc/passwd")
    with DownloadManager(loopback_config(make_config)) as m:
        r = m.download_model(server.url("/a"), dest / "x.safetensors")
    assert r.error_type == "HostNotAllowedError"


def test_secret_query_parameters_are_redacted_from_results(server, make_config, dest):
    server.add("/f", payload(10))
    with DownloadManager(loopback_config(make_config)) as m:
        r = m.download_model(server.url("/f?token=querysecret123"), dest / "f.safetensors")
        history = m.state.get_download_history()
    assert r.success
    assert "querysecret123" not in repr(r) and "querysecret123" not in repr(history)


@pytest.mark.parametrize("disposition,expected", [
    ('attachment; filename="../../etc/passwd"', "passwd"),
    ('attachment; filename="/etc/shadow"', "shadow"),
    ("attachment; filename*=UTF-8''..%2F..%2Fevil.safetensors", "evil.safetensors"),
    ('attachment; filename="C:\\Windows\\system32\\x.dll"', "x.dll"),
    ('attachment; filename="CON.safetensors"', "_CON.safetensors"),
    ('attachment; filename="a\x01b.safetensors"', "a_b.safetensors"),
    ('attachment; filename="model:v2?.safetensors"', "model_v2_.safetensors"),
    ('attachment; filename="realistic.safetensors"', "realistic.safetensors"),
])
def test_hostile_content_disposition_is_sanitised_inside_the_folder(server, make_config, dest, disposition,
                                                                    expected):
    server.add("/api/download/models/5", redirect=server.url("/s/blob"))
    server.add("/s/blob", payload(100), disposition=disposition)
    with DownloadManager(loopback_config(make_config)) as m:
        r = m.download_model(server.url("/api/download/models/5"), str(dest) + "/")
    assert r.success, r.error_message
    saved = dest / expected
    assert r.save_path == str(saved) and saved.is_file()
    assert [p.name for p in dest.iterdir()] == [expected]


@pytest.mark.parametrize("disposition", ['attachment; filename=".."', 'attachment; filename="/"',
                                         'attachment; filename="  "'])
def test_unusable_server_names_are_refused(server, make_config, dest, disposition):
    server.add("/x/", payload(100), disposition=disposition)
    with DownloadManager(loopback_config(make_config)) as m:
        r = m.download_model(server.url("/x/"), dest)
    assert not r.success and r.error_type == "UnsafePathError"
    assert list(dest.iterdir()) == []


def test_nul_in_server_name_is_refused_or_replaced():
    assert safe_server_filename("a\x00b.safetensors") == "a_b.safetensors"
    with pytest.raises(UnsafePathError):
        safe_server_filename("")
    assert filename_from_disposition("attachment; filename*=UTF-8''caf%C3%A9.safetensors") == "café.safetensors"


def test_download_models_refuses_escaping_names(server, make_config, tmp_path):
    server.add("/f", payload(10))
    out = tmp_path / "models"
    with DownloadManager(loopback_config(make_config)) as m:
        results = m.download_models([
            {"url": server.url("/f"), "filename": "../../escape.safetensors", "directory": "loras"},
            {"url": server.url("/f"), "filename": "ok.safetensors", "directory": "../loras"},
            {"url": server.url("/f"), "filename": "/abs.safetensors", "directory": "loras"},
            {"url": server.url("/f"), "filename": "nul.safetensors", "directory": "loras"},
        ], out)
    assert [r.error_type for r in results] == ["UnsafePathError"] * 4
    assert server.requests == []
    assert not (tmp_path / "escape.safetensors").exists()


def test_pickle_formats_are_flagged(server, make_config, dest):
    server.add("/f", payload(10))
    events = []
    with DownloadManager(loopback_config(make_config)) as m:
        r = m.download_model(server.url("/f"), dest / "model.ckpt", on_event=events.append)
        s = m.download_model(server.url("/f"), dest / "model.safetensors")
    assert r.success and any("pickle" in w for w in r.warnings)
    assert any("pickle" in w for w in events[-1].warnings)
    assert s.warnings == []
