"""The admin: sensors listed with state and latest values, moves recorded as placements."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from sensors.models import Location, Reading, Sensor
from tests.seed import store_minutes

pytestmark = pytest.mark.django_db


@pytest.fixture
def sensor() -> Sensor:
    now = timezone.now()
    sensor = Sensor.objects.create(
        device_id="5c:cf:7f:0a:1b:2c", last_seen=now, first_seen=now, temperature_offset=-1.0
    )
    store_minutes(
        [
            Reading(
                sensor=sensor,
                metric="air_temperature",
                start=now.replace(second=0, microsecond=0),
                samples=2,
                value_sum=43.0,
                value_min=21.0,
                value_max=22.0,
            )
        ]
    )
    Sensor.objects.create(device_id="5c:cf:7f:00:00:02", name="Old probe", last_seen=now - timedelta(hours=1))
    return sensor


def test_sensor_list_shows_unnamed_sensors_by_mac_with_state_and_calibrated_latest_values(admin_client, sensor):
    page = admin_client.get("/admin/sensors/sensor/").content.decode()
    assert "5c:cf:7f:0a:1b:2c" in page and "Old probe" in page
    assert "Air temperature 20.5 °C" in page  # mean 21.5 with a -1.0 offset
    assert page.count('alt="True"') == 1 and page.count('alt="False"') == 1  # online / offline


def test_changing_the_location_in_the_form_records_a_placement(admin_client, sensor):
    bench = Location.objects.create(name="North bench")
    response = admin_client.post(
        f"/admin/sensors/sensor/{sensor.pk}/change/",
        {
            "device_id": sensor.device_id,
            "name": "Tomatoes",
            "location": bench.pk,
            "temperature_offset": "0",
            "humidity_offset": "0",
            "placements-TOTAL_FORMS": "0",
            "placements-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    placement = sensor.placements.get()
    assert (placement.location, placement.end) == (bench, None)


def test_bulk_action_moves_sensors_and_closes_their_old_placements(admin_client, sensor):
    north, south = Location.objects.create(name="North"), Location.objects.create(name="South")
    sensor.move_to(north)
    admin_client.post("/admin/sensors/sensor/", {"action": f"move_to_{south.pk}", "_selected_action": [sensor.pk]})
    sensor.refresh_from_db()
    assert sensor.location == south
    assert sensor.placements.get(location=north).end is not None
    assert sensor.placements.get(location=south).end is None


def test_readings_cannot_be_edited_in_the_admin(admin_client, sensor):
    reading = Reading.objects.get()
    assert admin_client.get(f"/admin/sensors/reading/{reading.pk}/change/").status_code == 200  # view only
    admin_client.post(f"/admin/sensors/reading/{reading.pk}/change/", {"samples": 999})
    assert Reading.objects.get().samples == 2


def test_the_admin_needs_a_staff_account(client):
    assert client.get("/admin/sensors/sensor/").status_code == 302


def test_a_logged_in_grower_without_staff_status_cannot_reach_the_admin(client, sensor):
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_user("grower", password="greenhouse")
    client.login(username="grower", password="greenhouse")
    assert client.get("/").status_code == 200
    response = client.get("/admin/sensors/sensor/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_an_mqtt_device_is_added_by_its_device_id_and_filtered_by_source(admin_client, sensor):
    """In reject mode a grower adds a Tasmota by hand as `tasmota:<topic>`, in any letter case."""
    form = {
        "device_id": "Tasmota:North_Bench",
        "name": "North Tasmota",
        "temperature_offset": "0",
        "humidity_offset": "0",
        "placements-TOTAL_FORMS": "0",
        "placements-INITIAL_FORMS": "0",
    }
    assert admin_client.post("/admin/sensors/sensor/add/", form).status_code == 302
    added = Sensor.objects.get(name="North Tasmota")
    assert (added.device_id, added.source) == ("tasmota:north_bench", "tasmota")
    page = admin_client.get("/admin/sensors/sensor/", {"source": "tasmota"}).content.decode()
    assert "North Tasmota" in page and "5c:cf:7f:0a:1b:2c" not in page
    refused = admin_client.post("/admin/sensors/sensor/add/", {**form, "device_id": "zigbee:bench", "name": "Z"})
    assert refused.status_code == 200 and "is not a device id" in refused.content.decode()
