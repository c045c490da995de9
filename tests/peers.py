"""Real peers for the control tests: an HTTP server that records requests, an SMTP server, MQTT."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness.processes import free_port

BROKER = ("127.0.0.1", 1883)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: str
    content_type: str
    authorization: str = ""

    def json(self) -> dict:
        return json.loads(self.body)


def switched_to(path: str, body: str) -> bool | None:
    """The state a request asks a plug for: Shelly's turn=on/off, Tasmota's Power On/Off, a JSON "on"."""
    text = (path + " " + body).lower().replace("%20", " ").replace("+", " ")
    for on, words in (
        (True, ("turn=on", "power on", "power=on", "on=true", '"on": true', '"on":true')),
        (False, ("turn=off", "power off", "power=off", "on=false", '"on": false', '"on":false')),
    ):
        if any(word in text for word in words):
            return on
    return None


class RecordingServer:
    """A plug on 127.0.0.1:<free port>: keeps every request in order and answers `status`.

    With `answer` None (the default) it answers like a Shelly: Gen1 ``/relay/0?turn=on`` with
    ``{"ison": <its state>}``, Gen2 ``/rpc/Switch.Set`` with ``{"was_on": <the state before>}`` and
    ``/rpc/Switch.GetStatus`` with ``{"output": <its state>}``; its state follows each request's
    turn=on/off (or Tasmota's Power On/Off) unless `stuck` (a relay that does not switch). `state`
    is what it is now, and a test can set it (a plug that rebooted into off). `refuse_until`
    (a monotonic time) answers 503 until then (a plug off the network). With `hold=True` each
    request waits until `release()` (a device that never answers).
    """

    def __init__(self, status: int = 200, answer: str | None = None, hold: bool = False) -> None:
        self.requests: list[Request] = []
        self.status, self.answer = status, answer
        self.state = False
        self.stuck = False
        self.refuse_until = 0.0
        self.refused = 0
        self.released = threading.Event()
        if not hold:
            self.released.set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                server.released.wait(30)
                if time.monotonic() < server.refuse_until:
                    server.refused += 1
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                before = server.state
                wanted = switched_to(self.path, body)
                if wanted is not None and not server.stuck:
                    server.state = wanted
                server.requests.append(
                    Request(
                        self.command,
                        self.path,
                        body,
                        self.headers.get("Content-Type", ""),
                        self.headers.get("Authorization", ""),
                    )
                )
                if server.answer is not None:
                    answer = server.answer
                elif "/rpc/Switch.GetStatus" in self.path:
                    answer = json.dumps({"id": 0, "output": server.state})
                elif "/rpc/Switch.Set" in self.path:
                    answer = json.dumps({"was_on": before})
                else:
                    answer = json.dumps({"ison": server.state})
                payload = answer.encode()
                self.send_response(server.status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = _handle

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class SMTPServer:
    """aiosmtpd's SMTP server on 127.0.0.1:<free port>, in a thread of its own; keeps every message."""

    def __init__(self) -> None:
        from aiosmtpd.smtp import SMTP

        self.messages: list[dict] = []
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope) -> str:
                sink.messages.append(
                    {
                        "from": envelope.mail_from,
                        "to": list(envelope.rcpt_tos),
                        "data": envelope.content.decode("utf-8", "replace"),
                    }
                )
                return "250 Message accepted for delivery"

        self.loop = asyncio.new_event_loop()
        self.server = self.loop.run_until_complete(self.loop.create_server(lambda: SMTP(Handler()), "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        def stop() -> None:
            self.server.close()
            self.loop.stop()

        self.loop.call_soon_threadsafe(stop)
        self.thread.join(5)


def broker_or_skip() -> tuple[str, int]:
    try:
        socket.create_connection(BROKER, timeout=2).close()
    except OSError as exc:
        pytest.skip(f"no MQTT broker at {BROKER[0]}:{BROKER[1]} ({exc}); install and start mosquitto")
    return BROKER


class Subscriber:
    """A real MQTT client subscribed to one topic on the broker, keeping what arrives."""

    def __init__(self, topic: str) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, str, bool]] = []
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload.decode(), m.retain))
        self.client.connect(*BROKER)
        self.client.loop_start()
        assert subscribed.wait(10), "could not subscribe on the broker"

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_until(condition: Callable[[], object], timeout: float = 15.0, what: str = "condition") -> object:
    """Poll until `condition()` is truthy (a deadline for a broken build, not a timing assumption)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Publisher:
    """A real MQTT client that publishes at QoS 1 and waits for the broker's acknowledgement."""

    def __init__(self, address: tuple[str, int] = BROKER) -> None:
        import paho.mqtt.client as mqtt

        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.connect(*address)
        self.client.loop_start()
        self.retained: set[str] = set()

    def publish(self, topic: str, payload: bytes | str, retain: bool = False, qos: int = 1) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(10)
        assert info.is_published(), f"the broker did not acknowledge {topic}"
        if retain:
            self.retained.add(topic)

    def close(self) -> None:
        """Disconnect, first removing what this publisher retained: a shared broker keeps nothing of a test."""
        for topic in self.retained:
            self.client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
        self.client.disconnect()
        self.client.loop_stop()


def forget_session(client_id: str, address: tuple[str, int] = BROKER) -> None:
    """End a persistent session on the broker (connect with clean_session, disconnect): tests leave none behind."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    try:
        client.connect(*address)
        client.loop_start()
        client.disconnect()
        client.loop_stop()
    except OSError:
        pass


class PrivateBroker:
    """A Mosquitto of our own on a free port of 127.0.0.1, with persistence, that a test may stop and restart."""

    def __init__(self, directory, port: int | None = None) -> None:
        import shutil
        import subprocess

        binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
        if binary is None:
            pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
        self.binary, self.subprocess = binary, subprocess
        self.directory = directory
        self.port = port or free_port()
        self.config = directory / "mosquitto.conf"
        self.config.write_text(
            # Started as root, Mosquitto would switch to its own user, who cannot write our directory.
            f"user {getpass.getuser()}\n"
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {directory}/\nautosave_interval 1\nmax_queued_messages 100000\n"
        )
        self.process = None
        self.start()

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def start(self) -> None:
        self.log = open(self.directory / "mosquitto.log", "ab")
        self.process = self.subprocess.Popen([self.binary, "-c", str(self.config)], stdout=self.log, stderr=self.log)
        wait_until(self._accepts, 10, "mosquitto to listen")

    def _accepts(self) -> bool:
        try:
            socket.create_connection(self.address, timeout=1).close()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        """SIGTERM: Mosquitto saves its persistence file (sessions, queued messages) and exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None
        self.log.close()
