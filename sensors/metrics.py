"""The one registry of what a metric is: its name, the keys boards may send for it, its label,
its unit, the values it may take, and how a sensor's calibration applies to it.

Plain Python with no Django import (`make lint` enforces it): the wire parser (sensors.ingest)
checks keys and bounds here, the models calibrate and pick units here, and the views, the
export and control label values from here. Adding a metric is one entry in `METRICS`.

A key a board sends that is not listed is an *extra metric*: stored under its own name, with
the wide `EXTRA_BOUNDS`, no unit and no calibration (docs/protocol.md).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

# Extra metrics get a wide bound so that sums of a minute's samples stay finite
# (inf + -inf would poison a stored row).
EXTRA_BOUNDS = (-1e9, 1e9)


class Calibration(Protocol):
    """How a sensor's calibration fields turn a stored (raw) value into the value shown."""

    unit: str | None  # the unit once calibrated; None: the stored unit

    def applies(self, sensor: object) -> bool: ...

    def bound(self, sensor: object) -> Callable[[float], float]:
        """The mapping for one sensor, its fields read once (an export maps ~400,000 values)."""
        ...


@dataclass(frozen=True)
class Offset:
    """value + the sensor's `field` (e.g. a thermometer that reads 0.5 °C high)."""

    field: str
    unit: str | None = None

    def applies(self, sensor: object) -> bool:
        return True

    def bound(self, sensor: object) -> Callable[[float], float]:
        offset = getattr(sensor, self.field) or 0.0
        return lambda value: value + offset


@dataclass(frozen=True)
class TwoPoint:
    """A raw reading mapped linearly so that the sensor's `low_field` reads 0 and `high_field` 100.

    Applies only once both points are set; until then the value stays raw, in the stored unit.
    The mapping may run downwards (a capacitive soil probe reads less when wet).
    """

    low_field: str
    high_field: str
    unit: str | None = "%"

    def applies(self, sensor: object) -> bool:
        return getattr(sensor, self.low_field) is not None and getattr(sensor, self.high_field) is not None

    def bound(self, sensor: object) -> Callable[[float], float]:
        if not self.applies(sensor):
            return _unchanged
        low, high = getattr(sensor, self.low_field), getattr(sensor, self.high_field)
        return lambda value: (value - low) / (high - low) * 100.0


def _unchanged(value: float) -> float:
    return value


def calibrated_band(
    calibrate: Callable[[float], float], mean: float, low: float, high: float
) -> tuple[float, float, float]:
    """Mean, min and max through `calibrate`; a mapping that runs downwards (soil) swaps min and max."""
    mean, low, high = calibrate(mean), calibrate(low), calibrate(high)
    return (mean, low, high) if low <= high else (mean, high, low)


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    unit: str  # as stored: what the board sends
    bounds: tuple[float, float] = EXTRA_BOUNDS  # inclusive; values outside are rejected by the parser
    aliases: tuple[str, ...] = ()  # other keys a board may send for it (lower case)
    # Names MQTT firmwares give it (ESPHome object ids, generic JSON keys; lower snake case), on top
    # of `aliases`. Kept apart so that the TCP protocol's keys stay exactly what they were.
    device_keys: tuple[str, ...] = ()
    calibration: Calibration | None = None

    @property
    def known(self) -> bool:
        return self.name in METRICS

    @property
    def calibrated_unit(self) -> str:
        """The unit once a sensor's calibration is set."""
        if self.calibration is None or self.calibration.unit is None:
            return self.unit
        return self.calibration.unit

    def is_calibrated(self, sensor: object) -> bool:
        """Does `sensor`'s calibration change this metric's values (and maybe its unit)?"""
        return self.calibration is not None and self.calibration.applies(sensor)

    def calibrate(self, sensor: object, value: float) -> float:
        """A stored value as shown to the grower."""
        return self.calibrator(sensor)(value)

    def calibrator(self, sensor: object) -> Callable[[float], float]:
        """`calibrate` for one sensor, as a function: its calibration fields read once."""
        return self.calibration.bound(sensor) if self.calibration is not None else _unchanged

    def unit_for(self, sensor: object, calibrated: bool = True) -> str:
        """The unit `sensor`'s values are shown in (calibrated or raw)."""
        return self.calibrated_unit if calibrated and self.is_calibrated(sensor) else self.unit


METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric(
            "air_temperature",
            "Air temperature",
            "°C",
            bounds=(-60.0, 100.0),
            aliases=("temp", "temperature"),
            device_keys=("air_temp", "tc"),
            calibration=Offset("temperature_offset"),
        ),
        Metric(
            "humidity",
            "Humidity",
            "%RH",
            bounds=(0.0, 100.0),
            aliases=("hum",),
            device_keys=("rh", "relative_humidity", "air_humidity"),
            calibration=Offset("humidity_offset"),
        ),
        Metric(
            "soil_moisture",
            "Soil moisture",
            "raw",
            bounds=(0.0, 1e9),
            aliases=("soil",),
            device_keys=("moisture", "soil_raw"),
            calibration=TwoPoint("soil_dry_raw", "soil_wet_raw"),
        ),
        # Reported by MQTT devices (a BME280 on Tasmota, a battery-powered Shelly H&T).
        Metric("pressure", "Air pressure", "hPa", bounds=(0.0, 2000.0), device_keys=("air_pressure",)),
        Metric("battery", "Battery", "%", bounds=(0.0, 100.0), device_keys=("battery_level", "battery_percent")),
    )
}

