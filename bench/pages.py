"""Pages benchmark: what a grower opens every day, on a month-old database, through the real web server.

    .venv/bin/python bench/pages.py [--sensors 200] [--seed-only] [--reuse]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_pages .venv/bin/python bench/pages.py --reuse

Seeds (default: SQLite file var/bench-pages.sqlite3) the database a greenhouse has after a
month: N sensors x 3 metrics with 30 days of minute rows (30 samples each), a year of hourly
and daily rollups consistent with them, the current-value rows, locations with placements,
calibrations, control outputs, rules and events. With --reuse an already seeded database is
kept: `migrate` still runs, and the minutes since the seed are added (rollups and current
values rebuilt for them, expired minutes deleted as the collector would), so "now" is always
the end of the data.

Then it starts gunicorn exactly as deploy/supervisord.conf's [program:web] does (only the bind
address changes), logs in over HTTP and times each page: p50 and p95 (nearest rank) of the
whole request (connect, answer, body read) after warm-up requests; the CSV download also by
time to first byte. The login page, logged out, is timed in the same run as the reference: a
page that touches no readings, so "p95 / reference p95" says how much a page costs beyond
Django, gunicorn and the machine itself, which is shared with other work (its load varies;
the ratio moves less than the milliseconds). It is timed on its own first, and again after each
timed request of every other page (not the download), and each page is compared with the login
page timed between its own requests: a load that comes and goes during the run (autovacuum after
the catch-up, a checkpoint) weighs on both. A page must pass against both references (the
smaller one counts): a login right after a heavy page can pay for that page's garbage. The
dashboard during a download is compared with the login page timed on its own. Targets: pages p95 < 100 ms and < 20x the
reference; history API p95 < 50 ms; CSV first byte < 300 ms. Every answer must be a 200
(a 302 to the login page or a 500 is an error, never a timing). Exits non-zero on any FAIL or
on a traceback in gunicorn's log. --explain replays each failing figure in-process and prints
its SQL queries, the slowest with its query plan.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import random
import re
import secrets
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "greenhouse_site.settings")
os.environ.setdefault("SECRET_KEY", __import__("secrets").token_urlsafe(50))  # DEBUG is off: a key is required
os.environ.setdefault("DATABASE_URL", f"sqlite:///{ROOT / 'var' / 'bench-pages.sqlite3'}")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from bench.common import machine, result_line  # noqa: E402
from control.models import Event, Output, Rule  # noqa: E402
from harness.processes import LoggedProcess, free_port, tracebacks, web_argv  # noqa: E402
from sensors.layout import clean_indexes, order_closed_days  # noqa: E402
from sensors.models import CurrentReading, Location, Placement, Reading, Sensor  # noqa: E402

METRICS = {  # centre, swing, minute noise
    "air_temperature": (18.0, 8.0, 0.3),
    "humidity": (60.0, 20.0, 1.5),
    "soil_moisture": (550.0, 120.0, 4.0),
}
SAMPLES_PER_MINUTE = 30  # one line every 2 s
MINUTE_DAYS = 30
ROLLUP_DAYS = 365
LOCATIONS = ["Bench 1", "Bench 2", "Bench 3", "Bench 4", "Propagation", "Seedlings"]
LOCATIONS += ["Tomato row", "Cucumber row", "Herbs", "Hardening off"]
OFFLINE_EVERY = 40  # sensor 7, 47, 87, ... has been silent for an hour
USERNAME = "bench-pages"
COLUMNS = ("sensor_id", "metric", "start", "samples", "value_sum", "value_min", "value_max")
CURRENT_TABLE = "sensors_currentreading"
RANGES = ["1h", "24h", "7d", "30d", "1y"]
PAGE_P95_MS = 100.0
PAGE_RATIO = 20.0
HISTORY_P95_MS = 50.0
CSV_FIRST_BYTE_MS = 300.0


# --- the database ---------------------------------------------------------------------------
def vendor() -> str:
    return connection.vendor


def database_name() -> str:
    return str(connection.settings_dict["NAME"])


def refuse_foreign_database() -> None:
    """Seeding empties the database: only one named for this benchmark."""
    if "pages" not in Path(database_name()).name:
        raise SystemExit(f"refusing to re-seed {database_name()!r}: its name must contain 'pages'")


def postgres_admin(sql: str) -> None:
    """Run one statement on the server's `postgres` database (CREATE/DROP of ours)."""
    import psycopg

    params = connection.settings_dict
    with psycopg.connect(
        host=params["HOST"] or None,
        port=params["PORT"] or None,
        user=params["USER"] or None,
        password=params["PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
    ) as admin:
        admin.execute(sql)


def postgres_exists() -> bool:
    from django.db import OperationalError

    try:
        connection.ensure_connection()
    except OperationalError as exc:
        if "does not exist" in str(exc):
            return False
        raise
    return True


def empty_database() -> None:
    """A new, empty database: the SQLite file removed, or our PostgreSQL database dropped and created."""
    refuse_foreign_database()
    connection.close()
    if vendor() == "postgresql":
        name = database_name().replace('"', "")
        postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        postgres_admin(f'CREATE DATABASE "{name}"')
    else:
        path = Path(database_name())
        path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def has_current_table() -> bool:
    return CURRENT_TABLE in connection.introspection.table_names()


def db_time(moment: datetime) -> str:
    """A UTC datetime as the backend stores it (Django's SQLite text form; timestamptz text)."""
    text = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return text if vendor() == "sqlite" else f"{text}+00"


def insert_rows(table: str, columns: tuple[str, ...], rows: Iterable[tuple]) -> int:
    """Bulk insert from a generator: COPY on PostgreSQL, executemany on SQLite. Returns the row count."""
    tally = [0]

    def counted() -> Iterator[tuple]:
        for row in rows:
            tally[0] += 1
            yield row

    names = ", ".join(columns)
    if vendor() == "postgresql":
        with connection.cursor() as cursor, cursor.cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for row in counted():
                copy.write_row(row)
    else:
        marks = ", ".join("?" * len(columns))
        connection.ensure_connection()
        connection.connection.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", counted())
    return tally[0]


def execute(sql: str, params: Iterable = ()) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, list(params))
        return cursor.rowcount


