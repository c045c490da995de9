"""greenhouse_site/slow_clients.py: a client's timeout is one log line; any other TimeoutError keeps its traceback."""

from __future__ import annotations

import logging
import socket
import sys

import pytest
from gunicorn import util

from greenhouse_site.slow_clients import GUNICORN_SOCKET_ERROR, QuietClientTimeouts


def gunicorn_record(error: BaseException) -> logging.LogRecord:
    """What gunicorn's gthread worker logs for a socket error: log.exception("Socket error processing request.")."""
    return logging.LogRecord(
        "gunicorn.error",
        logging.ERROR,
        __file__,
        1,
        GUNICORN_SOCKET_ERROR,
        (),
        (type(error), error, error.__traceback__),
    )


def timed_out_write() -> TimeoutError:
    """gunicorn writing an answer to a client that reads nothing, its socket's timeout set (as the middleware does)."""
    server, client = socket.socketpair()
    server.settimeout(0.05)
    try:
        with pytest.raises(TimeoutError) as raised:
            util.write(server, b"x" * (1 << 24))  # more than the socket pair buffers
        return raised.value
    finally:
        server.close()
        client.close()


def test_a_client_that_read_nothing_is_one_warning_line_without_a_traceback(settings):
    settings.WEB_CLIENT_TIMEOUT = 60.0
    record = gunicorn_record(timed_out_write())
    assert QuietClientTimeouts().filter(record)
    assert record.levelname == "WARNING" and record.exc_info is None
    assert (
        record.getMessage() == "closed a connection whose client read or sent nothing for 60.0 s (WEB_CLIENT_TIMEOUT)"
    )


def test_a_timeout_raised_by_the_application_keeps_its_traceback(settings):
    """A streamed body or a response's close that raised TimeoutError is the server's fault: it must show."""
    settings.WEB_CLIENT_TIMEOUT = 60.0
    try:
        raise TimeoutError("the database took too long")
    except TimeoutError:
        record = gunicorn_record(sys.exc_info()[1])
    assert QuietClientTimeouts().filter(record)
    assert record.levelname == "ERROR" and record.exc_info is not None and record.getMessage() == GUNICORN_SOCKET_ERROR


def test_without_a_client_timeout_nothing_is_rewritten(settings):
    settings.WEB_CLIENT_TIMEOUT = 0
    record = gunicorn_record(timed_out_write())
    assert QuietClientTimeouts().filter(record)
    assert record.exc_info is not None and record.getMessage() == GUNICORN_SOCKET_ERROR
