"""Text that is safe to show on a terminal: no escape sequences, controls or bidi overrides.

A workflow is untrusted content: a file name holding ``ESC ] 52`` (OSC 52) would write the
clipboard, a CSI sequence would move the cursor, a C1 byte or a right-to-left override would
disguise a name.  ``strip_controls`` removes them from a value before it is printed;
``escape_json_controls`` keeps ``--json`` output lossless by writing them as ``\\uXXXX``.
"""

from __future__ import annotations

import re

#: whole escape sequences: CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST), DCS/SOS/PM/APC
#: (ESC P|X|^|_ ... ST), and two-character escapes
_ESCAPES = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]?|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[PX^_][^\x1b]*(?:\x1b\\)?|[ -~])?",
    re.S,
)
#: C0 controls but tab and newline, DEL, C1 controls, and the bidirectional formatting
#: characters (LRM/RLM, ALM, embeddings, overrides, isolates)
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
#: what JSON text may carry raw but a terminal would act on (C0 is already escaped by json)
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def strip_controls(text: str) -> str:
    """``text`` without escape sequences, control characters (tab and newline kept) or bidi
    formatting characters."""
    return _CONTROLS.sub("", _ESCAPES.sub("", text))


def escape_json_controls(json_text: str) -> str:
    """JSON text with DEL, C1 and bidi characters written as ``\\uXXXX`` (same data)."""
    return _JSON_UNSAFE.sub(lambda m: "\\u%04x" % ord(m.group()), json_text)


__all__ = ["escape_json_controls", "strip_controls"]
