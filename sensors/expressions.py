"""Database expressions shared by the charts, the dashboard and the exports."""

from __future__ import annotations

from django.db.models import IntegerField
from django.db.models.expressions import Func


class EpochStep(Func):
    """The start of the `step`-second interval a datetime column falls in, as epoch seconds.

    With a step of 1 it is the column's time as an integer: reading it so skips the per-row
    datetime conversion (Django's time-zone-aware psycopg loader is pure Python, its SQLite
    converter parses text), which cost more than the query itself on the dashboard and on a
    month's export.
    """

    output_field = IntegerField()

    def __init__(self, expression, step: int) -> None:
        super().__init__(expression)
        self.step = int(step)

    @property
    def convert_value(self):
        """No converter: both databases return an integer already (a bigint cast, SQLite's integer
        division), and Django's int() per value otherwise ran over every row of every chart and of
        the dashboard's 1,800 current and hour-old values."""
        return self._convert_value_noop

    def as_sqlite(self, compiler, connection, **extra):
        sql, params = compiler.compile(self.source_expressions[0])
        # unixepoch() (SQLite 3.38+) is several times cheaper than strftime('%s'): on a 7-day chart
        # of 10,000 minutes the strftime calls were most of the query. Both truncate to whole seconds.
        if connection.Database.sqlite_version_info >= (3, 38):
            return f"((unixepoch({sql}) / {self.step}) * {self.step})", params
        return f"((CAST(strftime('%%s', {sql}) AS INTEGER) / {self.step}) * {self.step})", params

    def as_postgresql(self, compiler, connection, **extra):
        sql, params = compiler.compile(self.source_expressions[0])
        return f"(FLOOR(EXTRACT(EPOCH FROM {sql}) / {self.step}) * {self.step})::bigint", params
