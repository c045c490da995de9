"""The chart pages and the small things a new user notices, in a real headless Chromium.

A young sensor's first chart, the range in the URL (reload, shared link, back button), the last
click winning over a slow answer, the favicon, an expired session, the control tables on a phone
and the charts' text alternative. Fixtures come from tests/test_browser.py (Debian's chromium,
skipped with a hint where it is missing); screenshots go to var/test-artifacts/.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.db import connections
from django.test import Client
from django.utils import timezone

from control.models import Event, Output, Rule
from sensors.ingest.aggregator import Batch, Bucket, minute_start
from sensors.models import Location, Sensor
from sensors.storage import write_batch
from tests.test_browser import ARTIFACTS, browser  # noqa: F401  (browser is a fixture)

pytestmark = pytest.mark.django_db(transaction=True)

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
OLD, YOUNG = "5c:cf:7f:00:00:01", "5c:cf:7f:00:00:09"
HOUR_MS = 3600 * 1000


def report(mac: str, rows: dict[str, list[tuple[int, float]]], first_seen: float, last_seen: float) -> Sensor:
    """Store minutes as the collector does (storage.write_batch): the sensor, its first report, its rows."""
    batch = Batch()
    batch.seen(mac, first_seen, "192.0.2.10")
    batch.seen(mac, last_seen, "192.0.2.10")
    for metric, points in rows.items():
        for minute, value in points:
            bucket = Bucket(value - 0.4)
            bucket.count, bucket.total, bucket.high = 30, 30 * value, value + 0.4
            batch.buckets[(mac, metric, minute)] = bucket
    write_batch(batch)
    return Sensor.objects.get(device_id=mac)


@pytest.fixture
def greenhouse() -> Iterator[dict]:
    """An old sensor (first seen 10 days ago, its last two days of minutes with a two-hour outage) and
    one first seen two minutes ago."""
    now = time.time()
    minute = minute_start(now)
    temperatures = [
        (minute - 60 * age, 18 + 5 * math.sin(age / 200)) for age in range(2 * 1440) if not 300 <= age < 420
    ]
    old = report(OLD, {"air_temperature": temperatures}, now - 10 * 86400, now)
    old.name = "Tomatoes"
    old.save()
    old.move_to(Location.objects.create(name="North bench"), timezone.now() - timedelta(days=3))
    # The young one: three minutes of temperature, and humidity in two lone minutes with a gap between.
    young = report(
        YOUNG,
        {
            "air_temperature": [(minute - 120, 21.0), (minute - 60, 21.5), (minute, 22.0)],
            "humidity": [(minute - 120, 55.0), (minute, 57.0)],
        },
        now - 120,
        now,
    )
    young.name = "Seedlings"
    young.save()
    # Placed from the minute of its first report (a placement holds the minutes that start in it).
    young.move_to(Location.objects.create(name="Propagator"), young.first_seen.replace(second=0, microsecond=0))
    get_user_model().objects.create_user("grower", password="greenhouse")
    yield {"old": old, "young": young}
    connections.close_all()  # as in tests/test_browser.py: Playwright's loop holds its own connections


def logged_in(browser, live_server, viewport: dict, username: str = "grower", password: str = "greenhouse"):  # noqa: F811
    """A page whose context carries a session of `username` (made by Django's test client, no login form)."""
    client = Client()
    assert client.login(username=username, password=password)
    context = browser.new_context(viewport=viewport)
    cookie = client.cookies["sessionid"]
    context.add_cookies([{"name": "sessionid", "value": cookie.value, "url": live_server.url}])
    return context.new_page()


def wait_drawn(page) -> None:
    page.wait_for_selector('#charts[data-ready="1"]')


def wait_span(page, hours: float) -> None:
    """Every chart has been drawn with a time axis of `hours` (the old sensor's axis is its range's)."""
    page.wait_for_function(
        """hours => document.querySelector('#charts').dataset.ready === '1' &&
           [...document.querySelectorAll('#charts .chart canvas')].every(canvas => {
             const chart = Chart.getChart(canvas);
             return chart && chart.scales.x.max - chart.scales.x.min === hours * 3600 * 1000; })""",
        arg=hours,
    )


def axis(page, metric: str = "air_temperature") -> tuple[str, str]:
    """The chart's time axis, as the API's start and end."""
    return tuple(
        page.evaluate(
            """metric => {
                 const scale = Chart.getChart(document.querySelector(`section[data-metric=${metric}] canvas`)).scales.x;
                 return [scale.min, scale.max].map(t => new Date(t).toISOString().replace('.000Z', 'Z')); }""",
            metric,
        )
    )


def shown(page, metric: str = "air_temperature") -> tuple[str, str]:
    return tuple(page.get_attribute(f'section[data-metric="{metric}"]', "data-shown").split("/"))


def active_range(page) -> list[str]:
    """The range buttons shown as chosen."""
    return page.eval_on_selector_all("#range button.active", "buttons => buttons.map(b => b.dataset.range)")


def pressed_range(page) -> list[str]:
    """The range buttons a screen reader announces as pressed."""
    return page.eval_on_selector_all("#range button[aria-pressed=true]", "buttons => buttons.map(b => b.dataset.range)")


def query(page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


CHART_GEOMETRY = """metric => {
  const chart = Chart.getChart(document.querySelector(`section[data-metric=${metric}] canvas`));
  const index = chart.data.datasets.length - 1;  // the mean line (a sensor) or the one sensor (a location)
  const values = chart.data.datasets[index].data;
  const points = chart.getDatasetMeta(index).data.filter((_, i) => values[i].y !== null);
  return {left: chart.chartArea.left, right: chart.chartArea.right, min: chart.scales.x.min, max: chart.scales.x.max,
          xs: points.map(p => p.x), radii: points.map(p => p.options.radius)};
}"""


def scroll_width(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


# --- 1. a young sensor's first chart shows its data --------------------------------------
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_a_young_sensor_opens_on_the_smallest_range_covering_it_with_lone_points_drawn(
    browser,  # noqa: F811
    live_server,
    greenhouse,
    viewport,
):
    young, name = greenhouse["young"], "desktop" if viewport is DESKTOP else "phone"
    page = logged_in(browser, live_server, viewport)
    for path in (f"/sensors/{YOUNG}/", f"/locations/{young.location.pk}/"):
        page.goto(live_server.url + path)
        wait_drawn(page)
        assert active_range(page) == ["1h"]  # not the default 24 h: the sensor is 2 minutes old
        assert "range" not in query(page)  # the page picked it; nothing was asked for in the URL
        start, end = (datetime.fromisoformat(text) for text in shown(page))
        assert end - start == timedelta(hours=1)
        first_minute = young.first_seen.replace(second=0, microsecond=0)
        temperature = page.evaluate(CHART_GEOMETRY, "air_temperature")
        # The axis starts at the first report, not an hour earlier: three minutes fill the chart...
        assert temperature["min"] == first_minute.timestamp() * 1000
        first, last = (
            (x - temperature["left"]) / (temperature["right"] - temperature["left"])
            for x in (min(temperature["xs"]), max(temperature["xs"]))
        )
        # Not a sliver at the right edge of an empty hour: 3 of the axis's 3 minutes (4, when the
        # clock has entered a new minute since the seeding) have data.
        assert first < 0.1 and last >= 0.45
        # ... and the humidity minutes, each without a neighbour, are dots inside the plot.
        humidity = page.evaluate(CHART_GEOMETRY, "humidity")
        assert len(humidity["radii"]) == 2 and all(radius >= 3 for radius in humidity["radii"])
        assert all(humidity["left"] <= x <= humidity["right"] for x in humidity["xs"])
        assert temperature["radii"] == [0, 0, 0]  # points of a line stay plain
        assert scroll_width(page) <= viewport["width"]
        kind = "sensor" if path.startswith("/sensors/") else "location"
        page.screenshot(path=str(ARTIFACTS / f"pages-young-{kind}-{name}.png"), full_page=True)


def test_an_explicit_range_in_the_url_wins_over_the_young_sensors_pick(browser, live_server, greenhouse):  # noqa: F811
    page = logged_in(browser, live_server, DESKTOP)
    page.goto(f"{live_server.url}/sensors/{YOUNG}/?range=7d")
    wait_drawn(page)
    assert active_range(page) == ["7d"]
    start, end = (datetime.fromisoformat(text) for text in shown(page))
    assert end - start == timedelta(days=7)  # what was asked for (its axis still starts at the first report)


# --- 2. the range is in the URL -----------------------------------------------------------
def test_the_range_is_in_the_url_for_reloads_shared_links_and_the_back_button(browser, live_server, greenhouse):  # noqa: F811
    page = logged_in(browser, live_server, DESKTOP)
    page.goto(f"{live_server.url}/sensors/{OLD}/")
    wait_span(page, 24)  # ten days old: the default range
    assert active_range(page) == ["24h"] and query(page) == {}

    page.click("button[data-range='1h']")
    wait_span(page, 1)
    assert query(page) == {"range": ["1h"]} and "range=1h" in page.get_attribute("#csv", "href")
    page.click("button[data-range='7d']")
    wait_span(page, 24 * 7)
    assert query(page) == {"range": ["7d"]}

    page.go_back()
    wait_span(page, 1)
    assert query(page) == {"range": ["1h"]} and active_range(page) == ["1h"]
    page.go_back()
    wait_span(page, 24)
    assert query(page) == {} and active_range(page) == ["24h"]
    page.go_forward()
    wait_span(page, 1)
    page.reload()
    wait_span(page, 1)
    assert active_range(page) == ["1h"]

    # A custom from-to, typed in the site's time zone (UTC here): into the URL, and back from it.
    end = timezone.now().replace(second=0, microsecond=0) - timedelta(hours=3)
    start = end - timedelta(hours=2)
    page.fill("input[name=start]", start.strftime("%Y-%m-%dT%H:%M"))
    page.fill("input[name=end]", end.strftime("%Y-%m-%dT%H:%M"))
    page.click("#range button[type=submit]")
    wait_span(page, 2)
    utc = (start.strftime("%Y-%m-%dT%H:%M:%SZ"), end.strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert query(page) == {"start": [utc[0]], "end": [utc[1]]} and axis(page) == utc
    assert active_range(page) == []
    shared = page.url

    other = logged_in(browser, live_server, DESKTOP)  # someone opening the link
    other.goto(shared)
    wait_span(other, 2)
    assert axis(other) == utc
    assert other.input_value("input[name=start]") == start.strftime("%Y-%m-%dT%H:%M")
    assert other.input_value("input[name=end]") == end.strftime("%Y-%m-%dT%H:%M")
    page.go_back()
    wait_span(page, 1)
    assert query(page) == {"range": ["1h"]}


# --- 3. the last click wins ---------------------------------------------------------------
def test_a_slow_answer_for_an_earlier_range_never_replaces_the_chart_of_a_later_click(
    browser,  # noqa: F811
    live_server,
    greenhouse,
):
    page = logged_in(browser, live_server, DESKTOP)
    held = []

    def hold_week(route):
        if "range=7d" in route.request.url:
            held.append(route)  # answered only when the test says so
        else:
            route.continue_()

    page.route("**/api/sensors/**", hold_week)
    page.goto(f"{live_server.url}/sensors/{OLD}/")
    wait_span(page, 24)
    with page.expect_request(lambda request: "range=7d" in request.url):
        page.click("button[data-range='7d']")
    page.click("button[data-range='1h']")  # changed my mind before the week came
    wait_span(page, 1)
    assert held, "the 7-day request never reached the route"
    for route in held:
        route.continue_()  # the week arrives now, after the hour was drawn
    # Wait until the page has dealt with it: dropped (right), or drawn over the hour (the bug).
    chart_span = """() => {
      const c = Chart.getChart(document.querySelector('section[data-metric=air_temperature] canvas'));
      return c.scales.x.max - c.scales.x.min; }"""
    # A function, not an expression string: Playwright polls a string with eval, which the CSP forbids.
    page.wait_for_function(
        f"() => Number(document.querySelector('#charts').dataset.dropped || 0) >= 1 || ({chart_span})() > {HOUR_MS}"
    )
    assert page.evaluate(chart_span) == HOUR_MS
    assert active_range(page) == ["1h"]


# --- 4. the favicon -----------------------------------------------------------------------
def test_every_page_has_a_favicon_and_a_quiet_console(browser, live_server, greenhouse, admin_user):  # noqa: F811
    """No failed request, no console error and no warning about the page's policies on any page."""
    page = logged_in(browser, live_server, DESKTOP, "admin", "password")
    failures, errors = [], []
    page.on("response", lambda response: response.status >= 400 and failures.append((response.status, response.url)))
    # A warning about our headers too: Chromium warned on every page of a Permissions-Policy feature it
    # does not know. (Not every warning: a later Chromium's deprecation notices are not this page's fault.)
    page.on(
        "console",
        lambda message: (
            (message.type == "error" or (message.type == "warning" and "Policy" in message.text))
            and errors.append(message.text)
        ),
    )
    for path in (
        "/",
        f"/sensors/{OLD}/",
        f"/locations/{greenhouse['old'].location.pk}/",
        "/control/",
        "/control/events/",
    ):
        page.goto(live_server.url + path)
        page.wait_for_load_state("load")
        if path.startswith(("/sensors/", "/locations/")):
            wait_drawn(page)
        # What a browser asks for when a page names no icon (the admin, error pages), as the page would.
        status = page.evaluate("fetch('/favicon.ico').then(r => r.status + ' ' + r.headers.get('content-type'))")
        assert status == "200 image/svg+xml", path
        icon = page.evaluate("document.querySelector('link[rel=icon]')?.getAttribute('href')")
        assert icon and page.request.get(live_server.url + icon).status == 200
    page.goto(live_server.url + "/admin/")
    assert page.request.get(live_server.url + "/favicon.ico").ok
    assert failures == [] and errors == []
    page.set_viewport_size({"width": 128, "height": 128})
    page.goto(live_server.url + "/favicon.ico")  # what the tab shows, large
    page.screenshot(path=str(ARTIFACTS / "pages-favicon.png"))


# --- 5. an expired session ----------------------------------------------------------------
def ends_on_login(page, url: str) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    try:
        page.wait_for_url(url, timeout=15_000)  # a redirect takes well under a second
    except PlaywrightTimeoutError:
        pasted = page.locator("#dashboard #id_username").count() > 0
        pytest.fail(f"still on {page.url} (a login form pasted into the dashboard: {pasted})")


def test_after_the_session_expires_the_dashboard_refresh_goes_to_the_login_page(browser, live_server, greenhouse):  # noqa: F811
    page = browser.new_page(viewport=PHONE)
    page.clock.install()  # the page's 30-s timer runs when the test says so
    page.goto(live_server.url + "/")
    page.fill("#id_username", "grower")
    page.fill("#id_password", "greenhouse")
    page.click("input[type=submit]")
    page.wait_for_selector("#dashboard >> text=Seedlings")
    seconds = int(page.get_attribute("#dashboard", "data-refresh-seconds"))
    page.context.clear_cookies()  # the session is gone (expired, or logged out in another tab)
    page.clock.run_for(seconds * 1000 + 1000)
    ends_on_login(page, live_server.url + "/accounts/login/?next=/")
    assert page.locator("#dashboard").count() == 0 and page.locator("#id_username").count() == 1
    page.screenshot(path=str(ARTIFACTS / "pages-session-expired-login.png"), full_page=True)


def test_a_refresh_with_the_session_alive_replaces_the_dashboard_body(browser, live_server, greenhouse):  # noqa: F811
    page = logged_in(browser, live_server, DESKTOP)
    page.clock.install()
    page.goto(live_server.url + "/")
    page.wait_for_selector("#dashboard >> text=Seedlings")
    Sensor.objects.filter(device_id=YOUNG).update(name="Seedlings, renamed")
    page.clock.run_for(int(page.get_attribute("#dashboard", "data-refresh-seconds")) * 1000 + 1000)
    page.wait_for_selector("#dashboard >> text=Seedlings, renamed")
    assert page.url == live_server.url + "/" and page.locator("#dashboard header").count() == 0


def test_a_chart_whose_session_expired_goes_to_the_login_page_and_comes_back(browser, live_server, greenhouse):  # noqa: F811
    page = logged_in(browser, live_server, DESKTOP)
    page.goto(f"{live_server.url}/sensors/{OLD}/")
    wait_drawn(page)
    page.context.clear_cookies()
    page.click("button[data-range='1h']")  # the API now answers 401
    ends_on_login(page, "**/accounts/login/**")
    assert parse_qs(urlsplit(page.url).query) == {"next": [f"/sensors/{OLD}/?range=1h"]}
    page.fill("#id_username", "grower")
    page.fill("#id_password", "greenhouse")
    page.click("input[type=submit]")
    page.wait_for_url(f"**/sensors/{OLD}/?range=1h")
    wait_span(page, 1)


# --- 6. the control pages on a phone ------------------------------------------------------
@pytest.fixture
def control_history(greenhouse) -> None:
    heater = Output.objects.create(
        name="Propagator heater mat",
        transport="http",
        http_on_url="http://192.168.1.50/relay/0?turn=on",
        is_on=True,
        changed_at=timezone.now(),
        change_reason="Keep the propagator warm: ON (17.20 °C below 18.00 for 300 s)",
        delivered=True,
    )
    vent = Output.objects.create(name="Roof vent", transport="mqtt", mqtt_topic="greenhouse/vent/set", is_on=False)
    Rule.objects.create(
        name="Keep the propagator warm",
        sensor=greenhouse["young"],
        metric="air_temperature",
        threshold=18,
        release=20,
        output=heater,
        on_trigger="on",
        on_release="off",
        phase="triggered",
        phase_since=timezone.now(),
        last_value=17.2,
        last_age=12,
    )
    Rule.objects.create(
        name="Vent the north bench when hot",
        sensor=greenhouse["old"],
        metric="air_temperature",
        direction="above",
        threshold=28,
        release=25,
        output=vent,
        on_trigger="on",
        on_release="off",
    )
    for i in range(12):
        Event.objects.create(
            kind="command",
            rule=Rule.objects.get(name="Keep the propagator warm"),
            output=heater,
            message=f"Propagator heater mat ON: Keep the propagator warm ({17 + i / 10:.2f} °C below 18.00)",
            value=17 + i / 10,
            age=12,
            ok=i % 3 != 0,
            detail="http://192.168.1.50/relay/0?turn=on answered HTTP 200 "
            '{"ison":true,"has_timer":false,"source":"http"}',
        )


@pytest.mark.parametrize("path", ["/control/", "/control/events/"])
def test_the_control_pages_fit_a_phone_and_stay_tables_on_a_desktop(
    browser,  # noqa: F811
    live_server,
    control_history,
    admin_user,
    path,
):
    name = path.strip("/").replace("/", "-")
    phone = logged_in(browser, live_server, PHONE, "admin", "password")  # staff: with the override form
    phone.goto(live_server.url + path)
    assert scroll_width(phone) <= PHONE["width"]
    # Each cell says what it is: its column's name as a caption before the value.
    captions = phone.eval_on_selector_all(
        "table.stack tbody td[data-label]", "cells => cells.map(c => getComputedStyle(c, '::before').content)"
    )
    assert captions and all(caption.strip('"') for caption in captions)
    assert '"result"' in captions or '"output"' in captions
    phone.screenshot(path=str(ARTIFACTS / f"pages-{name}-phone.png"), full_page=True)

    desktop = logged_in(browser, live_server, DESKTOP, "admin", "password")
    desktop.goto(live_server.url + path)
    assert scroll_width(desktop) <= DESKTOP["width"]
    layout = desktop.eval_on_selector_all(
        "table.stack",
        """tables => tables.map(t => ({
             head: t.tHead.getBoundingClientRect().height,
             rowTops: [...t.tBodies[0].rows[0].cells].map(c => Math.round(c.getBoundingClientRect().top)),
             caption: getComputedStyle(t.tBodies[0].rows[0].cells[0], '::before').content}))""",
    )
    for table in layout:
        assert table["head"] > 10  # the column headers are shown
        assert len(set(table["rowTops"])) == 1  # a row's cells side by side
        assert table["caption"] in ("none", "normal")  # no captions in the cells
    desktop.screenshot(path=str(ARTIFACTS / f"pages-{name}-desktop.png"), full_page=True)


# --- 7. a text alternative for each chart -------------------------------------------------
def expected_caption(data: dict, range_text: str) -> str:
    points = data["points"]
    last = points[-1]
    when = datetime.fromisoformat(last["t"]).astimezone(UTC)
    today = when.date() == datetime.now(UTC).date()
    return (
        f"{data['label']}, {range_text}: latest {last['mean']:.1f} {data['unit']} at "
        f"{when.strftime('%H:%M') if today else when.strftime('%-d %b %H:%M')}, "
        f"min {min(p['min'] for p in points):.1f}, max {max(p['max'] for p in points):.1f}"
    )


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_each_chart_has_a_caption_an_aria_label_and_a_data_table(browser, live_server, greenhouse, viewport):  # noqa: F811
    page = logged_in(browser, live_server, viewport)
    page.goto(f"{live_server.url}/sensors/{OLD}/")
    section = 'section[data-metric="air_temperature"]'
    for name, hours, text in (("24h", 24, "last 24 h"), ("1h", 1, "last hour")):
        page.click(f"button[data-range='{name}']")
        wait_span(page, hours)
        start, end = axis(page)
        data = page.evaluate(
            "url => fetch(url).then(r => r.json())",
            f"/api/sensors/{OLD}/history?metric=air_temperature&start={start}&end={end}",
        )
        caption = page.evaluate(f"document.querySelector('{section} .summary')?.textContent")
        assert caption == expected_caption(data, text)
        assert page.get_attribute(f"{section} canvas", "role") == "img"
        assert pressed_range(page) == [name]  # the chosen range, for a screen reader too
        assert page.get_attribute(f"{section} canvas", "aria-label") == caption
        assert page.locator(f"{section} .summary").is_visible()
    page.click(f"{section} details.data summary")
    page.wait_for_selector(f"{section} details.data table tbody tr")
    assert page.locator(f"{section} details.data tbody tr").count() == int(page.get_attribute(section, "data-points"))
    assert page.inner_text(f"{section} details.data thead").split() == ["time", "mean", "min", "max"]
    page.screenshot(
        path=str(ARTIFACTS / f"pages-sensor-caption-{'desktop' if viewport is DESKTOP else 'phone'}.png"),
        full_page=True,
    )

    page.goto(f"{live_server.url}/locations/{greenhouse['old'].location.pk}/")
    wait_span(page, 24)
    caption = page.evaluate(f"document.querySelector('{section} .summary')?.textContent")
    assert caption.startswith("Air temperature, last 24 h: Tomatoes latest ")
    assert page.get_attribute(f"{section} canvas", "aria-label") == caption


# --- what was added works under a Content-Security-Policy without 'unsafe-inline' ----------
CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'"


def test_the_chart_and_control_pages_work_under_a_strict_content_security_policy(
    browser,  # noqa: F811
    live_server,
    greenhouse,
    admin_user,
):
    page = logged_in(browser, live_server, PHONE, "admin", "password")

    def with_csp(route):
        if route.request.resource_type != "document":
            return route.continue_()
        response = route.fetch()
        route.fulfill(response=response, headers={**response.headers, "content-security-policy": CSP})

    page.route("**/*", with_csp)
    page.add_init_script(
        "window.violations = []; document.addEventListener('securitypolicyviolation',"
        " e => window.violations.push(e.violatedDirective + ' ' + (e.blockedURI || e.sample)));"
    )
    for path in (f"/sensors/{OLD}/", f"/locations/{greenhouse['old'].location.pk}/", "/control/", "/"):
        page.goto(live_server.url + path)
        if path.startswith(("/sensors/", "/locations/")):
            wait_span(page, 24)
            page.click("button[data-range='1h']")
            wait_span(page, 1)
            page.click('section[data-metric="air_temperature"] details.data summary')
            page.wait_for_selector('section[data-metric="air_temperature"] details.data tbody tr')
        assert page.evaluate("window.violations") == [], path
