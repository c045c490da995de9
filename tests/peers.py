"""Real peers for the control tests: an HTTP server that records requests, an SMTP server, MQTT."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

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
