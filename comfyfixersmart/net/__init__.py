"""The one network layer: every HTTP request of the library goes through here.

Entry points (import them from the submodules; this package imports nothing itself):

* ``net.session.make_session(config, purpose="api"|"download")``: the one session factory
  (connect-time address check built in, no env credentials).
* ``net.redirects.follow(session, url, config, method="GET"|"HEAD", params=, headers=,
  stream=, timeout=)``: a request with redirects followed hop by hop, each hop checked;
  returns ``Followed(response, url, hops)``.  For a HEAD check or an index refresh: this.
* ``net.session.send(...)``: one request, no redirect followed (URL policy + proxies).
* ``net.status.raise_for_status(response, url, backend=)`` / ``error_for_response(...)``:
  the one status -> exception map.
* ``net.retry``: ``call_with_retries`` (429/5xx/408 and network failures only, ``Retry-After``
  and HF ``RateLimit: ...;t=N`` honoured, exponential backoff), ``retry_after_seconds``,
  ``is_retryable``, ``HostHealth`` (fail fast on an unreachable host).
* ``net.urls.check_url(url, policy_for(config))``: the one URL policy (first URL and every
  hop): parser differentials, backslashes, control characters, user info, https for the
  public hubs, host **and** port rules.  ``url_allowed(url, config)`` for a yes/no.
* ``net.addresses.resolve_checked``: loopback/private/link-local/multicast addresses refused
  unless that exact host:port was configured (used by the session's connections).
* ``net.hf.hf_scope(session, config)``: huggingface_hub calls made inside go through the above.

Layering: ``urls`` imports only ``..errors`` (``security``/``settings`` use it); the rest
imports requests/urllib3 and may use ``..security`` (tokens, redaction).
"""
