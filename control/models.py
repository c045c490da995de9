"""Outputs (what can be switched), rules (when to switch or tell), and the event log.

The decisions themselves are made by `control.rules` (plain Python); these models hold the
configuration, the state a restart must resume from, and what happened. `Rule.observe`
reads the calibrated per-minute means the collector flushes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from sensors.metrics import canonical
from sensors.metrics import metric as registry_metric
from sensors.models import LiveReading, Location, Placement, Reading, Sensor

from . import rules, transports


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


def _validate_url(url: str, schemes: tuple[str, ...], example: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.hostname:
        raise ValidationError(f"{url!r} is not a URL like {example}.")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise ValidationError(f"{url!r} has a bad port: {exc}") from exc


class Output(models.Model):
    """A thing that can be switched (heater, vent, pump), how to switch it, and its last commanded state."""

    class Transport(models.TextChoices):
        HTTP = "http", "HTTP request (Shelly, Tasmota, ...)"
        MQTT = "mqtt", "MQTT publish"
        MANUAL = "manual", "Manual (notify a person)"

    name = models.CharField(max_length=100, unique=True)
    transport = models.CharField(max_length=10, choices=Transport.choices, default=Transport.HTTP)
    # HTTP
    http_method = models.CharField(
        "HTTP method", max_length=6, default="GET", choices=[(m, m) for m in ("GET", "POST", "PUT")]
    )
    http_on_url = models.CharField("URL to switch on", max_length=500, blank=True)
    http_off_url = models.CharField("URL to switch off", max_length=500, blank=True, help_text="Blank: the on URL.")
    http_on_body = models.TextField("body to switch on", blank=True)
    http_off_body = models.TextField("body to switch off", blank=True)
    http_content_type = models.CharField(max_length=100, blank=True, default="application/json")
    # The device's login, kept out of the URLs (never shown back, never in an event or the log):
    # HTTP Basic auth (Shelly Gen1), or put {user} and {password} in a URL (Tasmota's
    # /cm?user={user}&password={password}&cmnd=Power%20On), filled in only when the request is sent.
    device_user = models.CharField("device user name", max_length=100, blank=True)
    device_password = models.CharField("device password", max_length=200, blank=True)
    # MQTT
    mqtt_broker = models.CharField(
        "MQTT broker URL", max_length=300, blank=True, help_text="mqtt://user:password@host:1883 or mqtts://..."
    )
    mqtt_topic = models.CharField("MQTT topic", max_length=300, blank=True)
    mqtt_on_payload = models.CharField("payload to switch on", max_length=300, blank=True, default="ON")
    mqtt_off_payload = models.CharField("payload to switch off", max_length=300, blank=True, default="OFF")
    mqtt_retain = models.BooleanField("retain", default=False)
    mqtt_state_topic = models.CharField(
        "MQTT state topic",
        max_length=300,
        blank=True,
        help_text="Where the device reports its state, to confirm each command: Tasmota stat/<topic>/POWER, "
        "Shelly Gen2 <id>/status/switch:0. Blank: the broker's acknowledgement confirms.",
    )
    # Safety
    safe_on = models.BooleanField(
        "safe state is ON",
        default=False,
        help_text="Where the output goes when the data its rule needs is too old or too sparse: "
        "off for a heater or pump, on (open) for a vent.",
    )
    http_status_url = models.CharField(
        "URL that reports the state",
        max_length=500,
        blank=True,
        help_text="Read after each command to confirm it, when the command's own answer does not say the state "
        "(Shelly Gen2: http://plug/rpc/Switch.GetStatus?id=0). Tasmota and Shelly Gen1 answers say it already.",
    )
    keep_alive = models.DurationField(
        "keep-alive",
        default=timedelta(minutes=5),
        help_text="Send the commanded state again this often, so a plug that rebooted into its power-on default "
        "is corrected (00:00:00: never).",
    )
    min_on = models.DurationField("minimum on time", default=timedelta(0), help_text="e.g. 00:05:00")
    min_off = models.DurationField("minimum off time", default=timedelta(0), help_text="e.g. 00:05:00")
    # State (written by the control process and the override form only)
    is_on = models.BooleanField("commanded on", null=True, editable=False)
    changed_at = models.DateTimeField(null=True, editable=False)
    change_reason = models.CharField(max_length=300, blank=True, editable=False)
    wanted_on = models.BooleanField(null=True, editable=False)  # what the rules ask for
    wanted_safe = models.BooleanField(default=False, editable=False)
    wanted_reason = models.CharField(max_length=300, blank=True, editable=False)
    override_on = models.BooleanField(null=True, editable=False)  # a person's manual on/off ...
    override_until = models.DateTimeField(null=True, editable=False)  # ... holds until then
    override_by = models.CharField(max_length=150, blank=True, editable=False)
    delivered = models.BooleanField(null=True, editable=False)  # last command taken by the device?
    # What the device confirmed (a 2xx answer, and the state it reports where it reports one):
    confirmed_on = models.BooleanField("confirmed on", null=True, editable=False)
    confirmed_at = models.DateTimeField(null=True, editable=False)
    unconfirmed_since = models.DateTimeField(null=True, editable=False)  # commanded, not confirmed since then
    unconfirmed_alerted = models.BooleanField(default=False, editable=False)  # the grower was told
    last_error = models.CharField(max_length=500, blank=True, editable=False)

    class Meta:
        ordering = ["name"]
        permissions = [("override_output", "Can switch an output by hand (manual override)")]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.transport == self.Transport.HTTP:
            for name in ("http_on_url", "http_off_url"):
                url = getattr(self, name)
                if name == "http_on_url" and not url:
                    errors[name] = "An HTTP output needs the URL to call."
                elif url:
                    try:
                        _validate_url(url, ("http", "https"), "http://192.168.1.50/relay/0?turn=on")
                    except ValidationError as exc:
                        errors[name] = exc.messages[0]
        if self.transport == self.Transport.MQTT:
            if not self.mqtt_broker:
                errors["mqtt_broker"] = "An MQTT output needs the broker URL, like mqtt://192.168.1.10:1883."
            else:
                try:
                    _validate_url(self.mqtt_broker, ("mqtt", "mqtts"), "mqtt://192.168.1.10:1883")
                except ValidationError as exc:
                    errors["mqtt_broker"] = exc.messages[0]
            if not self.mqtt_topic:
                errors["mqtt_topic"] = "An MQTT output needs the topic, like cmnd/heater/POWER."
            elif any(c in self.mqtt_topic for c in "#+"):
                errors["mqtt_topic"] = "Publish to one topic: no # or + wildcards."
            if any(c in self.mqtt_state_topic for c in "#+"):
                errors["mqtt_state_topic"] = "One topic: no # or + wildcards."
        if self.http_status_url:
            try:
                _validate_url(self.http_status_url, ("http", "https"), "http://192.168.1.50/rpc/Switch.GetStatus?id=0")
            except ValidationError as exc:
                errors["http_status_url"] = exc.messages[0]
        for name in ("min_on", "min_off", "keep_alive"):
            if getattr(self, name) is not None and getattr(self, name) < timedelta(0):
                errors[name] = "Must not be negative."
        if errors:
            raise ValidationError(errors)

    @property
    def state_label(self) -> str:
        return {True: "on", False: "off", None: "unknown"}[self.is_on]

    @property
    def confirmed(self) -> bool:
        """Has the device confirmed the commanded state (since it was last commanded)?"""
        return self.is_on is not None and self.unconfirmed_since is None and self.confirmed_on == self.is_on

    def overridden(self, now: datetime | None = None) -> bool:
        return self.override_until is not None and (now or timezone.now()) < self.override_until

    def request_override(self, on: bool | None, user: str, minutes: int) -> Event:
        """A person's on/off from the web UI (None ends an override); the control process carries it out."""
        now = timezone.now()
        if on is None:
            self.override_on, self.override_until, self.override_by = None, None, ""
            message = f"{user} handed {self.name} back to its rules"
        else:
            self.override_on, self.override_until, self.override_by = on, now + timedelta(minutes=minutes), user
            message = f"{user} switched {self.name} {'ON' if on else 'OFF'} by hand for {minutes} minutes"
        self.save(update_fields=["override_on", "override_until", "override_by"])
        return Event.objects.create(time=now, kind=Event.Kind.OVERRIDE, output=self, message=message, user=user)

    def arbiter_spec(self) -> rules.OutputSpec:
        return rules.OutputSpec(self.safe_on, self.min_on.total_seconds(), self.min_off.total_seconds())

    def arbiter_state(self) -> rules.OutputState:
        return rules.OutputState(self.is_on, self.changed_at, self.override_until)

    def sender(self, on: bool, notify: Callable[[str], str]) -> Callable[[], str]:
        """A callable that switches the device (runs on a worker thread; no database use)."""
        timeout = settings.CONTROL_COMMAND_TIMEOUT
        if self.transport == self.Transport.HTTP:
            url = self.http_on_url if on or not self.http_off_url else self.http_off_url
            body = self.http_on_body if on else self.http_off_body
            login = (self.device_user, self.device_password) if self.device_password else None
            return functools.partial(
                transports.switch_over_http,
                self.http_method,
                url,
                body,
                self.http_content_type,
                timeout,
                login,
                self.http_status_url,
                on,
            )
        if self.transport == self.Transport.MQTT:
            payload = self.mqtt_on_payload if on else self.mqtt_off_payload
            return functools.partial(
                transports.mqtt_publish,
                self.mqtt_broker,
                self.mqtt_topic,
                payload,
                self.mqtt_retain,
                timeout,
                self.mqtt_state_topic,
                on,
            )
        return functools.partial(notify, f"Please switch {self.name} {'ON' if on else 'OFF'}.")


