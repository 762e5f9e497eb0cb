"""Errors that carry a message meant for the user.

A :class:`UserError` says what went wrong *and what to do about it*. The
command line prints its message (without a traceback) and exits with code 2;
Python callers can catch it like any other exception.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input or environment that the user can fix (exit code 2 on the CLI)."""

    exit_code = 2


class ModelLoadError(UserError):
    """A model id or folder could not be resolved, downloaded or loaded."""
