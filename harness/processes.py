"""`manage.py` commands as subprocesses, as supervisor runs them: log kept line by line, SIGTERM to stop.

Shared by the end-to-end tests (collector, control) and by bench/, so they start
and stop the real commands in one way. `tracebacks()` is what every test checks
after a process ended: a stop or a crash that printed a traceback fails the test.
"""

from __future__ import annotations

import configparser
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUPERVISORD_CONF = ROOT / "deploy" / "supervisord.conf"
LISTENING_RE = re.compile(r"collector listening on (\S+):(\d+)")
TRACEBACK = "Traceback (most recent call last)"


def tracebacks(output: str, context_lines: int = 25) -> list[str]:
    """Each traceback in a process's output, with the lines that follow it (empty: none)."""
    lines = output.splitlines()
    return ["\n".join(lines[i : i + context_lines]) for i, line in enumerate(lines) if TRACEBACK in line]


class LoggedProcess:
    """A program run in ROOT with its output (stdout and stderr) read by a thread into `lines`."""

    def __init__(self, argv: Sequence[str], env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.argv = list(argv)
        self.process = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.pid = self.process.pid
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()

    def _read_output(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            self.on_line(line)
        self.on_output_end()

    def on_line(self, line: str) -> None:
        """Called in the reader thread for each line of output."""

    def on_output_end(self) -> None:
        """Called in the reader thread when the process closed its output."""

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, as supervisor does; return the exit code."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._reader.join(5)

    def assert_no_traceback(self) -> None:
        """Fail if the process printed a traceback (call it once the process has ended)."""
        found = tracebacks(self.output)
        assert not found, f"`{' '.join(self.argv)}` printed a traceback:\n" + "\n---\n".join(found)


class ManageProcess(LoggedProcess):
    """`python manage.py <args>`, as supervisor runs it."""

    def __init__(self, *args: str, env: dict[str, str], python: Sequence[str] = (sys.executable,)) -> None:
        super().__init__([*python, "manage.py", *args], env)


class CollectorProcess(ManageProcess):
    """`manage.py collect` on a free port of 127.0.0.1; the port is read from its log."""

    def __init__(
        self,
        *args: str,
        env: dict[str, str],
        python: Sequence[str] = (sys.executable,),
        ready_seconds: float = 20.0,
    ) -> None:
        self.port = 0
        self._ready = threading.Event()
        super().__init__("collect", "--host", "127.0.0.1", "--port", "0", *args, env=env, python=python)
        if not self._ready.wait(ready_seconds) or not self.port:
            self.process.kill()
            raise AssertionError("collector did not start listening:\n" + self.output)

    def on_line(self, line: str) -> None:
        match = LISTENING_RE.search(line)
        if match:
            self.port = int(match.group(2))
            self._ready.set()

    def on_output_end(self) -> None:
        self._ready.set()


def free_port() -> int:
    """A port of 127.0.0.1 free right now (for a program that takes its port on the command line)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def web_argv(port: int) -> list[str]:
    """[program:web]'s command line from deploy/supervisord.conf, bound to 127.0.0.1:`port` instead:
    what the benchmark times and the web-server tests attack is the shipped configuration."""
    config = configparser.RawConfigParser()
    config.read(SUPERVISORD_CONF)
    command = config.get("program:web", "command").replace("%(here)s", str(SUPERVISORD_CONF.parent))
    argv, skip = [], False
    for word in shlex.split(command):
        if skip:
            skip = False
        elif word in ("--bind", "-b"):
            skip = True
        elif not word.startswith("--bind="):
            argv.append(word)
    return [*argv, "--bind", f"127.0.0.1:{port}"]
