"""Who may do what: permissions, not just is_staff; control pages never public; the demo password flagged."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import Client

from control.models import Event, Output
from sensors.management.commands.ensure_demo_user import GROWERS, ensure_growers_group
from sensors.models import Location, Placement, Sensor

pytestmark = pytest.mark.django_db


def logged_in(username: str, *, staff: bool = False, permissions: tuple[str, ...] = (), group: bool = False) -> Client:
    user = get_user_model().objects.create_user(username, password="a long passphrase 7", is_staff=staff)
    for name in permissions:
        app_label, codename = name.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    if group:
        user.groups.add(ensure_growers_group())
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def placed() -> Sensor:
    sensor = Sensor.objects.create(device_id="5c:cf:7f:00:00:01")
    sensor.move_to(Location.objects.create(name="North bench"))
    return sensor


def test_view_only_staff_cannot_move_sensors_with_the_admin_action(placed):
    viewer = logged_in("viewer", staff=True, permissions=("sensors.view_sensor",))
    changelist = viewer.get("/admin/sensors/sensor/").content.decode()
    assert "move_to_none" not in changelist  # the actions are not offered ...
    response = viewer.post(
        "/admin/sensors/sensor/", {"action": "move_to_none", "_selected_action": [placed.pk], "index": "0"}
    )
    assert response.status_code in (200, 302, 403)  # ... and refused when posted anyway
    assert Placement.objects.get(sensor=placed).end is None
    placed.refresh_from_db()
    assert placed.location is not None


def test_staff_who_may_change_sensors_can_move_them(placed):
    editor = logged_in("editor", staff=True, permissions=("sensors.view_sensor", "sensors.change_sensor"))
    assert "move_to_none" in editor.get("/admin/sensors/sensor/").content.decode()
    editor.post("/admin/sensors/sensor/", {"action": "move_to_none", "_selected_action": [placed.pk], "index": "0"})
    placed.refresh_from_db()
    assert placed.location is None


def test_the_manual_override_needs_its_permission_not_staff_status():
    heater = Output.objects.create(name="Heater", http_on_url="http://192.0.2.1/on")
    url = f"/control/outputs/{heater.pk}/override"
    staff = logged_in("staff", staff=True, permissions=("control.view_output",))
    assert staff.post(url, {"state": "off", "minutes": "1440"}).status_code == 403
    heater.refresh_from_db()
    assert heater.override_until is None and not Event.objects.exists()
    grower = logged_in("grower2", group=True)  # a member of the Growers group
    assert grower.post(url, {"state": "off", "minutes": "30"}).status_code == 302
    heater.refresh_from_db()
    assert heater.override_on is False and heater.override_by == "grower2"


def test_control_pages_stay_behind_a_login_when_the_charts_are_public(client, settings):
    settings.PUBLIC_READ_ONLY = True
    assert client.get("/").status_code == 200
    for url in ("/control/", "/control/events/"):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_growers_group_is_set_up_by_ensure_demo_user():
    call_command("ensure_demo_user", stdout=None)
    from django.contrib.auth.models import Group

    group = Group.objects.get(name=GROWERS)
    assert group.permissions.filter(codename="override_output").exists()
    assert get_user_model().objects.get(username="grower").groups.filter(name=GROWERS).exists()


def test_check_deploy_fails_while_the_demo_user_has_the_demo_password(capsys):
    call_command("ensure_demo_user")
    assert "still has the demo password" in capsys.readouterr().err
    with pytest.raises(SystemCheckError, match=r"sensors\.E020"):
        call_command("check", "--deploy", "--tag", "security")
    user = get_user_model().objects.get(username="grower")
    user.set_password("a long passphrase nobody knows 42")
    user.save()
    call_command("check", "--deploy", "--tag", "security", "--fail-level", "ERROR")  # no error now


def test_device_answers_are_shown_to_staff_only_and_the_override_form_to_who_may_use_it(admin_client):
    heater = Output.objects.create(name="Heater", http_on_url="http://192.0.2.1/on")
    Event.objects.create(
        kind="command",
        output=heater,
        message="Heater ON: cold",
        ok=False,
        detail="HTTP 500 relay fault: firmware 14.2.0 build 20240101 chip ESP8266EX",
    )
    grower = logged_in("grower3")
    for url in ("/control/", "/control/events/"):
        page = grower.get(url).content.decode()
        assert "failed" in page and "firmware 14.2.0" not in page
        assert "firmware 14.2.0" in admin_client.get(url).content.decode()
    assert "/override" not in grower.get("/control/").content.decode()
    assert "/override" in logged_in("member", group=True).get("/control/").content.decode()
