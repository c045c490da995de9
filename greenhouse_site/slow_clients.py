"""A web client that stops reading an answer holds a gunicorn thread for WEB_CLIENT_TIMEOUT seconds at most.

gunicorn's threaded workers write an answer with no deadline, and `--timeout` only watches a
worker's main loop: a phone that walked out of the Wi-Fi in the middle of a download, or a client
that means harm, held its thread for as long as it liked, and 32 of them stopped the web UI
(docs/security.md). The middleware gives the connection's socket a timeout, which bounds each
write of the answer (a piece of a download is ~35 kB) and each read of a request body. gunicorn
then logs the timeout as a socket error with a traceback; `QuietClientTimeouts` turns that into
one warning line, since a client that went away is not a fault of the server.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import gunicorn
from django.conf import settings
from django.http import HttpRequest, HttpResponse

GUNICORN_SOCKET_ERROR = "Socket error processing request."
# Where a client's timeout is raised: gunicorn writing the answer, or the socket and ssl modules.
_SOCKET_CODE = (str(Path(socket.__file__)), str(Path(ssl.__file__)))
_GUNICORN = Path(gunicorn.__file__).parent


class ClientTimeoutMiddleware:
    """Sets WEB_CLIENT_TIMEOUT on the client's socket when gunicorn serves the request (0: none)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        client = request.META.get("gunicorn.socket")
        if client is not None and settings.WEB_CLIENT_TIMEOUT > 0:
            client.settimeout(settings.WEB_CLIENT_TIMEOUT)
        return self.get_response(request)


class QuietClientTimeouts(logging.Filter):
    """gunicorn's "Socket error processing request." for a timed-out client: one warning line, no traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if record.msg == GUNICORN_SOCKET_ERROR and self.is_client_timeout(error):
            record.msg = "closed a connection whose client read or sent nothing for %s s (WEB_CLIENT_TIMEOUT)"
            record.args = (settings.WEB_CLIENT_TIMEOUT,)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True

    @staticmethod
    def is_client_timeout(error: BaseException | None) -> bool:
        """A TimeoutError raised by a socket operation of gunicorn's or of the socket/ssl modules, with
        WEB_CLIENT_TIMEOUT set: a TimeoutError from the application's own code (a streamed body, a
        response's close) is a real error and keeps its traceback."""
        if not isinstance(error, TimeoutError) or settings.WEB_CLIENT_TIMEOUT <= 0:
            return False
        frame = error.__traceback__
        while frame is not None and frame.tb_next is not None:
            frame = frame.tb_next
        if frame is None:
            return False
        where = frame.tb_frame.f_code.co_filename
        return where in _SOCKET_CODE or Path(where).is_relative_to(_GUNICORN)
