"""WSGI entry point for the web UI (served by a WSGI server in production)."""

import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "greenhouse_site.settings")

application = get_wsgi_application()

# A page allocates tens of thousands of short-lived objects (the 100-row admin sensor list about
# 100,000). With Python's default thresholds the collector's full passes kept walking everything
# Django loaded at start, and they landed in the slowest requests: the admin list's p95 was twice
# its p50 (docs/benchmarks.md, "Runs of 2026-12-02 (latest)"). What is alive now (settings, apps, models,
# the admin) is frozen out of those walks, and young objects are collected every 10,000
# allocations instead of every 700.
gc.freeze()
gc.set_threshold(10_000, 20, 20)
