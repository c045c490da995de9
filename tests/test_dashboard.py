"""The dashboard a grower reads at a glance: ages, trends, offline since, VPD and dew point, a
location's sensors side by side; and its cost, which must not grow with the length of the history."""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from sensors.metrics import dew_point, vapour_pressure_deficit
from sensors.models import Location, Reading, Sensor
from sensors.web.dashboard import ago
from tests.seed import store_minutes
from tests.test_browser import browser  # noqa: F401  (the Chromium fixture)

pytestmark = pytest.mark.django_db


def minutes(sensor: Sensor, metric: str, values: Callable[[int], float], ages: range, now) -> list[Reading]:
    """Minute rows `age` minutes before the current minute, 30 samples each, value `values(age)`."""
    minute = now.replace(second=0, microsecond=0)
    return [
        Reading(
            sensor=sensor,
            metric=metric,
            start=minute - timedelta(minutes=age),
            samples=30,
            value_sum=30 * values(age),
            value_min=values(age),
            value_max=values(age),
        )
        for age in ages
    ]


@pytest.fixture
def bench() -> dict:
    now = timezone.now()
    north = Location.objects.create(name="North bench")
    warm = Sensor.objects.create(device_id="5c:cf:7f:00:00:01", name="Warm end", last_seen=now - timedelta(seconds=12))
    cool = Sensor.objects.create(device_id="5c:cf:7f:00:00:02", name="Cool end", last_seen=now - timedelta(seconds=20))
    gone = Sensor.objects.create(device_id="5c:cf:7f:00:00:03", name="Old probe", last_seen=now - timedelta(hours=3))
    for sensor in (warm, cool, gone):
        sensor.move_to(north, now - timedelta(days=2))
    rows = []
    rows += minutes(warm, "air_temperature", lambda age: 25.0 - age / 30, range(120), now)  # +2 °C in the hour
    rows += minutes(warm, "humidity", lambda age: 50.0, range(120), now)
    rows += minutes(cool, "air_temperature", lambda age: 18.0, range(120), now)
    rows += minutes(cool, "humidity", lambda age: 70.0 + age / 10, range(120), now)  # -6 %RH in the hour
    rows += minutes(gone, "air_temperature", lambda age: 10.0, range(180, 240), now)
    store_minutes(rows)
    return {"warm": warm, "cool": cool, "gone": gone, "now": now}


def card(page: str, name: str) -> str:
    """The HTML of one sensor's card on the dashboard."""
    match = re.search(r'<li class="sensor[^"]*">\s*<a href="[^"]+">' + re.escape(name) + r"</a>.*?</li>", page, re.S)
    assert match, f"no card for {name}"
    return match.group(0)


def test_each_value_says_how_long_ago_it_arrived_and_which_way_it_moved_in_the_last_hour(admin_client, bench):
    page = admin_client.get("/").content.decode()
    warm = card(page, "Warm end")
    assert re.search(r"25\.0 °C <span class=\"trend rising\"[^>]*>↑</span> <time[^>]*>1\d s ago</time>", warm)
    assert 'class="trend steady"' in warm  # humidity did not move
    assert 'class="trend falling"' in card(page, "Cool end")  # humidity fell 6 %RH


def test_sensors_whose_latest_minutes_differ_each_show_their_own_trend(admin_client):
    """At a minute's turn some sensors' newest minute is one minute older than others': each trend
    compares with the minute an hour before its own (both sensors have minutes at both times)."""
    now = timezone.now()
    ahead = Sensor.objects.create(device_id="5c:cf:7f:00:00:11", name="Ahead", last_seen=now)
    behind = Sensor.objects.create(device_id="5c:cf:7f:00:00:12", name="Behind", last_seen=now)
    rows = minutes(ahead, "air_temperature", lambda age: 25.0 - age / 30, range(0, 90), now)  # rising
    rows += minutes(behind, "air_temperature", lambda age: 15.0 + age / 30, range(1, 90), now)  # falling
    store_minutes(rows)
    page = admin_client.get("/").content.decode()
    assert 'class="trend rising"' in card(page, "Ahead")
    assert 'class="trend falling"' in card(page, "Behind")