def scalar(sql: str, params: Iterable = ()):
    with connection.cursor() as cursor:
        cursor.execute(sql, list(params))
        row = cursor.fetchone()
    return row[0] if row else None


def truncated(unit: str) -> str:
    """SQL for the start of the hour or day a row's `start` falls in (UTC)."""
    if vendor() == "postgresql":
        return f"date_trunc('{unit}', start, 'UTC')"
    return "substr(start, 1, 13) || ':00:00'" if unit == "hour" else "substr(start, 1, 10) || ' 00:00:00'"


def roll_up(source: str, target: str, unit: str, since: datetime, until: datetime, replace: bool = False) -> int:
    """Add to `target` the `source` rows of [since, until) grouped by `unit`; `replace`: its rows from `since` first."""
    names = ", ".join(COLUMNS)
    if replace:
        execute(f"DELETE FROM {target} WHERE start >= %s", [db_time(since)])
    bucket = truncated(unit)
    return execute(
        f"INSERT INTO {target} ({names}) "
        f"SELECT sensor_id, metric, {bucket}, SUM(samples), SUM(value_sum), MIN(value_min), MAX(value_max) "
        f"FROM {source} WHERE start >= %s AND start < %s GROUP BY sensor_id, metric, {bucket}",
        [db_time(since), db_time(until)],
    )


def tune_for_seeding() -> None:
    """SQLite: no fsync and a big page cache while seeding (WAL, the project's mode, stays)."""
    if vendor() == "sqlite":
        execute("PRAGMA synchronous=OFF")
        execute("PRAGMA cache_size=-1000000")
        execute("PRAGMA temp_store=MEMORY")


def settle() -> None:
    """As a month-old database is: WAL checkpointed (SQLite), vacuumed and analysed (PostgreSQL autovacuum)."""
    if vendor() == "postgresql":
        for table in ("sensors_reading", "sensors_hourlyreading", "sensors_dailyreading", "sensors_sensor"):
            execute(f"VACUUM (ANALYZE) {table}")
        if has_current_table():
            execute(f"VACUUM (ANALYZE) {CURRENT_TABLE}")
    else:
        execute("PRAGMA wal_checkpoint(TRUNCATE)")


def database_bytes() -> int:
    if vendor() == "postgresql":
        return int(scalar("SELECT pg_database_size(current_database())"))
    path = Path(database_name())
    return sum(Path(f"{path}{suffix}").stat().st_size for suffix in ("", "-wal") if Path(f"{path}{suffix}").exists())


# --- values ---------------------------------------------------------------------------------
def level(metric: str, moment: datetime) -> float:
    """A plausible greenhouse value: a daily cycle (warmest and driest at 15:00), a season, soil drying out."""
    centre, swing, _ = METRICS[metric]
    hours = moment.timestamp() / 3600
    daily = math.sin(2 * math.pi * (hours % 24 - 9) / 24)
    season = math.sin(2 * math.pi * hours / (24 * 365))
    if metric == "air_temperature":
        return centre + swing * (0.7 * daily + 0.3 * season)
    if metric == "humidity":
        return centre - swing * (0.7 * daily + 0.2 * season)
    drying = 2 * ((hours / 60) % 1) - 1  # watered every 60 h, the raw reading rises as it dries
    return centre + swing * (0.8 * drying + 0.2 * daily)


@dataclass(frozen=True)
class SeedSensor:
    id: int
    offsets: tuple[tuple[str, float, float], ...]  # (metric, offset, noise) per metric
    silent_since: datetime | None  # offline sensors stopped reporting then


class Noise:
    """Cheap repeatable Gaussian noise: a table walked round-robin."""

    def __init__(self, seed: int, size: int = 65_521) -> None:
        rng = random.Random(seed)
        self.values = [rng.gauss(0.0, 1.0) for _ in range(size)]
        self.spreads = [0.3 + abs(rng.gauss(0.0, 1.0)) for _ in range(size)]
        self.index = 0

    def next(self) -> tuple[float, float]:
        self.index = (self.index + 1) % len(self.values)
        return self.values[self.index], self.spreads[self.index]


def minute_rows(sensors: list[SeedSensor], since: dict[int, datetime], until: datetime) -> Iterator[tuple]:
    """Minute rows in time order (kind to both indexes), from each sensor's `since` to `until`."""
    noise = Noise(len(since))
    moment = min(since.values())
    while moment < until:
        stamp = db_time(moment)
        base = {name: level(name, moment) for name in METRICS}
        for sensor in sensors:
            if moment < since[sensor.id] or (sensor.silent_since is not None and moment >= sensor.silent_since):
                continue
            for name, offset, scale in sensor.offsets:
                wobble, spread = noise.next()
                mean = base[name] + offset + scale * wobble
                yield (
                    sensor.id,
                    name,
                    stamp,
                    SAMPLES_PER_MINUTE,
                    mean * SAMPLES_PER_MINUTE,
                    mean - scale * spread,
                    mean + scale * spread,
                )
        moment += timedelta(minutes=1)


