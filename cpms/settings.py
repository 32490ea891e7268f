"""Settings for the CPMS, read from the environment.

With no environment set, the embedded default runs with no service at all: a SQLite file under
``var/``, the in-memory channel layer and Celery tasks executed in-process. ``DATABASE_URL`` and
``REDIS_URL`` switch to PostgreSQL, the Redis channel layer and a Redis Celery broker.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="insecure-embedded-default-change-me-in-production")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_prometheus",
    "django_celery_beat",
    "django_htmx",
    "cpms",
    "chargers",
    "billing",
    "routing",
    "smartcharging",
    "operations",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "cpms.middleware.TenantMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "cpms.urls"
ASGI_APPLICATION = "cpms.asgi.application"
WSGI_APPLICATION = "cpms.wsgi.application"

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
                "cpms.context_processors.dashboard",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------------
VAR_DIR.mkdir(exist_ok=True)
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'cpms.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the dashboard read while the gateway writes; the timeout rides out short locks.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # A file, not memory: end-to-end tests share it with the server process they start. One
    # per test run, so that parallel runs never meet.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    # A SELECT 1 before a reused connection's first query; the gateway's database threads make it
    # at most once a second each (chargers.dbpool).
    DATABASES["default"].setdefault(
        "CONN_HEALTH_CHECKS", env.bool("CONN_HEALTH_CHECKS", default=True)
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channels and Celery ----------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py 8 reads with a 5 s socket timeout by default, which cuts short the
                # layer's blocking 5 s BZPOPMIN and kills every idle consumer with a TimeoutError
                # (django/channels_redis#422): allow a read to outlast the pop.
                # redis-py 8 refuses a command past 100 connections ("Too many connections"),
                # which a busy gateway's bursts (reconnecting fleets, events) reach: allow more.
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": 15,
                        "max_connections": env.int("CPMS_REDIS_MAX_CONNECTIONS", default=1000),
                    }
                ],
                "capacity": 5000,
                "expiry": 30,
            },
        }
    }
    CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
    CELERY_TASK_ALWAYS_EAGER = False
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CELERY_BROKER_URL = "memory://"
    # Embedded default: tasks run in-process, periodic jobs on the server's event loop.
    CELERY_TASK_ALWAYS_EAGER = True
    CELERY_TASK_EAGER_PROPAGATES = True

CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE = {
    "chargers-expire-stale-connections": {
        "task": "chargers.expire_stale_connections",
        "schedule": timedelta(seconds=60),
        "options": {"queue": "default"},
    },
    "routing-outbox-sweep": {
        "task": "routing.outbox_sweep",
        "schedule": timedelta(seconds=60),
        "options": {"queue": "default"},
    },
    "chargers-sweep-commands": {
        "task": "chargers.sweep_commands",
        "schedule": timedelta(seconds=10),
        "options": {"queue": "default"},
    },
    # 1.6 chargers say nothing when a reservation lapses: its time ends it here.
    "chargers-sweep-reservations": {
        "task": "chargers.sweep_reservations",
        "schedule": timedelta(seconds=10),
        "options": {"queue": "default"},
    },
    "chargers-check-alerts": {
        "task": "chargers.check_alerts",
        "schedule": timedelta(seconds=env.float("CPMS_ALERT_CHECK_INTERVAL", default=15.0)),
        "options": {"queue": "default"},
    },
    "smartcharging-rebalance": {
        "task": "smartcharging.rebalance_all",
        "schedule": timedelta(seconds=env.int("CPMS_SMART_CHARGING_INTERVAL", default=30)),
        "options": {"queue": "default"},
    },
    "chargers-deliver-alert-notifications": {
        "task": "chargers.deliver_alert_notifications",
        "schedule": timedelta(seconds=env.float("CPMS_ALERT_DELIVERY_INTERVAL", default=5.0)),
        "options": {"queue": "default"},
    },
    # Last month's invoices and statements, once the month is over (idempotent).
    "billing-documents-due": {
        "task": "billing.documents_due",
        "schedule": timedelta(hours=1),
        "options": {"queue": "default"},
    },
    # Sessions whose end was missed get their CDR (idempotent).
    "billing-cdrs-missing": {
        "task": "billing.cdrs_missing",
        "schedule": timedelta(minutes=10),
        "options": {"queue": "default"},
    },
    "chargers-firmware-campaigns": {
        "task": "chargers.firmware_campaigns_tick",
        "schedule": timedelta(seconds=30),
        "options": {"queue": "default"},
    },
    # Local lists left pending by an update that timed out while the charger stayed connected.
    "chargers-local-lists-retry": {
        "task": "chargers.local_lists_retry",
        "schedule": timedelta(seconds=60),
        "options": {"queue": "default"},
    },
    "operations-reconcile": {
        "task": "operations.reconcile",
        "schedule": timedelta(seconds=60),
        "options": {"queue": "default"},
    },
}

# --- Auth, i18n, static -------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

# --- REST API -------------------------------------------------------------------------------------
# Clients authenticate with `Authorization: Token <key>`; signed-in dashboard users with their session.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "cpms.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["cpms.permissions.TenantRolePermission"],
    "DEFAULT_THROTTLE_CLASSES": ["cpms.rest.ApiRateThrottle"],
    "DEFAULT_PAGINATION_CLASS": "cpms.rest.Pagination",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PARSER_CLASSES": ["cpms.rest.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "cpms.schema.Schema",
    "EXCEPTION_HANDLER": "cpms.errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "CPMS API",
    "DESCRIPTION": (
        "REST API of the charge point management system. Authenticate with an API token of your "
        "organization: `Authorization: Token <key>`. Lists are cursor-paginated (`next`/`previous` "
        'links); every error has the body `{"error": {"code", "message", "details"}}`.'
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "RoleEnum": "cpms.models.Role",
        "RegistrationStatusEnum": "chargers.models.RegistrationStatus",
        "ConnectorStatusEnum": "chargers.models.ConnectorStatus",
        "IdTokenStatusEnum": "chargers.models.IdTokenStatus",
        "SessionStateEnum": "chargers.models.SessionState",
        "TariffVersionStateEnum": "billing.models.TariffVersionState",
        "AlertKindEnum": "chargers.models.Alert.Kind",
        "AlertSeverityEnum": "chargers.models.Alert.Severity",
        "AlertStateEnum": "chargers.models.Alert.State",
        "DiagnosticsKindEnum": "chargers.models.DiagnosticsFile.Kind",
        "DiagnosticsStateEnum": "chargers.models.DiagnosticsFile.State",
    },
}
# Requests per API token (or signed-in user) and period: N/s, N/min, N/hour or N/day; empty: no limit.
CPMS_API_THROTTLE_RATE = env.str("CPMS_API_THROTTLE_RATE", default="1200/min")
# Items per page of API lists when the client sends no page_size (at most 1000).
CPMS_API_PAGE_SIZE = env.int("CPMS_API_PAGE_SIZE", default=100)
# When set, /metrics asks for `Authorization: Bearer <this>`; otherwise restrict it at the proxy.
CPMS_METRICS_TOKEN = env.str("CPMS_METRICS_TOKEN", default="")
if REDIS_URL:
    # Throttle counts (and any other cache use) are shared by every node through Redis.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "cpms",
        }
    }

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "ocpp": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        "django.channels.server": {"level": "WARNING"},
        # PDF rendering logs every step of every document at INFO.
        "weasyprint": {"level": "WARNING"},
        "fontTools": {"level": "WARNING"},
    },
}

# --- Product settings (CPMS_*) ------------------------------------------------------------------
# Heartbeat interval handed to chargers in BootNotification, in seconds.
CPMS_HEARTBEAT_INTERVAL = env.int("CPMS_HEARTBEAT_INTERVAL", default=300)
# Interval given to a charger whose registration is Pending or Rejected, in seconds.
CPMS_BOOT_RETRY_INTERVAL = env.int("CPMS_BOOT_RETRY_INTERVAL", default=60)
# Register unknown chargers as Pending instead of refusing them at the handshake.
CPMS_AUTO_REGISTER = env.bool("CPMS_AUTO_REGISTER", default=False)
# Organization (slug) that auto-registered chargers join; the first one when empty.
CPMS_AUTO_REGISTER_ORG = env.str("CPMS_AUTO_REGISTER_ORG", default="")
# Largest text frame accepted from a charger, in bytes; larger ones close the socket with 1009.
CPMS_MAX_FRAME_BYTES = env.int("CPMS_MAX_FRAME_BYTES", default=65536)
# How long to wait for a charger's answer to a CALL we sent, in seconds.
CPMS_CALL_TIMEOUT = env.float("CPMS_CALL_TIMEOUT", default=30.0)
# Seconds a charger's socket may be idle before the server sends it a WebSocket ping, and seconds
# without the pong before the socket is closed (python -m cpms.serve; daphne alone pings every
# 20 s). Chargers ping on their own (WebSocketPingInterval) and send heartbeats, so the server's
# ping is the last resort for a half-open socket, and 10,000 sockets pinged every 20 s cost the
# event loop 500 pings a second.
CPMS_WS_PING_INTERVAL = env.int("CPMS_WS_PING_INTERVAL", default=300)
CPMS_WS_PING_TIMEOUT = env.int("CPMS_WS_PING_TIMEOUT", default=30)
# Seconds between the server's walks of all its connections (reaping ended applications, handshake
# deadlines, keepalive pings), at most the ping interval; daphne alone walks every 1 and 2 s.
CPMS_WS_SWEEP_INTERVAL = env.float("CPMS_WS_SWEEP_INTERVAL", default=5.0)
# Handshakes one server process checks at once; past that, new ones are refused at once (the
# charger retries after its back-off) rather than queued past daphne's connect timeout.
CPMS_MAX_PENDING_HANDSHAKES = env.int("CPMS_MAX_PENDING_HANDSHAKES", default=500)
# Seconds a handshake's login may wait for its database thread before it is dropped; keep it
# under daphne's --websocket_connect_timeout (5 s by default), which drops the handshake itself.
CPMS_HANDSHAKE_DEADLINE = env.float("CPMS_HANDSHAKE_DEADLINE", default=4.0)
# The server processes' garbage collector thresholds (gc.set_threshold: young objects between
# collections, then young collections per middle one and middle ones per full one); empty keeps
# CPython's (700, 10, 10). See cpms.runtime.tune_garbage_collector.
CPMS_GC_THRESHOLDS = env.list("CPMS_GC_THRESHOLDS", cast=int, default=[50000, 20, 20])
# A garbage collection longer than this, in seconds, is logged as a warning (every one is counted
# in the cpms_gc_pause_seconds histogram).
CPMS_GC_WARN_SECONDS = env.float("CPMS_GC_WARN_SECONDS", default=0.5)
# Seconds late the server's event loop may run before new handshakes are refused at once.
CPMS_MAX_LOOP_LAG = env.float("CPMS_MAX_LOOP_LAG", default=0.5)
# Seconds a verified charger credential stays in the shared cache (chargers.passwords).
CPMS_CHARGER_AUTH_CACHE_TTL = env.int("CPMS_CHARGER_AUTH_CACHE_TTL", default=7 * 24 * 3600)
# Charger passwords that look like random machine secrets are stored as a keyed digest
# (HMAC-SHA256 under SECRET_KEY), checked in microseconds; False: PBKDF2 for every one.
CPMS_CHARGER_FAST_DIGEST = env.bool("CPMS_CHARGER_FAST_DIGEST", default=True)
# How long a command sent with deliver_when_offline waits for its charger to connect, in seconds.
CPMS_COMMAND_QUEUE_TTL = env.int("CPMS_COMMAND_QUEUE_TTL", default=86400)
# The longest a reservation may last, in hours from when it is made.
CPMS_RESERVATION_MAX_HOURS = env.float("CPMS_RESERVATION_MAX_HOURS", default=24.0)
# Routing to upstream CPMSes: how long an upstream may take to answer a CALL (a primary that does
# not answer in time gets the charger a CALLERROR), to open its connection, between pings, and the
# backoff between reconnects, in seconds; copies an observer's outbox holds before dropping.
CPMS_ROUTING_ANSWER_TIMEOUT = env.float("CPMS_ROUTING_ANSWER_TIMEOUT", default=20.0)
CPMS_ROUTING_CONNECT_TIMEOUT = env.float("CPMS_ROUTING_CONNECT_TIMEOUT", default=10.0)
CPMS_ROUTING_PING_INTERVAL = env.float("CPMS_ROUTING_PING_INTERVAL", default=20.0)
CPMS_ROUTING_BACKOFF_MIN = env.float("CPMS_ROUTING_BACKOFF_MIN", default=1.0)
CPMS_ROUTING_BACKOFF_MAX = env.float("CPMS_ROUTING_BACKOFF_MAX", default=60.0)
CPMS_ROUTING_OUTBOX_LIMIT = env.int("CPMS_ROUTING_OUTBOX_LIMIT", default=10000)
# How long an observer's copy waits for its transaction's id at that observer (1.6) before it is
# dropped, counted and shown: an observer added in the middle of a transaction never gets one.
CPMS_ROUTING_HOLD_TIMEOUT = env.float("CPMS_ROUTING_HOLD_TIMEOUT", default=300.0)
# Observer outboxes no gateway drains (their charger is not connected): replayed by Celery once
# their oldest copy waited this long, in seconds; copies outside transactions expire after the TTL.
CPMS_ROUTING_REPLAY_AFTER = env.int("CPMS_ROUTING_REPLAY_AFTER", default=120)
CPMS_ROUTING_OUTBOX_TTL = env.int("CPMS_ROUTING_OUTBOX_TTL", default=7 * 86400)
# Secrets the upstream passwords are encrypted under at rest (routing.crypto), comma-separated:
# the first encrypts, all decrypt (rotation). Empty: one derived from SECRET_KEY.
CPMS_ROUTING_SECRET_KEY = env.list("CPMS_ROUTING_SECRET_KEY", default=[])
# Embedded default only (no REDIS_URL): how often each server process looks in the database for
# commands that other processes created for the chargers it holds, in seconds.
CPMS_COMMAND_POLL_INTERVAL = env.float("CPMS_COMMAND_POLL_INTERVAL", default=0.25)
# Database threads of a gateway process, each with its own connection; a charger's calls always
# run on the same one, in order. 0 runs them all on Channels' one shared thread. SQLite uses 1.
CPMS_DB_THREADS = env.int("CPMS_DB_THREADS", default=8)
# Batched writes (journal, heartbeats, statuses, meter samples outside sessions).
# A flush costs about the same for one row as for hundreds: a quiet fleet's flushes are its CPU.
CPMS_FLUSH_INTERVAL = env.float("CPMS_FLUSH_INTERVAL", default=1.0)
CPMS_FLUSH_MAX_ROWS = env.int("CPMS_FLUSH_MAX_ROWS", default=2000)
# Vendor ids whose DataTransfer messages are accepted and recorded with no code handler.
CPMS_DATATRANSFER_ACCEPT_VENDORS = env.list("CPMS_DATATRANSFER_ACCEPT_VENDORS", default=[])
# Modules imported at start-up that register DataTransfer vendor handlers.
CPMS_DATATRANSFER_HANDLER_MODULES = env.list("CPMS_DATATRANSFER_HANDLER_MODULES", default=[])
# A charger marked connected with no frame for this many heartbeat intervals is marked offline.
CPMS_OFFLINE_AFTER_HEARTBEATS = env.int("CPMS_OFFLINE_AFTER_HEARTBEATS", default=3)
# Alerts (chargers.alerts). A connected charger with no frame for this many heartbeat intervals
# raises an offline alert; a closed socket does once it stays closed for the grace period (s).
CPMS_ALERT_OFFLINE_HEARTBEATS = env.int("CPMS_ALERT_OFFLINE_HEARTBEATS", default=2)
CPMS_ALERT_OFFLINE_GRACE = env.float("CPMS_ALERT_OFFLINE_GRACE", default=120.0)
# How long a faulted connector or an error code must last before it is an alert (s).
CPMS_ALERT_DEBOUNCE = env.float("CPMS_ALERT_DEBOUNCE", default=60.0)
# A resolved alert whose condition comes back within this window re-opens (s).
CPMS_ALERT_REOPEN_WINDOW = env.float("CPMS_ALERT_REOPEN_WINDOW", default=900.0)
# This many boots within the window (s) is a boot loop.
CPMS_ALERT_BOOT_LOOP_COUNT = env.int("CPMS_ALERT_BOOT_LOOP_COUNT", default=3)
CPMS_ALERT_BOOT_LOOP_WINDOW = env.float("CPMS_ALERT_BOOT_LOOP_WINDOW", default=600.0)
# A charging session with no meter values for this long is silent (s).
CPMS_ALERT_SILENT_SESSION = env.float("CPMS_ALERT_SILENT_SESSION", default=900.0)
# Alert notifications: attempts per webhook or e-mail delivery, the first retry's delay (s,
# doubling after each failure) and a webhook request's timeout (s).
CPMS_WEBHOOK_MAX_ATTEMPTS = env.int("CPMS_WEBHOOK_MAX_ATTEMPTS", default=6)
CPMS_WEBHOOK_RETRY_BASE = env.float("CPMS_WEBHOOK_RETRY_BASE", default=30.0)
CPMS_WEBHOOK_TIMEOUT = env.float("CPMS_WEBHOOK_TIMEOUT", default=10.0)
# Sender of alert e-mails; the e-mail backend comes from EMAIL_URL (smtp://user:pass@host:587,
# consolemail:// prints them to the log).
CPMS_ALERT_EMAIL_FROM = env.str("CPMS_ALERT_EMAIL_FROM", default="cpms-alerts@localhost")
_email = env.email_url("EMAIL_URL", default="consolemail://")
EMAIL_BACKEND = _email["EMAIL_BACKEND"]
EMAIL_HOST = _email.get("EMAIL_HOST") or "localhost"
EMAIL_PORT = _email.get("EMAIL_PORT") or 25
EMAIL_HOST_USER = _email.get("EMAIL_HOST_USER") or ""
EMAIL_HOST_PASSWORD = _email.get("EMAIL_HOST_PASSWORD") or ""
EMAIL_USE_TLS = bool(_email.get("EMAIL_USE_TLS"))
EMAIL_USE_SSL = bool(_email.get("EMAIL_USE_SSL"))
# Map tiles of the dashboard's site maps, a Leaflet URL template such as
# https://tile.openstreetmap.org/{z}/{x}/{y}.png; empty shows the markers on a blank map and
# makes no request to any outside service.
CPMS_MAP_TILE_URL = env.str("CPMS_MAP_TILE_URL", default="")
# Attribution shown with the tiles (HTML allowed), as the tile provider requires.
CPMS_MAP_ATTRIBUTION = env.str("CPMS_MAP_ATTRIBUTION", default="")
# Currency (ISO 4217) of sites that have no billing settings of their own.
CPMS_DEFAULT_CURRENCY = env.str("CPMS_DEFAULT_CURRENCY", default="EUR")
# Load management: a raised limit is sent only when it moves by more than this many amperes (a
# lowered one always), and at most once per charger session every MIN_INTERVAL seconds; the
# periodic rebalance runs every INTERVAL seconds (CPMS_SMART_CHARGING_INTERVAL, in the beat
# schedule above). A charger drawing more than its limit plus TOLERANCE amperes, COMPLIANCE_DELAY
# seconds after it was sent, is recorded as ignoring its profile.
CPMS_SMART_CHARGING_THRESHOLD_A = env.float("CPMS_SMART_CHARGING_THRESHOLD_A", default=1.0)
CPMS_SMART_CHARGING_MIN_INTERVAL = env.float("CPMS_SMART_CHARGING_MIN_INTERVAL", default=10.0)
CPMS_SMART_CHARGING_TOLERANCE_A = env.float("CPMS_SMART_CHARGING_TOLERANCE_A", default=2.0)
CPMS_SMART_CHARGING_COMPLIANCE_DELAY = env.float(
    "CPMS_SMART_CHARGING_COMPLIANCE_DELAY", default=60.0
)
# Chargers that show cost get a session's running cost at most once per this many seconds.
CPMS_RUNNING_COST_INTERVAL = env.int("CPMS_RUNNING_COST_INTERVAL", default=30)
# Seconds after which a charger that hears nothing more falls back from its limits to its safe
# share of the site; profiles are refreshed after half of it.
CPMS_SMART_CHARGING_FAILSAFE_AFTER = env.int("CPMS_SMART_CHARGING_FAILSAFE_AFTER", default=900)

# --- Firmware campaigns and diagnostics uploads ---------------------------------------------------
# Uploaded diagnostics and log files (Django's default storage); share it between nodes.
MEDIA_ROOT = env.path("CPMS_MEDIA_ROOT", default=VAR_DIR / "media")
MEDIA_URL = "/media/"  # never served as such: operators download through the dashboard and API
# The largest diagnostics or log file a charger may upload, in bytes.
CPMS_UPLOAD_MAX_BYTES = env.int("CPMS_UPLOAD_MAX_BYTES", default=100 * 1024 * 1024)
# How long a charger's upload URL stays valid, in seconds.
CPMS_UPLOAD_TTL = env.int("CPMS_UPLOAD_TTL", default=86400)
# The address chargers reach this CPMS at for uploads (e.g. https://cpms.example.com); empty: the
# address of the request that asked for the file.
CPMS_UPLOAD_BASE_URL = env.str("CPMS_UPLOAD_BASE_URL", default="")
# Transaction reconciliation: how long a doubt (a session open on an Available connector, a reboot
# without a stop, a stop for an unknown transaction) must last before the charger is asked, and
# how long a triggered status may take to arrive.
CPMS_RECONCILIATION_GRACE = env.int("CPMS_RECONCILIATION_GRACE", default=120)
