"""The one rule for where tables go: a terminal keeps its width; piped or captured output gets
room for the widest table (rich falls back to 80 columns off a terminal, which truncates names)."""

from __future__ import annotations

import os
import sys

from rich.console import Console

PIPED_WIDTH = 240


def stdout_console() -> Console:
    if sys.stdout.isatty() or os.environ.get("COLUMNS"):
        return Console()
    return Console(width=PIPED_WIDTH)
