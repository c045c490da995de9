"""A real headless Chromium on the real pages: login, dashboard, charts and the range picker.

Needs Debian's chromium (`apt-get install chromium`); skipped with that hint where it is
missing, and CI (.ci/run) installs it. Screenshots go to var/test-artifacts/.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import connections
from django.utils import timezone

from sensors.models import Location, Reading, Sensor
from sensors.web.history import default_range, sensor_series
from tests.seed import store_minutes

pytestmark = pytest.mark.django_db(transaction=True)

ARTIFACTS = Path(__file__).resolve().parent.parent / "var" / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser(monkeypatch):
    if CHROMIUM is None:
        pytest.skip("Chromium not found: install Debian's package with `apt-get install chromium`")
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def seeded() -> Iterator[Sensor]:
    now = timezone.now()
    minute = now.replace(second=0, microsecond=0)
    bench = Location.objects.create(name="North bench")
    sensor = Sensor.objects.create(device_id="5c:cf:7f:00:00:01", name="Tomatoes", last_seen=now)
    sensor.move_to(bench, now - timedelta(days=3))
    Sensor.objects.create(device_id="5c:cf:7f:00:00:02", last_seen=now - timedelta(hours=2))
    rows = []
    for age in range(2 * 1440):
        if 300 <= age < 420:
            continue  # a two-hour outage
        value = 18 + 5 * math.sin(age / 200)
        rows.append(
            Reading(
                sensor=sensor,
                metric="air_temperature",
                start=minute - timedelta(minutes=age),
                samples=30,
                value_sum=30 * value,
                value_min=value - 0.4,
                value_max=value + 0.4,
            )
        )
    store_minutes(rows)
    get_user_model().objects.create_user("grower", password="greenhouse")
    yield sensor
    # Under Playwright's event loop Django's connections are per context, not per thread: the
    # database connection this test used is not the one pytest-django closes. Close it here,
    # or PostgreSQL refuses to drop the test database at the end ("accessed by other users").
    connections.close_all()


def points_for(sensor: Sensor, hours: int) -> int:
    """Points the server gives for the last `hours` right now (the window moves with the clock)."""
    return len(sensor_series(sensor, "air_temperature", *default_range(hours)).points)


def chart_points(page, metric: str) -> int:
    page.wait_for_selector('#charts[data-ready="1"]')
    return int(page.get_attribute(f'section[data-metric="{metric}"]', "data-points"))


def test_grower_logs_in_sees_the_dashboard_and_charts_follow_the_range_picker(browser, live_server, seeded):
    # The chart may be drawn just after the clock enters a new minute, which shifts the window
    # by one minute (one seeded point fewer): accept the count from before or after the page.
    expected_24h = points_for(seeded, 24)
    page = browser.new_page(viewport={"width": 420, "height": 900})  # a phone
    page.goto(live_server.url + "/")
    page.fill("#id_username", "grower")
    page.fill("#id_password", "greenhouse")
    page.click("input[type=submit]")
    page.wait_for_selector("text=North bench")
    assert page.locator(".badge.ok").count() == 1
    assert page.locator(".badge.stale").count() == 1
    assert "5c:cf:7f:00:00:02" in page.inner_text("main")
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

    page.click("text=Tomatoes")
    assert chart_points(page, "air_temperature") in {expected_24h, points_for(seeded, 24)}
    datasets = page.evaluate(
        "Chart.getChart(document.querySelector('section[data-metric=air_temperature] canvas')).data.datasets"
        ".map(d => d.data.filter(p => p.y === null).length)"
    )
    assert datasets == [1, 1, 1]  # the outage is one gap in the band and the mean line
    assert "coverage" in page.inner_text('section[data-metric="air_temperature"] .coverage')
    page.screenshot(path=str(ARTIFACTS / "sensor-24h.png"), full_page=True)

    expected_1h = points_for(seeded, 1)
    page.click("button[data-range='1h']")
    assert chart_points(page, "air_temperature") in {expected_1h, points_for(seeded, 1)}
    assert expected_1h in (59, 60)  # a minute row each, not the 24 h chart's 721
    assert "range=1h" in page.get_attribute("#csv", "href")
    page.screenshot(path=str(ARTIFACTS / "sensor-1h.png"), full_page=True)

    # A custom from-to, typed in the site's time zone (UTC here): 90 minutes ending 10 minutes ago.
    end = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=10)
    page.fill("input[name=start]", (end - timedelta(minutes=90)).strftime("%Y-%m-%dT%H:%M"))
    page.fill("input[name=end]", end.strftime("%Y-%m-%dT%H:%M"))
    page.evaluate("document.querySelector('#charts').dataset.ready = ''")
    page.click("#range button[type=submit]")
    assert chart_points(page, "air_temperature") == 90


def test_chart_times_are_shown_in_the_site_time_zone(browser, live_server, seeded, settings):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    settings.TIME_ZONE = "Asia/Tokyo"
    settings.PUBLIC_READ_ONLY = True
    page = browser.new_page()
    page.goto(live_server.url + "/sensors/5c:cf:7f:00:00:01/")
    page.click("button[data-range='1h']")
    page.wait_for_function(
        "() => document.querySelector('#charts').dataset.ready === '1'"
    )  # a function: no eval under the CSP
    ticks = page.evaluate(
        "Chart.getChart(document.querySelector('section[data-metric=air_temperature] canvas'))"
        ".scales.x.ticks.map(t => [t.value, t.label])"
    )
    assert ticks
    for value, label in ticks:
        local = datetime.fromtimestamp(value / 1000, ZoneInfo("Asia/Tokyo"))
        # Chart.js labels a tick on a full hour with the hour format ("7 AM"), the others "7:05 AM".
        allowed = {local.strftime("%-I:%M %p")} | ({local.strftime("%-I %p")} if local.minute == 0 else set())
        assert label in allowed, (value, label)