def hour_rows(sensors: list[SeedSensor], since: datetime, until: datetime) -> Iterator[tuple]:
    """Hourly rollups written directly, for the months whose minutes the retention has deleted."""
    noise = Noise(3)
    samples = 60 * SAMPLES_PER_MINUTE
    moment = since
    while moment < until:
        stamp = db_time(moment)
        base = {name: level(name, moment + timedelta(minutes=30)) for name in METRICS}
        for sensor in sensors:
            for name, offset, scale in sensor.offsets:
                wobble, spread = noise.next()
                mean = base[name] + offset + 0.3 * scale * wobble
                yield (
                    sensor.id,
                    name,
                    stamp,
                    samples,
                    mean * samples,
                    mean - 3 * scale * spread,
                    mean + 3 * scale * spread,
                )
        moment += timedelta(hours=1)


# --- the seed -------------------------------------------------------------------------------
@dataclass
class Timeline:
    now: datetime
    end: datetime  # the current minute (still filling: not stored)
    minutes_from: datetime  # the oldest minute the retention keeps (an hour's start)
    rollups_from: datetime  # a year ago, at midnight

    @classmethod
    def at(cls, now: datetime) -> Timeline:
        kept = Reading.kept_since(MINUTE_DAYS, now)
        assert kept is not None
        year = (now - timedelta(days=ROLLUP_DAYS)).replace(hour=0, minute=0, second=0, microsecond=0)
        return cls(now, now.replace(second=0, microsecond=0), kept, year)


def mac_of(index: int) -> str:
    return f"5c:cf:7f:{0xA0 + index // 65536:02x}:{index // 256 % 256:02x}:{index % 256:02x}"


