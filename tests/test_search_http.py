"""The HTTP layer: status mapping, retries and backoff, timeouts, the cache, token handling.
Everything goes through requests to the fake hub on loopback."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from comfyfixersmart.errors import (
    AccessDeniedError,
    APISearchError,
    AuthRequiredError,
    EarlyAccessError,
    GatedRepoError,
    NetworkError,
    NotFoundError,
    RateLimitedError,
)
from comfyfixersmart.search.cache import MISS, ResponseCache
from comfyfixersmart.search.http import ApiClient, error_for_response, retry_after_seconds
from fakehub.fixtures import config_for_hub, fake_hub, hub_config  # noqa: F401


# -- pure mapping ---------------------------------------------------------------------------

@pytest.mark.parametrize("status, headers, body, expected", [
    (401, {"X-Error-Code": "GatedRepo"}, "", GatedRepoError),
    (403, {"X-Error-Code": "GatedRepo"}, "", GatedRepoError),
    (404, {"X-Error-Code": "RepoNotFound"}, "", NotFoundError),
    (401, {"X-Error-Code": "RepoNotFound"}, "", NotFoundError),
    (404, {"X-Error-Code": "EntryNotFound"}, "", NotFoundError),
    (401, {}, '{"error":"Unauthorized","message":"log in"}', AuthRequiredError),
    (403, {}, '{"error":"Early Access","deadline":"2030-01-01T00:00:00Z"}', EarlyAccessError),
    (403, {}, '{"error":"Forbidden"}', AccessDeniedError),
    (404, {}, '{"error":"Model not found"}', NotFoundError),
    (410, {}, '{"error":"Model archived"}', NotFoundError),
    (429, {"Retry-After": "7"}, "", RateLimitedError),
    (503, {}, "<html>down</html>", APISearchError),
    (400, {}, '{"error":"bad"}', APISearchError),
])
def test_error_for_response(status, headers, body, expected):
    exc = error_for_response(status, headers=headers, body=body, url="http://h/x?token=SECRET", backend="civitai",
                             help_url="http://h/page")
    assert type(exc) is expected
    assert exc.status == status and exc.backend == "civitai" and exc.help_url == "http://h/page"
    assert "SECRET" not in (exc.url or "") and "SECRET" not in str(exc)
    data = exc.to_dict()
    assert data["type"] == expected.__name__


def test_messages_say_what_to_do():
    gated = error_for_response(403, headers={"X-Error-Code": "GatedRepo"}, backend="huggingface",
                               help_url="https://huggingface.co/a/b")
    assert "HF_TOKEN" in str(gated) and "https://huggingface.co/a/b" in str(gated)
    auth = error_for_response(401, body='{"error":"Unauthorized"}', backend="civitai")
    assert "CIVITAI_API_TOKEN" in str(auth)
    early = error_for_response(403, body='{"error":"Early Access","deadline":"2030-01-01"}', backend="civitai")
    assert "2030-01-01" in str(early) and early.deadline == "2030-01-01"
    assert error_for_response(429, headers={"Retry-After": "7"}).retry_after == 7.0


def test_retry_after_forms():
    assert retry_after_seconds({"Retry-After": "3"}) == 3.0
    assert retry_after_seconds({"retry-after": "0.5"}) == 0.5
    later = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= retry_after_seconds({"Retry-After": later}) <= 31
    assert retry_after_seconds({"RateLimit": '"api";r=0;t=55'}) == 55.0
    assert retry_after_seconds({"RateLimit": '"api";r=12;t=55'}) is None  # not exhausted
    assert retry_after_seconds({}) is None


# -- against the fake hub -------------------------------------------------------------------

class Recorder:
    def __init__(self):
        self.waits = []

    def __call__(self, seconds):
        self.waits.append(seconds)


@pytest.fixture
def client(hub_config):
    c = ApiClient(hub_config, ResponseCache.for_config(hub_config))
    c.sleep = Recorder()
    yield c
    c.close()
    c.cache.close()


def _models_url(hub):
    return f"{hub.civitai_url}/api/v1/models"


def test_retries_on_503_then_succeeds(fake_hub, client):
    fake_hub.inject("/api/v1/models", 503, times=2, body="<html>busy</html>")
    assert client.get_json(_models_url(fake_hub), backend="civitai")["items"] == []
    assert fake_hub.request_count("/api/v1/models") == 3
    waits = client.sleep.waits
    assert len(waits) == 2 and waits[1] > waits[0] * 1.2  # exponential (jitter is +-20 %)


def test_429_retry_after_is_honoured(fake_hub, client):
    fake_hub.inject("/api/v1/models", 429, headers={"Retry-After": "0.15"})
    client.get_json(_models_url(fake_hub), backend="civitai")
    assert client.sleep.waits == [0.15]


def test_hf_ratelimit_header_longer_than_backoff_max_is_not_waited(fake_hub, client):
    fake_hub.inject("/api/v1/models", 429, headers={"RateLimit": '"api";r=0;t=55'}, times=None)
    with pytest.raises(RateLimitedError) as info:
        client.get_json(_models_url(fake_hub), backend="civitai")
    assert info.value.retry_after == 55.0
    assert fake_hub.request_count("/api/v1/models") == 1 and client.sleep.waits == []


def test_429_without_retry_after_backs_off_then_gives_up(fake_hub, client):
    fake_hub.inject("/api/v1/models", 429, times=None)
    with pytest.raises(RateLimitedError):
        client.get_json(_models_url(fake_hub), backend="civitai")
    assert fake_hub.request_count("/api/v1/models") == client.config.http_retries + 1
    assert len(client.sleep.waits) == client.config.http_retries


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_no_retry_on_other_4xx(fake_hub, client, status):
    fake_hub.inject("/api/v1/models", status, body={"error": "nope"})
    with pytest.raises(APISearchError) as info:
        client.get_json(_models_url(fake_hub), backend="civitai")
    assert info.value.status == status
    assert fake_hub.request_count("/api/v1/models") == 1


def test_malformed_json_is_a_clear_error_and_not_cached(fake_hub, client):
    fake_hub.inject("/api/v1/models", 200, body=b"{not json")
    with pytest.raises(APISearchError, match="malformed JSON"):
        client.get_json(_models_url(fake_hub), backend="civitai")
    assert client.get_json(_models_url(fake_hub), backend="civitai")["items"] == []


def test_slow_answer_times_out_as_network_error(fake_hub, tmp_path):
    config = config_for_hub(fake_hub, tmp_path, civitai_api_timeout=1, http_retries=0)
    fake_hub.inject("/api/v1/models", delay=2.5)
    client = ApiClient(config)
    started = time.monotonic()
    with pytest.raises(NetworkError, match="timed out"):
        client.get_json(_models_url(fake_hub), backend="civitai")
    assert time.monotonic() - started < 2.4


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_host_fails_fast_after_first_failure(make_config):
    config = make_config(civitai_base_url=f"http://127.0.0.1:{_closed_port()}")
    client = ApiClient(config)
    client.sleep = Recorder()
    with pytest.raises(NetworkError, match="cannot reach"):
        client.get_json(config.civitai_api_base + "/models", backend="civitai")
    sent = client.requests_sent
    with pytest.raises(NetworkError, match="unreachable"):
        client.get_json(config.civitai_api_base + "/models/1", backend="civitai")
    assert client.requests_sent == sent  # no new connection attempt


def test_cache_makes_second_call_free_and_404_is_negative(fake_hub, client):
    url = _models_url(fake_hub)
    client.get_json(url, {"query": "x"}, backend="civitai")
    client.get_json(url, {"query": "x"}, backend="civitai")
    assert fake_hub.request_count("/api/v1/models") == 1
    missing = f"{fake_hub.civitai_url}/api/v1/models/424242"
    for _ in range(2):
        with pytest.raises(NotFoundError):
            client.get_json(missing, backend="civitai")
    assert fake_hub.request_count("/api/v1/models/424242") == 1


def test_auth_failures_are_never_cached(fake_hub, client):
    fake_hub.inject("/api/v1/models/7", 401, body={"error": "Unauthorized"})
    url = f"{fake_hub.civitai_url}/api/v1/models/7"
    with pytest.raises(AuthRequiredError):
        client.get_json(url, backend="civitai")
    with pytest.raises(NotFoundError):  # the real answer, asked again
        client.get_json(url, backend="civitai")
    assert fake_hub.request_count("/api/v1/models/7") == 2


def test_token_goes_only_to_its_own_host_as_header(fake_hub, tmp_path):
    config = config_for_hub(fake_hub, tmp_path, civitai_token="civ-SECRET-1", hf_token="hf_SECRETSECRETSECRETSECRET")
    client = ApiClient(config)
    client.get_json(f"{fake_hub.civitai_url}/api/v1/models", backend="civitai")
    client.get_json(f"{fake_hub.hf_url}/api/models", backend="huggingface")
    (civ,) = fake_hub.find_requests(listener="civitai")
    (hf,) = fake_hub.find_requests(listener="hf")
    assert civ.authorization == "Bearer civ-SECRET-1" and "SECRET" not in civ.query
    assert hf.authorization == "Bearer hf_SECRETSECRETSECRETSECRET"
    assert "User-Agent" in civ.headers and "ComfyFixerSmart" in civ.headers["User-Agent"]


def test_error_messages_and_urls_carry_no_token(fake_hub, tmp_path, caplog):
    config = config_for_hub(fake_hub, tmp_path, civitai_token="civ-TOPSECRET", http_retries=1)
    fake_hub.inject("/api/v1/models", 503, times=None, body={"error": "echo Bearer civ-TOPSECRET"})
    client = ApiClient(config)
    client.sleep = Recorder()
    with caplog.at_level("DEBUG", logger="comfyfixersmart"):
        with pytest.raises(APISearchError) as info:
            client.get_json(f"{fake_hub.civitai_url}/api/v1/models?token=civ-TOPSECRET", backend="civitai")
    assert "civ-TOPSECRET" not in str(info.value) and "civ-TOPSECRET" not in str(info.value.to_dict())
    assert "civ-TOPSECRET" not in caplog.text


# -- the cache on its own -------------------------------------------------------------------

def test_cache_ttl_and_negative_ttl(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite3", ttl=100, negative_ttl=10)
    now = [1000.0]
    cache.clock = lambda: now[0]
    cache.put("a", {"x": 1})
    cache.put("n", None, ttl=cache.negative_ttl)
    assert cache.get("a") == {"x": 1} and cache.get("n") is None
    now[0] += 50
    assert cache.get("a") == {"x": 1} and cache.get("n") is MISS
    now[0] += 60
    assert cache.get("a") is MISS
    assert cache.purge_expired() == 2


def test_cache_survives_a_reopen_and_can_be_disabled(tmp_path):
    ResponseCache(tmp_path / "c.sqlite3").put("k", [1, 2])
    assert ResponseCache(tmp_path / "c.sqlite3").get("k") == [1, 2]
    off = ResponseCache(tmp_path / "c.sqlite3", enabled=False)
    assert off.get("k") is MISS
    off.put("k2", 1)
    assert ResponseCache(tmp_path / "c.sqlite3").get("k2") is MISS


def test_corrupt_cache_file_turns_the_cache_off_instead_of_failing(tmp_path):
    path = tmp_path / "c.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    cache = ResponseCache(path)
    cache.put("k", 1)
    assert cache.get("k") is MISS and cache.enabled is False


def test_cache_is_thread_safe(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite3")

    def worker(n):
        for i in range(50):
            cache.put(f"{n}-{i}", i)
            assert cache.get(f"{n}-{i}") == i

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) == 400


def test_concurrent_identical_requests_share_one_fetch(fake_hub, client):
    fake_hub.latency = 0.2
    url = _models_url(fake_hub)
    results = []
    threads = [threading.Thread(target=lambda: results.append(client.get_json(url, backend="civitai")))
               for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6 and all(r == results[0] for r in results)
    assert fake_hub.request_count("/api/v1/models") == 1