def test_a_silent_sensor_says_since_when_it_is_offline(admin_client, bench, settings):
    settings.TIME_ZONE = "UTC"
    page = admin_client.get("/").content.decode()
    since = timezone.localtime(bench["gone"].last_seen).strftime("%b %-d, %H:%M")
    assert f"offline since {since}" in card(page, "Old probe")
    assert "3 h ago" in card(page, "Old probe")  # its last value's age


def test_vapour_pressure_deficit_and_dew_point_are_shown_from_temperature_and_humidity(admin_client, bench):
    warm = card(admin_client.get("/").content.decode(), "Warm end")
    assert f"{vapour_pressure_deficit(25.0, 50.0):.1f} kPa" in warm  # 1.6 kPa
    assert f"{dew_point(25.0, 50.0):.1f} °C" in warm  # 13.9 °C
    assert "Vapour-pressure deficit" in warm and "Dew point" in warm
    assert "Dew point" not in card(admin_client.get("/").content.decode(), "Old probe")  # no humidity: none


def test_a_location_card_compares_its_sensors_side_by_side(admin_client, bench):
    page = admin_client.get("/").content.decode()
    table = re.search(r"<table class=\"compare stack\">.*?</table>", page, re.S).group(0)
    assert "North bench: its sensors side by side" in table
    assert [name for name in ("Cool end", "Old probe", "Warm end") if name in table] == [
        "Cool end",
        "Old probe",
        "Warm end",
    ]
    # The spread counts online sensors only: 25.0 - 18.0 °C (the silent probe's 10 °C is left out).
    spread = re.search(r"<tfoot>.*?</tfoot>", table, re.S).group(0)
    assert "7.0 °C" in spread and "20.0 %RH" in spread


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s ago"), (12, "12 s ago"), (300, "5 min ago"), (3 * 3600, "3 h ago"), (3 * 86400, "3 days ago")],
)
def test_ages_read_like_a_person_would_say_them(seconds, text):
    assert ago(timedelta(seconds=seconds)) == text


def test_dew_point_and_vpd_match_published_values():
    # Published references: at 20 °C saturation vapour pressure is 2.339 kPa; at 100 %RH the
    # dew point is the air temperature itself, and the deficit is zero.
    assert vapour_pressure_deficit(20.0, 0.0) == pytest.approx(2.339, abs=0.005)
    assert dew_point(20.0, 100.0) == pytest.approx(20.0)
    assert vapour_pressure_deficit(20.0, 100.0) == 0.0
    assert dew_point(30.0, 60.0) == pytest.approx(21.4, abs=0.1)
    assert dew_point(20.0, 0.0) is None


# --- the cost of "now" does not grow with history ---------------------------------------------
@contextmanager
def database_work():
    """Queries run and rows read by the block: SQLite counts VM steps, PostgreSQL the tuples it read."""
    work: dict[str, int] = {"steps": 0}
    if connection.vendor == "sqlite":
        connection.ensure_connection()

        def step() -> int:
            work["steps"] += 1
            return 0

        connection.connection.set_progress_handler(step, 100)
        with CaptureQueriesContext(connection) as queries:
            yield work
        connection.connection.set_progress_handler(None, 0)
    else:
        read = "SELECT COALESCE(SUM(seq_tup_read + COALESCE(idx_tup_fetch, 0)), 0) FROM pg_stat_xact_user_tables"
        with connection.cursor() as cursor:
            cursor.execute(read)
            before = cursor.fetchone()[0]
        with CaptureQueriesContext(connection) as queries:
            yield work
        with connection.cursor() as cursor:
            cursor.execute(read)
            work["steps"] = int(cursor.fetchone()[0] - before)
    work["queries"] = len(queries.captured_queries)


