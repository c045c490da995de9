"""A daemon thread that runs one action now and then every `interval` seconds until stopped.

Plain Python with no Django import: the collector's side jobs (refreshing the
registered sensors, the retention purge) are each an action on one of these.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class PeriodicThread:
    def __init__(
        self,
        name: str,
        action: Callable[[], object],
        interval: float,
        on_exit: Callable[[], None] | None = None,
        join_seconds: float = 5.0,
    ) -> None:
        self.name = name
        self.action = action
        self.interval = interval
        self.on_exit = on_exit  # runs in the thread as it ends, e.g. to close its database connection
        self.join_seconds = join_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.join_seconds)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.action()
                self._stop.wait(self.interval)
        finally:
            if self.on_exit is not None:
                self.on_exit()
