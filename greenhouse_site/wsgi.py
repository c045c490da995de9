"""WSGI entry point for the web UI (served by a WSGI server in production)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "greenhouse_site.settings")

application = get_wsgi_application()
