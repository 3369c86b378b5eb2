"""The one exception tree of ComfyFixerSmart.

    ComfyFixerError
    ├── ConfigurationError(ValueError)      a setting is wrong (names the setting)
    ├── WorkflowParseError(ValueError)      a workflow file cannot be read (path + reason)
    │   └── NotAWorkflowError               valid JSON / image, but no workflow in it
    ├── ValidationError(ValueError)         input data (a request, a name, a URL) is unacceptable
    │   ├── UnsafePathError                 a file name would escape its folder
    │   ├── NotAFileUrlError                a pasted URL is a page, not a file (repo root, user, search)
    │   └── ForeignHostError                a loopback server asked under a foreign Host (403, DNS rebinding)
    ├── APISearchError                      a search backend failed (status, url, server message)
    │   ├── NetworkError                    the host cannot be reached at all
    │   ├── RateLimitedError                429 after the retries (retry_after)
    │   ├── AuthRequiredError               401: a token / login is needed
    │   ├── AccessDeniedError               403: gated repo not approved, early access, ...
    │   │   ├── GatedRepoError              Hugging Face gated repo
    │   │   └── EarlyAccessError            Civitai early access (deadline)
    │   └── NotFoundError                   404 / 410
    ├── DownloadError(OSError)              a download failed
    │   ├── IntegrityError                  size or sha256 differ from what was promised
    │   ├── InsufficientSpaceError          not enough free disk for the file
    │   ├── HostNotAllowedError             a URL or resolved address the network policy refuses
    │   ├── FileExistsConflictError         target exists and overwrite was not asked for
    │   ├── DownloadCancelledError          the user cancelled
    │   ├── DownloadStalledError            no body bytes for stall_timeout s (after retries)
    │   └── NotAModelFileError              an HTML/JSON page or a bad header instead of a model
    └── StateError                          the state database cannot be used

Exceptions carry data as attributes (``status``, ``url``, ``path`` ...) so callers
(CLI exit codes, HTTP routes) can map them without parsing messages.  URLs stored
on exceptions are always redacted of credentials.
"""

from __future__ import annotations

from typing import Any, Optional


class ComfyFixerError(Exception):
    """Base of every error raised by ComfyFixerSmart."""

    #: short machine-readable kind, used by routes as ``{"error": {"type": ...}}``
    kind = "error"

    def to_dict(self) -> dict:
        """JSON-friendly description: ``{"type": ..., "message": ...}`` plus data attributes."""
        out: dict[str, Any] = {"type": type(self).__name__, "message": str(self)}
        for key in ("status", "url", "path", "setting", "retry_after", "help_url", "backend", "deadline"):
            value = getattr(self, key, None)
            if value is not None:
                out[key] = str(value) if key in ("path",) else value
        return out


class ConfigurationError(ComfyFixerError, ValueError):
    """A setting has a bad value; ``setting`` names it."""

    kind = "configuration"

    def __init__(self, setting: str, message: str):
        self.setting = setting
        super().__init__(f"invalid setting {setting!r}: {message}")


class WorkflowParseError(ComfyFixerError, ValueError):
    """A workflow cannot be parsed; carries ``path`` and ``reason``."""

    kind = "workflow"

    def __init__(self, path: Any, reason: str):
        self.path = None if path is None else str(path)
        self.reason = reason
        where = self.path if self.path else "<workflow>"
        super().__init__(f"{where}: {reason}")


class NotAWorkflowError(WorkflowParseError):
    """The file is readable (valid JSON, an image) but holds no ComfyUI workflow; a folder
    scan skips such files instead of failing."""


class ValidationError(ComfyFixerError, ValueError):
    """Input data is not acceptable."""

    kind = "validation"


class UnsafePathError(ValidationError):
    """A file name or path would leave the folder it must stay in."""


class NotAFileUrlError(ValidationError):
    """A pasted URL names a page that is not one file (a repo root, a folder, a user or search
    page); ``url`` is the (redacted) URL."""

    def __init__(self, message: str, *, url: Optional[str] = None):
        self.url = url
        super().__init__(message)


class APISearchError(ComfyFixerError):
    """A search backend failed.  ``status``/``url``/``backend`` when known."""

    kind = "search"

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        url: Optional[str] = None,
        backend: Optional[str] = None,
        help_url: Optional[str] = None,
    ):
        self.status = status
        self.url = url
        self.backend = backend
        self.help_url = help_url
        super().__init__(message)


class NetworkError(APISearchError):
    """The remote host could not be reached (DNS, refused, timeout)."""


