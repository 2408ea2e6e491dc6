"""A crash-safe disk cache of finished generations, keyed by the sha256 of the full request.

SQLite in WAL mode with `synchronous=FULL`: a row is on disk once `put` returns, so a rerun after a
crash or a dead server replays every finished request for free. Several processes on one machine may
share the file (SQLite locks it); on a network file system give each worker its own file.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any


class RequestCache:
    def __init__(self, path: Path | str | None) -> None:
        self.path = Path(path) if path else None
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), timeout=60.0, check_same_thread=False,
                                       isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS gen (key TEXT PRIMARY KEY, model TEXT, tag TEXT, "
                "result TEXT NOT NULL, created REAL)"
            )

    def get(self, key: str) -> dict[str, Any] | None:
        if self._db is None:
            return None
        with self._lock:
            row = self._db.execute("SELECT result FROM gen WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, result: dict[str, Any], *, model: str = "", tag: str = "") -> None:
        if self._db is None:
            return
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO gen (key, model, tag, result, created) VALUES (?, ?, ?, ?, ?)",
                (key, model, tag, json.dumps(result, ensure_ascii=False), time.time()),
            )

    def __len__(self) -> int:
        if self._db is None:
            return 0
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM gen").fetchone()[0])

    def close(self) -> None:
        if self._db is not None:
            with self._lock:
                self._db.close()
            self._db = None
