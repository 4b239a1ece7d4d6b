"""matplotlib without a display, and the one way a figure is saved: a bad path or format is a
one-line error naming the flag, and the figure is closed either way."""

from __future__ import annotations

from pathlib import Path

from simcore.errors import SimcoreError


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: str | Path, flag: str = "--plot", dpi: int = 110) -> None:
    try:
        fig.savefig(Path(path), dpi=dpi, bbox_inches="tight")
    except (OSError, ValueError) as exc:
        raise SimcoreError(f"{flag} {path}: cannot write: {getattr(exc, 'strerror', None) or exc}") from None
    finally:
        pyplot().close(fig)
