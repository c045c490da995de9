"""How each metric is labelled and in which unit it is shown (raw and calibrated)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricInfo:
    label: str
    unit: str  # as stored (what the board sent)
    calibrated_unit: str  # after Sensor.calibrate


KNOWN_METRICS: dict[str, MetricInfo] = {
    "air_temperature": MetricInfo("Air temperature", "°C", "°C"),
    "humidity": MetricInfo("Humidity", "%RH", "%RH"),
    "soil_moisture": MetricInfo("Soil moisture", "raw", "%"),
}


def metric_info(metric: str) -> MetricInfo:
    """Known metrics by name; extra ones a board sends are shown as they are."""
    return KNOWN_METRICS.get(metric, MetricInfo(metric.replace("_", " ").capitalize(), "", ""))
