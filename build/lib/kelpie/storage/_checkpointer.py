"""Moves SQLite's WAL checkpoints off the request path.

With auto-checkpointing, every ~1000 WAL pages one unlucky commit copies the log into the
database and fsyncs it: ~100 ms stalls on this class of disk. Instead the serving
connection never checkpoints, and this thread does, on its own connection, with PASSIVE
checkpoints that never block the writer. Production only: the simulator keeps SQLite's
inline checkpoints (it runs no threads), and its synchronous=OFF makes them cheap.
"""

import sqlite3
import threading  # noqa: TID251 - the one storage thread; see the docstring
from pathlib import Path
from typing import Final, final

CHECKPOINT_INTERVAL_S: Final = 0.5
# Above this many WAL pages a TRUNCATE checkpoint is tried, so the log cannot grow without
# bound under constant writes (it waits for readers, never for the writer's lock).
WAL_PAGES_TRUNCATE_MIN: Final = 50_000


@final
class WalCheckpointer:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kelpie-wal-checkpoint", daemon=True)
        self.checkpoints = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=True)
        try:
            while not self._stop.wait(CHECKPOINT_INTERVAL_S):
                self._checkpoint(db)
            self._checkpoint(db)
        finally:
            db.close()

    def _checkpoint(self, db: sqlite3.Connection) -> None:
        try:
            _, wal_pages, _ = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if wal_pages >= WAL_PAGES_TRUNCATE_MIN:
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self.checkpoints += 1
        except sqlite3.Error:
            # A busy or failing checkpoint is retried next interval; the WAL stays valid.
            pass