def create_sensors(count: int, line: Timeline) -> None:
    """Sensors, ten locations of about ten each (the rest not placed), some calibrated, a few offline."""
    rng = random.Random(5)
    placed = min(count // 2, 10 * len(LOCATIONS))
    location_count = max(1, min(len(LOCATIONS), placed // 10))
    locations = Location.objects.bulk_create(
        Location(name=name, description=f"{name}, benchmark") for name in LOCATIONS[:location_count]
    )
    sensors = []
    for index in range(count):
        location = locations[index % location_count] if index < placed else None
        offline = index % OFFLINE_EVERY == 7
        name = f"{location.name} probe {index // location_count + 1}" if location else f"Spare {index}"
        sensors.append(
            Sensor(
                device_id=mac_of(index),
                name="" if index % 13 == 12 else name,  # a few never named: shown by MAC
                location=location,
                first_seen=line.rollups_from - timedelta(days=1),
                last_seen=line.now - timedelta(hours=1) if offline else line.now,
                last_peer=f"192.168.1.{index % 250 + 2}",
                soil_dry_raw=820.0 if index % 2 == 0 else None,
                soil_wet_raw=310.0 if index % 2 == 0 else None,
                temperature_offset=round(rng.uniform(-0.5, 0.5), 1) if index % 3 == 0 else 0.0,
            )
        )
    sensors = Sensor.objects.bulk_create(sensors)
    placements = []
    moved_at = line.now - timedelta(days=60)
    for index, sensor in enumerate(sensors[:placed]):
        start = line.rollups_from - timedelta(days=1)
        if index % 5 == 4 and location_count > 1:  # moved two months ago: its past stayed where it was
            before = locations[(index + 1) % location_count]
            placements.append(Placement(sensor=sensor, location=before, start=start, end=moved_at))
            start = moved_at
        placements.append(Placement(sensor=sensor, location=sensor.location, start=start))
    Placement.objects.bulk_create(placements)


def seed_sensors(line: Timeline) -> list[SeedSensor]:
    """Each sensor's value offsets (repeatable: the same for a seed and a later catch-up)."""
    result = []
    for index, sensor in enumerate(Sensor.objects.order_by("device_id")):
        rng = random.Random(index)
        offsets = tuple((name, rng.gauss(0.0, swing * 0.15), noise) for name, (_, swing, noise) in METRICS.items())
        silent = line.now - timedelta(hours=1) if index % OFFLINE_EVERY == 7 else None
        result.append(SeedSensor(sensor.id, offsets, silent))
    return result


def create_control(line: Timeline) -> None:
    """A heater, a vent and a pump, their rules, and a few hundred events over the last month."""
    heater = Output.objects.create(
        name="Heater bench 1",
        http_on_url="http://192.168.1.50/relay/0?turn=on",
        http_off_url="http://192.168.1.50/relay/0?turn=off",
        is_on=False,
        changed_at=line.now - timedelta(hours=3),
        delivered=True,
    )
    vent = Output.objects.create(
        name="Roof vent",
        transport="mqtt",
        mqtt_broker="mqtt://192.168.1.10:1883",
        mqtt_topic="cmnd/vent/POWER",
        safe_on=True,
        is_on=True,
        changed_at=line.now - timedelta(hours=1),
        delivered=True,
    )
    pump = Output.objects.create(name="Watering pump", transport="manual", is_on=False)
    location = Location.objects.order_by("name").first()
    sensor = Sensor.objects.order_by("device_id").first()
    offline = Sensor.objects.order_by("device_id")[7:8].first() or sensor
    rules = [
        Rule(
            name="Frost guard",
            sensor=sensor,
            metric="air_temperature",
            direction="below",
            threshold=5.0,
            release=7.0,
            output=heater,
            on_trigger="on",
            on_release="off",
            notify_trigger=True,
        ),
        Rule(
            name="Vent when hot",
            location=location,
            metric="air_temperature",
            direction="above",
            threshold=28.0,
            release=25.0,
            output=vent,
            on_trigger="on",
            on_release="off",
        ),
        Rule(
            name="Water when dry",
            location=location,
            metric="soil_moisture",
            direction="below",
            threshold=30.0,
            release=45.0,
            output=pump,
            on_trigger="on",
            on_release="off",
            max_run=timedelta(minutes=10),
        ),
        Rule(
            name="Humid night",
            sensor=sensor,
            metric="humidity",
            direction="above",
            threshold=90.0,
            release=85.0,
            notify_trigger=True,
        ),
        Rule(
            name="Probe offline",
            kind="offline",
            sensor=offline,
            notify_trigger=True,
            offline_after=timedelta(minutes=10),
        ),
    ]
    Rule.objects.bulk_create(rules)
    rng = random.Random(9)
    rules = list(Rule.objects.all())
    kinds = ["trigger", "release", "command", "notification", "pending", "cleared", "stale", "recovered"]
    events = []
    for _ in range(300):
        rule = rng.choice(rules)
        kind = rng.choice(kinds)
        when = line.now - timedelta(seconds=rng.uniform(0, MINUTE_DAYS * 86400))
        events.append(
            Event(
                time=when,
                kind=kind,
                rule=rule,
                output=rule.output,
                message=f"{rule.name}: {kind}",
                value=round(rng.uniform(3, 32), 1),
                age=round(rng.uniform(1, 40), 1),
                samples=rng.randint(20, 60),
                ok=True if kind in ("command", "notification") else None,
                detail="HTTP 200" if kind == "command" else "",
            )
        )
    Event.objects.bulk_create(events)


def fill_current_readings(sensors: list[SeedSensor]) -> int:
    """sensors_currentreading: each sensor and metric's newest minute, received at the sensor's last_seen."""
    if not has_current_table():
        print(f"{CURRENT_TABLE} does not exist yet (migration sensors.0005 missing): not filled", flush=True)
        return 0
    names = ", ".join(COLUMNS)
    rows = 0
    with transaction.atomic():
        execute(f"DELETE FROM {CURRENT_TABLE}")
        for sensor in sensors:
            for name, _, _ in sensor.offsets:
                rows += execute(
                    f"INSERT INTO {CURRENT_TABLE} ({names}, received_at) "
                    f"SELECT r.sensor_id, r.metric, r.start, r.samples, r.value_sum, r.value_min, r.value_max, "
                    f"s.last_seen FROM sensors_reading r JOIN sensors_sensor s ON s.id = r.sensor_id "
                    f"WHERE r.sensor_id = %s AND r.metric = %s ORDER BY r.start DESC LIMIT 1",
                    [sensor.id, name],
                )
    print(f"{CURRENT_TABLE}: {rows} rows (newest minute of each sensor and metric)", flush=True)
    return rows


def add_minutes(sensors: list[SeedSensor], since: dict[int, datetime], line: Timeline, replace: bool = False) -> int:
    """Minute rows from `since` to the current minute, a day per transaction, with their hourly rollups."""
    rows = 0
    chunk_start = min(since.values())
    while chunk_start < line.end:
        chunk_end = min(chunk_start + timedelta(days=1), line.end)
        chunk_since = {sid: max(moment, chunk_start) for sid, moment in since.items()}
        with transaction.atomic():
            rows += insert_rows("sensors_reading", COLUMNS, minute_rows(sensors, chunk_since, chunk_end))
            hour = chunk_start.replace(minute=0, second=0, microsecond=0)
            roll_up("sensors_reading", "sensors_hourlyreading", "hour", hour, chunk_end, replace)
        print(f"  minutes up to {chunk_end:%Y-%m-%d %H:%M}: {rows:,} rows", flush=True)
        chunk_start = chunk_end
    return rows


def lay_out(line: Timeline) -> None:
    """The closed days' hourly rows in sensor order, as the collector's hourly job leaves them (sensors.layout)."""
    started = time.perf_counter()
    days, rows = order_closed_days(line.now)
    if days:
        clean_indexes()
        took = time.perf_counter() - started
        print(f"  laid out {days} closed days ({rows:,} hourly rows) in {took:.0f} s", flush=True)


def seed(count: int, line: Timeline) -> None:
    started = time.perf_counter()
    tune_for_seeding()
    with transaction.atomic():
        create_sensors(count, line)
        create_control(line)
    sensors = seed_sensors(line)
    hours = 0
    moment = line.rollups_from
    while moment < line.minutes_from:
        until = min(moment + timedelta(days=30), line.minutes_from)
        with transaction.atomic():
            hours += insert_rows("sensors_hourlyreading", COLUMNS, hour_rows(sensors, moment, until))
        moment = until
    print(f"  hourly rollups written directly up to {line.minutes_from:%Y-%m-%d %H:%M}: {hours:,} rows", flush=True)
    minutes = add_minutes(sensors, {sensor.id: line.minutes_from for sensor in sensors}, line)
    with transaction.atomic():
        days = roll_up("sensors_hourlyreading", "sensors_dailyreading", "day", line.rollups_from, line.end)
    fill_current_readings(sensors)
    lay_out(line)
    settle()
    hourly = scalar("SELECT COUNT(*) FROM sensors_hourlyreading")
    print(
        f"seeded {count} sensors x {len(METRICS)} metrics in {time.perf_counter() - started:.0f} s: "
        f"{minutes:,} minute rows ({MINUTE_DAYS} days), {hourly:,} hourly, {days:,} daily; "
        f"database {database_bytes() / 1e9:.2f} GB",
        flush=True,
    )


def is_seeded(count: int) -> bool:
    """The marker: as many sensors as asked for, and a year of daily rows for each metric."""
    if "sensors_dailyreading" not in connection.introspection.table_names():
        return False
    days = scalar("SELECT COUNT(*) FROM sensors_dailyreading")
    return Sensor.objects.count() == count and days >= count * len(METRICS) * ROLLUP_DAYS


def catch_up(line: Timeline) -> None:
    """A reused database brought to now: the minutes since the seed, their rollups, retention, last_seen."""
    started = time.perf_counter()
    tune_for_seeding()
    sensors = seed_sensors(line)
    since: dict[int, datetime] = {}
    for sensor in sensors:
        newest = Reading.objects.filter(sensor_id=sensor.id, metric="air_temperature").order_by("-start").first()
        since[sensor.id] = newest.start + timedelta(minutes=1) if newest else line.minutes_from
    first = min(since.values())
    if first >= line.end:
        print("reused database is up to date", flush=True)
    else:
        added = add_minutes(sensors, since, line, replace=True)
        with transaction.atomic():
            day = first.replace(hour=0, minute=0, second=0, microsecond=0)
            roll_up("sensors_hourlyreading", "sensors_dailyreading", "day", day, line.end, replace=True)
            expired = execute("DELETE FROM sensors_reading WHERE start < %s", [db_time(line.minutes_from)])
            for sensor in sensors:
                seen = sensor.silent_since or line.now
                Sensor.objects.filter(pk=sensor.id).update(last_seen=seen)
        print(f"caught up from {first:%Y-%m-%d %H:%M}: {added:,} minute rows added, {expired:,} expired", flush=True)
    if first < line.end or not has_current_table() or not scalar(f"SELECT COUNT(*) FROM {CURRENT_TABLE}"):
        fill_current_readings(sensors)
    lay_out(line)
    settle()
    print(f"reused database brought to now in {time.perf_counter() - started:.0f} s", flush=True)


def prepare(count: int, reuse: bool) -> None:
    """Migrate and seed (or reuse) the database; print what it holds."""
    if vendor() == "postgresql" and not postgres_exists():
        postgres_admin(f'CREATE DATABASE "{database_name()}"')
    line = Timeline.at(datetime.now(UTC))
    if reuse and is_seeded(count):
        call_command("migrate", verbosity=0)
        catch_up(line)
    else:
        if reuse:
            print(f"no seeded database with {count} sensors at {database_name()}: seeding", flush=True)
        empty_database()
        call_command("migrate", verbosity=0)
        seed(count, line)
    print(f"database: {vendor()} {database_name()}, {database_bytes() / 1e9:.2f} GB", flush=True)


# --- HTTP -----------------------------------------------------------------------------------
@dataclass
class Answer:
    status: int
    location: str
    body: bytes
    first_byte_ms: float
    total_ms: float


class Browser:
    """One user's cookies over fresh loopback connections (http.client only)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> Answer:
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        try:
            started = time.perf_counter()
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            first_byte = time.perf_counter()
            data = response.read()
            done = time.perf_counter()
        finally:
            conn.close()
        for header in response.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(header).items():
                self.cookies[name] = morsel.value
        return Answer(
            response.status,
            response.headers.get("Location", ""),
            data,
            (first_byte - started) * 1000,
            (done - started) * 1000,
        )

    def get(self, path: str) -> Answer:
        return self.request("GET", path)

    def log_in(self, username: str, password: str) -> None:
        page = self.get("/accounts/login/")
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.body)
        if page.status != 200 or token is None:
            raise SystemExit(f"login page: HTTP {page.status}, no CSRF token")
        form = {"username": username, "password": password, "csrfmiddlewaretoken": token.group(1).decode()}
        answer = self.request(
            "POST",
            "/accounts/login/",
            urllib.parse.urlencode(form).encode(),
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
        if answer.status != 302 or "sessionid" not in self.cookies:
            raise SystemExit(f"login failed: HTTP {answer.status} (expected a 302 and a session cookie)")


# --- gunicorn, as deploy/supervisord.conf runs it -------------------------------------------
class WebServer(LoggedProcess):
    def __init__(self) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if k != "GUNICORN_CMD_ARGS" and not k.startswith("PYTEST")}
        env |= {
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(64),
            "ALLOWED_HOSTS": "127.0.0.1",
            "PUBLIC_READ_ONLY": "false",
            "DATABASE_URL": os.environ["DATABASE_URL"],
        }
        super().__init__(web_argv(self.port), env)

    def wait_ready(self, seconds: float = 60.0) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"gunicorn exited with {self.process.returncode}:\n{self.output}")
            try:
                if Browser(self.port).get("/accounts/login/").status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"gunicorn not answering after {seconds:.0f} s:\n{self.output}")


def create_user() -> str:
    """A staff superuser (the admin must be reachable); returns its fresh password."""
    password = secrets.token_urlsafe(16)
    users = get_user_model()
    users.objects.filter(username=USERNAME).delete()
    users.objects.create_superuser(USERNAME, f"{USERNAME}@example.invalid", password)
    return password


class Heartbeat(threading.Thread):
    """The boards that report keep reporting while the pages are timed: every few seconds their
    last_seen and their current rows' received_at move to now, the two columns the collector
    keeps fresh. Without it the whole greenhouse went offline three minutes into a run
    (SENSOR_OFFLINE_AFTER) and the later figures timed a different dashboard than the first."""

    def __init__(self, every: float = 5.0) -> None:
        super().__init__(name="bench-heartbeat", daemon=True)
        self.every = every
        self.stopping = threading.Event()
        self.ready = threading.Event()  # the first beat is done
        self.error: BaseException | None = None
        cutoff = datetime.now(UTC) - timedelta(seconds=settings.SENSOR_OFFLINE_AFTER)
        self.reporting = list(Sensor.objects.filter(last_seen__gte=cutoff).values_list("pk", flat=True))

    def beat(self) -> None:
        now = datetime.now(UTC)
        with transaction.atomic():
            Sensor.objects.filter(pk__in=self.reporting).update(last_seen=now)
            CurrentReading.objects.filter(sensor_id__in=self.reporting).update(received_at=now)

    def run(self) -> None:
        try:
            self.beat()
            self.ready.set()
            while not self.stopping.wait(self.every):
                self.beat()
        except BaseException as error:  # handed to the main thread, which reports it
            self.error = error
        finally:
            self.ready.set()
            connection.close()

    def stop(self) -> None:
        self.stopping.set()
        self.join()
        if self.error is not None:
            raise SystemExit(f"heartbeat failed: {self.error!r}")


# --- timing ---------------------------------------------------------------------------------
def percentile(values: list[float], share: float) -> float:
    """Nearest rank: the smallest value with at least `share` of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


@dataclass
class Figure:
    name: str
    path: str
    kind: str  # reference, page, history, csv
    times: list[float] = field(default_factory=list)
    first_bytes: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    note: str = ""
    size: int = 0  # bytes of the last answer
    reference_times: list[float] = field(default_factory=list)  # the login page, timed between this figure's requests

    def base(self, run_reference_p95: float) -> float:
        """The login page's p95 timed between this figure's own requests (so a load that comes and goes
        during the run weighs on both), else the run's."""
        return percentile(self.reference_times, 0.95) if self.reference_times else run_reference_p95

    def ratio(self, run_reference_p95: float) -> float:
        """p95 over the *smaller* of the two references: a page must pass against both. A login timed
        right after a heavy page can pay for that page's garbage and so flatter the page's ratio."""
        return self.p95 / min(self.base(run_reference_p95), run_reference_p95)

    @property
    def p50(self) -> float:
        return percentile(self.times, 0.5) if self.times else math.nan

    @property
    def p95(self) -> float:
        return percentile(self.times, 0.95) if self.times else math.nan

    @property
    def first_byte_p95(self) -> float:
        return percentile(self.first_bytes, 0.95) if self.first_bytes else math.nan

    def passed(self, reference_p95: float) -> bool:
        if self.errors or not self.times:
            return False
        if self.kind == "history":
            return self.p95 < HISTORY_P95_MS
        if self.kind == "csv":
            return self.first_byte_p95 < CSV_FIRST_BYTE_MS
        if self.kind == "page":
            return self.p95 < PAGE_P95_MS and self.ratio(reference_p95) < PAGE_RATIO
        return True

    def target(self) -> str:
        return {
            "history": f"p95 < {HISTORY_P95_MS:.0f} ms",
            "csv": f"first byte p95 < {CSV_FIRST_BYTE_MS:.0f} ms",
            "page": f"p95 < {PAGE_P95_MS:.0f} ms and < {PAGE_RATIO:.0f}x reference",
        }.get(self.kind, "reference")


def measure(
    browser: Browser,
    figure: Figure,
    repeat: int,
    warmup: int,
    budget: float,
    reference: tuple[Browser, Figure] | None = None,
) -> Figure:
    """`warmup` untimed requests, then `repeat` timed ones (fewer if `budget` seconds run out);
    with `reference`, that page is timed after each timed request too (figure.reference_times)."""
    started = time.monotonic()
    for index in range(warmup + repeat):
        answer = browser.get(figure.path)
        if answer.status != 200:
            figure.errors.append(f"HTTP {answer.status}{' -> ' + answer.location if answer.location else ''}")
            if len(figure.errors) >= 3:
                break
            continue
        if index >= warmup:
            figure.times.append(answer.total_ms)
            figure.first_bytes.append(answer.first_byte_ms)
            figure.size = len(answer.body)
            if reference is not None:
                plain = reference[0].get(reference[1].path)
                if plain.status == 200:
                    figure.reference_times.append(plain.total_ms)
        if index < warmup:
            started = time.monotonic()  # the budget is for the timed requests
        elif time.monotonic() - started > budget and index + 1 < warmup + repeat:
            figure.note = f"stopped after {len(figure.times)} timed requests ({budget:.0f} s budget)"
            break
    return figure


def _option(argv: list[str], names: tuple[str, ...], default: int) -> int:
    """An integer option of gunicorn's command line (`--name N` or `--name=N`; the last one wins)."""
    found = default
    for index, word in enumerate(argv):
        if word in names and index + 1 < len(argv):
            found = int(argv[index + 1])
        elif word.startswith(names[0] + "="):
            found = int(word.split("=", 1)[1])
    return found


def worker_count(argv: list[str]) -> int:
    """How many requests at once reach every worker process: --workers x the connections each takes on
    (--threads, capped by --worker-connections). Fewer at once can all land in one or two processes."""
    workers = _option(argv, ("--workers", "-w"), 1)
    threads = _option(argv, ("--threads",), 1)
    return workers * min(threads, _option(argv, ("--worker-connections",), threads))


def warm_every_worker(browser: Browser, path: str, workers: int, rounds: int = 3) -> None:
    """`rounds` times `workers` requests of `path` at once, so that each worker process has served it.
    Sequential requests mostly land on the same one or two workers; the others then paid their
    first request of a page (its templates compiled, its code's first run: 30-50 ms) in the middle
    of the timed ones, 2 of 30 requests, which is the p95."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in range(rounds):
            list(pool.map(lambda _: browser.get(path), range(workers)))


def measure_during_download(browser: Browser, figure: Figure, csv_path: str, repeat: int, budget: float) -> Figure:
    """The dashboard while a second connection downloads 30 days of CSV, again and again."""
    stop = threading.Event()
    downloading = threading.Event()
    downloads: list[Answer] = []

    def download() -> None:
        other = Browser(browser.port)
        other.cookies = dict(browser.cookies)
        while not stop.is_set():
            downloading.set()
            downloads.append(other.get(csv_path))
            downloading.clear()

    worker = threading.Thread(target=download, daemon=True)
    worker.start()
    downloading.wait(10)
    time.sleep(0.2)  # let the first download get going
    overlapped = 0
    started = time.monotonic()
    for index in range(3 + repeat):
        during = downloading.is_set()
        answer = browser.get(figure.path)
        if answer.status != 200:
            figure.errors.append(f"HTTP {answer.status}")
            continue
        if index >= 3:
            figure.times.append(answer.total_ms)
            overlapped += during and downloading.is_set()
        if time.monotonic() - started > budget:
            break
    stop.set()
    worker.join(300)
    failed = [d.status for d in downloads if d.status != 200]
    figure.errors += [f"CSV download HTTP {status}" for status in failed]
    figure.note = f"{overlapped} of {len(figure.times)} requests during a download; {len(downloads)} downloads"
    return figure


def figures(mac: str, location_id: int) -> list[Figure]:
    history = f"/api/sensors/{mac}/history?metric=air_temperature&range="
    return [
        Figure("reference: login page (logged out)", "/accounts/login/", "reference"),
        Figure("dashboard", "/", "page"),
        Figure("dashboard refresh", "/?partial=1", "page"),
        Figure("location page", f"/locations/{location_id}/", "page"),
        Figure("sensor page", f"/sensors/{mac}/", "page"),
        *[Figure(f"history {name}", history + name, "history") for name in RANGES],
        Figure("CSV 30d", f"/sensors/{mac}/readings.csv?range=30d", "csv"),
        Figure("control", "/control/", "page"),
        Figure("admin sensor list", "/admin/sensors/sensor/", "page"),
    ]


def report(figure: Figure, reference_p95: float) -> bool:
    ok = figure.passed(reference_p95)
    base = figure.base(reference_p95)
    ratio = figure.ratio(reference_p95) if base and reference_p95 else math.nan
    text = (
        f"p50 {figure.p50:7.1f} ms, p95 {figure.p95:7.1f} ms, {ratio:5.1f}x reference p95 "
        f"(the smaller of {base:.1f} ms between its requests and {reference_p95:.1f} ms on its own)"
    )
    if figure.kind == "csv" and figure.first_bytes:
        text += f", first byte p50 {percentile(figure.first_bytes, 0.5):.1f} ms / p95 {figure.first_byte_p95:.1f} ms"
        text += f", {figure.size / 1e6:.1f} MB"
    text += f" ({figure.target()}; {len(figure.times)} requests)"
    if figure.note:
        text += f" [{figure.note}]"
    if figure.errors:
        text += f" ERRORS: {', '.join(figure.errors[:3])}"
    result_line(f"pages {figure.name}", ok, text)
    return ok


def markdown_rows(measured: list[Figure], reference_p95: float) -> None:
    print("\n| figure | p50 ms | p95 ms | reference p95 ms | p95 / reference | / login on its own | target | |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for figure in measured:
        base = figure.base(reference_p95)
        extra = f" (first byte p95 {figure.first_byte_p95:.0f} ms)" if figure.kind == "csv" else ""
        verdict = "PASS" if figure.passed(reference_p95) else "**FAIL**"
        print(
            f"| {figure.name} | {figure.p50:.1f} | {figure.p95:.1f}{extra} | {base:.1f} | {figure.p95 / base:.1f}x "
            f"| {figure.p95 / reference_p95:.1f}x | {figure.target()} | {verdict} |"
        )


# --- diagnosis ------------------------------------------------------------------------------
def explain(figure: Figure) -> None:
    """Replay a figure's request in-process and print its queries, the slowest one's plan."""
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(get_user_model().objects.get(username=USERNAME))
    with CaptureQueriesContext(connection) as captured:
        started = time.perf_counter()
        response = client.get(figure.path)
        if getattr(response, "streaming", False):
            b"".join(response.streaming_content)
        elapsed = (time.perf_counter() - started) * 1000
    queries = sorted(captured.captured_queries, key=lambda query: -float(query["time"]))
    total = sum(float(query["time"]) for query in queries) * 1000
    print(
        f"\n{figure.name} ({figure.path}): {elapsed:.0f} ms in-process, {len(queries)} queries, {total:.0f} ms in SQL"
    )
    for query in queries[:3]:
        print(f"  {float(query['time']) * 1000:8.1f} ms  {query['sql'][:400]}")
    if queries:
        prefix = "EXPLAIN QUERY PLAN " if vendor() == "sqlite" else "EXPLAIN (ANALYZE, BUFFERS) "
        with connection.cursor() as cursor:
            cursor.execute(prefix + queries[0]["sql"])
            for row in cursor.fetchall():
                print("    " + " ".join(str(part) for part in row))


# --- main -----------------------------------------------------------------------------------
def code_version() -> str:
    """The commit measured, and whether the working tree differs from it (a digest of the diff tells runs apart)."""
    import hashlib
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout

    head = git("rev-parse", "--short", "HEAD").strip()
    changed = git("status", "--porcelain").splitlines()
    if not changed:
        return head
    digest = hashlib.sha1(git("diff", "HEAD").encode()).hexdigest()[:8]
    return f"{head} with uncommitted changes ({len(changed)} files; diff digest {digest})"


def run(args: argparse.Namespace) -> int:
    sample = Sensor.objects.filter(location__isnull=False, soil_dry_raw__isnull=False, last_seen__isnull=False)
    sensor = sample.order_by("device_id").first() or Sensor.objects.order_by("device_id").first()
    location = Location.objects.order_by("name").first()
    password = create_user()
    heartbeat = Heartbeat()
    print(f"heartbeat: {len(heartbeat.reporting)} reporting sensors kept online", flush=True)
    connection.close()  # gunicorn gets the database to itself (SQLite: no reader held open here)
    server = WebServer()
    print(f"code: {code_version()}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC", flush=True)
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f} at the start", flush=True)
    print(f"gunicorn: {' '.join(server.argv)}", flush=True)
    measured: list[Figure] = []
    try:
        server.wait_ready()
        heartbeat.start()
        heartbeat.ready.wait(60)
        anonymous, grower = Browser(server.port), Browser(server.port)
        grower.log_in(USERNAME, password)

        def wanted(figure: Figure) -> bool:
            """--only: the login reference and the CSV (the download figure needs it) always run."""
            always = figure.kind in ("reference", "csv") or not args.only
            return always or any(word in figure.name for word in args.only)

        workers = worker_count(server.argv)
        for figure in filter(wanted, figures(sensor.device_id, location.pk)):
            if figure.kind != "csv":
                warm_every_worker(anonymous if figure.kind == "reference" else grower, figure.path, workers)
        for figure in filter(wanted, figures(sensor.device_id, location.pk)):
            browser = anonymous if figure.kind == "reference" else grower
            repeat = args.csv_requests if figure.kind == "csv" else args.requests
            warmup = 1 if figure.kind == "csv" else args.warmup  # a download warms what it reads by itself
            plain = None if figure.kind in ("reference", "csv") else (anonymous, measured[0])
            measured.append(measure(browser, figure, repeat, warmup, args.budget, plain))
            if figure.kind == "history" and figure.times:
                answer = json.loads(browser.get(figure.path).body)
                figure.note = f"{len(answer['points'])} points from {answer['resolution']} rows"
            print(f"  {figure.name}: p50 {figure.p50:.1f} ms, p95 {figure.p95:.1f} ms", flush=True)
            if args.times:
                print(f"    in order: {' '.join(f'{ms:.1f}' for ms in figure.times)}", flush=True)
        during = Figure("dashboard during a 30-day CSV download", "/", "page")
        if wanted(during):
            csv_path = next(figure.path for figure in measured if figure.kind == "csv")
            measured.append(measure_during_download(grower, during, csv_path, args.requests, args.budget))
            if args.times:
                print(f"  {during.name}, in order: {' '.join(f'{ms:.1f}' for ms in during.times)}", flush=True)
    finally:
        if heartbeat.is_alive():
            heartbeat.stop()
        code = server.stop(30)
    reference_p95 = measured[0].p95
    print(f"\nmachine: {machine()}; load average {os.getloadavg()[0]:.2f} at the end", flush=True)
    failed = [figure for figure in measured if not report(figure, reference_p95)]
    markdown_rows(measured, reference_p95)
    found = tracebacks(server.output)
    timeouts = [line for line in server.lines if "WORKER TIMEOUT" in line]
    result_line(
        "pages gunicorn log",
        not found and not timeouts and code == 0,
        f"exit {code}, {len(found)} tracebacks, {len(timeouts)} worker timeouts",
    )
    for text in found[:3]:
        print(text)
    if args.explain:
        for figure in failed:
            explain(figure)
    return 1 if failed or found or timeouts or code != 0 else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sensors", type=int, default=200, help="sensors to seed (default %(default)s)")
    parser.add_argument("--seed-only", action="store_true", help="seed (or reuse) the database, then stop")
    parser.add_argument("--reuse", action="store_true", help="reuse a seeded database with as many sensors")
    parser.add_argument("--requests", type=int, default=30, help="timed requests per figure (default %(default)s)")
    parser.add_argument("--csv-requests", type=int, default=5, help="timed CSV downloads (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed requests first (default %(default)s)")
    parser.add_argument("--budget", type=float, default=120.0, help="seconds at most per figure (default %(default)s)")
    parser.add_argument(
        "--only",
        action="append",
        metavar="WORDS",
        help="time only the figures whose name contains WORDS (repeatable; the login page and the CSV always run)",
    )
    parser.add_argument("--explain", action="store_true", help="print the queries of each failing figure")
    parser.add_argument("--times", action="store_true", help="print each figure's timed requests in order")
    args = parser.parse_args()
    prepare(args.sensors, args.reuse)
    if args.seed_only:
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
