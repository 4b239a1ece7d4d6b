"""The one exception users see. The CLI prints its message on one line and exits 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SimcoreError(Exception):
    """Bad input or an impossible request, described for the user (no traceback)."""


SHOW_CHARS = 200  # a value quoted in an error message is cut to this many characters


def clip(text: str, limit: int = SHOW_CHARS) -> str:
    """`text` cut to `limit` characters, saying how long it was (no error line carries a 4 MB value)."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def close_matches(name: str, choices: Iterable[str], n: int = 3) -> str:
    """' (did you mean: a, b?)' or '' when nothing is close."""
    found = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)
    return f" (did you mean: {', '.join(found)}?)" if found else ""


def unknown(what: str, name: str, choices: Iterable[str]) -> SimcoreError:
    choices = sorted(choices)
    return SimcoreError(
        f"unknown {what} '{clip(name)}'{close_matches(name, choices)}; known: {', '.join(choices)}"
    )