@pytest.mark.parametrize("url", ["/", "/?partial=1", "/admin/sensors/sensor/"])
def test_the_dashboard_and_the_sensor_list_cost_the_same_after_a_day_or_ten(admin_client, url):
    now = timezone.now()
    sensors = [Sensor.objects.create(device_id=f"5c:cf:7f:00:01:0{i}", last_seen=now) for i in range(3)]
    day = range(1440)
    for sensor in sensors:
        store_minutes(minutes(sensor, "air_temperature", lambda age: 20.0, day, now))
    admin_client.get(url)  # warm up (sessions, content types)
    with database_work() as one_day:
        assert admin_client.get(url).status_code == 200
    older = range(1440, 10 * 1440)  # nine more days of history behind the same current values
    for sensor in sensors:
        Reading.objects.bulk_create(minutes(sensor, "air_temperature", lambda age: 20.0, older, now), batch_size=5000)
    with database_work() as ten_days:
        assert admin_client.get(url).status_code == 200
    assert ten_days["queries"] == one_day["queries"]
    # Ten times the history: the work stays the same (a scan of the history would grow ~10x).
    assert ten_days["steps"] <= one_day["steps"] * 1.2 + 50, (one_day, ten_days)


def _placed_greenhouse(sensors: int, locations: int) -> None:
    """`sensors` reporting sensors (a soil probe calibrated) spread over `locations` places, a minute each."""
    now = timezone.now()
    places = [Location.objects.create(name=f"Bench {index}") for index in range(locations)]
    for index in range(sensors):
        sensor = Sensor.objects.create(
            device_id=f"5c:cf:7f:00:02:{index:02x}",
            name=f"Probe {index}",
            last_seen=now,
            first_seen=now,
            location=places[index % locations],
            soil_dry_raw=820.0,
            soil_wet_raw=380.0,
        )
        for metric, value in (("air_temperature", 21.0), ("humidity", 60.0), ("soil_moisture", 600.0)):
            store_minutes(minutes(sensor, metric, lambda age, value=value: value, range(61), now))


@pytest.mark.parametrize("url", ["/", "/?partial=1", "/admin/sensors/sensor/"])
def test_the_dashboard_and_the_sensor_list_read_as_many_queries_for_40_sensors_as_for_2(admin_client, url):
    """No query per sensor or per place: the dashboard reads the sensors without their unshown fields and
    the places on their own, and a card that touched a left-out field or a sensor's place would cost
    a query each."""
    _placed_greenhouse(2, 1)
    admin_client.get(url)  # warm up (sessions, content types)
    with CaptureQueriesContext(connection) as few:
        assert admin_client.get(url).status_code == 200
    Sensor.objects.all().delete()
    Location.objects.all().delete()
    _placed_greenhouse(40, 8)
    with CaptureQueriesContext(connection) as many:
        page = admin_client.get(url).content.decode()
    assert page.count("Probe 39") >= 1 and page.count("Bench 7") >= 1
    assert len(many.captured_queries) == len(few.captured_queries), [q["sql"][:120] for q in many.captured_queries]


# --- in a real browser, at desktop and phone width --------------------------------------------
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("width", "name"), [(1280, "desktop"), (390, "phone")])
def test_the_dashboard_reads_at_a_glance_in_chromium(browser, live_server, bench, width, name):  # noqa: F811
    from django.contrib.auth import get_user_model
    from django.db import connections

    from tests.test_browser import ARTIFACTS

    get_user_model().objects.create_user("grower", password="greenhouse")
    try:
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.goto(live_server.url + "/")
        page.fill("#id_username", "grower")
        page.fill("#id_password", "greenhouse")
        page.click("input[type=submit]")
        page.wait_for_selector("text=North bench")
        warm = page.locator("li.sensor", has_text="Warm end")
        assert "↑" in warm.inner_text() and "s ago" in warm.inner_text()
        assert "Vapour-pressure deficit" in warm.inner_text()
        assert (
            page.locator("li.sensor", has_text="Old probe")
            .locator(".badge.stale")
            .inner_text()
            .startswith("offline since")
        )
        assert page.locator("table.compare").is_visible()
        page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth") <= width  # nothing scrolls sideways
    finally:
        connections.close_all()


def test_names_and_labels_on_the_cards_and_the_comparison_table_are_escaped(admin_client, bench):
    """The cards are built in Python (sensors/templatetags/dashboard.py): a hostile name stays text."""
    hostile = '<img src=x onerror="alert(1)">&"\''
    Sensor.objects.filter(pk=bench["warm"].pk).update(name=hostile)
    page = admin_client.get("/?partial=1").content.decode()
    assert hostile not in page and "<img" not in page
    escaped = "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;&quot;&#x27;"
    assert page.count(escaped) == 2  # its card and its row in the location's table