# Key as a board sends it (lower case) -> metric name. A metric's own name is one of its keys.
ALIASES: dict[str, str] = {key: m.name for m in METRICS.values() for key in (m.name, *m.aliases)}
# The same for MQTT devices' field names: the TCP keys and the firmwares' own names.
DEVICE_KEYS: dict[str, str] = ALIASES | {key: m.name for m in METRICS.values() for key in m.device_keys}

# The firmware's line carries these three, in this order: `Soil: 612; temp: 21; hum: 48; from MAC`.
FIRMWARE_LINE: tuple[str, str, str] = ("soil_moisture", "air_temperature", "humidity")


# --- derived values: computed when shown, never stored as samples ---------------------------------
def vapour_pressure_deficit(temperature: float, humidity: float) -> float | None:
    """kPa: how much more water the air could hold, the plants' "thirst" (ideal ~0.8-1.2 kPa).

    Saturation vapour pressure over water by Tetens' formula, es = 0.6108·exp(17.27·T/(T+237.3)) kPa,
    times (1 - RH/100). Good to about 1 % for 0-50 °C. Humidity above 100 % (an offset pushing
    a reading past saturation) counts as 100 %.
    """
    if temperature <= -237.3 or humidity < 0:
        return None
    saturation = 0.6108 * math.exp(17.27 * temperature / (temperature + 237.3))
    return saturation * (1.0 - min(humidity, 100.0) / 100.0)


def dew_point(temperature: float, humidity: float) -> float | None:
    """°C: the temperature at which the air's water condenses (on leaves, on the glass).

    The Magnus formula with Alduchov and Eskridge's constants (a = 17.625, b = 243.04 °C), within
    0.1 °C for -40-50 °C; undefined at 0 %RH. Humidity above 100 % counts as 100 %.
    """
    if humidity <= 0 or temperature <= -243.04:
        return None
    a, b = 17.625, 243.04
    gamma = math.log(min(humidity, 100.0) / 100.0) + a * temperature / (b + temperature)
    return b * gamma / (a - gamma)


@dataclass(frozen=True)
class Derived:
    """A value computed from other metrics at display time (calibrated inputs, in their registry units).

    Computed from minute (or coarser) means: the VPD of a mean temperature and mean humidity is
    not exactly the mean of the VPDs, a difference well below a sensor's accuracy at a minute.
    """

    name: str
    label: str
    unit: str
    inputs: tuple[str, ...]
    compute: Callable[..., float | None]

    def of(self, values: dict[str, float]) -> float | None:
        """The derived value from `values` (metric -> calibrated value), or None if an input is missing."""
        try:
            inputs = [values[name] for name in self.inputs]
        except KeyError:
            return None
        return self.compute(*inputs)


DERIVED: dict[str, Derived] = {
    derived.name: derived
    for derived in (
        Derived("vpd", "Vapour-pressure deficit", "kPa", ("air_temperature", "humidity"), vapour_pressure_deficit),
        Derived("dew_point", "Dew point", "°C", ("air_temperature", "humidity"), dew_point),
    )
}


@lru_cache(maxsize=256)
def derived_for(metrics: frozenset[str]) -> tuple[Derived, ...]:
    """The derived values a sensor with these metrics can show (asked once per card on the dashboard)."""
    return tuple(derived for derived in DERIVED.values() if metrics.issuperset(derived.inputs))


def metric(name: str) -> Metric:
    """The registry's entry, a derived value's label and unit, or an extra metric's: labelled from its name."""
    known = METRICS.get(name)
    if known is not None:
        return known
    if name in DERIVED:
        return Metric(name, DERIVED[name].label, DERIVED[name].unit)
    return Metric(name, name.replace("_", " ").capitalize(), "")


# What a metric's name may look like (a board's key after lower-casing: see docs/protocol.md).
NAME = re.compile(r"[a-z][a-z0-9_]{0,31}\Z", re.ASCII)


def is_name(text: str) -> bool:
    """Could `text` name a metric? (Anything else in a URL is refused before it reaches a query.)"""
    return NAME.match(text) is not None


def canonical(key: str) -> str:
    """The metric a (lower-case) key names: an alias's metric, else the key itself (an extra metric)."""
    return ALIASES.get(key, key)


def device_metric(key: str) -> str:
    """The metric an MQTT device's (lower snake case) field name names, else the key itself (an extra metric)."""
    return DEVICE_KEYS.get(key, key)


def bounds(name: str) -> tuple[float, float]:
    known = METRICS.get(name)
    return known.bounds if known is not None else EXTRA_BOUNDS
