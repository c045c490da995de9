"""A web client that stops reading an answer holds a gunicorn thread for WEB_CLIENT_TIMEOUT seconds at most.

gunicorn's threaded workers write an answer with no deadline, and `--timeout` only watches a
worker's main loop: a phone that walked out of the Wi-Fi in the middle of a download, or a client
that means harm, held its thread for as long as it liked, and 32 of them stopped the web UI
(docs/security.md). The middleware gives the connection's socket a timeout, which bounds each
write of the answer (a piece of a download is ~40 kB) and each read of a request body. gunicorn
then logs the timeout as a socket error with a traceback; `QuietClientTimeouts` turns that into
one warning line, since a client that went away is not a fault of the server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

GUNICORN_SOCKET_ERROR = "Socket error processing request."


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
        if record.msg == GUNICORN_SOCKET_ERROR and isinstance(error, TimeoutError):
            record.msg = "closed a connection whose client read or sent nothing for %s s (WEB_CLIENT_TIMEOUT)"
            record.args = (settings.WEB_CLIENT_TIMEOUT,)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True
