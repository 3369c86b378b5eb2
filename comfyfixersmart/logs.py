"""Logging: ``get_logger`` returns loggers whose records never carry a secret.

A filter on the ``comfyfixersmart`` logger redacts registered secrets (tokens), bearer
headers, ``token=``/``key=`` query parameters and user:password in URLs from every
message and argument before any handler sees them.
"""

from __future__ import annotations

import logging
import threading
from typing import Optional

from .security import redact_text, register_secret

ROOT_NAME = "comfyfixersmart"
_lock = threading.Lock()
_installed = False


class RedactingFilter(logging.Filter):
    """Rewrites a record's message so that no known secret survives."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not kill logging
            message = str(record.msg)
        record.msg = redact_text(message)
        record.args = None
        # Handlers format the traceback later, unfiltered; format it here, redacted, and
        # Formatter.format() reuses exc_text instead of formatting exc_info again.
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


def get_logger(name: Optional[str] = None) -> logging.Logger:
    """A logger under ``comfyfixersmart`` with secret redaction installed."""
    global _installed
    root = logging.getLogger(ROOT_NAME)
    if not _installed:
        with _lock:
            if not _installed:
                root.addFilter(RedactingFilter())
                root.addHandler(logging.NullHandler())
                _installed = True
    if not name or name == ROOT_NAME:
        return root
    if not name.startswith(ROOT_NAME + "."):
        name = f"{ROOT_NAME}.{name}"
    logger = logging.getLogger(name)
    # filters on a parent logger do not apply to records of children: add one to each
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
    return logger


__all__ = ["get_logger", "register_secret", "RedactingFilter"]
