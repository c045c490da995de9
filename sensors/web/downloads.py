"""Downloads give way to pages: a long CSV streaming in a web worker never slows the pages served beside it.

The web UI runs threaded gunicorn workers (deploy/supervisord.conf): a 30-day download keeps a
thread of its process busy for about a second of CPU, and a page that lands in the same process
shares that process's one interpreter lock with it (it took two to four times as long). So the
process counts the pages it is building (`PagesFirstMiddleware`), and a streamed download waits
between two pieces while that count is above zero: the page runs as if alone, the download
resumes the moment it is done. A wait is bounded (`MAX_WAIT`), so pages arriving back to back
slow a download down but never stop it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator

from django.http import HttpRequest, HttpResponse

MAX_WAIT = 1.0  # seconds a download waits for the pages in flight before it sends its next piece


class PagesInFlight:
    """How many requests this process is building a response for (not sending one: a download's pieces
    are made while its response is sent, after the middleware let go of it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._none = threading.Event()
        self._none.set()

    def enter(self) -> None:
        with self._lock:
            self._count += 1
            self._none.clear()

    def leave(self) -> None:
        with self._lock:
            self._count -= 1
            if self._count == 0:
                self._none.set()

    @property
    def count(self) -> int:
        return self._count

    def wait_for_none(self, timeout: float) -> bool:
        """Block (without the interpreter lock) until no page is in flight or `timeout` seconds passed."""
        return self._none.wait(timeout)


PAGES = PagesInFlight()


class PagesFirstMiddleware:
    """Counts each request in `PAGES` while its view builds the response (a streamed body is made later)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        PAGES.enter()
        try:
            return self.get_response(request)
        finally:
            PAGES.leave()


def giving_way(pieces: Iterable[str], pages: PagesInFlight = PAGES, max_wait: float = MAX_WAIT) -> Iterator[str]:
    """`pieces`, each made only once no page is being built in this process (or `max_wait` passed)."""
    for piece in pieces:
        yield piece
        pages.wait_for_none(max_wait)
