"""greenhouse_site.startup: the start-up checks the long-running commands share."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.processes import ROOT
from tests.conftest import manage_env


@pytest.mark.parametrize("command", [["collect", "--host", "127.0.0.1", "--port", "0"], ["control"]])
def test_long_running_commands_refuse_an_unmigrated_database_with_a_readable_error(command, tmp_path):
    empty = tmp_path / "empty.sqlite3"
    result = subprocess.run(
        [sys.executable, "manage.py", *command],
        cwd=ROOT,
        env=manage_env(DATABASE_URL=f"sqlite:///{empty}"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "the database is not migrated: run `python manage.py migrate` first" in result.stderr
    assert "Traceback" not in result.stderr
