"""Thin views: parse the request, ask sensors.web.history (or the models), render."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render

from greenhouse_site.access import read_only_page
from sensors.export import csv_pieces, export_rows, format_time, ordered_for_export, parse_time
from sensors.identity import normalise_device_id
from sensors.metrics import derived_for, is_name, metric
from sensors.models import RESOLUTIONS, CurrentReading, Location, Placement, Sensor

from .downloads import giving_way
from .history import (
    DEFAULT_MAX_POINTS,
    MAX_POINTS_LIMIT,
    Series,
    default_range,
    finest_stored,
    location_series,
    sensor_series,
)

RANGES = {"1h": 1, "24h": 24, "7d": 24 * 7, "30d": 24 * 30, "1y": 24 * 365}


class BadRequest(ValueError):
    pass


# Times a chart or a download may ask for: wide enough for any greenhouse's history, narrow
# enough that converting to UTC and adding a step can never overflow a datetime.
EARLIEST, LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC)


def _moment(text: str, name: str) -> datetime:
    try:
        moment = parse_time(text).astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise BadRequest(f"{name}={text[:40]!r} is not an ISO 8601 time like 2026-11-24T10:15:00Z") from exc
    if not EARLIEST <= moment < LATEST:
        raise BadRequest(f"{name} must be between 1970 and 9000")
    return moment


def requested_range(params) -> tuple[datetime, datetime]:
    """`range` (1h, 24h, 7d, 30d, 1y; default 24h) or an explicit `start` and `end`."""
    if "start" in params or "end" in params:
        if not ("start" in params and "end" in params):
            raise BadRequest("give both start and end")
        start, end = _moment(params["start"], "start"), _moment(params["end"], "end")
        if end <= start:
            raise BadRequest("end must be after start")
        if end - start > timedelta(days=3660):
            raise BadRequest("a range of at most ten years")
        return start, end
    name = params.get("range", "24h")
    if name not in RANGES:
        raise BadRequest(f"range must be one of {', '.join(RANGES)}")
    return default_range(RANGES[name])


def _max_points(params) -> int:
    try:
        value = int(params.get("max_points", DEFAULT_MAX_POINTS))
    except ValueError as exc:
        raise BadRequest("max_points must be a whole number") from exc
    if not 1 <= value <= MAX_POINTS_LIMIT:
        raise BadRequest(f"max_points must be between 1 and {MAX_POINTS_LIMIT}")
    return value


def _points(series: Series) -> list[dict]:
    return [
        {"t": format_time(p.time), "samples": p.samples, "mean": p.mean, "min": p.low, "max": p.high}
        for p in series.points
    ]


@dataclass(frozen=True)
class HistoryQuery:
    """The parameters every history endpoint takes (docs/api.md)."""

    metric: str
    start: datetime
    end: datetime
    max_points: int
    calibrated: bool

    @classmethod
    def from_params(cls, params) -> HistoryQuery:
        name = params.get("metric", "")
        if not name:
            raise BadRequest("metric is required, e.g. metric=air_temperature")
        if not is_name(name):
            raise BadRequest("metric must be a name like air_temperature (a-z, 0-9 and _)")
        start, end = requested_range(params)
        return cls(name, start, end, _max_points(params), params.get("calibrated", "1") != "0")


@read_only_page
def sensor_history_api(request: HttpRequest, device_id: str) -> JsonResponse:
    """GET /api/sensors/<device id>/history?metric=...: documented in docs/api.md."""
    normalised = normalise_device_id(device_id)
    if normalised is None:
        return JsonResponse({"error": f"{device_id!r} is not a device id"}, status=400)
    sensor = get_object_or_404(Sensor, device_id=normalised)
    try:
        query = HistoryQuery.from_params(request.GET)
    except BadRequest as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    name, calibrated = query.metric, query.calibrated
    series = sensor_series(sensor, name, query.start, query.end, query.max_points, calibrated)
    return JsonResponse(
        {
            "sensor": _sensor_json(sensor),
            "metric": name,
            "label": metric(name).label,
            "unit": sensor.display_unit(name, calibrated),
            "calibrated": calibrated,
            "start": format_time(series.start),
            "end": format_time(series.end),
            "step_seconds": series.step_seconds,
            "resolution": series.resolution,
            "samples": series.samples,
            "expected_samples": series.expected_samples,
            "coverage": series.coverage,
            "points": _points(series),
        }
    )


@read_only_page
def location_history_api(request: HttpRequest, pk: int) -> JsonResponse:
    """GET /api/locations/<id>/history?metric=...: one series per sensor placed there (docs/api.md).

    Each series carries its own unit: a soil probe without dry/wet calibration is in raw units
    while a calibrated one beside it is in %. The top-level `unit` is the one they share, or ""
    when they differ.
    """
    location = get_object_or_404(Location, pk=pk)
    try:
        query = HistoryQuery.from_params(request.GET)
    except BadRequest as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    name, calibrated, start, end = query.metric, query.calibrated, query.start, query.end
    by_sensor = location_series(location, name, start, end, query.max_points, calibrated)
    step = max((series.step_seconds for series in by_sensor.values()), default=0)
    units = {sensor.display_unit(name, calibrated) for sensor in by_sensor}
    if not units:
        units = {metric(name).calibrated_unit if calibrated else metric(name).unit}
    return JsonResponse(
        {
            "location": {"id": location.pk, "name": location.name},
            "metric": name,
            "label": metric(name).label,
            "unit": units.pop() if len(units) == 1 else "",
            "calibrated": calibrated,
            "start": format_time(start),
            "end": format_time(end),
            "step_seconds": step,
            "series": [
                {
                    "sensor": _sensor_json(sensor),
                    "unit": sensor.display_unit(name, calibrated),
                    "coverage": series.coverage,
                    "points": _points(series),
                }
                for sensor, series in sorted(by_sensor.items(), key=lambda item: item[0].display_name)
            ],
        }
    )


def _sensor_json(sensor: Sensor) -> dict[str, str]:
    """Who a series is from; "mac" repeats the id for clients written when every sensor was a MAC."""
    return {"id": sensor.device_id, "source": sensor.source, "mac": sensor.device_id, "name": sensor.display_name}


def _sensor_or_404(device_id: str) -> Sensor:
    normalised = normalise_device_id(device_id)
    if normalised is None:
        raise Http404("not a device id")
    return get_object_or_404(Sensor.objects.select_related("location"), device_id=normalised)


def chart_metrics(measured: set[str]) -> list[str]:
    """The charts a page shows: every measured metric, then the derived values they allow (VPD, dew point)."""
    return sorted(measured) + [derived.name for derived in derived_for(frozenset(measured))]


@read_only_page
def sensor_page(request: HttpRequest, device_id: str) -> HttpResponse:
    sensor = _sensor_or_404(device_id)
    # A sensor has a current-value row for every metric it ever sent (kept forever, like the rollups).
    measured = set(sensor.current_readings.values_list("metric", flat=True))
    return render(
        request,
        "sensors/sensor.html",
        {
            "sensor": sensor,
            "metrics": chart_metrics(measured),
            "ranges": list(RANGES),
            "time_zone": settings.TIME_ZONE,
        },
    )


@read_only_page
def sensor_csv(request: HttpRequest, device_id: str) -> HttpResponse:
    """The readings of exactly the range the page shows, as export_readings writes them."""
    sensor = _sensor_or_404(device_id)
    try:
        start, end = requested_range(request.GET)
    except BadRequest as exc:
        return HttpResponse(str(exc), status=400, content_type="text/plain")
    resolution = request.GET.get("resolution", "")
    if resolution and resolution not in RESOLUTIONS:
        return HttpResponse(
            f"resolution must be one of {', '.join(RESOLUTIONS)}", status=400, content_type="text/plain"
        )
    model = RESOLUTIONS[resolution] if resolution else finest_stored(start)
    readings = model.objects.filter(sensor=sensor).between(start, end)
    rows = export_rows(ordered_for_export(readings), request.GET.get("calibrated", "1") != "0")
    # Streamed: the first byte leaves at once and memory stays flat, even for 30 days of minutes
    # (the rows come from the database in chunks, see export.ordered_for_export); a piece waits
    # while a page is being built in this process (downloads.giving_way).
    response = StreamingHttpResponse(giving_way(csv_pieces(rows)), content_type="text/csv")
    filename = f"{sensor.device_id}_{format_time(start)}_{format_time(end)}.csv".replace(":", "")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@read_only_page
def location_page(request: HttpRequest, pk: int) -> HttpResponse:
    """The same metric from every sensor of a location on one chart, to compare benches.

    The metrics are those of every sensor that ever stood there, from their current-value rows:
    a sensor placed a minute ago shows at once, without waiting for its first full hour.
    """
    location = get_object_or_404(Location, pk=pk)
    placed = Placement.objects.filter(location=location).values("sensor")
    measured = set(CurrentReading.objects.filter(sensor__in=placed).values_list("metric", flat=True))
    return render(
        request,
        "sensors/location.html",
        {
            "location": location,
            "metrics": chart_metrics(measured),
            "ranges": list(RANGES),
            "time_zone": settings.TIME_ZONE,
        },
    )
