"""The WSGI entry point gunicorn serves: what it does beyond Django's own handler."""

from __future__ import annotations

import gc
import io
import sys

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client
from django.utils import timezone

from sensors.models import Reading, Sensor
from sensors.web.dashboard import ShownValue
from tests.seed import store_minutes

pytestmark = pytest.mark.django_db


def _cards_in_memory() -> int:
    return sum(type(thing) is ShownValue for thing in gc.get_objects())  # type(): no lazy object evaluated


def test_a_finished_page_leaves_no_cyclic_garbage_for_a_later_request_to_collect(admin_user):
    """The dashboard's cards hang off the template engine's reference cycles; once gunicorn closes the
    response they are collected at once, not in the middle of some later request."""
    from greenhouse_site.wsgi import application

    now = timezone.now()
    for index in range(3):
        sensor = Sensor.objects.create(device_id=f"5c:cf:7f:00:03:0{index}", last_seen=now)
        store_minutes(
            [
                Reading(
                    sensor=sensor,
                    metric=name,
                    start=now.replace(second=0, microsecond=0),
                    samples=2,
                    value_sum=2 * value,
                    value_min=value,
                    value_max=value,
                )
                for name, value in (("air_temperature", 21.0), ("humidity", 60.0))
            ]
        )
    client = Client()
    client.force_login(admin_user)
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "QUERY_STRING": "partial=1",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "HTTP_HOST": "testserver",
        "HTTP_COOKIE": f"sessionid={client.cookies['sessionid'].value}",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
    }
    statuses: list[str] = []
    # As Django's test client does: the test's transaction must outlive the request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    gc.disable()  # only the collection the entry point asks for may free anything
    try:
        gc.collect()
        answer = application(environ, lambda status, headers, exc_info=None: statuses.append(status))
        body = b"".join(answer)
        assert statuses == ["200 OK"] and b"Dew point" in body
        assert _cards_in_memory() == 3 * 4  # the page's values (2 measured, 2 derived a sensor): unreachable, not freed
        answer.close()  # what gunicorn does once the body is sent
        assert _cards_in_memory() == 0
    finally:
        gc.enable()
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
