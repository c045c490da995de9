"""Dashboard, sensor page and CSV download: what a grower sees, and who may see it."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from sensors.models import Location, Reading, Sensor
from tests.seed import store_minutes

pytestmark = pytest.mark.django_db


@pytest.fixture
def greenhouse() -> dict:
    now = timezone.now()
    minute = now.replace(second=0, microsecond=0)
    bench = Location.objects.create(name="North bench")
    fresh = Sensor.objects.create(
        device_id="5c:cf:7f:00:00:01", name="Tomatoes", last_seen=now, soil_dry_raw=800, soil_wet_raw=300
    )
    fresh.move_to(bench, now - timedelta(days=1))
    silent = Sensor.objects.create(device_id="5c:cf:7f:00:00:02", last_seen=now - timedelta(minutes=30))
    for sensor, metric, value in [
        (fresh, "soil_moisture", 550.0),
        (fresh, "air_temperature", 21.0),
        (silent, "humidity", 60.0),
    ]:
        store_minutes(
            Reading(
                sensor=sensor,
                metric=metric,
                start=minute - timedelta(minutes=age),
                samples=30,
                value_sum=30 * value,
                value_min=value,
                value_max=value,
            )
            for age in range(90)
        )
    return {"fresh": fresh, "silent": silent, "minute": minute}


def test_dashboard_groups_sensors_by_location_with_calibrated_values_and_offline_badge(admin_client, greenhouse):
    page = admin_client.get("/").content.decode()
    assert page.index("North bench") < page.index("Not placed")
    assert "Tomatoes" in page and "5c:cf:7f:00:00:02" in page  # an unnamed sensor shows its MAC
    assert re.search(r"Soil moisture</dt><dd[^>]*>50.0 %", page) and re.search(
        r"Air temperature</dt><dd[^>]*>21.0 °C", page
    )
    assert page.count("badge ok") == 1 and page.count("badge stale") == 1


def test_dashboard_body_refreshes_without_the_page_around_it(admin_client, greenhouse):
    body = admin_client.get("/?partial=1").content.decode()
    assert "North bench" in body and "<html" not in body


def test_sensor_page_has_a_chart_per_metric_and_its_scripts_are_served_locally(admin_client, greenhouse):
    page = admin_client.get("/sensors/5C-CF-7F-00-00-01/").content.decode()
    assert page.count('class="chart"') == 2
    for script in (
        "vendor/chart.js/chart.umd.min.js",
        "vendor/luxon/luxon.min.js",
        "vendor/chartjs-adapter-luxon/chartjs-adapter-luxon.umd.min.js",
        "greenhouse/charts.js",
    ):
        assert f"/static/{script}" in page
        assert admin_client.get(f"/static/{script}").status_code == 200, script


def test_csv_download_holds_exactly_the_range_shown(admin_client, greenhouse):
    minute = greenhouse["minute"]
    start, end = minute - timedelta(minutes=10), minute - timedelta(minutes=5)
    response = admin_client.get(
        "/sensors/5c:cf:7f:00:00:01/readings.csv", {"start": start.isoformat(), "end": end.isoformat()}
    )
    assert response["Content-Type"] == "text/csv"
    assert response.streaming  # sent as it is read, never built whole in memory
    rows = list(csv.DictReader(io.StringIO(response.getvalue().decode())))
    starts = sorted({row["start"] for row in rows})
    assert len(rows) == 10  # 5 minutes x 2 metrics
    assert starts[0] == start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert datetime.fromisoformat(starts[-1]) < end


def test_pages_need_login_unless_made_public(client, greenhouse, settings):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    settings.PUBLIC_READ_ONLY = True
    assert client.get("/").status_code == 200
    assert client.get("/sensors/5c:cf:7f:00:00:01/").status_code == 200
    assert client.get("/admin/sensors/sensor/").status_code == 302  # the admin never becomes public


def test_unknown_or_malformed_sensor_is_404(admin_client, greenhouse):
    assert admin_client.get("/sensors/5c:cf:7f:00:00:99/").status_code == 404
    assert admin_client.get("/sensors/kitchen/").status_code == 404


def test_location_page_compares_the_sensors_placed_there(admin_client, greenhouse):
    bench = Location.objects.get(name="North bench")
    page = admin_client.get(f"/locations/{bench.pk}/").content.decode()
    assert page.count('class="chart"') == 2  # air_temperature and soil_moisture of the one sensor placed there
    assert f"/api/locations/{bench.pk}/history" in page
    assert f'href="/locations/{bench.pk}/"' in admin_client.get("/").content.decode()


def test_location_api_has_one_series_per_sensor_placed_there_during_the_range(admin_client, greenhouse):
    bench = Location.objects.get(name="North bench")
    greenhouse["silent"].move_to(bench, greenhouse["minute"] - timedelta(minutes=59))  # earlier minutes stay out
    data = admin_client.get(f"/api/locations/{bench.pk}/history", {"metric": "humidity", "range": "1h"}).json()
    [series] = data["series"]  # only the moved sensor sends humidity
    assert series["sensor"]["mac"] == "5c:cf:7f:00:00:02"
    assert len(series["points"]) == 60  # its minutes since it was placed there, 59 minutes ago
    assert admin_client.get(f"/api/locations/{bench.pk}/history").status_code == 400
