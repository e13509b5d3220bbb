"""Settings shared by every environment; values come from environment variables.

Embedded defaults (SQLite, a file-system Celery broker, data under ./var/) let the site run with
no external server. ``webapp.settings.production`` tightens them.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import dj_database_url
import django_stubs_ext

from webapp.celery_fs_transport import TRANSPORT_ALIAS, spool_transport_options

# Lets classes generic only in django-stubs be subscripted at runtime (``admin.ModelAdmin[Team]``).
django_stubs_ext.monkeypatch()


def env_str(name: str, default: object) -> str:
    """Read an environment variable; unset or blank gives ``default`` (as a string)."""
    raw = os.environ.get(name, "").strip()
    return raw if raw else str(default)


def env_bool(name: str, default: bool) -> bool:
    """Read a boolean environment variable ("1", "true", "yes", "on" are true; blank: default)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    return raw.lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: list[str]) -> list[str]:
    """Read a comma-separated list; unset or blank gives ``default``."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env_str("ANNOTOME_VAR_DIR", BASE_DIR / "var")).resolve()


EMBEDDED_SECRET_KEY = "embedded-insecure-key-do-not-use-in-production"
SECRET_KEY = env_str("DJANGO_SECRET_KEY", EMBEDDED_SECRET_KEY)
# Off unless asked for: `make up` is a small deployment, whose error pages must not list URL
# patterns or settings. DJANGO_DEBUG=1 turns Django's debug pages on for development.
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI files served by the site: /api/docs/ works offline
    "django_celery_results",
    "webapp.core",
    "webapp.accounts",
    "webapp.datasets",
    "webapp.detections",
    "webapp.proofreading",
    "webapp.curation",
    "webapp.stereology",
    "webapp.annotation",
    "webapp.runs",
    "webapp.viewer",
]

MIDDLEWARE = [
    # First: a NUL in a path, query or header is a 400 before anything reaches the database.
    "webapp.core.middleware.RejectNulMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# The viewer embeds Neuroglancer in a same-origin iframe.
X_FRAME_OPTIONS = "SAMEORIGIN"

ROOT_URLCONF = "webapp.urls"
WSGI_APPLICATION = "webapp.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "webapp" / "templates"],
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

# DATABASE_CONN_MAX_AGE: seconds a request-serving thread keeps its connection (0: one per
# request). webapp/gunicorn_conf.py sets 60 for the site: opening a PostgreSQL connection cost
# a request more CPU than its queries (bench/annotate.py). Health checks make a connection the
# server dropped meanwhile reconnect at the next request instead of failing it.
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'annotome.sqlite3'}"),
        conn_max_age=int(env_str("DATABASE_CONN_MAX_AGE", "0")),
        conn_health_checks=env_bool("DATABASE_CONN_HEALTH_CHECKS", True),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    try:  # a fresh checkout has no ./var yet; SQLite does not create directories
        Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass
    # WAL lets the Celery worker write progress while the web process reads. IMMEDIATE: a
    # transaction takes the write lock when it begins, waiting up to the timeout; a deferred one
    # that read first and then wrote failed at once with "database is locked" whenever another
    # process had written meanwhile (seen: a detections build beside an import in `make up`).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
        }
    )
    # A file, not :memory:, so Celery worker processes in integration tests can open the test
    # database; per process so concurrent test runs in one checkout do not delete each other's.
    DATABASES["default"].setdefault("TEST", {})["NAME"] = env_str(
        "ANNOTOME_TEST_SQLITE",
        str(Path(tempfile.gettempdir()) / f"annotome-test-{os.getpid()}.sqlite3"),
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("DJANGO_STATIC_ROOT", VAR_DIR / "static"))
# The built frontend (scripts/build_frontend.sh); sources under frontend/src are not served.
STATICFILES_DIRS = [BASE_DIR / "frontend" / "dist"]

LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "viewer:dataset-list"
LOGOUT_REDIRECT_URL = "viewer:dataset-list"

# Where OME-Zarr stores, meshes and uploads live.
DATA_ROOT = Path(env_str("ANNOTOME_DATA_ROOT", VAR_DIR / "data")).resolve()
UPLOAD_ROOT = Path(env_str("ANNOTOME_UPLOAD_ROOT", VAR_DIR / "uploads")).resolve()
# Largest accepted upload and largest volume (voxels) an import may create.
MAX_UPLOAD_BYTES = int(env_str("ANNOTOME_MAX_UPLOAD_BYTES", str(8 * 1024**3)))
MAX_VOLUME_VOXELS = int(env_str("ANNOTOME_MAX_VOLUME_VOXELS", str(1 << 40)))
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024**2
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024**2
FILE_UPLOAD_TEMP_DIR = None

# How data URLs are issued: "django" (the site streams files) or "nginx" (nginx serves /data
# and asks the site once per cache period through auth_request).
DATA_SERVING = env_str("ANNOTOME_DATA_SERVING", "django")
# Origins allowed to read data cross-origin (Neuroglancer served elsewhere); "*" for any.
DATA_CORS_ORIGINS = env_list("ANNOTOME_DATA_CORS_ORIGINS", ["*"])

# One cache for every process (throttle counts, so that a rate limit holds whichever gunicorn
# worker answers): Redis when CACHE_URL names it (compose, several machines); otherwise files
# under ANNOTOME_CACHE_DIR (var/cache), shared by every process of the one embedded machine.
# Files rather than Django's database cache: no table to create, and no cache write competes
# with job progress for SQLite's single write lock.
CACHE_URL = env_str("CACHE_URL", "")
CACHE_DIR = Path(env_str("ANNOTOME_CACHE_DIR", VAR_DIR / "cache")).resolve()
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
        if CACHE_URL.startswith(("redis://", "rediss://", "unix://"))
        else {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(CACHE_DIR),
            # Past this many entries a third is culled (throttle counts reset): keep it high.
            "OPTIONS": {"MAX_ENTRIES": 10_000},
        }
    )
}
# How often one user (or one address, when anonymous) may save a viewer state ("copy link").
VIEWER_STATE_SAVE_RATE = env_str("ANNOTOME_STATE_SAVE_RATE", "60/min")
# A dataset with at most this many objects opens with all of them selected (their meshes drawn
# in the 3D panel); a larger one opens with none selected: the 2D panels still colour every
# object, and meshes load for the objects the user selects. Each selected object costs
# Neuroglancer two requests at open (the demo's 300: 13.9 s vs 6.4 s, bench/viewer.py).
VIEWER_DEFAULT_SEGMENTS = int(env_str("ANNOTOME_VIEWER_DEFAULT_SEGMENTS", "50"))
# Build a segmentation layer's detections table when an import publishes it (a background job
# per layer). Off: tables are built only when asked (API rebuild, `build_detections`).
DETECTIONS_AUTO_BUILD = env_bool("ANNOTOME_DETECTIONS_AUTO_BUILD", True)
# Render a layer's proofreading gallery cards (a background job) once its detections table is
# built. Off: cards are rendered when a gallery is opened (job) or asked for (on demand).
CARDS_AUTO_BUILD = env_bool("ANNOTOME_CARDS_AUTO_BUILD", True)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first so unauthenticated API calls get 401 with a WWW-Authenticate header.
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticatedOrReadOnly"],
    "DEFAULT_PARSER_CLASSES": [
        "webapp.core.parsers.StrictJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "webapp.core.pagination.BoundedLimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "webapp.core.api_schema.AutoSchema",
    "EXCEPTION_HANDLER": "webapp.core.api_errors.json_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Annotome API",
    "DESCRIPTION": "Datasets, layers, imports, share links and viewer states.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Choice sets whose field names other apps use too ("state", "status", "round", "role").
    "ENUM_NAME_OVERRIDES": {
        "CampaignStateEnum": "webapp.proofreading.models.CampaignState",
        "CampaignItemStatusEnum": "webapp.proofreading.models.ItemStatus",
        "CampaignRoleEnum": "webapp.proofreading.models.Role",
        "ReviewRoundEnum": "webapp.proofreading.models.ROUNDS",
        "VerdictKindEnum": "webapp.proofreading.verdict_sets.KINDS",
        "AnnotationRoleEnum": "webapp.annotation.models.Role",
        "AnnotationKindEnum": "webapp.annotation.models.AnnotationKind",
        "RevisionKindEnum": "webapp.annotation.models.RevisionKind",
        "LabelTruthSourceEnum": "webapp.annotation.models.LabelTruthSource",
        "BoxSourceEnum": "webapp.annotation.models.BoxSource",
        "ObjectSourceEnum": "webapp.annotation.models.OBJECT_SOURCES",
        "ProposalSourceEnum": "webapp.annotation.models.PROPOSAL_SOURCES",
        "AssistStateEnum": "webapp.annotation.models.ASSIST_STATES",
        # The jobs' sets keep the names they had before the collision.
        "StateEnum": "webapp.core.jobs.models.JobState",
        "StatusEnum": "webapp.core.jobs.models.JobStatus",
    },
}

# Celery: embedded default is a durable file-system broker needing no server
# (webapp/celery_fs_transport.py); production sets CELERY_BROKER_URL to Redis or RabbitMQ.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
CELERY_BROKER_SPOOL = Path(env_str("ANNOTOME_BROKER_SPOOL", VAR_DIR / "broker")).resolve()
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
if CELERY_BROKER_URL.split("://", 1)[0] in {"filesystem", TRANSPORT_ALIAS}:
    CELERY_BROKER_TRANSPORT_OPTIONS = spool_transport_options(
        CELERY_BROKER_SPOOL, float(env_str("ANNOTOME_BROKER_POLL_SECONDS", "0.1"))
    )
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", "django-db")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Prefetch 1: a revoke for a queued task must reach the worker before the task does.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TRACK_STARTED = True
# A redelivered message (acks_late: its worker died after the task finished, before the ack) of a
# task that succeeded is not run again; plans' chords would otherwise count its part twice.
CELERY_WORKER_DEDUPLICATE_SUCCESSFUL_TASKS = True
CELERY_RESULT_EXTENDED = True
CELERY_TASK_ALWAYS_EAGER = False
# Where tasks are sent, also those a task queues (an import queues its detections builds): the
# queue this site's workers consume (`celery worker -Q`); the integration tests give each
# worker a queue of its own.
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_TASK_DEFAULT_QUEUE", "celery")
# Training and prediction go to this queue when a worker consumes it (a CUDA worker:
# docker/README.md), else to the default one (webapp/core/jobs/queues.py); "" turns it off.
ANNOTOME_GPU_QUEUE = env_str("ANNOTOME_GPU_QUEUE", "gpu")
ANNOTOME_GPU_QUEUE_CHECK_SECONDS = float(env_str("ANNOTOME_GPU_QUEUE_CHECK_SECONDS", "30"))
# A worker imports torch and the predictor once in its main process, before the pool forks, so
# every pool process starts with them: otherwise each pays ~2 s of import on its first
# prediction item, which made a second process slow a small run down (bench/README.md, run.py).
ANNOTOME_WORKER_PRELOAD = env_bool("ANNOTOME_WORKER_PRELOAD", True)

# Background jobs (webapp.core.jobs): a running job's worker refreshes its heartbeat every
# quarter of this lease; a job whose heartbeat is older (or whose worker process is gone) shows
# as "retrying" and its redelivered task takes it over. On Redis the same time is the broker's
# visibility timeout: a worker keeps its unacked messages alive, so only a dead worker's are
# redelivered, one lease after it stopped (webapp/celery_redis_transport.py).
JOB_LEASE_SECONDS = float(env_str("ANNOTOME_JOB_LEASE_SECONDS", "60"))
if CELERY_BROKER_URL.split("://", 1)[0] in {"redis", "rediss"}:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": JOB_LEASE_SECONDS,
        "unacked_restore_interval": max(1.0, JOB_LEASE_SECONDS / 4),
        "unacked_restore_throttle": 1,
    }

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("DJANGO_LOG_LEVEL", "INFO")},
}