class RateLimitedError(APISearchError):
    """429 persisted after the retries; ``retry_after`` in seconds when the server said."""

    def __init__(self, message: str, *, retry_after: Optional[float] = None, **kw: Any):
        self.retry_after = retry_after
        super().__init__(message, **kw)


class AuthRequiredError(APISearchError):
    """401: the resource needs a token or a logged-in account."""


class AccessDeniedError(APISearchError):
    """403: the account may not access this resource."""


class GatedRepoError(AccessDeniedError):
    """A Hugging Face gated repo: accept the licence on ``help_url`` and set HF_TOKEN."""


class EarlyAccessError(AccessDeniedError):
    """A Civitai early-access model version."""


class NotFoundError(APISearchError):
    """404/410: the model, version or file does not exist (any more)."""


class DownloadError(ComfyFixerError, OSError):
    """A download failed; ``url`` (redacted) and ``path`` when known."""

    kind = "download"

    def __init__(
        self,
        message: str,
        *,
        url: Optional[str] = None,
        path: Any = None,
        status: Optional[int] = None,
    ):
        self.url = url
        self.path = None if path is None else str(path)
        self.status = status
        OSError.__init__(self, message)

    def __str__(self) -> str:  # OSError's str would show the args tuple
        return self.args[0] if self.args else ""


class IntegrityError(DownloadError):
    """Size or sha256 of the downloaded bytes differ from the expected ones."""


class InsufficientSpaceError(DownloadError):
    """Not enough free disk space for the file."""


class HostNotAllowedError(DownloadError):
    """The URL's scheme is not http(s) or its host is not on the allow-list."""


class FileExistsConflictError(DownloadError):
    """The target exists and ``overwrite`` was not requested."""


class DownloadCancelledError(DownloadError):
    """The download was cancelled by the user."""


class DownloadStalledError(DownloadError):
    """The server sent no body bytes for ``stall_timeout`` seconds (retried with Range,
    raised when the retries are used up)."""


class NotAModelFileError(DownloadError):
    """The server answered something that is not the model file asked for (an HTML login
    or error page, a JSON message, a file whose header is not that of its format)."""


class StateError(ComfyFixerError):
    """The state database cannot be opened or written."""

    kind = "state"


__all__ = [
    "ComfyFixerError",
    "ConfigurationError",
    "WorkflowParseError",
    "NotAWorkflowError",
    "ValidationError",
    "UnsafePathError",
    "NotAFileUrlError",
    "APISearchError",
    "NetworkError",
    "RateLimitedError",
    "AuthRequiredError",
    "AccessDeniedError",
    "GatedRepoError",
    "EarlyAccessError",
    "NotFoundError",
    "DownloadError",
    "IntegrityError",
    "InsufficientSpaceError",
    "HostNotAllowedError",
    "FileExistsConflictError",
    "DownloadCancelledError",
    "DownloadStalledError",
    "NotAModelFileError",
    "StateError",
]


# -- background jobs (ComfyUI panel) ------------------------------------------------------------

class JobNotFoundError(ComfyFixerError, LookupError):
    """No job, or no item in the job, has this id (HTTP 404)."""

    kind = "job"


class JobConflictError(ComfyFixerError):
    """The job or item is in a state that does not allow the request, e.g. retrying a
    running row (HTTP 409)."""

    kind = "job"


class JobInterruptedError(DownloadError):
    """A job was cut off by a restart of the server; retrying the item resumes it."""


__all__ += ["JobNotFoundError", "JobConflictError", "JobInterruptedError"]


class RequestTooLargeError(ValidationError):
    """A request body is larger than the server accepts (HTTP 413)."""


class LowConfidenceError(APISearchError):
    """Candidates exist but none is sure enough to download without asking the user."""


__all__ += ["RequestTooLargeError", "LowConfidenceError"]


class UnsupportedMediaTypeError(ValidationError):
    """A request body is not ``application/json`` (HTTP 415).  Refusing the types an HTML form
    or a "simple" cross-site request can send makes a browser ask the server first (CORS)."""


__all__ += ["UnsupportedMediaTypeError"]


class ResolveCancelledError(ComfyFixerError):
    """Resolving was cancelled (a fix job's Cancel): no further hub lookup was started."""

    kind = "job"


__all__ += ["ResolveCancelledError"]


class ForeignHostError(ValidationError):
    """A request to a server listening on loopback names a foreign ``Host`` (HTTP 403): a page
    of another site reaching it through DNS rebinding."""


__all__ += ["ForeignHostError"]
