"""Shared test plumbing: the database under test, the real collector as a subprocess, strict skips."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest

from harness.processes import CollectorProcess, ManageProcess


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


# Fixtures through which a test reaches the database (pytest-django's, and those built on them).
DATABASE_FIXTURES = frozenset({"db", "transactional_db", "django_db_reset_sequences", "live_server"})


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--database-tests-only",
        action="store_true",
        help="run only tests that use the database (make test-postgres: the others already ran on SQLite)",
    )


def uses_database(item: pytest.Item) -> bool:
    return item.get_closest_marker("django_db") is not None or not DATABASE_FIXTURES.isdisjoint(
        getattr(item, "fixturenames", ())
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--database-tests-only"):
        # Plain-Python tests (the parser, the aggregator, the rule state machine) give the same
        # answer on any database: `make test` runs them once, in the SQLite pass.
        kept = [item for item in items if uses_database(item)]
        config.hook.pytest_deselected(items=[item for item in items if not uses_database(item)])
        items[:] = kept
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


# --- login throttling -----------------------------------------------------------------------
@pytest.fixture
def postgres_proxy() -> Iterator[tuple]:
    """A TCP proxy in front of the PostgreSQL under test, and a DATABASE_URL through it: a test can
    cut the database off (`proxy.cut()`) and bring it back (`proxy.restore()`)."""
    from django.db import connection

    from tests.tcp_proxy import TcpProxy

    if connection.vendor != "postgresql":  # `pytest` without `-m "not postgres"` on SQLite
        pytest.skip("needs DATABASE_URL to name PostgreSQL")
    settings_dict = connection.settings_dict
    port = int(settings_dict["PORT"] or 5432)
    proxy = TcpProxy((settings_dict["HOST"] or "127.0.0.1", port)).start()
    try:
        yield proxy, database_url().replace(f":{port}/", f":{proxy.port}/")
    finally:
        proxy.close()


@pytest.fixture(autouse=True)
def journal_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's collectors keep their journal in the test's own directory (inherited through
    the environment), so no test replays what another left behind."""
    path = tmp_path / "journal"
    monkeypatch.setenv("COLLECTOR_JOURNAL_DIR", str(path))
    return path


@pytest.fixture(autouse=True)
def _login_throttling(request: pytest.FixtureRequest) -> Iterator[None]:
    """django-axes off, except in tests marked login_throttling: Django's test client logs in
    without a request, which axes refuses (its documented way for tests)."""
    if request.node.get_closest_marker("login_throttling"):
        yield
        return
    from django.conf import settings

    enabled = settings.AXES_ENABLED
    settings.AXES_ENABLED = False
    yield
    settings.AXES_ENABLED = enabled


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


def _started(kind: type[ManageProcess]) -> Iterator:
    """A factory fixture's body: start processes of `kind`; at the end kill them all and check their logs."""
    started: list[ManageProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> ManageProcess:
        process = kind(*args, env=env or manage_env())
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
    for process in started:
        process.assert_no_traceback()


@pytest.fixture
def start_collector() -> Iterator:
    """Start `manage.py collect` on a free port of 127.0.0.1 (the args follow `collect`)."""
    yield from _started(CollectorProcess)


@pytest.fixture
def start_command() -> Iterator:
    """Start any `manage.py` command (the args include the command's name)."""
    yield from _started(ManageProcess)


def a_minute_ago(now: float | None = None) -> float:
    """One second into the UTC minute that began an hour ago: a clock start for `collect --test-clock-start`.

    A collector started with it stamps every sample of a short test into that one minute,
    whenever the test runs (no waiting for a fresh minute), and an hour back is well inside
    the minute retention.
    """
    now = time.time() if now is None else now
    return (now // 60) * 60 - 3600 + 1


def minute_text(epoch: float) -> str:
    """The export's `start` for the minute `epoch` falls in, e.g. 2026-11-24T10:15:00Z."""
    return datetime.fromtimestamp(epoch // 60 * 60, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
