"""Red-team tests of the network layer: each class of URL attack, in several variations, against
the URL policy itself and through the three real clients (search ``ApiClient``, the download
engine, huggingface_hub inside ``net.hf.hf_scope``), on the first URL and on a redirect hop.

Every server here listens on 127.0.0.1; names that must "resolve" elsewhere are answered by
a patched ``socket.getaddrinfo`` and connections to anything but 127.0.0.1 are refused by a
patched ``net.addresses.connect`` before a packet leaves.
"""

from __future__ import annotations

import socket
import string

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from comfyfixersmart.download import DownloadManager
from comfyfixersmart.errors import HostNotAllowedError
from comfyfixersmart.net import addresses
from comfyfixersmart.net.hf import hf_scope, hub
from comfyfixersmart.net.session import make_session
from comfyfixersmart.net.urls import UrlPolicy, check_url, parse_url, policy_for
from comfyfixersmart.search.http import ApiClient
from comfyfixersmart.search.huggingface import HuggingFaceBackend
from comfyfixersmart.settings import DEFAULT_ALLOWED_HOSTS, Config
from dlserver import FileServer, loopback_config, payload
from dlserver.fixtures import server  # noqa: F401

DEFAULTS = UrlPolicy.from_entries(DEFAULT_ALLOWED_HOSTS + ["b", "c", "evil.com", "mirror.example"])

# -- class 1: parser differentials and forms parsers read differently ------------------------

PARSER_TRICKS = [
    "http://169.254.169.254\\.hf.co/latest/meta-data/",     # backslash: requests connects to 169.254...
    "https://169.254.169.254\\@huggingface.co/x",
    "https://huggingface.co\\@169.254.169.254/x",
    "http://a@b@c/",                                       # two @: parsers split differently
    "https://user@huggingface.co/x",                       # any user info
    "https://:@huggingface.co/x",
    "https://huggingface.co@evil.com/x",
    "https://hugging\tface.co/x",                          # tab (urllib.parse strips it)
    "https://huggingface.co\n.evil.com/x",
    "https://huggingface.co/x\r\nHost: evil",
    "https://huggingface.co/\x00x",
    "https://huggingface.co\u3002evil.com/x",               # ideographic full stop: IDNA maps it to '.'
    "https://huggingface\uff0eco/x",                        # fullwidth dot
    "https://hu\u0261gingface.co/x",                        # non-ASCII look-alike
    "https://xn--huggingface-.co/x",                        # not a valid label
    "https://huggingface%2eco/x",                           # percent-encoded host
    "https://%68uggingface.co/x",
    "http://[fe80::1%25eth0]:8080/x",                       # IPv6 zone id
    "http://[fe80::1%eth0]/x",
    "http://2852039166/",                                   # decimal 169.254.169.254
    "http://0xa9fea9fe/",                                   # hex
    "http://0251.0376.0251.0376/",                          # octal
    "http://127.1/",                                        # short form
    "http://0177.0.0.1/",
    "http://127.0.0.1./",                                   # trailing dot
    "https://huggingface.co./x",
    "https://huggingface.co:99999/x",                       # bad ports
    "https://huggingface.co:0/x",
    "https://huggingface.co:+443/x",
    "https://huggingface.co: 443/x",
    "https:/huggingface.co/x",                              # no //
    "https:\\\\huggingface.co/x",
    "//huggingface.co/x",
    "ftp://huggingface.co/x",
    "file:///etc/passwd",
    "https://[::1/x",
    "https://huggingface.co\u200b/x",                       # zero-width space
    "https://huggingface.co\u202e/x",                       # bidi override
]


@pytest.mark.parametrize("url", PARSER_TRICKS)
def test_forms_parsers_disagree_on_are_refused_before_any_policy(url):
    with pytest.raises(HostNotAllowedError):
        parse_url(url)
    with pytest.raises(HostNotAllowedError):
        check_url(url, DEFAULTS)


