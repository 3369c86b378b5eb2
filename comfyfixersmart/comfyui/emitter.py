"""Websocket events to the page through ComfyUI's PromptServer."""

from __future__ import annotations

from typing import Any, Dict

from ..logs import get_logger

log = get_logger(__name__)


class PromptServerEmitter:
    """``emit(event, data)`` for the job manager: ``PromptServer.instance.send_sync``.

    ``send_sync`` hands the message to the server's loop with ``call_soon_threadsafe``, so
    download threads may call this directly.  No ``sid``: every open page sees the jobs.
    """

    def __init__(self, prompt_server: Any):
        self._server = prompt_server

    def __call__(self, event: str, data: Dict[str, Any]) -> None:
        self._server.send_sync(event, data)
