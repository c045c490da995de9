"""What the grower sees of control: overview, event log, manual override, dashboard, admin validation."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from control.checks import control_settings_check
from control.models import Event, Output, Rule
from sensors.models import Sensor

pytestmark = pytest.mark.django_db


@pytest.fixture
def heater() -> Output:
    output = Output.objects.create(name="Heater", transport="http", http_on_url="http://192.168.1.50/relay/0?turn=on")
    sensor = Sensor.objects.create(device_id="5c:cf:7f:0a:1b:2c", name="North bench")
    Rule.objects.create(
        name="Heat the north bench",
        sensor=sensor,
        metric="air_temperature",
        threshold=5,
        release=7,
        output=output,
        on_trigger="on",
        on_release="off",
        phase="triggered",
        last_value=4.2,
    )
    Output.objects.filter(pk=output.pk).update(is_on=True, change_reason="Heat the north bench: ON (4.20 ...)")
    return output


@pytest.fixture
def grower(client) -> Client:
    get_user_model().objects.create_user("grower", password="greenhouse")
    client.login(username="grower", password="greenhouse")
    return client


def test_overview_shows_output_state_rule_state_and_the_override_form_to_staff(admin_client, heater):
    page = admin_client.get("/control/").content.decode()
    assert 'class="state state-on">on<' in page and 'class="phase-triggered">triggered<' in page
    assert "Heat the north bench" in page and 'name="csrfmiddlewaretoken"' in page
    assert f'action="/control/outputs/{heater.pk}/override"' in page


def test_a_grower_without_staff_status_sees_states_but_no_override_form(grower, heater):
    page = grower.get("/control/").content.decode()
    assert 'class="state state-on">on<' in page and "/override" not in page


def test_staff_override_is_recorded_as_an_event_and_held_for_the_given_minutes(admin_client, heater):
    response = admin_client.post(f"/control/outputs/{heater.pk}/override", {"state": "off", "minutes": "30"})
    assert response.status_code == 302 and response["Location"] == "/control/"
    heater.refresh_from_db()
    assert heater.override_on is False and heater.overridden() and heater.override_by == "admin"
    assert 29 * 60 < (heater.override_until - Event.objects.get().time).total_seconds() <= 30 * 60
    event = Event.objects.get(kind="override")
    assert event.user == "admin" and "OFF by hand for 30 minutes" in event.message
    assert "OFF by hand" in admin_client.get("/control/").content.decode()  # the message after the redirect
    admin_client.post(f"/control/outputs/{heater.pk}/override", {"state": "auto"})
    heater.refresh_from_db()
    assert not heater.overridden() and heater.override_on is None


def test_override_is_refused_to_non_staff_and_anonymous_users(grower, heater):
    assert grower.post(f"/control/outputs/{heater.pk}/override", {"state": "on"}).status_code == 403
    grower.logout()
    response = grower.post(f"/control/outputs/{heater.pk}/override", {"state": "on"})
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    heater.refresh_from_db()
    assert heater.override_until is None and not Event.objects.exists()


def test_override_needs_the_csrf_token(admin_user, heater):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert client.post(f"/control/outputs/{heater.pk}/override", {"state": "on"}).status_code == 403
    assert not Event.objects.exists()


@pytest.mark.parametrize(
    ("data", "error"),
    [({"state": "maybe"}, "state must be on, off or auto"), ({"state": "on", "minutes": "-5"}, "minutes must be")],
)
def test_override_with_bad_input_is_a_clear_error(admin_client, heater, data, error):
    response = admin_client.post(f"/control/outputs/{heater.pk}/override", data)
    assert response.status_code == 400 and error in response.content.decode()


def test_override_only_accepts_post(admin_client, heater):
    assert admin_client.get(f"/control/outputs/{heater.pk}/override").status_code == 405


def test_dashboard_shows_each_rule_state(admin_client, heater):
    body = admin_client.get("/?partial=1").content.decode()
    assert "Heat the north bench" in body and "phase-triggered" in body and "Heater: on" in body


def test_event_log_lists_events_newest_first_and_filters_by_output(admin_client, heater):
    other = Output.objects.create(name="Vent", transport="manual")
    Event.objects.create(kind="command", output=heater, message="Heater ON: cold", ok=True, detail="HTTP 200")
    Event.objects.create(kind="command", output=other, message="Vent ON: hot", ok=False, detail="timed out")
    page = admin_client.get("/control/events/").content.decode()
    assert page.index("Vent ON") < page.index("Heater ON") and "failed: timed out" in page
    page = admin_client.get(f"/control/events/?output={heater.pk}").content.decode()
    assert "Heater ON" in page and "Vent ON" not in page
    assert admin_client.get("/control/events/?output=x").status_code == 400


def test_control_pages_need_a_login(client):
    assert client.get("/control/").status_code == 302
    assert client.get("/control/events/").status_code == 302


def rule_form(**changes) -> dict:
    data = {
        "name": "Vent",
        "enabled": "on",
        "kind": "threshold",
        "metric": "air_temperature",
        "direction": "above",
        "threshold": "30",
        "release": "27",
        "duration": "00:00:00",
        "offline_after": "00:10:00",
        "reads": "latest",
        "max_age": "00:02:00",
        "min_samples": "5",
        "on_trigger": "nothing",
        "on_release": "nothing",
        "cooldown": "00:15:00",
    }
    data.update(changes)
    return data


def test_admin_refuses_a_release_threshold_on_the_wrong_side(admin_client):
    sensor = Sensor.objects.create(device_id="5c:cf:7f:0a:1b:2c")
    response = admin_client.post("/admin/control/rule/add/", rule_form(sensor=sensor.pk, release="33"))
    assert "For an &#x27;above&#x27; rule the release threshold must be at or below" in response.content.decode()
    response = admin_client.post("/admin/control/rule/add/", rule_form(sensor=sensor.pk))
    assert response.status_code == 302 and Rule.objects.get().release == 27


@pytest.mark.parametrize(
    ("reads", "slow"),
    [("mean", "COLLECTOR_FLUSH_INTERVAL"), ("latest", "COLLECTOR_LIVE_INTERVAL")],
)
def test_admin_refuses_a_max_age_the_collector_cannot_keep_up_with(admin_client, settings, reads, slow):
    setattr(settings, slow, 60)
    settings.CONTROL_INTERVAL = 5
    sensor = Sensor.objects.create(device_id="5c:cf:7f:0a:1b:2c")
    form = rule_form(sensor=sensor.pk, max_age="00:01:00", reads=reads)
    response = admin_client.post("/admin/control/rule/add/", form)
    assert "would always be stale" in response.content.decode() and not Rule.objects.exists()
    setattr(settings, slow, 5)
    assert admin_client.post("/admin/control/rule/add/", form).status_code == 302


def test_admin_refuses_a_switching_rule_without_an_output_and_an_http_output_without_url(admin_client):
    sensor = Sensor.objects.create(device_id="5c:cf:7f:0a:1b:2c")
    response = admin_client.post("/admin/control/rule/add/", rule_form(sensor=sensor.pk, on_trigger="on"))
    assert "Choose the output to switch." in response.content.decode()
    response = admin_client.post(
        "/admin/control/output/add/",
        {"name": "Heater", "transport": "http", "http_method": "GET", "min_on": "0", "min_off": "0"},
    )
    assert "An HTTP output needs the URL to call." in response.content.decode() and not Output.objects.exists()


def test_admin_refuses_an_mqtt_output_with_a_wildcard_topic():
    output = Output(name="Relay", transport="mqtt", mqtt_broker="mqtt://127.0.0.1:1883", mqtt_topic="cmnd/#")
    with pytest.raises(Exception, match="no # or \\+ wildcards"):
        output.full_clean()


def test_configuration_mistakes_are_system_check_errors(settings):
    settings.CONTROL_INTERVAL = 0
    settings.CONTROL_NOTIFY_EMAILS = ["grower"]
    settings.CONTROL_NOTIFY_WEBHOOK = "ftp://hooks"
    ids = {error.id for error in control_settings_check(None)}
    assert ids == {"control.E001", "control.E004", "control.E005"}


def test_events_cannot_be_edited_in_the_admin(admin_client):
    event = Event.objects.create(kind="trigger", message="cold", time=Event._meta.get_field("time").default())
    assert admin_client.get(f"/admin/control/event/{event.pk}/change/").status_code == 200
    admin_client.post(f"/admin/control/event/{event.pk}/change/", {"message": "edited"})
    assert Event.objects.get().message == "cold"