@pytest.mark.parametrize("url", [
    "http://evil.com#@huggingface.co/x",          # '@' in the fragment: the host is evil.com
    "http://evil.com?@huggingface.co/x",
    "http://evil.com/@huggingface.co/x",
    "https://huggingface.co.evil.com/x",          # allowed name as a prefix
    "https://evilhuggingface.co/x",
    "https://huggingface.co-evil.com/x",
    "https://civitai.com.evil.com/x",
])
def test_lookalike_hosts_are_read_as_what_they_are_and_refused(url):
    parsed = parse_url(url)
    assert "evil" in parsed.host
    with pytest.raises(HostNotAllowedError):
        check_url(url, UrlPolicy.from_entries(DEFAULT_ALLOWED_HOSTS))


_TRICKY = st.text(alphabet=string.ascii_letters[:6] + string.digits[:3] + ".:@/\\#?%[]-_ \t\u3002\uff0e", max_size=24)


@given(_TRICKY, _TRICKY)
def test_an_accepted_url_means_the_same_host_to_every_connecting_parser(authority, rest):
    """Property: whatever check_url lets through, urllib3 and requests connect to the host and
    port the policy saw."""
    from requests.models import PreparedRequest
    from urllib3.util import parse_url as urllib3_parse

    url = f"http://{authority}/{rest}"
    try:
        parsed = parse_url(url)
    except HostNotAllowedError:
        return
    u3 = urllib3_parse(parsed.url)
    assert (u3.host or "").lower() == parsed.host  # the alphabet has no IPv6 literal that passes
    assert (u3.port or 80) == parsed.port
    prepared = PreparedRequest()
    prepared.prepare_url(parsed.url, None)
    assert requests.utils.urlparse(prepared.url).hostname == parsed.host


# -- class 2: plain http to a public hub ----------------------------------------------------------

@pytest.mark.parametrize("url", [
    "http://huggingface.co/acme/x/resolve/main/m.safetensors",
    "http://hf.co/acme/x/resolve/main/m.safetensors",
    "http://cas-bridge.xethub.hf.co/xet/abc",
    "http://cdn-lfs.huggingface.co/repos/x",
    "http://civitai.com/api/download/models/1",
    "http://civitai.red/api/download/models/1",
    "http://b2.civitai.com/file/x",
    "http://bucket.r2.cloudflarestorage.com/x",
    "http://huggingface.co:443/x",
])
def test_public_hubs_are_https_only(url):
    policy = UrlPolicy.from_entries(DEFAULT_ALLOWED_HOSTS + ["huggingface.co:80", "civitai.com:*"])
    with pytest.raises(HostNotAllowedError, match="https|not allowed"):
        check_url(url, policy)
    assert check_url(url.replace("http://", "https://", 1).replace(":443", ""), policy)


def test_a_configured_endpoint_keeps_its_scheme():
    config = Config(hf_endpoint="http://127.0.0.1:8124", civitai_base_url="http://127.0.0.1:8123")
    policy = policy_for(config)
    assert check_url("http://127.0.0.1:8124/api/models", policy)
    assert check_url("http://127.0.0.1:8123/api/v1/models", policy)
    with pytest.raises(HostNotAllowedError):
        check_url("https://127.0.0.1:8124/api/models", policy)  # another origin


# -- class 3: host without port ---------------------------------------------------------------

@pytest.mark.parametrize("url, ok", [
    ("http://localhost:8124/api/models", True),
    ("http://localhost:8188/api/settings", False),      # ComfyUI's own API on another port
    ("http://localhost/x", False),
    ("http://localhost:80/x", False),
    ("https://localhost:8124/x", False),
    ("http://127.0.0.1:8124/x", False),                 # another name for the same address
    ("http://[::1]:8124/x", False),
])
def test_an_endpoint_allows_its_own_port_only(url, ok):
    policy = policy_for(Config(hf_endpoint="http://localhost:8124"))
    if ok:
        assert check_url(url, policy) == url
    else:
        with pytest.raises(HostNotAllowedError):
            check_url(url, policy)


