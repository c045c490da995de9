"""Crafted query parameters: every page and API answers them with a clear 400 (or the page), never a 500."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from control.models import Output
from sensors.models import Location, Sensor
from tests.seed import one_sample, store_minutes

pytestmark = pytest.mark.django_db

MAC = "5c:cf:7f:00:00:01"


@pytest.fixture
def site(db) -> dict:
    now = timezone.now().replace(second=0, microsecond=0)
    bench = Location.objects.create(name="Bench")
    sensor = Sensor.objects.create(device_id=MAC, last_seen=now)
    sensor.move_to(bench, now - timedelta(days=1))
    store_minutes(one_sample(sensor, "humidity", now - timedelta(minutes=i), 50.0) for i in range(5))
    output = Output.objects.create(name="Heater", http_on_url="http://192.0.2.1/on")
    return {"location": bench.pk, "output": output.pk}


# The crafted values the attack review found, then anything hypothesis invents.
FOUND = [
    "²",
    "99999999999999999999999",
    "9223372036854775808",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "-1",
    "1e9",
    "\x00",
    "nan",
    "' OR 1=1 --",
    "%00",
    "1" * 5000,
]
texts = st.one_of(st.sampled_from(FOUND), st.text(max_size=60), st.from_regex(r"\A[0-9:+TZ.-]{0,30}\Z"))


def pages(site: dict) -> dict[str, list[str]]:
    """Every GET page and API with the parameters it reads."""
    history = ["metric", "range", "start", "end", "max_points", "calibrated"]
    return {
        f"/api/sensors/{MAC}/history": history,
        f"/api/locations/{site['location']}/history": history,
        f"/sensors/{MAC}/readings.csv": ["range", "start", "end", "resolution", "calibrated"],
        f"/sensors/{MAC}/": ["range", "start", "end"],
        f"/locations/{site['location']}/": ["range"],
        "/": ["partial"],
        "/control/": [],
        "/control/events/": ["rule", "output", "page"],
    }


def assert_not_a_server_error(response) -> None:
    assert response.status_code < 500, response.content[:300]
    if response.status_code == 400:
        assert response.content.strip(), "a 400 says what is wrong"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_query_parameter_of_any_page_gives_a_server_error(admin_client, site, data):
    for url, names in pages(site).items():
        chosen = data.draw(st.lists(st.sampled_from(names), unique=True), label=url) if names else []
        params = {name: data.draw(texts, label=name) for name in chosen}
        if "metric" in names and "metric" not in params:
            params["metric"] = "humidity"
        response = admin_client.get(url, params)
        if url.endswith(".csv") and response.status_code == 200:
            b"".join(response.streaming_content)  # a stream fails while it is read, not before
        assert_not_a_server_error(response)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(segment=st.one_of(st.sampled_from(FOUND), st.text(min_size=1, max_size=40)))
def test_no_crafted_sensor_or_location_in_the_path_gives_a_server_error(admin_client, site, segment):
    quoted = quote(segment, safe="")
    for url in (f"/sensors/{quoted}/", f"/api/sensors/{quoted}/history?metric=humidity", f"/locations/{quoted}/"):
        assert_not_a_server_error(admin_client.get(url))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(state=texts, minutes=texts)
def test_no_crafted_override_gives_a_server_error(admin_client, site, state, minutes):
    response = admin_client.post(f"/control/outputs/{site['output']}/override", {"state": state, "minutes": minutes})
    assert_not_a_server_error(response)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/control/events/?rule=%C2%B2", "rule must be an id"),
        ("/control/events/?rule=99999999999999999999999", "rule must be an id"),
        ("/control/events/?output=9223372036854775808", "output must be an id"),
        (f"/api/sensors/{MAC}/history?metric=humidity&start=0001-01-01T00:00:00%2B01:00&end=2026-01-01", "start"),
        (f"/sensors/{MAC}/readings.csv?start=2026-01-01&end=9999-12-31T23:59:59-01:00", "end"),
    ],
)
def test_the_crafted_parameters_of_the_review_answer_400_with_a_reason(admin_client, site, url, message):
    response = admin_client.get(url)
    assert response.status_code == 400
    assert message in response.content.decode()


def test_a_crafted_override_duration_answers_400(admin_client, site):
    response = admin_client.post(f"/control/outputs/{site['output']}/override", {"state": "off", "minutes": "²"})
    assert response.status_code == 400 and "minutes must be a whole number" in response.content.decode()


@pytest.mark.parametrize("value", ["\x00", "a\x00b"])
def test_a_nul_character_in_a_parameter_is_not_a_server_error(admin_client, site, value):
    for url, names in pages(site).items():
        for name in names:
            params = {"metric": "humidity", name: value}
            assert_not_a_server_error(admin_client.get(url, params))
