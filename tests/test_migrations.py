"""Every model change ships with its migration, or an upgrade would leave the database behind the code."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_no_model_change_is_missing_a_migration():
    out = io.StringIO()
    try:
        call_command("makemigrations", "--check", "--dry-run", stdout=out, stderr=out)
    except SystemExit as exc:
        pytest.fail(f"models changed without a migration (run makemigrations):\n{out.getvalue()}\n{exc}")


@pytest.mark.django_db(transaction=True)
def test_upgrading_to_device_ids_keeps_every_sensor_reading_and_url(client, django_user_model):
    """0009: `mac` becomes `device_id`; every sensor is a TCP board with the MAC it had, every URL still works."""
    from datetime import UTC, datetime

    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    from sensors.models import RefusedSensor, Sensor

    before = [("sensors", "0008_live_readings")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    sensor = old.get_model("sensors", "Sensor").objects.create(mac="5c:cf:7f:0a:1b:2c", name="Tomatoes")
    old.get_model("sensors", "Reading").objects.create(
        sensor=sensor,
        metric="humidity",
        start=datetime(2026, 11, 30, 10, tzinfo=UTC),
        samples=30,
        value_sum=1500.0,
        value_min=49.0,
        value_max=51.0,
    )
    old.get_model("sensors", "RefusedSensor").objects.create(
        mac="5c:cf:7f:00:00:09",
        reason="unknown_sensor",
        lines=3,
        first_refused=datetime(2026, 11, 30, tzinfo=UTC),
        last_refused=datetime(2026, 11, 30, tzinfo=UTC),
    )
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    upgraded = Sensor.objects.get()
    assert (upgraded.pk, upgraded.device_id, upgraded.source, upgraded.name) == (
        sensor.pk,
        "5c:cf:7f:0a:1b:2c",
        "tcp",
        "Tomatoes",
    )
    assert upgraded.offline_since is None and upgraded.readings.get().samples == 30
    assert RefusedSensor.objects.get().device_id == "5c:cf:7f:00:00:09"
    client.force_login(django_user_model.objects.create_superuser("admin", "a@example.org", "pw"))
    for spelling in ("5c:cf:7f:0a:1b:2c", "5C-CF-7F-0A-1B-2C", "5ccf7f0a1b2c"):
        assert client.get(f"/sensors/{spelling}/").status_code == 200
    history = client.get("/api/sensors/5c:cf:7f:0a:1b:2c/history", {"metric": "humidity", "range": "7d"}).json()
    assert history["sensor"]["mac"] == "5c:cf:7f:0a:1b:2c"
