"""A daemon thread that runs one action now and then every `interval` seconds until stopped.

Plain Python with no Django import: the collector's side jobs (refreshing the registered
sensors, the retention purge) are each an action on one of these. The lifecycle follows
Django's `LiveServerThread`: whatever the thread opens it closes itself, inside the thread
(`on_exit`, e.g. `django.db.connections.close_all`, which closes *this* thread's database
connections); an exception from the action is logged with its traceback, never swallowed
and never fatal (the next run comes at the next interval); and a long action can look at
`stopping` between chunks of work, so a stop request is never stuck behind it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)


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
        self.failures = 0  # runs of the action that raised
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def stopping(self) -> bool:
        """True once a stop was requested: a long action checks it between chunks and returns early."""
        return self._stop.is_set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the thread to end after the current chunk of work; does not wait."""
        self._stop.set()

    def stop(self) -> bool:
        """Request a stop and wait up to `join_seconds` for the thread to end; True if it did."""
        self.request_stop()
        if self._thread is None:
            return True
        self._thread.join(self.join_seconds)
        if self._thread.is_alive():
            logger.warning(
                "%s thread still busy %.0f s after the stop request; leaving it", self.name, self.join_seconds
            )
            return False
        return True

    def run_once(self) -> bool:
        """One run of the action, its exception logged; True if it completed."""
        try:
            self.action()
        except Exception:
            self.failures += 1
            logger.exception("%s failed; trying again in %g s", self.name, self.interval)
            return False
        return True

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.run_once()
                self._stop.wait(self.interval)
        finally:
            if self.on_exit is not None:
                try:
                    self.on_exit()
                except Exception:
                    logger.exception("%s thread could not clean up", self.name)
