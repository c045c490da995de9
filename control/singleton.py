"""One control process per database: two controllers would both command the outputs.

PostgreSQL: a session-level advisory lock on a connection of its own, held for the process's
life. SQLite: an exclusive `flock` on a file beside the database. Either is released by the
server or the OS when the process dies, so the lock of a killed process never blocks a restart.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from django.db import DEFAULT_DB_ALIAS, connections

ADVISORY_KEY = 0x67726E68  # "grnh": this project's advisory-lock number


class ControllerLock:
    def __init__(self, alias: str = DEFAULT_DB_ALIAS) -> None:
        self.alias = alias
        self._wrapper = None
        self._file: IO[str] | None = None

    def acquire(self) -> bool:
        """Take the lock; False if another control process holds it."""
        settings = connections[self.alias].settings_dict
        if connections[self.alias].vendor == "postgresql":
            self._wrapper = connections.create_connection(self.alias)
            with self._wrapper.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [ADVISORY_KEY])
                taken = cursor.fetchone()[0]
            if not taken:
                self.release()
            return bool(taken)
        path = Path(str(settings["NAME"]) + ".control-lock")
        self._file = path.open("a+")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            self._file = None
            return False
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"{os.getpid()}\n")
        self._file.flush()
        return True

    def holder(self) -> str:
        """Who holds it, as far as can be told (for the refusal message)."""
        if connections[self.alias].vendor == "postgresql":
            return "another control process is connected to this PostgreSQL database"
        path = Path(str(connections[self.alias].settings_dict["NAME"]) + ".control-lock")
        try:
            pid = path.read_text().strip()
        except OSError:
            pid = ""
        return f"another control process (pid {pid}) uses this database" if pid else "another control process runs"

    def release(self) -> None:
        if self._wrapper is not None:
            self._wrapper.close()  # the advisory lock ends with its session
            self._wrapper = None
        if self._file is not None:
            self._file.close()  # closing the file releases the flock
            self._file = None
