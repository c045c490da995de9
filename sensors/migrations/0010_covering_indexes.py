"""Covering indexes on the readings, so a chart reads index pages, not one table page per row.

The collector writes all sensors' rows of a minute together, so one sensor's consecutive minutes
lie ~600 rows apart in the table and a 7-day chart of 10,080 minutes read 10,074 table pages on
PostgreSQL (docs/benchmarks.md, "What fails"). An index holding the key and the four values keeps
one sensor-metric's rows side by side: the history query is answered from the index alone
(SQLite: USING COVERING INDEX; PostgreSQL: an index-only scan).

Not in the models' Meta: Django would build a plain (sensor, metric, start) index on SQLite from an
`include` (a copy of the unique index, useless), so each vendor gets its own statement here.
"""

from django.db import migrations

TABLES = {
    "sensors_reading": "reading_covering_idx",
    "sensors_hourlyreading": "hourly_reading_covering_idx",
    "sensors_dailyreading": "daily_reading_covering_idx",
}
KEY = "sensor_id, metric, start"
VALUES = "samples, value_sum, value_min, value_max"


# PostgreSQL: the minutes only. The current hour's and day's rollup rows are rewritten on every
# flush, and those updates stay on their page (HOT, the fill factors of 0004) only while no
# index holds the values: with covering indexes on the rollups a 30,000-bucket flush took
# 1.6-2.1 s instead of 0.93-0.99 s (docs/benchmarks.md). SQLite has no such thing, and its
# flush paid 9 % for all three.
POSTGRESQL_TABLES = ("sensors_reading",)


def create(apps, schema_editor):
    quote = schema_editor.quote_name
    postgresql = schema_editor.connection.vendor == "postgresql"
    for table, index in TABLES.items():
        if postgresql and table not in POSTGRESQL_TABLES:
            continue
        if postgresql:
            sql = f"CREATE INDEX {quote(index)} ON {quote(table)} ({KEY}) INCLUDE ({VALUES})"
        else:
            sql = f"CREATE INDEX {quote(index)} ON {quote(table)} ({KEY}, {VALUES})"
        schema_editor.execute(sql)


def drop(apps, schema_editor):
    for index in TABLES.values():
        schema_editor.execute(f"DROP INDEX IF EXISTS {schema_editor.quote_name(index)}")


class Migration(migrations.Migration):
    dependencies = [("sensors", "0009_device_ids")]

    operations = [migrations.RunPython(create, drop)]
