"""Settings for the Greenhouse server.

Everything a deployment changes comes from the environment (or an optional `.env`
file next to manage.py) through django-environ. Values are typed strictly: a
malformed number or boolean stops start-up with the variable's name in the
message instead of running with a surprise. Range checks live in
`sensors/checks.py` as Django system checks.
"""

from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
_dotenv = BASE_DIR / ".env"
if _dotenv.is_file():
    environ.Env.read_env(_dotenv)


_BOOL_WORDS = {"1", "0", "true", "false", "yes", "no", "on", "off", ""}


def _typed(kind: str, name: str, default):
    """Read one variable with django-environ and name it in any error."""
    # django-environ reads any unknown word as False; a typo must not silently mean "off".
    if kind == "bool" and env.str(name, default="").strip().lower() not in _BOOL_WORDS:
        raise ImproperlyConfigured(
            f"Environment variable {name}={env.str(name)!r} is not a valid bool: use true/false, yes/no, on/off or 1/0"
        )
    try:
        # django-environ's float keeps only the digits, dots, commas and minus signs: "5s" was 5.0 and
        # "1e10" was 110.0. A number of seconds must be a number as Python reads one.
        if kind == "float" and name in env.ENVIRON:
            return float(env.str(name))
        return getattr(env, kind)(name, default=default)
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            f"Environment variable {name}={env.str(name)!r} is not a valid {kind}: {exc}"
        ) from exc


DEBUG = _typed("bool", "DEBUG", False)
# Seconds a web client may take to read a piece of an answer or to send its body (0: no limit);
# gunicorn's threads are the web UI's capacity (greenhouse_site/slow_clients.py).
WEB_CLIENT_TIMEOUT = _typed("float", "WEB_CLIENT_TIMEOUT", 60.0)
# SECRET_KEY signs sessions and messages: a known key lets anyone forge them. With DEBUG off (the
# default) it must be set, and not to the published development key; `make run` writes a random
# one to .env. Only DEBUG=true falls back to the development key.
DEVELOPMENT_SECRET_KEY = "django-insecure-greenhouse-development-key-change-me"
SECRET_KEY = env.str("SECRET_KEY", default="")
if not DEBUG and SECRET_KEY in ("", DEVELOPMENT_SECRET_KEY):
    raise ImproperlyConfigured(
        "SECRET_KEY is not set (or is the published development key) and DEBUG is off: set a long random "
        "one in .env next to manage.py or in the environment, e.g. "
        "SECRET_KEY=$(python3 -c 'import secrets; print(secrets.token_urlsafe(50))'). See docs/security.md."
    )
