"""sensors/web/downloads.py: a streamed download waits while its process builds a page, never for long."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.http import HttpResponse
from django.test import RequestFactory

from sensors.models import Sensor
from sensors.web.downloads import PAGES, PagesFirstMiddleware, PagesInFlight, giving_way
from tests.seed import one_sample, store_minutes


def test_a_download_makes_no_piece_while_a_page_is_being_built_and_goes_on_when_it_is_done():
    pages = PagesInFlight()
    made: list[str] = []
    now = [0.0]

    def pieces():
        for name in ("header", "rows 1-500", "rows 501-1000"):
            made.append(name)
            yield name

    download = giving_way(pieces(), pages, clock=lambda: now[0])
    assert next(download) == "header"  # the first byte never waits
    now[0] = 10.0  # ten seconds of download so far: it may wait as long again
    pages.enter()
    second = threading.Thread(target=lambda: next(download))
    second.start()
    second.join(0.3)
    assert second.is_alive() and made == ["header"]  # waiting, the next rows not even read
    pages.leave()
    second.join(5)
    assert made == ["header", "rows 1-500"]
    assert list(download) == ["rows 501-1000"]


class EndlessPages(PagesInFlight):
    """Pages back to back forever, on a fake clock: each wait lasts its whole timeout."""

    def __init__(self, now: list[float]) -> None:
        super().__init__()
        self.enter()
        self.now = now
        self.waits: list[float] = []

    def wait_for_none(self, timeout: float) -> bool:
        self.waits.append(timeout)
        self.now[0] += timeout
        return False


def test_pages_arriving_back_to_back_slow_a_download_at_most_twofold_and_never_stop_it():
    now = [0.0]
    pages = EndlessPages(now)

    def pieces():
        for number in range(100):
            now[0] += 0.01  # 10 ms to make a piece
            yield number

    assert list(giving_way(pieces(), pages, clock=lambda: now[0])) == list(range(100))
    assert pages.waits and sum(pages.waits) <= 0.5 * now[0] + 1e-9
    assert now[0] <= 2 * 100 * 0.01 + 1e-9


def test_a_download_that_ran_long_never_pauses_longer_than_max_wait_at_once():
    """Ten minutes to a slow phone, then pages back to back: half its time would allow a pause of
    minutes, which a proxy in front (or the browser) takes for a dead server."""
    now = [0.0]
    pages = EndlessPages(now)

    def pieces():
        yield "header"
        now[0] += 600  # sent slowly
        yield from ("a", "b", "c")

    assert list(giving_way(pieces(), pages, max_wait=1.0, clock=lambda: now[0])) == ["header", "a", "b", "c"]
    assert pages.waits and max(pages.waits) == 1.0


def test_two_pages_at_once_both_count():
    pages = PagesInFlight()
    pages.enter()
    pages.enter()
    pages.leave()
    assert not pages.wait_for_none(0)
    pages.leave()
    assert pages.wait_for_none(0) and pages.count == 0


def test_the_middleware_counts_a_get_while_its_view_builds_the_response_even_one_that_fails():
    seen = []

    def view(request):
        seen.append(PAGES.count)
        if request.GET.get("fail"):
            raise RuntimeError("the view failed")
        return HttpResponse("ok")

    middleware = PagesFirstMiddleware(view)
    assert middleware(RequestFactory().get("/")).content == b"ok"
    with pytest.raises(RuntimeError):
        middleware(RequestFactory().get("/?fail=1"))
    assert seen == [1, 1] and PAGES.count == 0


def test_a_post_is_not_counted_its_view_may_wait_on_a_slow_client_s_body():
    """A POST's view reads its body (the CSRF check), which a client on a weak link, or one that means to,
    can take minutes to send: counted, it held every download of its process back meanwhile."""
    seen = []
    middleware = PagesFirstMiddleware(lambda request: seen.append(PAGES.count) or HttpResponse("ok"))
    middleware(RequestFactory().post("/accounts/login/", {"username": "grower"}))
    assert seen == [0]


def test_the_middleware_comes_before_django_s_so_it_counts_their_work_too():
    position = settings.MIDDLEWARE.index("sensors.web.downloads.PagesFirstMiddleware")
    assert all(name.startswith(("greenhouse_site.", "sensors.")) for name in settings.MIDDLEWARE[:position])


@pytest.mark.django_db
def test_the_csv_download_waits_for_a_page_of_its_process_and_never_for_itself(admin_client):
    """The CSV's rows are made while its response is sent, when the middleware has let go of it: a download
    never waits for itself (nor for another download), only for a page being built."""
    sensor = Sensor.objects.create(device_id="5c:cf:7f:0a:1b:2c")
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)
    store_minutes(one_sample(sensor, "humidity", start + timedelta(minutes=n), 50.0) for n in range(20))
    response = admin_client.get("/sensors/5c:cf:7f:0a:1b:2c/readings.csv?range=1h")
    assert response.streaming and PAGES.count == 0
    pieces = iter(response.streaming_content)
    assert next(pieces).startswith(b"sensor,")
    time.sleep(0.6)  # the browser asks for more 0.6 s later: the download may now wait as long
    PAGES.enter()  # a page being built in another thread of this process, done 0.3 s later
    page_done = threading.Timer(0.3, PAGES.leave)
    started = time.monotonic()
    page_done.start()
    try:
        rest = b"".join(pieces)
        waited = time.monotonic() - started
    finally:
        page_done.join()
    assert waited >= 0.3  # the rows waited for the page
    assert rest.count(b"\n") == 20
