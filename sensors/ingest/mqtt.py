"""The MQTT source: a broker's messages handed to the collector's ingest loop.

No Django import. paho-mqtt's network thread receives; its callbacks only append to a deque
(`take` empties it in the ingest thread), so the aggregator, the journal and the parsers stay
single-threaded exactly as for TCP lines. What a message means is `sensors.ingest.devices`.

Delivery: MQTT 3.1.1, QoS 1 subscriptions, a fixed client id and ``clean_session`` off, so the
broker keeps the subscriptions and queues QoS 1 messages while the collector is away (a restart,
an upgrade) and delivers them when it is back. (3.1.1 rather than 5: a v5 client is sent a
message once per overlapping subscription, so one reading could be counted twice.) paho
acknowledges a message once it is in the deque; from there it is as safe as a TCP line that
was read (in the journal within COLLECTOR_JOURNAL_SYNC_INTERVAL). paho reconnects by itself with
back-off, from the first connection on: a broker down at start is a logged retry, not an error.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt

from .devices import DEFAULT_TOPICS, MAX_PAYLOAD_BYTES
from .ratelimit import LogLimiter

logger = logging.getLogger(__name__)

Message = tuple[float, str, bytes | None, bool]  # (received at, topic, payload or None if too large, retained)


def valid_topic_filter(topic: str) -> bool:
    """Is `topic` a filter a broker accepts (``+`` a whole level, ``#`` only the last)?"""
    if not topic or len(topic.encode()) > 65535 or "\0" in topic:
        return False
    levels = topic.split("/")
    for index, level in enumerate(levels):
        if ("+" in level or "#" in level) and level not in ("+", "#"):
            return False
        if level == "#" and index != len(levels) - 1:
            return False
    return True


class MqttUrlError(ValueError):
    """COLLECTOR_MQTT_URL is not an mqtt:// or mqtts:// URL with a host."""


@dataclass(frozen=True)
class MqttConfig:
    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None  # mqtts: the CA to trust (default: the system's)
    topics: Sequence[str] = DEFAULT_TOPICS
    client_id: str = "greenhouse-collector"
    keepalive: int = 30
    max_payload: int = MAX_PAYLOAD_BYTES
    max_queued: int = 200_000  # messages waiting for the ingest loop; beyond, counted and dropped
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0

    @classmethod
    def from_url(cls, url: str, **options) -> MqttConfig:
        """``mqtt://[user[:password]@]host[:port]`` or ``mqtts://…`` (TLS); raises MqttUrlError."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise MqttUrlError(f"COLLECTOR_MQTT_URL is not a URL ({exc})") from None
        if parts.scheme not in ("mqtt", "mqtts"):
            raise MqttUrlError(
                f"COLLECTOR_MQTT_URL must start with mqtt:// or mqtts://, not {parts.scheme or 'nothing'!r}"
            )
        if not parts.hostname:
            raise MqttUrlError("COLLECTOR_MQTT_URL has no host (like mqtt://127.0.0.1:1883)")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise MqttUrlError("COLLECTOR_MQTT_URL takes no path or query (topics: COLLECTOR_MQTT_TOPICS)")
        if port == 0:
            raise MqttUrlError("COLLECTOR_MQTT_URL: port 0 is not a broker's port")
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname,
            port=port if port is not None else (8883 if tls else 1883),
            username=unquote(parts.username) if parts.username is not None else None,
            password=unquote(parts.password) if parts.password is not None else None,
            tls=tls,
            **options,
        )

    @property
    def where(self) -> str:
        """The broker as logs show it: never the password."""
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


class MqttSource:
    """One broker connection; `take` hands what arrived to the ingest thread."""

    def __init__(self, config: MqttConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.connected = False
        self.counters: Counter[str] = Counter()  # connects, disconnects, dropped_queue_full
        self._messages: deque[Message] = deque()
        self._log_limiter = LogLimiter(3, 60.0)
        self._client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        config = self.config
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=config.client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
        )
        if config.username is not None:
            client.username_pw_set(config.username, config.password)
        if config.tls:
            client.tls_set(ca_certs=config.ca_file, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.reconnect_delay_set(min_delay=max(1, round(config.reconnect_min)), max_delay=round(config.reconnect_max))
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        # A bug in a callback must not end paho's thread: paho catches it and logs it here (with
        # its traceback); our callbacks also catch and log what they can themselves.
        client.suppress_exceptions = True
        client.enable_logger(logging.getLogger(f"{__name__}.paho"))
        return client

    # --- lifecycle (the ingest thread) ----------------------------------------------------------
    def start(self) -> None:
        """Connect in the background: returns at once, whether the broker is there or not."""
        self._client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive)
        self._client.loop_start()

    def stop(self, timeout: float = 5.0) -> None:
        """Disconnect (the broker keeps the session and queues for the next start) and end paho's thread.

        `loop_stop` tells paho's thread to end before it joins it (so a reconnect under way cannot
        go on to read more); it joins without a limit, so it runs in a thread of its own here.
        """
        self._client.disconnect()
        stopper = threading.Thread(target=self._client.loop_stop, name="mqtt-stop", daemon=True)
        stopper.start()
        stopper.join(timeout)
        if stopper.is_alive():
            logger.warning("the MQTT client did not stop within %gs", timeout)
        self.connected = False

    def take(self) -> list[Message]:
        """Everything that arrived since the last call, in arrival order."""
        messages = self._messages
        return [messages.popleft() for _ in range(len(messages))]

    @property
    def pending(self) -> int:
        return len(self._messages)

    # --- paho's callbacks (its network thread: no work here beyond the deque) -----------------
    def _on_connect(self, client: mqtt.Client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.connected = False
            logger.warning("MQTT broker %s refused the connection: %s", self.config.where, reason_code)
            return
        self.connected = True
        self.counters["connects"] += 1
        # Subscribed on every connect: a broker that lost the session (restarted without
        # persistence) has forgotten the subscriptions.
        result, _ = client.subscribe([(topic, 1) for topic in self.config.topics])
        logger.info(
            "connected to the MQTT broker %s as %s (session %s), subscribing to %s%s",
            self.config.where,
            self.config.client_id,
            "resumed" if flags.session_present else "new",
            ", ".join(self.config.topics),
            "" if result == mqtt.MQTT_ERR_SUCCESS else f" (subscribe failed: {mqtt.error_string(result)})",
        )

    def _on_subscribe(self, client: mqtt.Client, userdata, mid, reason_codes, properties) -> None:
        """The broker's answer (SUBACK): only now do messages on the topics arrive. A topic it refuses
        (its ACL, a malformed filter) would otherwise be silently empty."""
        answers = list(zip(self.config.topics, reason_codes, strict=False))  # one subscribe of all topics a connect
        refused = [f"{topic} ({code})" for topic, code in answers if code.is_failure]
        if refused:
            logger.error("the MQTT broker %s refused the subscription to %s", self.config.where, ", ".join(refused))
        granted = [topic for topic, code in answers if not code.is_failure]
        if granted:
            logger.info("subscribed to %s", ", ".join(granted))

    def _on_connect_fail(self, client: mqtt.Client, userdata) -> None:
        self.connected = False
        if self._log_limiter.allow("connect"):
            logger.warning(
                "cannot reach the MQTT broker %s; retrying (every %g s at most)",
                self.config.where,
                self.config.reconnect_max,
            )

    def _on_disconnect(self, client: mqtt.Client, userdata, flags, reason_code, properties) -> None:
        was_connected, self.connected = self.connected, False
        if reason_code == 0:  # our own disconnect (stop)
            return
        if was_connected:
            self.counters["disconnects"] += 1
        if self._log_limiter.allow("disconnect"):
            logger.warning("lost the MQTT broker %s (%s); reconnecting", self.config.where, reason_code)

    def _on_message(self, client: mqtt.Client, userdata, message: mqtt.MQTTMessage) -> None:
        """Queue the message (paho acknowledges it when this returns): only cheap, bounded work here."""
        try:
            if len(self._messages) >= self.config.max_queued:
                self.counters["dropped_queue_full"] += 1
                return
            payload = message.payload
            if len(payload) > self.config.max_payload:
                payload = None  # refused by the parser as too large; not kept in memory meanwhile
            self._messages.append((self.clock(), message.topic, payload, bool(message.retain)))
        except Exception:
            self.counters["callback_errors"] += 1
            logger.exception("could not queue an MQTT message")
