"""What text the product stores: valid UTF-8 without control characters.

Lone surrogates cannot be encoded as UTF-8 (orjson, PostgreSQL and the disk all refuse
them) and PostgreSQL refuses NUL; the other control characters only ever hide or forge
text. The edge's request types and the WebSocket's send path both apply these rules.
"""

from __future__ import annotations

import re

_LINE_BAD = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_TEXT_BAD = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")  # \t and \n kept
_SURROGATE = re.compile("[\ud800-\udfff]")

LINE_RULE = "must be UTF-8 text without control characters"
TEXT_RULE = "must be UTF-8 text without control characters other than \\n and \\t"
UTF8_RULE = "must be valid UTF-8"


def _problem(pattern: re.Pattern[str], rule: str, value: str) -> str | None:
    found = pattern.search(value)
    if found is None:
        return None
    return f"{rule}; found U+{ord(found.group()):04X} at position {found.start()}"


def line_problem(value: str) -> str | None:
    """Why `value` is not one line of storable text (names, ids, tokens), or None."""
    return _problem(_LINE_BAD, LINE_RULE, value)


def text_problem(value: str) -> str | None:
    """Why `value` is not storable free text (message bodies: newlines and tabs kept)."""
    return _problem(_TEXT_BAD, TEXT_RULE, value)


def utf8_problem(value: str) -> str | None:
    """Why `value` cannot be encoded as UTF-8 (a lone surrogate), or None."""
    return _problem(_SURROGATE, UTF8_RULE, value)