@pytest.mark.parametrize("entry, url, ok", [
    ("mirror.example", "https://mirror.example/x", True),
    ("mirror.example", "http://mirror.example/x", True),
    ("mirror.example", "https://mirror.example:8443/x", False),
    ("mirror.example:8443", "https://mirror.example:8443/x", True),
    ("mirror.example:8443", "https://mirror.example/x", False),
    ("mirror.example:*", "http://mirror.example:1234/x", True),
    (".mirror.example", "https://a.mirror.example/x", True),
    (".mirror.example", "https://a.mirror.example:444/x", False),
    ("http://mirror.example:81", "http://mirror.example:81/x", True),
    ("http://mirror.example:81", "https://mirror.example:81/x", False),
    ("[::1]:9000", "http://[::1]:9000/x", True),
    ("[::1]:9000", "http://[::1]:9001/x", False),
    ("huggingface.co:*", "http://huggingface.co:8080/x", False),   # a hub stays https-only
])
def test_allow_list_entries_match_host_and_port(entry, url, ok):
    policy = UrlPolicy.from_entries([entry])
    if ok:
        assert check_url(url, policy)
    else:
        with pytest.raises(HostNotAllowedError):
            check_url(url, policy)


# -- the clients: first URL and redirect hops -------------------------------------------------------

def _bad_targets(other: FileServer, endpoint_port: int):
    """Redirect targets each client must refuse (``other`` is a live server nothing may reach)."""
    return [
        other.url("/f", host="localhost"),                                # not allowed name
        f"http://127.0.0.1:{other.port}/f",                               # allowed name, other port
        f"http://169.254.169.254\\.hf.co:{other.port}/f",                 # backslash
        f"http://x@127.0.0.1:{endpoint_port}/f",                          # user info
        f"http://2130706433:{other.port}/f",                              # decimal IP
        f"http://huggingface.co:{other.port}/f",                          # hub over http
        "http://[::ffff:127.0.0.1]:%d/f" % other.port,
    ]


@pytest.fixture
def two_servers():
    with FileServer() as endpoint, FileServer() as other:
        other.add("/f", b'{"stolen": true}')
        yield endpoint, other


def _endpoint_config(make_config, endpoint: FileServer, **kw):
    return make_config(civitai_base_url=endpoint.url(""), hf_endpoint=endpoint.url(""), allowed_hosts=[],
                       http_retries=0, download_timeout=10, civitai_api_timeout=10, **kw)


@pytest.mark.parametrize("case", range(7))
def test_search_client_checks_every_redirect_hop(make_config, two_servers, case):
    endpoint, other = two_servers
    target = _bad_targets(other, endpoint.port)[case]
    endpoint.add("/api/v1/models", redirect=target)
    client = ApiClient(_endpoint_config(make_config, endpoint))
    try:
        with pytest.raises(HostNotAllowedError):
            client.get_json(endpoint.url("/api/v1/models"), {"query": "x"}, backend="civitai", use_cache=False)
    finally:
        client.close()
    assert other.requests == []


def test_search_client_still_follows_an_allowed_redirect(make_config, two_servers):
    endpoint, _ = two_servers
    endpoint.add("/api/v1/models", redirect="/api/v1/real")
    endpoint.add("/api/v1/real", b'{"items": []}')
    client = ApiClient(_endpoint_config(make_config, endpoint))
    try:
        assert client.get_json(endpoint.url("/api/v1/models"), backend="civitai", use_cache=False) == {"items": []}
    finally:
        client.close()


@pytest.mark.parametrize("case", range(7))
def test_download_client_checks_every_redirect_hop(make_config, two_servers, tmp_path, case):
    endpoint, other = two_servers
    target = _bad_targets(other, endpoint.port)[case]
    endpoint.add("/api/download/models/1", redirect=target)
    config = _endpoint_config(make_config, endpoint)
    with DownloadManager(config) as manager:
        result = manager.download_model(endpoint.url("/api/download/models/1"), tmp_path / "m.safetensors")
    assert not result.success and result.error_type == "HostNotAllowedError", result.error_message
    assert other.requests == []
    assert not (tmp_path / "m.safetensors").exists()


@pytest.mark.parametrize("url", PARSER_TRICKS[:12])
def test_download_client_refuses_the_first_url(make_config, two_servers, tmp_path, url):
    endpoint, _ = two_servers
    with DownloadManager(_endpoint_config(make_config, endpoint)) as manager:
        result = manager.download_model(url, tmp_path / "m.safetensors")
    assert not result.success and result.error_type == "HostNotAllowedError"


