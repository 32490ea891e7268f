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
    "chargers-sweep-commands": {
        "task": "chargers.sweep_commands",
        "schedule": timedelta(seconds=10),
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
# How long a command sent with deliver_when_offline waits for its charger to connect, in seconds.
CPMS_COMMAND_QUEUE_TTL = env.int("CPMS_COMMAND_QUEUE_TTL", default=86400)
# Embedded default only (no REDIS_URL): how often each server process looks in the database for
# commands that other processes created for the chargers it holds, in seconds.
CPMS_COMMAND_POLL_INTERVAL = env.float("CPMS_COMMAND_POLL_INTERVAL", default=0.25)
# Database threads of a gateway process, each with its own connection; a charger's calls always
# run on the same one, in order. 0 runs them all on Channels' one shared thread. SQLite uses 1.
CPMS_DB_THREADS = env.int("CPMS_DB_THREADS", default=8)
# Batched writes (journal, heartbeats, statuses, meter samples outside sessions).
CPMS_FLUSH_INTERVAL = env.float("CPMS_FLUSH_INTERVAL", default=0.25)
CPMS_FLUSH_MAX_ROWS = env.int("CPMS_FLUSH_MAX_ROWS", default=2000)
# Vendor ids whose DataTransfer messages are accepted and recorded with no code handler.
CPMS_DATATRANSFER_ACCEPT_VENDORS = env.list("CPMS_DATATRANSFER_ACCEPT_VENDORS", default=[])
# Modules imported at start-up that register DataTransfer vendor handlers.
CPMS_DATATRANSFER_HANDLER_MODULES = env.list("CPMS_DATATRANSFER_HANDLER_MODULES", default=[])
# A charger marked connected with no frame for this many heartbeat intervals is marked offline.
CPMS_OFFLINE_AFTER_HEARTBEATS = env.int("CPMS_OFFLINE_AFTER_HEARTBEATS", default=3)
# Map tiles of the dashboard's site maps, a Leaflet URL template such as
# https://tile.openstreetmap.org/{z}/{x}/{y}.png; empty shows the markers on a blank map and
# makes no request to any outside service.
CPMS_MAP_TILE_URL = env.str("CPMS_MAP_TILE_URL", default="")
# Attribution shown with the tiles (HTML allowed), as the tile provider requires.
CPMS_MAP_ATTRIBUTION = env.str("CPMS_MAP_ATTRIBUTION", default="")