SECRET_KEY = SECRET_KEY or DEVELOPMENT_SECRET_KEY
ALLOWED_HOSTS = _typed("list", "ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])

# HTTPS=true when the web UI is served over TLS (e.g. behind Caddy or nginx terminating it):
# secure cookies, HSTS and a redirect from http. On a plain-HTTP greenhouse LAN leave it off.
HTTPS = _typed("bool", "HTTPS", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = SECURE_SSL_REDIRECT = HTTPS
SECURE_HSTS_SECONDS = _typed("int", "SECURE_HSTS_SECONDS", 31_536_000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
# HSTS preload is a commitment for public internet domains, not for a greenhouse server.
SILENCED_SYSTEM_CHECKS = ["security.W021"]
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
CSRF_TRUSTED_ORIGINS = _typed("list", "CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "sensors",
    "control",
    "axes",  # login throttling (django-axes): LOGIN_FAILURE_LIMIT, docs/security.md
]

MIDDLEWARE = [
    # A client that stops reading an answer holds a web thread WEB_CLIENT_TIMEOUT seconds at most.
    "greenhouse_site.slow_clients.ClientTimeoutMiddleware",
    # A streamed download waits while this process builds a page (sensors/web/downloads.py).
    "sensors.web.downloads.PagesFirstMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_permissions_policy.PermissionsPolicyMiddleware",
]

# Content-Security-Policy (django-csp): scripts, styles, images and requests from this server
# only, no inline script or style anywhere (every page's scripts are static files), no framing.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
# Permissions-Policy (django-permissions-policy): no page here needs a camera, a microphone, the
# location or any other powerful feature, so none may be used (not even by an injected script).
# Only features Chromium knows: an unknown one ('bluetooth') is a console warning on every page.
PERMISSIONS_POLICY = {
    feature: []
    for feature in (
        "accelerometer",
        "camera",
        "geolocation",
        "gyroscope",
        "magnetometer",
        "microphone",
        "payment",
        "usb",
        "serial",
        "display-capture",
        "fullscreen",
    )
}

ROOT_URLCONF = "greenhouse_site.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "greenhouse_site.wsgi.application"

# SQLite by default, in the project directory; PostgreSQL with
# DATABASE_URL=postgres://user@host:5432/dbname.
try:
    DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'greenhouse.sqlite3'}")}
except (ValueError, KeyError, environ.ImproperlyConfigured) as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a usable database URL: {exc}") from exc

SQLITE_SYNCHRONOUS = env.str("SQLITE_SYNCHRONOUS", default="NORMAL").upper()
if SQLITE_SYNCHRONOUS not in ("NORMAL", "FULL"):
    raise ImproperlyConfigured(f"SQLITE_SYNCHRONOUS={SQLITE_SYNCHRONOUS!r} must be NORMAL or FULL.")

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            # WAL lets the web UI read while the collector writes. synchronous=NORMAL is
            # durable across application crashes; after a power cut the last commits may be
            # rolled back. SQLITE_SYNCHRONOUS=FULL trades write speed for that (docs/reliability.md).
            "init_command": f"PRAGMA journal_mode=WAL; PRAGMA synchronous={SQLITE_SYNCHRONOUS}",
            # Take the write lock at BEGIN so two writers queue on the busy
            # timeout instead of failing with "database is locked" mid-transaction.
            "transaction_mode": "IMMEDIATE",
            "timeout": _typed("float", "SQLITE_BUSY_TIMEOUT", 5.0),
        }
    )
    # Tests that start the real collector as a subprocess need a file, not :memory:.
    DATABASES["default"].setdefault("TEST", {})["NAME"] = env.str(
        "TEST_SQLITE_NAME", default=str(BASE_DIR / "var" / "test.sqlite3")
    )
else:
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
    # Keep a web thread's PostgreSQL connection for this many seconds (0: a new one per request).
    # Opening one cost ~6 ms of every page, a fifth of the dashboard's time (docs/benchmarks.md);
    # the health check replaces one the server dropped. The long-running commands open and close
    # their own connections whatever this says.
    DATABASES["default"].setdefault("CONN_MAX_AGE", _typed("int", "DATABASE_CONN_MAX_AGE", 60))

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Login throttling (django-axes): after LOGIN_FAILURE_LIMIT wrong passwords for one user name
# from one address, that pair is refused (HTTP 429, a page saying so) for LOGIN_LOCKOUT_MINUTES,
# even with the right password. `python manage.py axes_reset` (or the admin's "Access attempts")
# unlocks at once. Per user *and* address: a mistyping worker does not lock out the whole farm
# behind one NAT, and nobody can lock a grower out from elsewhere.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = _typed("int", "LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=_typed("float", "LOGIN_LOCKOUT_MINUTES", 15.0))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
# Stored times are UTC; TIME_ZONE is only how pages show them.
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
# Chart.js and its time adapter come from npm (package.json, installed by `make setup`).
NODE_MODULES = BASE_DIR / "node_modules"
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("vendor/chart.js", NODE_MODULES / "chart.js" / "dist"),
    ("vendor/luxon", NODE_MODULES / "luxon" / "build" / "global"),
    ("vendor/chartjs-adapter-luxon", NODE_MODULES / "chartjs-adapter-luxon" / "dist"),
]
# whitenoise serves static files in production too (no separate web server needed);
# finders let it serve them without a collectstatic step.
WHITENOISE_USE_FINDERS = True

