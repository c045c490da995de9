"""Configuration mistakes reported as Django system checks (shown by every manage.py command)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from django.conf import settings
from django.core.checks import Error, Tags, register
from django.db import DatabaseError, connections

from .ingest.mqtt import MqttConfig, MqttUrlError, valid_topic_filter
from .storage import SUPPORTED_VENDORS


@register()
def collector_settings_check(app_configs, **kwargs) -> list[Error]:
    errors = []
    if not 0 <= settings.COLLECTOR_PORT <= 65535:
        errors.append(
            Error(f"COLLECTOR_PORT={settings.COLLECTOR_PORT} is not a TCP port (0-65535).", id="sensors.E001")
        )
    for name in (
        "COLLECTOR_FLUSH_INTERVAL",
        "COLLECTOR_OPEN_MINUTE_INTERVAL",
        "COLLECTOR_STATS_INTERVAL",
        "COLLECTOR_IDLE_TIMEOUT",
        "COLLECTOR_LINE_TIMEOUT",
        "COLLECTOR_LIVE_INTERVAL",
    ):
        if getattr(settings, name) <= 0:
            errors.append(Error(f"{name} must be a positive number of seconds.", id="sensors.E002"))
    for name in (
        "COLLECTOR_MAX_CONNECTIONS",
        "COLLECTOR_MAX_METRICS_PER_SENSOR",
        "COLLECTOR_MAX_PENDING_BUCKETS",
        "COLLECTOR_JOURNAL_REPLAY_BUCKETS",
    ):
        if getattr(settings, name) < 1:
            errors.append(Error(f"{name} must be at least 1.", id="sensors.E003"))
    for name in ("COLLECTOR_MAX_NEW_SENSORS_PER_MINUTE", "COLLECTOR_MAX_SENSORS"):
        if not 1 <= getattr(settings, name) <= 100_000:
            errors.append(Error(f"{name} must be between 1 and 100000.", id="sensors.E008"))
    if settings.COLLECTOR_MAX_CONNECTIONS_PER_ADDRESS < 0:
        errors.append(
            Error("COLLECTOR_MAX_CONNECTIONS_PER_ADDRESS must be 0 (half the maximum) or more.", id="sensors.E007")
        )
    for cidr in settings.COLLECTOR_ALLOWED_NETWORKS:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            errors.append(
                Error(f"COLLECTOR_ALLOWED_NETWORKS: {cidr!r} is not a network like 192.168.1.0/24.", id="sensors.E004")
            )
    if settings.COLLECTOR_UNKNOWN_SENSORS not in ("register", "reject"):
        errors.append(
            Error(
                f"COLLECTOR_UNKNOWN_SENSORS={settings.COLLECTOR_UNKNOWN_SENSORS!r} must be register or reject.",
                id="sensors.E005",
            )
        )
    if settings.COLLECTOR_JOURNAL_SYNC_INTERVAL < 0 or settings.COLLECTOR_JOURNAL_SYNC_INTERVAL > 60:
        errors.append(
            Error(
                "COLLECTOR_JOURNAL_SYNC_INTERVAL must be between 0 (fsync before every read) and 60 seconds.",
                id="sensors.E009",
            )
        )
    if settings.COLLECTOR_JOURNAL_MAX_BYTES < 1 << 20:
        errors.append(Error("COLLECTOR_JOURNAL_MAX_BYTES must be at least 1048576 (1 MiB).", id="sensors.E011"))
    errors.extend(_mqtt_errors())
    if settings.MINUTE_RETENTION_DAYS < 0:
        errors.append(
            Error(
                f"MINUTE_RETENTION_DAYS={settings.MINUTE_RETENTION_DAYS} must be 0 (keep forever) or a number of days.",
                id="sensors.E006",
            )
        )
    return errors


def _mqtt_errors() -> list[Error]:
    """COLLECTOR_MQTT_*: a broker URL the collector can use, topic filters a broker accepts."""
    errors: list[Error] = []
    if not settings.COLLECTOR_MQTT_URL:
        return errors
    try:
        MqttConfig.from_url(settings.COLLECTOR_MQTT_URL)
    except MqttUrlError as exc:
        errors.append(Error(str(exc), id="sensors.E021"))
    for topic in settings.COLLECTOR_MQTT_TOPICS:
        if not valid_topic_filter(topic):
            errors.append(
                Error(
                    f"COLLECTOR_MQTT_TOPICS: {topic!r} is not an MQTT topic filter (like tele/+/SENSOR).",
                    id="sensors.E022",
                )
            )
    if not 1 <= len(settings.COLLECTOR_MQTT_CLIENT_ID) <= 23 or not settings.COLLECTOR_MQTT_CLIENT_ID.isascii():
        errors.append(
            Error(
                "COLLECTOR_MQTT_CLIENT_ID must be 1 to 23 ASCII characters (what every broker accepts).",
                id="sensors.E023",
            )
        )
    if settings.COLLECTOR_MQTT_MAX_PAYLOAD < 64:
        errors.append(Error("COLLECTOR_MQTT_MAX_PAYLOAD must be at least 64 bytes.", id="sensors.E024"))
    if settings.COLLECTOR_MQTT_CA_FILE and not Path(settings.COLLECTOR_MQTT_CA_FILE).is_file():
        errors.append(
            Error(f"COLLECTOR_MQTT_CA_FILE={settings.COLLECTOR_MQTT_CA_FILE!r} is not a file.", id="sensors.E025")
        )
    return errors


@register()
def web_settings_check(app_configs, **kwargs) -> list[Error]:
    if not 0 <= settings.WEB_CLIENT_TIMEOUT <= 86_400:  # a socket refuses a timeout of ~1e10 s: every page a 500
        return [
            Error(
                f"WEB_CLIENT_TIMEOUT={settings.WEB_CLIENT_TIMEOUT} must be 0 (no limit) "
                "or a number of seconds up to 86400.",
                id="sensors.E026",
            )
        ]
    return []


@register()
def database_vendor_check(app_configs, **kwargs) -> list[Error]:
    vendor = connections["default"].vendor
    if vendor not in SUPPORTED_VENDORS:
        return [
            Error(
                f"The collector cannot merge readings on a {vendor} database.",
                hint="Use SQLite (the default) or PostgreSQL in DATABASE_URL.",
                id="sensors.E010",
            )
        ]
    return []


@register(Tags.security, deploy=True)
def demo_password_check(app_configs, **kwargs) -> list[Error]:
    """`check --deploy` fails while the `make run` demo account still has its published password."""
    from .management.commands.ensure_demo_user import DEMO_PASSWORD, DEMO_USERNAME, demo_password_in_use

    try:
        in_use = demo_password_in_use()
    except DatabaseError:  # not migrated yet: nobody can log in anyway
        return []
    if not in_use:
        return []
    return [
        Error(
            f"The user {DEMO_USERNAME!r} still has the demo password {DEMO_PASSWORD!r}.",
            hint=f"Change it: python manage.py changepassword {DEMO_USERNAME} (or delete the user in the admin).",
            id="sensors.E020",
        )
    ]
