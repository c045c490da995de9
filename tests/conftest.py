"""Shared test plumbing: the database under test, the real collector as a subprocess, strict skips."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from harness.processes import CollectorProcess


# --- services: PostgreSQL must be there when DATABASE_URL names it ----------------------
def _postgres_unreachable() -> str | None:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        return None
    import psycopg

    try:
        psycopg.connect(url.replace("postgresql://", "postgres://", 1), connect_timeout=3).close()
    except psycopg.Error as exc:
        return f"PostgreSQL at DATABASE_URL is not reachable ({str(exc).strip()}); start it or run `make test-sqlite`"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _postgres_unreachable()
    if reason:
        for item in items:
            item.add_marker(pytest.mark.skip(reason=reason))
    from django.conf import settings

    if "postgresql" not in settings.DATABASES["default"]["ENGINE"]:
        # `make test-sqlite` deselects these (-m "not postgres"); a plain `pytest` on SQLite skips them.
        needs = "needs PostgreSQL: run with DATABASE_URL=postgres://... (make test-postgres)"
        for item in items:
            if item.get_closest_marker("postgres"):
                item.add_marker(pytest.mark.skip(reason=needs))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With GREENHOUSE_NO_SKIPS=1 (set by .ci/run) a skipped test fails the run."""
    if os.environ.get("GREENHOUSE_NO_SKIPS") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        reporter.write_line("")
        reporter.write_line(f"GREENHOUSE_NO_SKIPS=1: {len(skipped)} skipped tests count as failures here", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# --- the real collector, started as `manage.py collect` -----------------------------------
def database_url() -> str:
    """A DATABASE_URL for the test database pytest-django set up, for child processes."""
    from django.db import connection

    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    auth = quote(settings["USER"] or "", safe="")
    if settings.get("PASSWORD"):
        auth += ":" + quote(settings["PASSWORD"], safe="")
    host = f"{settings['HOST'] or 'localhost'}:{settings['PORT'] or 5432}"
    return f"postgres://{auth}@{host}/{settings['NAME']}"


def manage_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    env.update({"DATABASE_URL": database_url(), "DJANGO_SETTINGS_MODULE": "greenhouse_site.settings", **extra})
    return env


@pytest.fixture
def start_collector() -> Iterator:
    started: list[CollectorProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> CollectorProcess:
        collector = CollectorProcess(*args, env=env or manage_env())
        started.append(collector)
        return collector

    yield start
    for collector in started:
        collector.kill()


def wait_for_fresh_minute(needed_seconds: float = 20.0) -> None:
    """Sleep into the next UTC minute if fewer than `needed_seconds` remain in this one.

    End-to-end tests that expect every sample in one per-minute row use it, so a
    run that happens to straddle a minute boundary does not split the expected row.
    """
    into_minute = time.time() % 60
    if into_minute > 60 - needed_seconds:
        time.sleep(60 - into_minute + 0.2)