# --- Collector (python manage.py collect) --------------------------------------
COLLECTOR_HOST = env.str("COLLECTOR_HOST", default="0.0.0.0")
COLLECTOR_PORT = _typed("int", "COLLECTOR_PORT", 5555)
COLLECTOR_FLUSH_INTERVAL = _typed("float", "COLLECTOR_FLUSH_INTERVAL", 5.0)
# The minute still filling is written this often (each write rewrites a row per sensor and metric);
# a minute that has ended is written within COLLECTOR_FLUSH_INTERVAL. See docs/collector.md.
COLLECTOR_OPEN_MINUTE_INTERVAL = _typed("float", "COLLECTOR_OPEN_MINUTE_INTERVAL", 30.0)
# The sensors a control rule reads (Sensor.live_until) have their newest samples written this
# often (LiveReading), so a rule reacts in seconds whatever the open-minute interval.
COLLECTOR_LIVE_INTERVAL = _typed("float", "COLLECTOR_LIVE_INTERVAL", 2.0)
COLLECTOR_STATS_INTERVAL = _typed("float", "COLLECTOR_STATS_INTERVAL", 60.0)
COLLECTOR_IDLE_TIMEOUT = _typed("float", "COLLECTOR_IDLE_TIMEOUT", 600.0)
COLLECTOR_MAX_CONNECTIONS = _typed("int", "COLLECTOR_MAX_CONNECTIONS", 12000)
# One address may hold at most this many connections (0: half of COLLECTOR_MAX_CONNECTIONS), so
# one client can never take every slot; and a line must arrive whole within COLLECTOR_LINE_TIMEOUT
# seconds (a board writes one in milliseconds; one byte every few seconds must not hold a slot).
COLLECTOR_MAX_CONNECTIONS_PER_ADDRESS = _typed("int", "COLLECTOR_MAX_CONNECTIONS_PER_ADDRESS", 0)
COLLECTOR_LINE_TIMEOUT = _typed("float", "COLLECTOR_LINE_TIMEOUT", 30.0)
# Let several collector processes listen on the same port (SO_REUSEPORT): the kernel spreads
# the boards' connections over them, so a multi-core machine parses on every core.
COLLECTOR_REUSE_PORT = _typed("bool", "COLLECTOR_REUSE_PORT", False)
COLLECTOR_MAX_METRICS_PER_SENSOR = _typed("int", "COLLECTOR_MAX_METRICS_PER_SENSOR", 16)
# While the database cannot be written, pending minute buckets are kept in memory up to
# this many (~250 bytes each: 500,000 is ~125 MB); with the journal on, what it holds on disk
# leaves memory long before that. Beyond it (no journal, or a journal that cannot write) new
# samples are dropped and counted.
COLLECTOR_MAX_PENDING_BUCKETS = _typed("int", "COLLECTOR_MAX_PENDING_BUCKETS", 500_000)
# The journal (docs/collector.md): what the collector accepts is on local disk within
# COLLECTOR_JOURNAL_SYNC_INTERVAL seconds (0: before the next read), kept until the database
# has it, replayed exactly once after a crash or an outage. Up to COLLECTOR_JOURNAL_MAX_BYTES
# on disk (1 GiB: about 12 days of a 100-board greenhouse, see docs/benchmarks.md).
COLLECTOR_JOURNAL = _typed("bool", "COLLECTOR_JOURNAL", True)
COLLECTOR_JOURNAL_DIR = Path(env.str("COLLECTOR_JOURNAL_DIR", default=str(BASE_DIR / "var" / "journal")))
COLLECTOR_JOURNAL_SYNC_INTERVAL = _typed("float", "COLLECTOR_JOURNAL_SYNC_INTERVAL", 1.0)
COLLECTOR_JOURNAL_MAX_BYTES = _typed("int", "COLLECTOR_JOURNAL_MAX_BYTES", 1 << 30)
# A replay writes at most about this many minute buckets per transaction (smaller: SQLite's
# write lock is held for shorter spells while a long outage is caught up).
COLLECTOR_JOURNAL_REPLAY_BUCKETS = _typed("int", "COLLECTOR_JOURNAL_REPLAY_BUCKETS", 50_000)
# Who may send: networks allowed to connect (CIDR list; empty means any) and what to do with
# a MAC not in the database: "register" it (default) or "reject" its lines until it is added.
COLLECTOR_ALLOWED_NETWORKS = _typed("list", "COLLECTOR_ALLOWED_NETWORKS", [])
COLLECTOR_UNKNOWN_SENSORS = env.str("COLLECTOR_UNKNOWN_SENSORS", default="register").strip().lower()
# In register mode, at most this many new MACs are registered a minute and this many sensors in
# all; beyond them lines are refused, counted, logged, and listed in the admin ("Refused sensors").
COLLECTOR_MAX_NEW_SENSORS_PER_MINUTE = _typed("int", "COLLECTOR_MAX_NEW_SENSORS_PER_MINUTE", 60)
COLLECTOR_MAX_SENSORS = _typed("int", "COLLECTOR_MAX_SENSORS", 2000)
# MQTT devices (Tasmota, ESPHome, Shelly, the generic JSON form; docs/devices.md): with a broker
# URL (mqtt://[user:password@]host[:port], mqtts:// for TLS) the collector also subscribes there,
# as COLLECTOR_MQTT_CLIENT_ID with a persistent session, to COLLECTOR_MQTT_TOPICS (empty: the
# default subscriptions of every supported firmware). Payloads over COLLECTOR_MQTT_MAX_PAYLOAD
# bytes are refused. COLLECTOR_MQTT_CA_FILE: the CA an mqtts:// broker's certificate is checked
# against (empty: the system's).
COLLECTOR_MQTT_URL = env.str("COLLECTOR_MQTT_URL", default="")
COLLECTOR_MQTT_TOPICS = _typed("list", "COLLECTOR_MQTT_TOPICS", [])
COLLECTOR_MQTT_CLIENT_ID = env.str("COLLECTOR_MQTT_CLIENT_ID", default="greenhouse-collector")
COLLECTOR_MQTT_MAX_PAYLOAD = _typed("int", "COLLECTOR_MQTT_MAX_PAYLOAD", 64 * 1024)
COLLECTOR_MQTT_CA_FILE = env.str("COLLECTOR_MQTT_CA_FILE", default="")

