"""Settings for pytest: the real settings with a random SECRET_KEY for this run.

The tests' child processes (collect, control, supervisord, gunicorn) inherit it through the
environment, as a production deployment would set it.
"""

import os
import secrets

os.environ.setdefault("SECRET_KEY", "tests-" + secrets.token_urlsafe(48))

from greenhouse_site.settings import *  # noqa: F403
