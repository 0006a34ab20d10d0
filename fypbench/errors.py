"""User-facing errors: one line, naming the file/field, exit code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """Bad input from the user (file, field, name or option). The CLI prints it on one line, exits 2."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


MAX_LISTED = 24  # longer lists of known names are cut in error messages


def did_you_mean(name: str, choices: Iterable[str], kind: str) -> UserError:
    """A UserError for an unknown `kind` name, with the closest known names as suggestions."""
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    known = ", ".join(choices) if len(choices) <= MAX_LISTED else (
        f"{', '.join(choices[:MAX_LISTED])}, ... {len(choices)} in all")
    return UserError(f"unknown {kind} {name!r}{hint} (known: {known})")
