"""The shipped deploy/supervisord.conf under a real supervisord: restart and stop lose nothing."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.processes import ROOT, LoggedProcess, free_port
from sensors.models import Reading
from tests.conftest import manage_env

pytestmark = pytest.mark.django_db(transaction=True)

BIN = Path(sys.executable).parent
CONF = ROOT / "deploy" / "supervisord.conf"


def ctl(*args: str) -> str:
    result = subprocess.run(
        [str(BIN / "supervisorctl"), "-c", str(CONF), *args], capture_output=True, text=True, timeout=60
    )
    return result.stdout + result.stderr


def send_when_listening(port: int, data: bytes, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(data)
                time.sleep(0.3)
                return
        except ConnectionRefusedError:
            assert time.monotonic() < deadline, "collector did not come up under supervisor"
            time.sleep(0.2)


def stored_samples() -> int:
    return sum(Reading.objects.filter(metric="soil_moisture").values_list("samples", flat=True))


class Supervisord(LoggedProcess):
    """The real supervisord in the foreground; its output holds every program's log."""

    def __init__(self, env: dict[str, str], collector_port: int) -> None:
        self.port = collector_port
        super().__init__([str(BIN / "supervisord"), "-c", str(CONF)], env)

    def shutdown(self) -> None:
        if self.process.poll() is None:
            ctl("shutdown")
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


@pytest.fixture
def supervisord():
    if (ROOT / "var" / "supervisor.sock").exists():
        pytest.skip("another supervisord from this checkout is running (make run?); stop it first")
    port = free_port()
    env = manage_env(
        COLLECTOR_HOST="127.0.0.1",
        COLLECTOR_PORT=str(port),
        COLLECTOR_FLUSH_INTERVAL="0.5",
        COLLECTOR_OPEN_MINUTE_INTERVAL="0.5",
        GUNICORN_CMD_ARGS=f"--bind 127.0.0.1:{free_port()}",
    )
    running = Supervisord(env, port)
    try:
        yield running
    finally:
        running.shutdown()
    # collect, control and gunicorn log to supervisord's output: no start, restart or stop may print a traceback.
    running.assert_no_traceback()


def test_restart_and_stop_through_supervisorctl_lose_no_sample(supervisord):
    port = supervisord.port
    line = b"Soil: 600; temp: 20; hum: 50; from 5c:cf:7f:00:00:01\n"
    send_when_listening(port, line * 40)
    assert "collect: stopped" in ctl("restart", "collect")
    send_when_listening(port, line * 25)
    assert "collect: stopped" in ctl("stop", "collect")
    assert "STOPPED" in ctl("status", "collect")
    assert stored_samples() == 65


def test_control_runs_under_supervisor_and_stops_cleanly(supervisord):
    deadline = time.monotonic() + 20
    while "RUNNING" not in ctl("status", "control"):
        assert time.monotonic() < deadline, "control did not come up under supervisor"
        time.sleep(0.2)
    assert "control: stopped" in ctl("stop", "control")
    assert "STOPPED" in ctl("status", "control")
