"""WSGI entry point for the web UI (served by a WSGI server in production)."""

import gc
import logging
import os

from django.core.signals import request_finished
from django.core.wsgi import get_wsgi_application

from greenhouse_site.slow_clients import QuietClientTimeouts

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "greenhouse_site.settings")

application = get_wsgi_application()

# gunicorn's own error log: a client that timed out is one warning line, not a traceback.
logging.getLogger("gunicorn.error").addFilter(QuietClientTimeouts())

# A page allocates tens of thousands of short-lived objects (the 100-row admin sensor list about
# 100,000). With Python's default thresholds the collector's full passes kept walking everything
# Django loaded at start, and they landed in the slowest requests: the admin list's p95 was twice
# its p50 (docs/benchmarks.md, "Runs of 2026-12-02 (latest)"). What is alive now (settings, apps, models,
# the admin) is frozen out of those walks, and young objects are collected every 10,000
# allocations instead of every 700.
gc.freeze()
gc.set_threshold(10_000, 20, 20)


def collect_the_pages_garbage(**kwargs: object) -> None:
    """Collect the young generations once a response is finished (its body already sent).

    The template engine's Context and its ContextDicts refer to each other, so everything a page
    put in its context (the dashboard's 200 cards, 2,700 objects; the admin list's 3,400) is a
    reference cycle that only the cycle collector frees. Left to the thresholds, that garbage piled
    up over requests and was collected in the middle of later ones: the admin list paid a 40-100 ms
    pass every ~60 requests (docs/benchmarks.md, "Runs of 2026-12-06"). Collected here it costs
    ~0.5 ms per page, after the client has its answer (with a worker's threads, another page being
    built in the same process pauses that long meanwhile).
    """
    gc.collect(1)


request_finished.connect(collect_the_pages_garbage, dispatch_uid="greenhouse-collect-the-pages-garbage")
