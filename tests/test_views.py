"""The history API: ranges, point budget, gaps, calibration flag, errors and access."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from sensors.models import Reading, Sensor
from tests.seed import one_sample, store_minutes

pytestmark = pytest.mark.django_db

URL = "/api/sensors/5c:cf:7f:0a:1b:2c/history"


@pytest.fixture
def sensor() -> Sensor:
    sensor = Sensor.objects.create(device_id="5c:cf:7f:0a:1b:2c", name="Tomatoes", humidity_offset=2.0)
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    store_minutes(
        Reading(
            sensor=sensor,
            metric="humidity",
            start=end - timedelta(minutes=i),
            samples=30,
            value_sum=30 * 50.0,
            value_min=49.0,
            value_max=51.0,
        )
        # From the next minute on (if the test crosses into it, its newest minute is still there)
        # back three days.
        for i in range(-1, 3 * 1440)
        if not 100 <= i < 160  # an hour-long outage
    )
    return sensor


def test_last_hour_minute_by_minute_with_calibration_and_units(admin_client, sensor):
    data = admin_client.get(URL, {"metric": "humidity", "range": "1h"}).json()
    assert data["sensor"] == {
        "id": "5c:cf:7f:0a:1b:2c",
        "source": "tcp",
        "mac": "5c:cf:7f:0a:1b:2c",
        "name": "Tomatoes",
    }
    assert (data["unit"], data["step_seconds"]) == ("%RH", 60)
    assert len(data["points"]) == 60
    assert data["points"][-1]["mean"] == 52.0 and data["points"][-1]["t"].endswith(":00Z")
    raw = admin_client.get(URL, {"metric": "humidity", "range": "1h", "calibrated": "0"}).json()
    assert raw["points"][-1]["mean"] == 50.0


@pytest.mark.parametrize("range_name", ["24h", "7d", "30d", "1y"])
def test_every_range_stays_within_the_point_budget(admin_client, sensor, range_name):
    data = admin_client.get(URL, {"metric": "humidity", "range": range_name, "max_points": 200}).json()
    assert 0 < len(data["points"]) <= 200


def test_an_outage_shows_as_missing_steps_and_lower_coverage(admin_client, sensor):
    data = admin_client.get(URL, {"metric": "humidity", "range": "24h"}).json()
    assert data["step_seconds"] == 120
    times = [datetime.fromisoformat(point["t"]) for point in data["points"]]
    gaps = [later - earlier for earlier, later in pairwise(times)]
    assert sorted(gaps)[-2] == timedelta(minutes=2)  # evenly spaced everywhere else
    assert timedelta(minutes=60) <= max(gaps) <= timedelta(minutes=62)  # no line across the outage
    assert data["coverage"] == pytest.approx((1440 - 60) / 1440, abs=0.002)


def test_custom_range_with_time_zone_offsets(admin_client, sensor):
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    start = end - timedelta(minutes=10)
    data = admin_client.get(
        URL, {"metric": "humidity", "start": start.astimezone().isoformat(), "end": end.isoformat()}
    ).json()
    assert len(data["points"]) == 10
    assert data["start"] == start.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "metric is required"),
        ({"metric": "humidity", "range": "2w"}, "range must be one of"),
        ({"metric": "humidity", "start": "2026-11-24T10:00:00Z"}, "give both start and end"),
        ({"metric": "humidity", "start": "yesterday", "end": "today"}, "is not an ISO 8601 time"),
        ({"metric": "humidity", "max_points": "0"}, "max_points must be between"),
    ],
)
def test_bad_parameters_are_clear_400s(admin_client, sensor, params, message):
    response = admin_client.get(URL, params)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_unknown_sensor_is_404_and_a_non_mac_is_400(admin_client, sensor):
    assert admin_client.get("/api/sensors/5c:cf:7f:00:00:99/history", {"metric": "humidity"}).status_code == 404
    assert admin_client.get("/api/sensors/kitchen/history", {"metric": "humidity"}).status_code == 400


def test_api_needs_login_unless_the_pages_are_made_public(client, sensor, settings):
    assert client.get(URL, {"metric": "humidity"}).status_code == 401
    settings.PUBLIC_READ_ONLY = True
    assert client.get(URL, {"metric": "humidity"}).status_code == 200


def test_a_location_chart_gives_each_sensor_its_own_unit(admin_client):
    """Raw soil readings are never titled "%": only a probe with dry/wet set is in %."""
    from sensors.models import Location

    bench = Location.objects.create(name="Bench 1")
    raw = Sensor.objects.create(device_id="5c:cf:7f:00:00:01", name="Uncalibrated")
    calibrated = Sensor.objects.create(
        device_id="5c:cf:7f:00:00:02", name="Calibrated", soil_dry_raw=800, soil_wet_raw=400
    )
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=5)
    for probe in (raw, calibrated):
        probe.move_to(bench, when=start - timedelta(hours=1))
        store_minutes([one_sample(probe, "soil_moisture", start, 600.0)])
    url = f"/api/locations/{bench.pk}/history"
    mixed = admin_client.get(url, {"metric": "soil_moisture", "range": "1h"}).json()
    assert mixed["unit"] == ""
    assert {s["sensor"]["name"]: (s["unit"], s["points"][0]["mean"]) for s in mixed["series"]} == {
        "Uncalibrated": ("raw", 600.0),
        "Calibrated": ("%", 50.0),
    }
    calibrated.move_to(None)
    Reading.objects.filter(sensor=calibrated).delete()
    alone = admin_client.get(url, {"metric": "soil_moisture", "range": "1h"}).json()
    assert alone["unit"] == "raw"


def test_vapour_pressure_deficit_and_dew_point_are_charted_from_the_calibrated_inputs(admin_client):
    from sensors.metrics import dew_point, vapour_pressure_deficit

    sensor = Sensor.objects.create(device_id="5c:cf:7f:00:00:09", temperature_offset=-1.0)
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)
    rows = []
    for i in range(5):
        for metric, value in (("air_temperature", 26.0 + i), ("humidity", 50.0)):
            rows.append(
                Reading(
                    sensor=sensor,
                    metric=metric,
                    start=start + timedelta(minutes=i),
                    samples=30,
                    value_sum=30 * value,
                    value_min=value,
                    value_max=value,
                )
            )
    store_minutes(rows)
    page = admin_client.get(f"/sensors/{sensor.device_id}/").content.decode()
    assert 'data-metric="vpd"' in page and 'data-metric="dew_point"' in page  # a chart each
    url = f"/api/sensors/{sensor.device_id}/history"
    vpd = admin_client.get(url, {"metric": "vpd", "range": "1h"}).json()
    assert (vpd["label"], vpd["unit"]) == ("Vapour-pressure deficit", "kPa")
    assert [round(p["mean"], 6) for p in vpd["points"]] == [
        round(vapour_pressure_deficit(25.0 + i, 50.0), 6) for i in range(5)
    ]
    dew = admin_client.get(url, {"metric": "dew_point", "range": "1h"}).json()
    assert dew["unit"] == "°C" and dew["points"][0]["mean"] == pytest.approx(dew_point(25.0, 50.0))


def test_a_sensor_placed_a_minute_ago_has_its_charts_on_the_location_page_at_once(admin_client):
    from sensors.models import Location

    bench = Location.objects.create(name="Bench 2")
    probe = Sensor.objects.create(device_id="5c:cf:7f:00:00:0a")
    minute = datetime.now(UTC).replace(second=0, microsecond=0)
    probe.move_to(bench, when=minute - timedelta(minutes=1))
    store_minutes(
        [
            Reading(
                sensor=probe,
                metric="soil_moisture",
                start=minute,
                samples=3,
                value_sum=1800.0,
                value_min=600.0,
                value_max=600.0,
            )
        ]
    )
    page = admin_client.get(f"/locations/{bench.pk}/").content.decode()
    assert 'data-metric="soil_moisture"' in page
    assert "No readings from sensors placed here yet" not in page


def test_an_mqtt_device_has_its_page_api_and_csv_under_its_device_id(admin_client):
    """`tasmota:greenhouse_1` is the key in the URLs, in any letter case, like a MAC in any spelling."""
    device = Sensor.objects.create(device_id="tasmota:greenhouse_1", source="tasmota", name="North Tasmota")
    minute = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=2)
    store_minutes(
        [
            Reading(
                sensor=device,
                metric="pressure",
                start=minute,
                samples=6,
                value_sum=6 * 1013.0,
                value_min=1012.0,
                value_max=1014.0,
            )
        ]
    )
    page = admin_client.get("/sensors/Tasmota:Greenhouse_1/")
    assert page.status_code == 200
    assert 'data-api="/api/sensors/tasmota:greenhouse_1/history"' in page.content.decode()
    data = admin_client.get("/api/sensors/tasmota:greenhouse_1/history", {"metric": "pressure", "range": "1h"}).json()
    assert data["sensor"] == {
        "id": "tasmota:greenhouse_1",
        "source": "tasmota",
        "mac": "tasmota:greenhouse_1",
        "name": "North Tasmota",
    }
    assert (data["label"], data["unit"], data["points"][0]["mean"]) == ("Air pressure", "hPa", 1013.0)
    csv_response = admin_client.get("/sensors/tasmota:greenhouse_1/readings.csv", {"range": "1h"})
    body = b"".join(csv_response.streaming_content).decode()
    assert body.splitlines()[1].startswith("tasmota:greenhouse_1,North Tasmota,,pressure,")
    assert 'filename="tasmotagreenhouse_1_' in csv_response["Content-Disposition"]
    assert admin_client.get("/api/sensors/zigbee:x/history", {"metric": "pressure"}).status_code == 400
    assert admin_client.get("/sensors/mqtt:nobody/").status_code == 404
