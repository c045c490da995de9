"""The web UI as deploy/supervisord.conf serves it (gunicorn, [program:web]'s command line), over real sockets.

What a greenhouse LAN does to it: phones on a weak Wi-Fi that open a request and stall, a long
download read slowly, a download cancelled half-way. None may stop the pages answering, cut a
download short or print a traceback.
"""

from __future__ import annotations

import http.client
import socket
import struct
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from harness.processes import LoggedProcess, free_port, web_argv
from sensors.models import Reading, Sensor
from tests.conftest import manage_env
from tests.seed import store_minutes

pytestmark = pytest.mark.django_db(transaction=True)

MAC = "5c:cf:7f:0a:1b:2c"
WORKERS = 4  # deploy/supervisord.conf
CSV = f"/sensors/{MAC}/readings.csv?range=30d&resolution=minute&calibrated=0"


class WebServer(LoggedProcess):
    """gunicorn with the shipped command line; `extra` options are appended (the last one of a kind wins)."""

    def __init__(self, *extra: str, **env: str) -> None:
        self.port = free_port()
        environment = manage_env(DEBUG="false", ALLOWED_HOSTS="127.0.0.1", PUBLIC_READ_ONLY="true", **env)
        environment.pop("GUNICORN_CMD_ARGS", None)
        super().__init__([*web_argv(self.port), *extra], environment)
        deadline = time.monotonic() + 60
        # Every worker booted (each loads Django on its own), then answering.
        while self.output.count("Booting worker") < WORKERS or self.status("/accounts/login/", timeout=2) != 200:
            assert self.process.poll() is None and time.monotonic() < deadline, f"gunicorn not up:\n{self.output}"
            time.sleep(0.2)

    def status(self, path: str, timeout: float) -> int | str:
        """The HTTP status of GET `path`, or what went wrong within `timeout` seconds."""
        try:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            connection.request("GET", path)
            answer = connection.getresponse()
            answer.read()
            connection.close()
            return answer.status
        except OSError as error:
            return type(error).__name__

    def open(self, path: str, receive_buffer: int | None = None) -> socket.socket:
        """A connection that has sent a whole GET request for `path` (a small receive buffer makes a slow reader)."""
        client = socket.socket()
        if receive_buffer:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        client.connect(("127.0.0.1", self.port))
        client.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        return client


@pytest.fixture
def start_web() -> Iterator:
    started: list[WebServer] = []

    def start(*extra: str, **env: str) -> WebServer:
        started.append(WebServer(*extra, **env))
        return started[-1]

    yield start
    for server in started:
        server.stop(30)
    for server in started:
        server.assert_no_traceback()
        assert "WORKER TIMEOUT" not in server.output, server.output


@pytest.fixture
def weeks_of_minutes() -> int:
    """A sensor's 20 days of minutes, 3 metrics: 86,000 CSV lines, 7 MB, more than the sockets between the
    server and a reader hold (Linux lets a sender's buffer grow to 4 MB), so a slow reader makes it wait."""
    sensor = Sensor.objects.create(device_id=MAC, name="Tomatoes")
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    minutes = [now - timedelta(minutes=n) for n in range(1, 20 * 24 * 60)]
    store_minutes(
        Reading(sensor=sensor, metric=metric, start=start, samples=30, value_sum=30 * 20.5, value_min=20, value_max=21)
        for start in minutes
        for metric in ("air_temperature", "humidity", "soil_moisture")
    )
    return 3 * len(minutes)


def body_of(answer: bytes) -> bytes:
    """The body of an HTTP/1.1 answer, its chunked transfer coding removed (as much as arrived, if cut short)."""
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    if b"transfer-encoding: chunked" not in head.lower():
        return rest
    body = b""
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            return body
        body, rest = body + rest[:size], rest[size + 2 :]


STALLED = 31  # docs/security.md: the pages answer while up to 31 connections stall (4 workers x 8 threads - 1)


def test_clients_that_open_a_request_and_stall_do_not_stop_the_pages(start_web):
    """Connections that send half a request and wait (phones losing their Wi-Fi, or anyone on the LAN) hold a
    thread each, never one the pages need: with one request per worker process, 4 of them stopped every
    page; with threads but no cap on what a worker takes on, 8 did (a worker queued pages behind them)."""
    web = start_web()
    stalled = []
    try:
        for _ in range(STALLED):
            client = socket.create_connection(("127.0.0.1", web.port))
            client.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line: the request never ends
            stalled.append(client)
        time.sleep(1)
        assert [web.status("/accounts/login/", timeout=5) for _ in range(8)] == [200] * 8
    finally:
        for client in stalled:
            client.close()


def test_a_download_read_slowly_outlives_the_worker_timeout_and_arrives_whole(start_web, weeks_of_minutes):
    """Weeks of minutes to a phone at the far end of the greenhouse: the answer takes longer than gunicorn's
    --timeout (5 s here, 120 s shipped), which killed a worker busy sending it, the file cut short."""
    web = start_web("--timeout", "5")
    client = web.open(CSV, receive_buffer=4096)
    client.settimeout(30)
    received = bytearray()
    slow_until = time.monotonic() + 12
    while time.monotonic() < slow_until:  # ~40 kB/s for 12 s: the server waits on the socket for seconds
        received += client.recv(4096)
        time.sleep(0.1)
    while chunk := client.recv(1 << 16):
        received += chunk
    client.close()
    lines = body_of(bytes(received)).decode().splitlines()
    assert lines[0].startswith("sensor,sensor_name,location,metric,start")
    assert len(lines) == 1 + weeks_of_minutes


def test_a_download_cancelled_half_way_leaves_the_server_answering_without_a_traceback(start_web, weeks_of_minutes):
    web = start_web()
    for _ in range(3):
        client = web.open(CSV, receive_buffer=4096)
        assert client.recv(4096).startswith(b"HTTP/1.1 200")
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # closed with a reset
        client.close()
    assert web.status("/", timeout=5) == 200
    assert web.status(CSV, timeout=30) == 200


def test_a_client_that_stops_reading_a_download_is_let_go_after_the_client_timeout(start_web, weeks_of_minutes):
    """A phone that left the Wi-Fi in the middle of a download held its thread (one of 32) for as long as it
    stayed connected; after WEB_CLIENT_TIMEOUT (2 s here, 60 s shipped) the server closes it, and says so
    in one log line, not a traceback."""
    web = start_web(WEB_CLIENT_TIMEOUT="2")
    client = web.open(CSV, receive_buffer=4096)
    time.sleep(6)  # reads nothing: the server's writes wait on a full socket
    client.settimeout(30)
    received = bytearray()
    try:
        while chunk := client.recv(1 << 16):
            received += chunk
    except ConnectionResetError:
        pass
    client.close()
    assert received.startswith(b"HTTP/1.1 200")
    assert not received.endswith(b"0\r\n\r\n")  # cut short by the server: no last chunk
    assert len(body_of(bytes(received)).splitlines()) < weeks_of_minutes
    deadline = time.monotonic() + 10
    while "WEB_CLIENT_TIMEOUT" not in web.output:
        assert time.monotonic() < deadline, web.output
        time.sleep(0.1)
    assert "closed a connection whose client read or sent nothing for 2.0 s (WEB_CLIENT_TIMEOUT)" in web.output
