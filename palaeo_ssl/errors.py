"""Errors that carry a message meant for the user.

A :class:`UserError` says what went wrong *and what to do about it*. The
command line prints its message (without a traceback) and exits with code 2;
Python callers can catch it like any other exception.
"""

from __future__ import annotations


def one_line(text: str) -> str:
    """``text`` on one line: line breaks and other control characters shown as escapes (``\\n``), as
    ``repr`` shows them, so that a message quoting a value with a newline or a terminal escape is still one
    line of plain text. Every other character (non-ASCII included) is kept."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in str(text))


class UserError(Exception):
    """Bad input or environment that the user can fix (exit code 2 on the CLI)."""

    exit_code = 2


class ModelLoadError(UserError):
    """A model id or folder could not be resolved, downloaded or loaded.

    ``kind`` says why, for callers that act on it (``palaeo-ssl demo`` falls back to random
    weights): ``"offline"`` (no network or ``HF_HUB_OFFLINE=1``, and no cached copy),
    ``"gated"`` (licence not accepted), ``"token"`` (no or an invalid token), ``"not_found"``
    (no such folder or model) or ``"other"``. ``reason`` is the why in a few words
    (the message itself by default).
    """

    def __init__(self, message: str, kind: str = "other", reason: str | None = None):
        super().__init__(message)
        self.kind = kind
        self.reason = reason or message