# --- Retention ------------------------------------------------------------------
# Minute rows older than this many days are deleted (0 keeps them forever); the
# hourly and daily rollups that hold the same samples are kept forever.
MINUTE_RETENTION_DAYS = _typed("int", "MINUTE_RETENTION_DAYS", 30)

# --- Web UI --------------------------------------------------------------------
# A sensor silent for longer than this is shown as offline.
SENSOR_OFFLINE_AFTER = _typed("int", "SENSOR_OFFLINE_AFTER", 180)
# Read-only pages and the history API without login: only on a trusted LAN.
PUBLIC_READ_ONLY = _typed("bool", "PUBLIC_READ_ONLY", False)
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

# --- Control (python manage.py control; docs/control.md) ---------------------------
# Seconds between evaluations of the rules. A rule reading the latest value sees a board's
# newest sample within COLLECTOR_LIVE_INTERVAL (2 s) plus this; one reading the mean sees the
# minutes as the collector writes them (COLLECTOR_OPEN_MINUTE_INTERVAL, 30 s).
CONTROL_INTERVAL = _typed("float", "CONTROL_INTERVAL", 5.0)
# Each attempt to switch an output or send a notification gives up after this many seconds;
# a failed one is retried this many times in all (1 s, 2 s, 4 s ... apart).
CONTROL_COMMAND_TIMEOUT = _typed("float", "CONTROL_COMMAND_TIMEOUT", 5.0)
CONTROL_COMMAND_ATTEMPTS = _typed("int", "CONTROL_COMMAND_ATTEMPTS", 3)
# A command the device has not confirmed is sent again, after 5 s, 10 s, 20 s ... at most this
# many seconds apart, until it is confirmed or superseded; the grower is told once it has been
# unconfirmed for CONTROL_UNCONFIRMED_ALERT seconds (and again when it is confirmed).
CONTROL_RETRY_MAX = _typed("float", "CONTROL_RETRY_MAX", 30.0)
CONTROL_UNCONFIRMED_ALERT = _typed("float", "CONTROL_UNCONFIRMED_ALERT", 60.0)
# Where notifications go unless a rule names its own recipients.
CONTROL_NOTIFY_EMAILS = _typed("list", "CONTROL_NOTIFY_EMAILS", [])
CONTROL_NOTIFY_WEBHOOK = env.str("CONTROL_NOTIFY_WEBHOOK", default="")
# How long a manual on/off from the web UI holds against the rules (minutes).
CONTROL_OVERRIDE_MINUTES = _typed("int", "CONTROL_OVERRIDE_MINUTES", 60)

# E-mail for notifications (Django's settings; the defaults send through a local MTA on port 25).
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = _typed("int", "EMAIL_PORT", 25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = _typed("bool", "EMAIL_USE_TLS", False)
EMAIL_USE_SSL = _typed("bool", "EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = _typed("float", "EMAIL_TIMEOUT", 10.0)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="greenhouse@localhost")

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
if LOG_LEVEL not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
    raise ImproperlyConfigured(f"LOG_LEVEL={LOG_LEVEL!r} is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "sensors": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "control": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
    },
}
