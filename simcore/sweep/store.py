"""The results store: one SQLite file per sweep, one row per point, each committed on its own.

WAL mode and one transaction per finished point mean a sweep killed at any moment leaves
every finished point in the file and no half-written row; `--resume` runs what is missing.
Only the parent process writes.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simcore.errors import SimcoreError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS points (
    key             TEXT PRIMARY KEY,
    sweep           TEXT NOT NULL,
    point           INTEGER NOT NULL,
    overrides       TEXT NOT NULL,
    experiment      TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    error           TEXT,
    summary         TEXT,
    simcore_version TEXT NOT NULL,
    elapsed_s       REAL,
    finished_at     REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Row:
    key: str
    sweep: str
    point: int
    overrides: dict[str, Any]
    experiment: dict
    status: str
    error: str | None
    summary: dict | None
    simcore_version: str
    elapsed_s: float | None
    finished_at: float


class Store:
    def __init__(self, path: str | Path, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise SimcoreError(f"{self.path}: is a folder; give a results file" if self.path.is_dir()
                               else f"results file not found: {self.path}")
        if self.path.exists() and not self.path.is_file():
            raise SimcoreError(f"--db {self.path}: is a folder; --db takes a file path")
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)  # explicit transactions
            if create:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable against process death
                self.db.executescript(SCHEMA)
            elif not self._has_points_table():
                raise SimcoreError(f"{self.path}: not a sweep results file (no 'points' table)")
        except sqlite3.DatabaseError as exc:
            raise SimcoreError(f"{self.path}: cannot open as a sweep results file: {exc}") from None
        except OSError as exc:
            raise SimcoreError(f"{self.path}: cannot create: {exc.strerror}") from None

    def _has_points_table(self) -> bool:
        return bool(self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='points'").fetchone())

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- meta ----------------------------------------------------------------------------------

    def meta(self) -> dict[str, Any]:
        if not self.db.execute("SELECT 1 FROM sqlite_master WHERE name='meta'").fetchone():
            return {}
        return {k: json.loads(v) for k, v in self.db.execute("SELECT name, value FROM meta")}

    def set_meta(self, **values: Any) -> None:
        with self._transaction():
            self.db.executemany("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
                                [(k, json.dumps(v, default=str)) for k, v in values.items()])

    # -- points --------------------------------------------------------------------------------

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM points").fetchone()[0]

    def statuses(self) -> dict[str, str]:
        """key -> status of every stored point."""
        return dict(self.db.execute("SELECT key, status FROM points"))

    def put(self, row: Row) -> None:
        """Store one finished point in its own transaction (replacing a failed row on retry)."""
        with self._transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO points VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (row.key, row.sweep, row.point, json.dumps(row.overrides), json.dumps(row.experiment),
                 row.status, row.error, None if row.summary is None else json.dumps(row.summary),
                 row.simcore_version, row.elapsed_s, row.finished_at),
            )

    def rows(self) -> list[Row]:
        cur = self.db.execute(
            "SELECT key, sweep, point, overrides, experiment, status, error, summary, simcore_version, "
            "elapsed_s, finished_at FROM points ORDER BY point, key")
        return [Row(k, s, p, json.loads(o), json.loads(e), st, err, None if sm is None else json.loads(sm), v, el, f)
                for k, s, p, o, e, st, err, sm, v, el, f in cur]

    def _transaction(self):
        return _Transaction(self.db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error): each point is all or nothing."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, exc, tb):
        self.db.execute("ROLLBACK" if kind else "COMMIT")


def now() -> float:
    return time.time()
