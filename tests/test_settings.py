"""Configuration mistakes stop start-up with a message naming the setting."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness.processes import ROOT


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "greenhouse_site.settings", **env}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("COLLECTOR_PORT", "fivefivefive"),
        ("COLLECTOR_FLUSH_INTERVAL", "soon"),
        ("COLLECTOR_FLUSH_INTERVAL", "5s"),  # django-environ alone read 5.0
        ("DEBUG", "maybe"),
    ],
)
def test_malformed_value_names_the_variable(variable, value):
    result = manage("check", **{variable: value})
    assert result.returncode != 0
    assert f"Environment variable {variable}={value!r} is not a valid" in result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("COLLECTOR_PORT", "70000", "COLLECTOR_PORT=70000 is not a TCP port"),
        ("COLLECTOR_FLUSH_INTERVAL", "0", "COLLECTOR_FLUSH_INTERVAL must be a positive number"),
        ("COLLECTOR_MAX_CONNECTIONS", "0", "COLLECTOR_MAX_CONNECTIONS must be at least 1"),
        ("WEB_CLIENT_TIMEOUT", "-1", "WEB_CLIENT_TIMEOUT=-1.0 must be 0 (no limit) or a number of seconds"),
        ("WEB_CLIENT_TIMEOUT", "1e10", "WEB_CLIENT_TIMEOUT=10000000000.0 must be 0 (no limit) or a number"),
    ],
)
def test_out_of_range_value_is_a_system_check_error(variable, value, message):
    result = manage("check", **{variable: value})
    assert result.returncode == 1
    assert message in result.stderr


def test_unknown_log_level_is_refused():
    result = manage("check", LOG_LEVEL="LOUD")
    assert result.returncode != 0
    assert "LOG_LEVEL='LOUD' is not one of" in result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("COLLECTOR_ALLOWED_NETWORKS", "192.168.1.0/24,greenhouse", "'greenhouse' is not a network"),
        ("COLLECTOR_UNKNOWN_SENSORS", "ignore", "must be register or reject"),
    ],
)
def test_bad_sender_policy_is_a_system_check_error(variable, value, message):
    result = manage("check", **{variable: value})
    assert result.returncode == 1
    assert message in result.stderr


def test_check_deploy_passes_with_the_documented_production_environment(tmp_path):
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DATABASE_URL=f"sqlite:///{tmp_path / 'fresh.sqlite3'}",  # not a checkout's demo database
        SECRET_KEY="k" * 20 + "a-long-random-production-secret-0123456789",
        DEBUG="false",
        HTTPS="true",
        ALLOWED_HOSTS="greenhouse.example",
    )
    assert result.returncode == 0, result.stderr


def test_check_deploy_flags_the_development_defaults():
    result = manage("check", "--deploy", "--fail-level", "WARNING", DEBUG="true", SECRET_KEY="")
    assert result.returncode == 1
    assert "security.W009" in result.stderr  # the development SECRET_KEY
    assert "security.W018" in result.stderr  # DEBUG


@pytest.mark.parametrize("key", ["", "django-insecure-greenhouse-development-key-change-me"])
def test_debug_off_without_a_real_secret_key_refuses_to_start_and_says_how_to_set_one(key):
    for command in (["check"], ["collect", "--port", "0"]):
        result = manage(*command, DEBUG="false", SECRET_KEY=key)
        assert result.returncode != 0
        assert "SECRET_KEY is not set (or is the published development key)" in result.stderr
        assert "secrets.token_urlsafe" in result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"COLLECTOR_MQTT_URL": "http://broker:1883"}, "must start with mqtt:// or mqtts://, not 'http'"),
        ({"COLLECTOR_MQTT_URL": "mqtt://:1883"}, "COLLECTOR_MQTT_URL has no host"),
        ({"COLLECTOR_MQTT_URL": "mqtt://broker:99999"}, "COLLECTOR_MQTT_URL is not a URL"),
        ({"COLLECTOR_MQTT_URL": "mqtt://broker/tele/#"}, "takes no path or query"),
        ({"COLLECTOR_MQTT_URL": "mqtt://broker:0"}, "port 0 is not a broker's port"),
        (
            {"COLLECTOR_MQTT_URL": "mqtt://broker", "COLLECTOR_MQTT_TOPICS": "tele/+/SENSOR,tele/a+/x"},
            "'tele/a+/x' is not an MQTT topic filter",
        ),
        (
            {"COLLECTOR_MQTT_URL": "mqtt://broker", "COLLECTOR_MQTT_TOPICS": "#/tele"},
            "'#/tele' is not an MQTT topic filter",
        ),
        (
            {"COLLECTOR_MQTT_URL": "mqtt://broker", "COLLECTOR_MQTT_CLIENT_ID": "x" * 24},
            "COLLECTOR_MQTT_CLIENT_ID must be 1 to 23",
        ),
        ({"COLLECTOR_MQTT_URL": "mqtts://broker", "COLLECTOR_MQTT_CA_FILE": "/nonexistent/ca.pem"}, "is not a file"),
    ],
)
def test_a_broker_setting_mistake_is_a_system_check_error(env, message):
    result = manage("check", **env)
    assert result.returncode == 1, result.stderr
    assert message in result.stderr


def test_a_broker_password_never_appears_in_the_check_output():
    result = manage("check", COLLECTOR_MQTT_URL="ftp://grower:s3cret-pass@broker:1883")
    assert result.returncode == 1 and "s3cret-pass" not in result.stderr + result.stdout