@pytest.mark.parametrize("url", PARSER_TRICKS[:12])
def test_search_client_refuses_the_first_url(make_config, two_servers, url):
    endpoint, _ = two_servers
    client = ApiClient(_endpoint_config(make_config, endpoint))
    try:
        with pytest.raises(HostNotAllowedError):
            client.get_json(url, backend="civitai", use_cache=False)
    finally:
        client.close()
    assert client.requests_sent <= 1 and endpoint.requests == []


@pytest.mark.parametrize("case", range(7))
def test_huggingface_hub_calls_check_every_redirect_hop(make_config, two_servers, case):
    endpoint, other = two_servers
    target = _bad_targets(other, endpoint.port)[case]
    endpoint.add("/api/models/acme/vae", redirect=target)
    config = _endpoint_config(make_config, endpoint)
    api = ApiClient(config)
    try:
        with pytest.raises(HostNotAllowedError):
            HuggingFaceBackend(config, api).repo_files("acme/vae")
    finally:
        api.close()
    assert other.requests == []


def test_huggingface_hub_outside_our_scope_is_left_alone(make_config, two_servers):
    """Another custom node's huggingface_hub calls keep the library's behaviour: our policy
    applies inside ``hf_scope`` only."""
    endpoint, other = two_servers
    config = _endpoint_config(make_config, endpoint)
    session = make_session(config)
    with hf_scope(session, config):
        with pytest.raises(HostNotAllowedError):
            hub().get_session().get(other.url("/f", host="localhost"))
    assert other.requests == []
    assert hub().get_session().get(other.url("/f", host="localhost"), timeout=10).status_code == 200
    assert len(other.requests) == 1
    session.close()


# -- class 4: connect-time address check -------------------------------------------------------------

PUBLIC_IP = "93.184.215.14"


