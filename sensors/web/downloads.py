"""Downloads give way to pages: a long CSV streaming in a web worker never slows the pages served beside it.

The web UI runs threaded gunicorn workers (deploy/supervisord.conf): a 30-day download keeps a
thread of its process busy for about a second of CPU, and a page that lands in the same process
shares that process's one interpreter lock with it (it took two to four times as long). So the
process counts the pages it is building (`PagesFirstMiddleware`), and a streamed download waits
between two pieces while that count is above zero: the page runs as if alone, the download
resumes the moment it is done. Only GET and HEAD requests count: their view starts once their
headers are in, while a POST's view reads a body a slow client can take its time to send. A
download never spends more than half its time waiting (`WAITING_SHARE`), nor more than `MAX_WAIT`
at once, so pages arriving back to back slow it down at most twofold and never stop it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator

from django.http import HttpRequest, HttpResponse

WAITING_SHARE = 0.5  # of a download's time at most spent waiting for pages
MAX_WAIT = 1.0  # seconds at most of one wait: a download that ran long must not then pause as long
COUNTED_METHODS = frozenset({"GET", "HEAD"})


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
    """Counts each GET or HEAD request in `PAGES` while its view builds the response (a streamed body is made later)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method not in COUNTED_METHODS:
            return self.get_response(request)
        PAGES.enter()
        try:
            return self.get_response(request)
        finally:
            PAGES.leave()


def giving_way(
    pieces: Iterable[str],
    pages: PagesInFlight = PAGES,
    share: float = WAITING_SHARE,
    max_wait: float = MAX_WAIT,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[str]:
    """`pieces`, each made once no page is being built in this process, or once waiting longer would
    make the time spent waiting more than `share` of the time since the first piece; `max_wait` seconds
    at most between two pieces (a proxy in front gives up on an answer silent for a minute or so)."""
    if not 0 <= share < 1:
        raise ValueError(f"share must be at least 0 and below 1, not {share}")
    started = clock()
    waited = 0.0
    for piece in pieces:
        yield piece
        before = clock()
        # The longest wait after which waited time is still at most `share` of the elapsed time.
        budget = min(max_wait, (share * (before - started) - waited) / (1 - share))
        if budget > 0 and pages.count:
            pages.wait_for_none(budget)
            waited += clock() - before