class Rule(models.Model):
    """When to act: a metric of a sensor (or a location's mean) past a threshold, or a silent sensor."""

    class Kind(models.TextChoices):
        THRESHOLD = "threshold", "value below/above a threshold"
        OFFLINE = "offline", "sensor offline"

    class Direction(models.TextChoices):
        BELOW = "below", "below"
        ABOVE = "above", "above"

    class Switch(models.TextChoices):
        NOTHING = "nothing", "do not switch"
        ON = "on", "switch the output on"
        OFF = "off", "switch the output off"

    name = models.CharField(max_length=100, unique=True)
    enabled = models.BooleanField(default=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default="threshold")
    sensor = models.ForeignKey(Sensor, null=True, blank=True, on_delete=models.CASCADE, related_name="rules")
    location = models.ForeignKey(
        Location,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="rules",
        help_text="Instead of a sensor: the mean of the sensors placed there.",
    )
    metric = models.CharField(max_length=32, blank=True, help_text="e.g. air_temperature, soil_moisture, humidity")
    direction = models.CharField("when the value is", max_length=5, choices=Direction.choices, default="below")
    threshold = models.FloatField(null=True, blank=True, help_text="Calibrated units (°C, %RH, soil %).")
    release = models.FloatField(
        "release threshold",
        null=True,
        blank=True,
        help_text="Released once the value is past this (above it for a 'below' rule): the hysteresis band.",
    )
    duration = models.DurationField(
        default=timedelta(0), help_text="How long the condition must hold before the rule triggers (00:10:00)."
    )
    offline_after = models.DurationField(
        default=timedelta(minutes=10), help_text="Offline rules: silence that counts as offline."
    )

    class Reads(models.TextChoices):
        LATEST = "latest", "the latest value (reacts within seconds)"
        MEAN = "mean", "the mean over its duration (at least the newest two minutes)"

    reads = models.CharField(
        "value it reads",
        max_length=10,
        choices=Reads.choices,
        default=Reads.LATEST,
        help_text="Latest: the newest sample, written every few seconds for the sensors rules read; a frost "
        "reaches the rule in seconds, and the duration and hysteresis keep a noisy sensor from chattering. "
        "Mean: smoother, but a sudden change shows only as the minutes fill (up to a minute or two).",
    )
    max_age = models.DurationField(
        default=timedelta(minutes=2), help_text="Data older than this puts the output in its safe state."
    )
    min_samples = models.PositiveIntegerField(
        default=5, help_text="Fewer samples than this (in the newest two minutes) count as no data."
    )
    max_run = models.DurationField(
        null=True, blank=True, help_text="Longest time the rule may stay triggered (bounds a watering)."
    )
    active_from = models.TimeField(null=True, blank=True, help_text="Active hours, local time (TIME_ZONE).")
    active_until = models.TimeField(null=True, blank=True)
    output = models.ForeignKey(Output, null=True, blank=True, on_delete=models.SET_NULL, related_name="rules")
    on_trigger = models.CharField(max_length=8, choices=Switch.choices, default="nothing")
    on_release = models.CharField(max_length=8, choices=Switch.choices, default="nothing")
    notify_trigger = models.BooleanField("notify on trigger", default=False)
    notify_release = models.BooleanField("notify on release", default=False)
    email_to = models.CharField(
        max_length=500, blank=True, help_text="Comma-separated addresses; blank: CONTROL_NOTIFY_EMAILS."
    )
    webhook_url = models.CharField(max_length=500, blank=True, help_text="Blank: CONTROL_NOTIFY_WEBHOOK.")
    cooldown = models.DurationField(
        default=timedelta(minutes=15), help_text="At most one notification per cool-down; the rest are summed up."
    )
    # State (written by the control process only)
    phase = models.CharField(max_length=10, default=rules.Phase.IDLE, editable=False)
    phase_since = models.DateTimeField(null=True, editable=False)
    last_notified = models.DateTimeField(null=True, editable=False)
    suppressed = models.PositiveIntegerField(default=0, editable=False)
    last_value = models.FloatField(null=True, editable=False)
    last_age = models.FloatField(null=True, editable=False)
    last_samples = models.PositiveIntegerField(null=True, editable=False)
    evaluated_at = models.DateTimeField(null=True, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.kind == "offline":
            if self.sensor_id is None:
                errors["sensor"] = "An offline rule watches one sensor."
            if self.location_id is not None:
                errors["location"] = "An offline rule watches a sensor, not a location."
            if self.offline_after is not None and self.offline_after <= timedelta(0):
                errors["offline_after"] = "Must be longer than zero."
        else:
            if (self.sensor_id is None) == (self.location_id is None):
                errors["sensor"] = "Choose either a sensor or a location."
            if not self.metric:
                errors["metric"] = "Which metric, e.g. air_temperature."
            else:  # what a board may send for it ("temp") names the stored metric
                self.metric = canonical(self.metric.strip().lower())
                if self.location_id is not None:
                    raw = [str(sensor) for sensor in self.uncalibrated_sensors()]
                    if raw:
                        entry = registry_metric(self.metric)
                        errors["location"] = (
                            f"{entry.label} of the sensors placed in {self.location} would mix calibrated values "
                            f"({entry.calibrated_unit}) with raw ones ({entry.unit}) from {', '.join(raw)}. "
                            "Calibrate those sensors in the admin, or watch one sensor."
                        )
            if self.threshold is None:
                errors["threshold"] = "A threshold rule needs its threshold."
            if self.release is None:
                errors["release"] = "Give a release threshold (the same as the threshold for no hysteresis)."
            if self.threshold is not None and self.release is not None:
                if self.direction == "below" and self.release < self.threshold:
                    errors["release"] = (
                        "For a 'below' rule the release threshold must be at or above the threshold "
                        f"({self.threshold:g}), e.g. on below 5 °C, off above 7 °C."
                    )
                if self.direction == "above" and self.release > self.threshold:
                    errors["release"] = (
                        "For an 'above' rule the release threshold must be at or below the threshold "
                        f"({self.threshold:g}), e.g. open above 30 °C, close below 27 °C."
                    )
            # Latest values are written every COLLECTOR_LIVE_INTERVAL; the minute still filling every
            # COLLECTOR_OPEN_MINUTE_INTERVAL (ended ones sooner). Boards report every 2 s.
            if self.reads == self.Reads.LATEST:
                arrives = settings.COLLECTOR_LIVE_INTERVAL + 2.0
            else:
                arrives = max(settings.COLLECTOR_FLUSH_INTERVAL, settings.COLLECTOR_OPEN_MINUTE_INTERVAL)
            floor = arrives + settings.CONTROL_INTERVAL
            if self.max_age is not None and self.max_age.total_seconds() <= floor:
                errors["max_age"] = (
                    f"Data arrives every {arrives:g}s (collector writes) and is read every "
                    f"{settings.CONTROL_INTERVAL:g}s: a maximum age of {floor:g}s or less would always be stale."
                )
        if self.on_trigger != "nothing" or self.on_release != "nothing":
            if self.output_id is None:
                errors["output"] = "Choose the output to switch."
        elif self.output_id is not None:
            errors["on_trigger"] = "Say what to do with the output on trigger and/or release."
        for name in ("duration", "max_age", "cooldown"):
            value = getattr(self, name)
            if value is not None and value < timedelta(0):
                errors[name] = "Must not be negative."
        if self.max_run is not None and self.max_run <= timedelta(0):
            errors["max_run"] = "Must be longer than zero (or blank for no limit)."
        if (self.active_from is None) != (self.active_until is None):
            errors["active_until"] = "Give both ends of the active hours, or neither."
        for address in self.email_addresses():
            if "@" not in address:
                errors["email_to"] = f"{address!r} is not an e-mail address."
        if self.webhook_url:
            try:
                _validate_url(self.webhook_url, ("http", "https"), "https://hooks.example/greenhouse")
            except ValidationError as exc:
                errors["webhook_url"] = exc.messages[0]
        if errors:
            raise ValidationError(errors)

    def email_addresses(self) -> list[str]:
        return [address.strip() for address in self.email_to.split(",") if address.strip()]

    @property
    def target_label(self) -> str:
        if self.kind == "offline":
            return f"{self.sensor} offline"
        where = self.sensor if self.sensor_id else self.location
        return f"{where} {self.metric}"

    @property
    def condition_label(self) -> str:
        if self.kind == "offline":
            return f"silent for {self.offline_after}"
        return f"{self.direction} {self.threshold:g}, release past {self.release:g}"

    # --- the state machine's view of this rule ---------------------------------------------
    def spec(self) -> rules.RuleSpec:
        return rules.RuleSpec(
            kind=rules.Kind(self.kind),
            direction=rules.Direction(self.direction),
            threshold=self.threshold if self.threshold is not None else math.nan,
            release=self.release if self.release is not None else math.nan,
            duration=self.duration.total_seconds(),
            max_age=self.max_age.total_seconds(),
            min_samples=self.min_samples,
            offline_after=self.offline_after.total_seconds(),
            max_run=_seconds(self.max_run),
            active_from=self.active_from,
            active_until=self.active_until,
            tz=ZoneInfo(settings.TIME_ZONE),
            on_trigger=rules.Switch(self.on_trigger if self.output_id else "nothing"),
            on_release=rules.Switch(self.on_release if self.output_id else "nothing"),
            notify_trigger=self.notify_trigger,
            notify_release=self.notify_release,
            cooldown=self.cooldown.total_seconds(),
        )

    def state(self) -> rules.RuleState:
        return rules.RuleState(rules.Phase(self.phase), self.phase_since, self.last_notified, self.suppressed)

    def store(self, state: rules.RuleState, observation: rules.Observation, now: datetime) -> None:
        """Keep the new state and what it was based on (one UPDATE)."""
        self.phase, self.phase_since = state.phase.value, state.since
        self.last_notified, self.suppressed = state.last_notified, state.suppressed
        self.last_value = observation.value
        self.last_age = None if math.isinf(observation.age) else observation.age
        self.last_samples = observation.samples
        self.evaluated_at = now
        fields = ["phase", "phase_since", "last_notified", "suppressed", "last_value", "last_age", "last_samples"]
        self.save(update_fields=[*fields, "evaluated_at"])

    def watched_sensor_ids(self, now: datetime | None = None) -> list[int]:
        """The sensors whose latest values this rule reads (the collector writes them every few seconds)."""
        if self.kind != self.Kind.THRESHOLD or self.reads != self.Reads.LATEST:
            return []
        if self.sensor_id is not None:
            return [self.sensor_id]
        return [sensor.pk for sensor in self.placed_sensors(now)]

    def placed_sensors(self, now: datetime | None = None) -> list[Sensor]:
        now = now or timezone.now()
        return list(
            Sensor.objects.filter(
                pk__in=Placement.objects.filter(location=self.location, start__lte=now, end__isnull=True).values(
                    "sensor"
                )
            )
        )

    def uncalibrated_sensors(self) -> list[Sensor]:
        """For a metric whose calibration changes its unit (soil: raw -> %): the placed sensors without
        one while others have one (their mean would mix units); empty when all or none are calibrated."""
        entry = registry_metric(self.metric)
        if self.location_id is None or entry.calibrated_unit == entry.unit:
            return []
        placed = self.placed_sensors()
        raw = [sensor for sensor in placed if not sensor.is_calibrated(self.metric)]
        return raw if len(raw) < len(placed) else []

    def observe(self, now: datetime) -> rules.Observation:
        """What the data says now, calibrated; a location is the mean of the sensors placed there."""
        if self.kind == "offline":
            last_seen = self.sensor.last_seen
            if last_seen is None or self.sensor.offline_since is not None:  # its broker said it went away
                return rules.Observation(value=None, age=math.inf)
            return rules.Observation(value=None, age=max(0.0, (now - last_seen).total_seconds()))
        if self.sensor_id is not None:
            return sensor_observation(self.sensor, self.metric, now, self.max_age, self.reads, self.duration)
        placed = self.placed_sensors(now)
        if registry_metric(self.metric).calibrated_unit != registry_metric(self.metric).unit:
            calibrated = [sensor for sensor in placed if sensor.is_calibrated(self.metric)]
            placed = calibrated or placed  # never a mean of % and raw: only the calibrated ones count
        seen = [
            sensor_observation(sensor, self.metric, now, self.max_age, self.reads, self.duration) for sensor in placed
        ]
        limit = self.max_age.total_seconds()
        usable = [o for o in seen if o.value is not None and o.age <= limit]
        if not usable:  # nothing fresh: the freshest there is, so the fail-safe says how old it is
            return min(seen, key=lambda o: o.age, default=rules.Observation(value=None))
        return rules.Observation(
            value=sum(o.value for o in usable) / len(usable),
            age=max(o.age for o in usable),
            samples=sum(o.samples for o in usable),
        )


def sensor_observation(
    sensor: Sensor,
    metric: str,
    now: datetime,
    max_age: timedelta,
    reads: str = "mean",
    duration: timedelta | None = None,
) -> rules.Observation:
    """What a rule sees of one sensor's metric, calibrated.

    `latest`: the newest sample (LiveReading, written every COLLECTOR_LIVE_INTERVAL for watched
    sensors), aged from when it arrived; its samples are those of its minute so far and the minute
    before, so a minute that has just begun is not mistaken for sparse data. Without a live value
    newer than the stored minutes (the collector has not picked the sensor up yet), the mean.

    `mean`: the mean of the newest minutes covering `duration`, at least the newest minute together
    with the minute before it; the age is the time since the sensor's last report, or since the end
    of the newest minute if that is older.
    """
    window = max(timedelta(minutes=2), duration or timedelta(0))
    minutes = max(2, int(window.total_seconds() // 60) + 1)
    since = now - max_age - window
    newest = list(
        Reading.objects.filter(sensor=sensor, metric=metric, start__gte=since, start__lte=now).order_by("-start")[
            :minutes
        ]
    )
    if reads == "latest":
        live = LiveReading.objects.filter(sensor=sensor, metric=metric).first()
        if live is not None and (not newest or live.minute >= newest[0].start):
            # The samples of the live minute and the one before: those the minute rows hold plus
            # those the collector still held when it wrote the live value.
            stored = sum(r.samples for r in newest if live.minute - timedelta(minutes=1) <= r.start <= live.minute)
            return rules.Observation(
                value=sensor.calibrate(metric, live.value),
                age=max(0.0, (now - live.received_at).total_seconds()),
                samples=live.samples + stored,
            )
        newest, window = newest[:2], timedelta(minutes=2)
    newest = [r for r in newest if newest[0].start - r.start < window]  # the window back from the newest minute
    last_seen = sensor.last_seen
    if not newest:
        age = math.inf if last_seen is None else max(0.0, (now - last_seen).total_seconds())
        return rules.Observation(value=None, age=age)
    end = newest[0].start + timedelta(minutes=1)
    newest_sample = min(end, last_seen) if last_seen is not None else end
    samples = sum(r.samples for r in newest)
    raw = sum(r.value_sum for r in newest) / samples
    return rules.Observation(
        value=sensor.calibrate(metric, raw),
        age=max(0.0, (now - newest_sample).total_seconds()),
        samples=samples,
    )


class Event(models.Model):
    """Everything the control process did and why: triggers, releases, commands, notifications."""

    class Kind(models.TextChoices):
        INITIAL = "initial"
        TRIGGER = "trigger"
        RELEASE = "release"
        PENDING = "pending"
        CLEARED = "cleared"
        STALE = "stale"
        RECOVERED = "recovered"
        EXHAUSTED = "exhausted"
        REARMED = "rearmed"
        INACTIVE = "inactive"
        COMMAND = "command"
        HELD = "held"
        NOTIFICATION = "notification"
        OVERRIDE = "override"
        START = "start"

    time = models.DateTimeField(default=timezone.now, db_index=True)
    kind = models.CharField(max_length=15, choices=Kind.choices)
    rule = models.ForeignKey(Rule, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    output = models.ForeignKey(Output, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    message = models.CharField(max_length=500)
    value = models.FloatField(null=True, blank=True)
    age = models.FloatField("age of the data (s)", null=True, blank=True)
    samples = models.PositiveIntegerField(null=True, blank=True)
    ok = models.BooleanField(null=True, help_text="Commands and notifications: delivered? (empty while under way)")
    detail = models.TextField(blank=True, help_text="The peer's answer or the error.")
    user = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-time", "-id"]

    def __str__(self) -> str:
        return f"{self.time:%Y-%m-%d %H:%M:%S} {self.kind}: {self.message}"

    @property
    def status(self) -> str:
        if self.kind not in (self.Kind.COMMAND, self.Kind.NOTIFICATION):
            return ""
        return {True: "delivered", False: "failed", None: "sending"}[self.ok]
