"""The admin: sensors listed with state and latest values, moves recorded as placements."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib import admin
from django.contrib.admin.templatetags.admin_list import items_for_result
from django.db import connections
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import resolve
from django.utils import timezone

from sensors.models import Location, Reading, Sensor
from tests.seed import one_sample, store_minutes
from tests.test_browser import ARTIFACTS, browser  # noqa: F401  (browser is a fixture)

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


def test_last_seen_is_shown_to_the_second_in_the_site_time_zone(admin_client, sensor, settings):
    settings.TIME_ZONE = "Europe/Amsterdam"
    sensor.last_seen = datetime(2026, 7, 1, 10, 4, 5, 600000, tzinfo=UTC)  # 12:04:05 in summer time
    sensor.save()
    page = admin_client.get("/admin/sensors/sensor/").content.decode()
    assert '<td class="field-seen"><span class="nowrap">2026-07-01 12:04:05</span></td>' in page
    # By the last-seen column, oldest first (the default order, by name, puts "Old probe" first).
    oldest_first = admin_client.get("/admin/sensors/sensor/", {"o": "4"}).content.decode()
    assert oldest_first.index("2026-07-01 12:04:05") < oldest_first.index("Old probe")


def test_each_row_has_the_checkbox_djangos_own_widget_draws(admin_client, sensor):
    """The list writes the action checkbox itself (fast); it must stay the markup Django's actions script reads."""
    sensor.name = '<b>"Tom\'s" & co</b>'
    sensor.save()
    model_admin = admin.site._registry[Sensor]
    assert model_admin.action_checkbox(sensor) == admin.ModelAdmin.action_checkbox(model_admin, sensor)
    page = admin_client.get("/admin/sensors/sensor/").content.decode()
    assert admin.ModelAdmin.action_checkbox(model_admin, sensor) in page
    assert "<b>" not in page.split('id="result_list"')[1]  # the name is escaped wherever it is shown


def test_the_sensor_list_reads_the_locations_once_for_its_filter_and_its_move_actions(admin_client, sensor):
    for name in ("Bench 1", "Bench 2"):
        Location.objects.create(name=name)
    with CaptureQueriesContext(connections["default"]) as queries:
        page = admin_client.get("/admin/sensors/sensor/").content.decode()
    assert "Move selected sensors to Bench 2" in page and "?location__id__exact=" in page
    reads = [query["sql"] for query in queries.captured_queries if 'FROM "sensors_location"' in query["sql"]]
    assert len(reads) == 1, reads


def _rows_both_ways(admin_user, query: str = "") -> tuple[list[str], list[str]]:
    """The sensor list's rows as SensorAdmin.result_rows writes them and as Django's own items_for_result does."""
    request = RequestFactory().get(f"/admin/sensors/sensor/{query}")
    request.user = admin_user
    request.resolver_match = resolve("/admin/sensors/sensor/")  # the admin keeps a list's filters in its links
    model_admin = admin.site._registry[Sensor]
    changelist = model_admin.get_changelist_instance(request)
    fast = [row[0] for row in model_admin.result_rows(changelist)]
    django_rows = ["".join(items_for_result(changelist, sensor, None)) for sensor in changelist.result_list]
    return fast, django_rows


def test_the_sensor_list_rows_are_exactly_the_rows_django_writes(admin_user, sensor):
    """The list writes its rows itself (half the page's time in Django's cell machinery): same markup, every case."""
    place = Location.objects.create(name='Bench <1> & "south"')
    sensor.name = '<b>"Tom\'s" & co</b>'
    sensor.location = place
    sensor.save()
    Sensor.objects.create(device_id="5c:cf:7f:00:00:03", name="0pk0")  # never seen, no values, not placed
    soil = Sensor.objects.create(device_id="5c:cf:7f:00:00:04", soil_dry_raw=800, soil_wet_raw=400, location=place)
    now = timezone.now().replace(second=0, microsecond=0)
    store_minutes([one_sample(soil, "soil_moisture", now, 600.0)])
    # The last: a filter that holds the link's primary-key slot (only the path's may be replaced).
    for query in ("", f"?location__id__exact={place.pk}&o=4", "?q=5c%3Acf&source__exact=tcp", "?q=0pk0"):
        fast, django_rows = _rows_both_ways(admin_user, query)
        assert len(fast) == len(django_rows) >= 1
        assert fast == django_rows, query
    # ... and the page shows them (the results template renders the one-string rows).
    client = Client()
    client.force_login(admin_user)
    page = client.get("/admin/sensors/sensor/").content.decode()
    assert all(f"<tr>{row}</tr>" in page for row in _rows_both_ways(admin_user)[0])


def test_a_popup_list_is_left_to_django(admin_user, sensor):
    request = RequestFactory().get("/admin/sensors/sensor/?_popup=1&_to_field=id")
    request.user = admin_user
    model_admin = admin.site._registry[Sensor]
    assert model_admin.result_rows(model_admin.get_changelist_instance(request)) is None


@pytest.mark.django_db(transaction=True)
def test_select_all_and_move_in_chromium(browser, live_server, admin_user):  # noqa: F811
    """Django's actions script works with the list's checkboxes: "select all", choose a move, Go."""
    south = Location.objects.create(name="South")
    for number in range(3):
        Sensor.objects.create(device_id=f"5c:cf:7f:00:00:1{number}", last_seen=timezone.now())
    client = Client()
    client.force_login(admin_user)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
    page = context.new_page()
    errors = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.goto(live_server.url + "/admin/sensors/sensor/")
    page.check("#action-toggle")
    assert page.locator("input.action-select:checked").count() == 3
    assert "3 of 3 selected" in page.inner_text(".action-counter")
    page.select_option("select[name=action]", f"move_to_{south.pk}")
    page.click("button[name=index]")
    page.wait_for_selector(".messagelist")
    page.screenshot(path=str(ARTIFACTS / "admin-moved.png"))
    assert "Moved 3 sensors to South." in page.inner_text(".messagelist")
    assert set(Sensor.objects.values_list("location__name", flat=True)) == {"South"}
    assert errors == []
    context.close()
    connections.close_all()


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