@pytest.fixture
def resolver(monkeypatch):
    """Fake DNS for ``*.rebind.test`` (answers queued per name, last one repeated) and a connect
    that only ever reaches 127.0.0.1 (other addresses: refused, recorded)."""
    answers = {}
    calls = []
    connects = []
    ports = []
    real_gai = socket.getaddrinfo
    real_connect = addresses.connect

    def getaddrinfo(host, port, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".rebind.test"):
            queue = answers[host]
            ip = queue.pop(0) if len(queue) > 1 else queue[0]
            calls.append((host, ip))
            ips = ip if isinstance(ip, list) else [ip]
            return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                     (a, port) if ":" not in a else (a, port, 0, 0)) for a in ips]
        return real_gai(host, port, *args, **kwargs)

    def connect(found, *args, **kwargs):
        connects.append([sa[0] for _f, sa in found])
        ports.append(found[0][1][1])
        if any(sa[0] != "127.0.0.1" for _f, sa in found):
            raise ConnectionRefusedError("test: only 127.0.0.1 is reachable")
        return real_connect(found, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(addresses, "connect", connect)

    class R:
        pass

    r = R()
    r.answers, r.calls, r.connects, r.ports = answers, calls, connects, ports
    return r


@pytest.mark.parametrize("ip", ["127.0.0.1", "169.254.169.254", "10.0.0.5", "192.168.1.1", "172.16.0.1",
                                "0.0.0.0", "224.0.0.1", "100.64.0.1", "::1", "fe80::1", "::ffff:127.0.0.1",
                                "fc00::1", [PUBLIC_IP, "127.0.0.1"]])
def test_an_allowed_name_resolving_to_a_local_address_is_refused(make_config, server, resolver, ip):
    server.add("/f", b"secret")
    resolver.answers["cdn.rebind.test"] = [ip]
    config = make_config(allowed_hosts=[".rebind.test:*"], http_retries=0)
    with make_session(config) as session, pytest.raises(HostNotAllowedError, match="resolves to"):
        from comfyfixersmart.net.redirects import follow

        follow(session, f"http://cdn.rebind.test:{server.port}/f", config, timeout=10)
    assert server.requests == [] and resolver.connects == []


def test_the_exact_configured_host_and_port_may_be_local(make_config, server, resolver):
    server.add("/f", b"ok")
    resolver.answers["box.rebind.test"] = ["127.0.0.1"]
    config = make_config(allowed_hosts=[f"box.rebind.test:{server.port}"])
    from comfyfixersmart.net.redirects import follow

    with make_session(config) as session:
        followed = follow(session, f"http://box.rebind.test:{server.port}/f", config, stream=False, timeout=10)
        assert followed.response.content == b"ok"
    assert server.requests[0].header("Host") == f"box.rebind.test:{server.port}"  # the name is kept
    assert policy_for(config).may_be_local("box.rebind.test", server.port)
    assert not policy_for(config).may_be_local("box.rebind.test", server.port + 1)
    assert not policy_for(config).may_be_local("other.rebind.test", server.port)


def test_rebinding_between_lookups_cannot_reach_loopback(make_config, server, resolver):
    """First answer public, every later one 127.0.0.1: the address that was checked is the one
    connected to, and the later answers are refused; one lookup per connection."""
    server.add("/f", b"secret")
    resolver.answers["cdn.rebind.test"] = [PUBLIC_IP, "127.0.0.1"]
    config = make_config(allowed_hosts=[".rebind.test:*"], http_retries=0)
    from comfyfixersmart.net.redirects import follow

    url = f"http://cdn.rebind.test:{server.port}/f"
    with make_session(config) as session:
        with pytest.raises(requests.ConnectionError):
            follow(session, url, config, timeout=10)
        assert resolver.connects == [[PUBLIC_IP]]  # connected to the checked (public) address
        for _ in range(3):
            with pytest.raises(HostNotAllowedError):
                follow(session, url, config, timeout=10)
    assert [ip for _h, ip in resolver.calls] == [PUBLIC_IP, "127.0.0.1", "127.0.0.1", "127.0.0.1"]
    assert resolver.connects == [[PUBLIC_IP]] and server.requests == []


def test_a_redirect_hop_to_a_name_resolving_locally_is_refused_by_every_client(make_config, two_servers,
                                                                              resolver, tmp_path):
    endpoint, other = two_servers
    resolver.answers["cdn.rebind.test"] = ["127.0.0.1"]
    target = f"http://cdn.rebind.test:{other.port}/f"
    for path in ("/api/v1/models", "/api/download/models/1", "/api/models/acme/vae"):
        endpoint.add(path, redirect=target)
    config = _endpoint_config(make_config, endpoint).replace(allowed_hosts=[".rebind.test:*"])
    api = ApiClient(config)
    try:
        with pytest.raises(HostNotAllowedError):
            api.get_json(endpoint.url("/api/v1/models"), backend="civitai", use_cache=False)
        with pytest.raises(HostNotAllowedError):
            HuggingFaceBackend(config, api).repo_files("acme/vae")
    finally:
        api.close()
    with DownloadManager(config) as manager:
        result = manager.download_model(endpoint.url("/api/download/models/1"), tmp_path / "m.safetensors")
    assert result.error_type == "HostNotAllowedError"
    assert other.requests == [] and other.port not in resolver.ports
    assert set(resolver.ports) == {endpoint.port}


def test_a_loopback_endpoint_on_another_port_is_not_reachable_through_a_name(make_config, server, resolver):
    """``localhost`` vs the configured ``127.0.0.1:PORT``: neither the name nor the port match."""
    server.add("/f", b"x")
    config = loopback_config(make_config, allowed_hosts=[], hf_endpoint=f"http://127.0.0.1:{server.port + 1}")
    with DownloadManager(config) as manager:
        for url in (server.url("/f", host="localhost"), server.url("/f")):
            result = manager.download_model(url, config.output_dir / "x.bin")
            assert result.error_type == "HostNotAllowedError"
    assert server.requests == []


def test_proxies_from_the_environment_still_work(make_config, server, monkeypatch):
    """Through a proxy the target name is checked by the URL policy; the connection goes to
    the proxy (here a FileServer playing one), whose address is not checked."""
    server.add("http://files.example/m.bin", payload(10))
    server.resources["/m.bin"] = server.resources["http://files.example/m.bin"]
    monkeypatch.setenv("HTTP_PROXY", server.url(""))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    config = make_config(allowed_hosts=["files.example"])
    from comfyfixersmart.net.redirects import follow

    with make_session(config) as session:
        followed = follow(session, "http://files.example/m.bin", config, stream=False, timeout=10)
        assert followed.response.content == payload(10)
        with pytest.raises(HostNotAllowedError):  # the name is still checked
            follow(session, "http://other.example/m.bin", config, timeout=10)
    assert server.requests[0].path == "http://files.example/m.bin"
