"""Talking to the things that switch and the people who get told: HTTP, MQTT, webhooks.

No Django import. Every call has a timeout; the `Dispatcher` runs them on worker threads
with bounded retries, so a dead plug or webhook never stalls the evaluation loop, and a
command superseded by a newer one for the same output is dropped instead of landing late.
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit, urlunsplit

logger = logging.getLogger(__name__)

ANSWER_LIMIT = 300  # characters of a peer's answer kept in the event log


# Query parameters whose values are secrets (Tasmota's `password`, API tokens...), case-insensitive.
SECRET_PARAMETERS = re.compile(r"(?i)^(?:user|username|pass|password|pwd|passwd|token|key|apikey|api_key|auth|secret)$")
# A URL in running text, without the punctuation that may follow it ("...?turn=on: refused").
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s\"'<>]*[^\s\"'<>:,.;)\]]", re.IGNORECASE)
MASK = "***"


def redact_url(url: str) -> str:
    """`url` with its user-info password and credential-looking query values masked, for logs and pages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    query = (
        "&".join(
            f"{name}={MASK}" if SECRET_PARAMETERS.match(unquote(name)) and sep else f"{name}{sep}{value}"
            for name, sep, value in (item.partition("=") for item in parts.query.split("&"))
        )
        if parts.query
        else ""
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact(text: str) -> str:
    """Every URL in `text` redacted (an error message, a device's answer)."""
    return _URL.sub(lambda match: redact_url(match.group(0)), text)


class DeliveryError(Exception):
    """The peer did not take the command; the message says why, for the event log."""


def http_request(
    method: str,
    url: str,
    body: str = "",
    content_type: str = "",
    timeout: float = 5.0,
    login: tuple[str, str] | None = None,
) -> str:
    """Send one request; the answer's status and start, or DeliveryError.

    `login` (user, password) fills `{user}` and `{password}` in the URL when it has them (Tasmota),
    else goes as HTTP Basic auth (Shelly Gen1). Errors name the URL as configured, placeholders and all.
    """
    data = body.encode() if body else None
    sent = url
    headers = {}
    if login is not None:
        user, password = login
        if "{password}" in url or "{user}" in url:
            sent = url.replace("{user}", quote(user, safe="")).replace("{password}", quote(password, safe=""))
        else:
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
    try:
        request = urllib.request.Request(sent, data=data, method=method.upper(), headers=headers)
    except ValueError as exc:
        raise DeliveryError(f"{redact_url(url)}: {exc}") from exc
    if data is not None:
        request.add_header("Content-Type", content_type or "application/json")
    request.add_header("User-Agent", "greenhouse-control")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = response.read(ANSWER_LIMIT * 4).decode("utf-8", "replace")
            return f"HTTP {response.status} {answer[:ANSWER_LIMIT]}".strip()
    except urllib.error.HTTPError as exc:
        answer = exc.read(ANSWER_LIMIT).decode("utf-8", "replace")
        raise DeliveryError(f"HTTP {exc.code} {answer}".strip()) from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryError(redact(f"{redact_url(url)}: {reason}")) from exc


def reported_state(answer: str) -> bool | None:
    """The on/off state a device's answer reports, or None where it reports none.

    Tasmota: ``{"POWER":"ON"}`` (or POWER1, POWER2, ...); Shelly Gen1 ``/relay/0``: ``{"ison": true}``;
    Shelly Gen2 ``Switch.GetStatus``: ``{"output": true}`` (``Switch.Set`` answers only ``was_on``, the state
    before: no report). `answer` is what `http_request` returns ("HTTP 200 {...}") or a bare body.
    """
    body = answer.split(" ", 2)[2] if answer.startswith("HTTP ") and answer.count(" ") >= 2 else answer
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    for key in ("POWER", "POWER1"):
        value = data.get(key)
        if isinstance(value, str) and value.upper() in ("ON", "OFF"):
            return value.upper() == "ON"
    for key in ("ison", "output"):
        if isinstance(data.get(key), bool):
            return data[key]
    return None


class NotConfirmed(DeliveryError):
    """The device took the request but reports the other state."""


def switch_over_http(
    method: str,
    url: str,
    body: str,
    content_type: str,
    timeout: float,
    login: tuple[str, str] | None,
    status_url: str,
    on: bool | None = None,
) -> str:
    """Send the command; where the answer (or `status_url`, read next) reports a state, it must be `on`."""
    answer = http_request(method, url, body, content_type, timeout, login)
    if status_url:
        answer = http_request("GET", status_url, "", "", timeout, login)
    state = reported_state(answer)
    if on is not None and state is not None and state != on:
        raise NotConfirmed(f"the device reports {'ON' if state else 'OFF'}: {answer}")
    return answer


def post_json(url: str, payload: dict, timeout: float = 5.0) -> str:
    """A webhook: the payload as a JSON POST."""
    return http_request("POST", url, json.dumps(payload), "application/json", timeout)


def reported_mqtt_state(payload: str) -> bool | None:
    """The state a device publishes: Tasmota ``stat/<topic>/POWER`` ``ON``/``OFF`` (or ``RESULT``
    ``{"POWER":"ON"}``), Shelly Gen2 ``<id>/status/switch:0`` ``{"output": true, ...}``, Gen1
    ``shellies/<id>/relay/0`` ``on``/``off``; None for anything else."""
    text = payload.strip()
    if text.upper() in ("ON", "OFF"):
        return text.upper() == "ON"
    return reported_state(text)


def mqtt_publish(
    broker_url: str,
    topic: str,
    payload: str,
    retain: bool = False,
    timeout: float = 5.0,
    state_topic: str = "",
    on: bool | None = None,
) -> str:
    """Publish with QoS 1 and wait for the broker's acknowledgement (PUBACK); with `state_topic`,
    also for the device to publish state `on` there (a retained old state does not count)."""
    import paho.mqtt.client as mqtt

    parts = urlsplit(broker_url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise DeliveryError(f"{broker_url!r} is not a broker URL like mqtt://host:1883")
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.connect_timeout = timeout
    if parts.username:
        client.username_pw_set(unquote(parts.username), unquote(parts.password or ""))
    if parts.scheme == "mqtts":
        client.tls_set()
    connected = threading.Event()
    subscribed = threading.Event()
    reported = threading.Event()
    seen: list[str] = []
    refused: list[str] = []

    def on_connect(client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            refused.append(str(reason_code))
        elif state_topic:
            client.subscribe(state_topic, qos=1)
        connected.set()

    def on_message(client, userdata, message) -> None:
        if message.retain:
            return  # what the broker kept from before, not the device's answer to this command
        text = message.payload[:ANSWER_LIMIT].decode("utf-8", "replace")
        seen.append(text)
        if on is not None and reported_mqtt_state(text) is on:
            reported.set()

    client.on_connect = on_connect
    client.on_subscribe = lambda *args: subscribed.set()
    client.on_message = on_message
    where = f"{parts.hostname}:{parts.port or (8883 if parts.scheme == 'mqtts' else 1883)}"
    try:
        client.connect(parts.hostname, parts.port or (8883 if parts.scheme == "mqtts" else 1883), keepalive=30)
    except (OSError, ValueError) as exc:
        raise DeliveryError(f"cannot connect to the broker at {where}: {exc}") from exc
    client.loop_start()
    try:
        if not connected.wait(timeout):
            raise DeliveryError(f"the broker at {where} did not answer within {timeout:g}s")
        if refused:
            raise DeliveryError(f"the broker at {where} refused the connection: {refused[0]}")
        if state_topic and not subscribed.wait(timeout):
            raise DeliveryError(f"the broker at {where} did not confirm the subscription to {state_topic}")
        info = client.publish(topic, payload, qos=1, retain=retain)
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as exc:
            raise DeliveryError(f"publish to {topic} failed: {exc}") from exc
        if not info.is_published():
            raise DeliveryError(f"the broker at {where} did not acknowledge {topic} within {timeout:g}s")
        answer = f"published {payload!r} to {topic} on {where}"
        if state_topic and on is not None:
            if not reported.wait(timeout):
                heard = f" (it said {', '.join(repr(text) for text in seen[-3:])})" if seen else ""
                raise NotConfirmed(
                    f"{answer}, but the device did not report {'ON' if on else 'OFF'} on {state_topic} "
                    f"within {timeout:g}s{heard}"
                )
            answer += f"; the device reported {'ON' if on else 'OFF'} on {state_topic}"
        return answer
    finally:
        client.disconnect()
        client.loop_stop()


# --- the dispatcher -----------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    key: str  # jobs with one key (an output, a rule's notifications) run in order; newer ones supersede
    send: Callable[[], str]
    tag: object = None  # handed back with the result (the event to complete)
    retries: int = 3
    supersedable: bool = True  # a command is; a notification is not (each one is sent)


@dataclass(frozen=True)
class Result:
    job: Job
    ok: bool
    detail: str
    attempts: int


class Dispatcher:
    """Runs jobs on worker threads; results are collected with `results()` by the caller's thread."""

    def __init__(self, workers: int = 4, backoff: float = 1.0, sleep: Callable[[float], None] = time.sleep) -> None:
        self.backoff = backoff
        self.sleep = sleep
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="control-send")
        self._results: queue.SimpleQueue[Result] = queue.SimpleQueue()
        self._latest: dict[str, int] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._counter = 0
        self._stopping = threading.Event()

    def submit(self, job: Job) -> None:
        with self._guard:
            self._counter += 1
            number = self._counter
            if job.supersedable:
                self._latest[job.key] = number
            # Commands for one output run in order; each notification stands alone (no lock kept for it).
            lock = self._locks.setdefault(job.key, threading.Lock()) if job.supersedable else threading.Lock()
        self._pool.submit(self._run, job, number, lock)

    def results(self) -> list[Result]:
        done = []
        while True:
            try:
                done.append(self._results.get_nowait())
            except queue.Empty:
                return done

    def shutdown(self, wait: float = 10.0) -> None:
        """Finish what is under way (no new retries) for up to `wait` seconds."""
        self._stopping.set()
        deadline = time.monotonic() + wait
        self._pool.shutdown(wait=False, cancel_futures=False)
        for thread in list(getattr(self._pool, "_threads", ())):
            thread.join(max(0.0, deadline - time.monotonic()))

    def _superseded(self, job: Job, number: int) -> bool:
        return job.supersedable and self._latest.get(job.key) != number

    def _run(self, job: Job, number: int, lock: threading.Lock) -> None:
        with lock:
            errors: list[str] = []
            for attempt in range(1, job.retries + 1):
                if self._superseded(job, number):
                    self._results.put(Result(job, False, "superseded by a newer command", attempt - 1))
                    return
                try:
                    answer = job.send()
                except DeliveryError as exc:
                    errors.append(str(exc))
                except Exception as exc:  # a bug or an unexpected peer must not kill the worker
                    logger.exception("sending %s failed unexpectedly", job.key)
                    errors.append(f"{type(exc).__name__}: {exc}")
                else:
                    self._results.put(Result(job, True, answer, attempt))
                    return
                if attempt < job.retries and not self._stopping.is_set():
                    self.sleep(self.backoff * 2 ** (attempt - 1))
                elif self._stopping.is_set():
                    break
            detail = "; ".join(f"attempt {n}: {error}" for n, error in enumerate(errors, 1))
            self._results.put(Result(job, False, detail, len(errors)))
