"""Settings shared by every environment; each value can come from the environment (12-factor).

local.py, test.py and production.py start from this module and change what differs.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parents[3]

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# Runtime state of a node that has no servers of its own: SQLite database, broker folders,
# uploaded files, beat schedule.
VAR_DIR = Path(env.str("PLATFORM_VAR_DIR", default=str(BASE_DIR / "var")))

DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
CSRF_FAILURE_VIEW = "apps.core.exceptions.csrf_failure"

NODE_NAME = env.str("NODE_NAME", default="Research Exchange")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_countries",
    "apps.core",
    "apps.accounts",
    "apps.catalog",
    "apps.compute",
    "apps.evaluations",
    "apps.federation",
    "apps.events",
    "apps.portal",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "apps.core.middleware.RefuseNulCharactersMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "apps.portal.context_processors.node",
                "apps.events.context_processors.notifications",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
# Every request runs in one transaction: a failed request writes nothing.
DATABASES["default"]["ATOMIC_REQUESTS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # The embedded node runs the web server and Celery against one file: WAL lets readers and
    # the writer proceed together, IMMEDIATE avoids "database is locked" on upgrade to write.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"init_command": "PRAGMA journal_mode=WAL;", "transaction_mode": "IMMEDIATE", "timeout": 20}
    )
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}

AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "portal:home"
LOGOUT_REDIRECT_URL = "portal:home"

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    # Content-addressed artifact files (model weights, datasets, paper PDFs), named by sha256.
    "artifacts": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": MEDIA_ROOT / "artifacts"},
    },
}
if ARTIFACT_S3_BUCKET := env.str("ARTIFACT_S3_BUCKET", default=""):
    # Any S3-compatible store (AWS, MinIO, Ceph); credentials come from AWS_* variables.
    STORAGES["artifacts"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": ARTIFACT_S3_BUCKET,
            "endpoint_url": env.str("ARTIFACT_S3_ENDPOINT_URL", default="") or None,
            "location": "artifacts",
            "file_overwrite": True,
            "default_acl": None,
        },
    }

# Every uploaded file streams to a temporary file while its sha256 is computed; a file over
# ARTIFACT_MAX_BYTES is refused as soon as it crosses the limit.
ARTIFACT_MAX_BYTES = env.int("ARTIFACT_MAX_BYTES", default=4 * 1024**3)
FILE_UPLOAD_HANDLERS = ["apps.catalog.uploads.HashingUploadHandler"]
# Next to the artifacts (same filesystem), so a finished upload is renamed, not copied.
FILE_UPLOAD_TEMP_DIR = env.str("FILE_UPLOAD_TEMP_DIR", default=str(MEDIA_ROOT / "incoming"))
Path(FILE_UPLOAD_TEMP_DIR).mkdir(parents=True, exist_ok=True)
# BibTeX files and JSON bodies are read in memory: bound them.
BIBTEX_MAX_BYTES = env.int("BIBTEX_MAX_BYTES", default=5 * 1024**2)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticatedOrReadOnly",
    ],
    "DEFAULT_PAGINATION_CLASS": "apps.core.pagination.PageNumberPagination",
    "PAGE_SIZE": 25,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_THROTTLE_CLASSES": [
        "apps.core.throttling.AnonymousRateThrottle",
        "apps.core.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("API_THROTTLE_ANON", default="120/minute"),
        "user": env.str("API_THROTTLE_USER", default="2000/minute"),
    },
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": ["apps.core.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "apps.core.schema.AutoSchema",
    "EXCEPTION_HANDLER": "apps.core.exceptions.api_exception_handler",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}

SPECTACULAR_SETTINGS = {
    "ENUM_NAME_OVERRIDES": {
        "JobState": "apps.compute.models.Job.State",
        "ComputeRequestState": "apps.compute.models.ComputeRequest.State",
        "PeerState": "apps.federation.models.Peer.State",
        "RemoteJobState": "apps.federation.models.RemoteJob.State",
        "WorkerEndState": [("failed", "Failed"), ("timed_out", "Timed out")],
        "WebhookDeliveryState": "apps.events.models.WebhookDelivery.State",
        "EventType": "apps.events.models.EventType",
    },
    "TITLE": "Research Exchange API",
    "DESCRIPTION": (
        "REST API of a research-exchange node: institutions, researchers and their API tokens. "
        "Authenticate with `Authorization: Bearer <token>` (a personal API token) or a portal "
        'session. Every 4xx answer has the shape `{"error": {"status", "code", "message", '
        '"fields"}}`.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # A PATCH body is described by its own serializer: the fields it requires stay required.
    "COMPONENT_SPLIT_PATCH": False,
    # Served from this node: a node must work without reaching any CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Celery: JSON only; the database is the source of truth, so no result backend is needed.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    BROKER_DIR = VAR_DIR / "broker"
    for folder in ("queue", "control"):
        (BROKER_DIR / folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
        # The folder is polled: a short interval keeps task pick-up quick.
        "polling_interval": 0.2,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_CONTROL_QUEUE", default="control")
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 300
CELERY_TASK_TIME_LIMIT = 360
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "purge-stale-api-tokens": {
        "task": "apps.accounts.tasks.api_tokens_purge_stale",
        "schedule": 6 * 60 * 60,
    },
    "purge-unattached-artifacts": {
        "task": "apps.catalog.tasks.artifacts_purge_unattached",
        "schedule": 60 * 60,
    },
    # Submissions and finished jobs ask for a dispatcher run themselves; the schedule catches
    # nodes that came back and anything a lost message left behind.
    "dispatch-jobs": {"task": "apps.compute.tasks.jobs_dispatch_task", "schedule": 10},
    "reconcile-jobs": {"task": "apps.compute.tasks.jobs_reconcile_task", "schedule": 15},
}

# The compute pool. A worker heartbeats every COMPUTE_HEARTBEAT_SECONDS; a node that missed
# them for COMPUTE_NODE_OFFLINE_AFTER_SECONDS is offline and gets no new jobs.
COMPUTE_HEARTBEAT_SECONDS = env.int("COMPUTE_HEARTBEAT_SECONDS", default=15)
COMPUTE_NODE_OFFLINE_AFTER_SECONDS = env.int("COMPUTE_NODE_OFFLINE_AFTER_SECONDS", default=90)
# A running job whose worker stopped renewing its lease this long is requeued.
COMPUTE_LEASE_SECONDS = env.int("COMPUTE_LEASE_SECONDS", default=60)
# A dispatched job that no worker claimed this long (its message was lost) is requeued.
COMPUTE_CLAIM_TIMEOUT_SECONDS = env.int("COMPUTE_CLAIM_TIMEOUT_SECONDS", default=120)
COMPUTE_MAX_ATTEMPTS = env.int("COMPUTE_MAX_ATTEMPTS", default=3)
COMPUTE_FAIR_SHARE_HALF_LIFE_HOURS = env.float("COMPUTE_FAIR_SHARE_HALF_LIFE_HOURS", default=168)
# Slurm-like multifactor priority: admin priority (-100..100), fair share (0..1), age (0..1).
COMPUTE_PRIORITY_WEIGHTS = {"admin": 10.0, "fair_share": 1000.0, "age": 100.0}
COMPUTE_DISPATCH_COALESCE_SECONDS = 5
COMPUTE_LOG_MAX_CHARS = env.int("COMPUTE_LOG_MAX_CHARS", default=2_000_000)

# Mail (compute request decisions). The console backend prints mail where no server is set.
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)  # EMAIL_BACKEND, EMAIL_HOST, ... as django-environ parses them
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="research-exchange@localhost")
# An uploaded artifact that no record uses after this long is deleted with its file.
ARTIFACT_UNATTACHED_RETENTION_HOURS = env.int("ARTIFACT_UNATTACHED_RETENTION_HOURS", default=24)

# How long an expired or revoked API token stays listed before housekeeping deletes it.
API_TOKEN_RETENTION_DAYS = env.int("API_TOKEN_RETENTION_DAYS", default=90)
# Recording `last_used_at` on every request would turn every read into a write.
API_TOKEN_LAST_USED_RESOLUTION_SECONDS = 60

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django": {"handlers": ["console"], "level": "INFO", "propagate": False}},
}

# Federation. This node's id is its public base URL (what peers call it by); its Ed25519 key
# files live in FEDERATION_KEY_DIR (mode 600), or one key comes from FEDERATION_PRIVATE_KEY.
FEDERATION_NODE_URL = env.str("FEDERATION_NODE_URL", default="http://127.0.0.1:8000").rstrip("/")
FEDERATION_KEY_DIR = Path(env.str("FEDERATION_KEY_DIR", default=str(VAR_DIR / "keys")))
FEDERATION_PRIVATE_KEY = env.str("FEDERATION_PRIVATE_KEY", default="")
# After a rotation the old key is still accepted (and published as retiring) this long.
FEDERATION_KEY_GRACE_SECONDS = env.int("FEDERATION_KEY_GRACE_SECONDS", default=7 * 24 * 3600)
# Whether peers may be on private networks (loopback, RFC 1918, link-local). Off by default:
# anyone may ask to peer, and this node then calls the address it was given.
FEDERATION_ALLOW_PRIVATE_ADDRESSES = env.bool("FEDERATION_ALLOW_PRIVATE_ADDRESSES", default=False)
# Signed requests: how far `created` may be from now, either way.
FEDERATION_SIGNATURE_WINDOW_SECONDS = 300
# A key id a peer's signature names that we have not pinned is looked up at most this often.
FEDERATION_KEY_REFETCH_SECONDS = env.int("FEDERATION_KEY_REFETCH_SECONDS", default=60)
# Outbound calls to peers.
FEDERATION_CONNECT_TIMEOUT_SECONDS = env.float("FEDERATION_CONNECT_TIMEOUT_SECONDS", default=5)
FEDERATION_READ_TIMEOUT_SECONDS = env.float("FEDERATION_READ_TIMEOUT_SECONDS", default=30)
FEDERATION_MAX_RESPONSE_BYTES = env.int("FEDERATION_MAX_RESPONSE_BYTES", default=32 * 1024**2)
FEDERATION_RETRIES = env.int("FEDERATION_RETRIES", default=3)
FEDERATION_BACKOFF_SECONDS = env.float("FEDERATION_BACKOFF_SECONDS", default=0.5)
# Circuit breaker: after this many consecutive failures a peer is unreachable and is probed
# again only after FEDERATION_PROBE_INTERVAL_SECONDS (doubling up to an hour).
FEDERATION_FAILURE_THRESHOLD = env.int("FEDERATION_FAILURE_THRESHOLD", default=5)
FEDERATION_PROBE_INTERVAL_SECONDS = env.int("FEDERATION_PROBE_INTERVAL_SECONDS", default=60)
# Records of one peer that may wait for what they refer to; beyond, they are refused.
FEDERATION_MAX_PENDING = env.int("FEDERATION_MAX_PENDING", default=10_000)
# Records per page of the change feed.
FEDERATION_FEED_PAGE_SIZE = env.int("FEDERATION_FEED_PAGE_SIZE", default=500)
FEDERATION_SYNC_INTERVAL_SECONDS = env.int("FEDERATION_SYNC_INTERVAL_SECONDS", default=30)
CELERY_BEAT_SCHEDULE["sync-peers"] = {
    "task": "apps.federation.tasks.peers_sync_task",
    "schedule": FEDERATION_SYNC_INTERVAL_SECONDS,
}
# Remote evaluations: the outcome of a peer's job is pushed when it ends and, while the peer
# does not take it, pushed again after this many seconds (doubling up to an hour); the jobs
# we asked peers to run are followed (and their outcome pulled) on the same beat.
FEDERATION_DELIVERY_RETRY_SECONDS = env.int("FEDERATION_DELIVERY_RETRY_SECONDS", default=10)
CELERY_BEAT_SCHEDULE["remote-evaluations"] = {
    "task": "apps.federation.tasks.remote_evaluations_task",
    "schedule": FEDERATION_DELIVERY_RETRY_SECONDS,
}
# A mirrored record's file is fetched from its origin node on first download.
ARTIFACT_REMOTE_FETCH = "apps.federation.services.artifact_fetch_from_origin"
# A result's signed attestation is made with the node's key by the federation app.
RESULT_ATTESTATION = "apps.federation.attestations.result_attestation"
CELERY_BEAT_SCHEDULE["prune-seen-nonces"] = {
    "task": "apps.federation.tasks.seen_nonces_prune_task",
    "schedule": FEDERATION_SIGNATURE_WINDOW_SECONDS,
}
# Webhooks (Standard Webhooks): a POST has these timeouts and reads at most this much of the
# answer; a failed attempt is retried after WEBHOOK_RETRY_SECONDS, doubling up to
# WEBHOOK_RETRY_MAX_SECONDS (±20 % jitter), up to WEBHOOK_MAX_ATTEMPTS attempts; an endpoint
# that failed WEBHOOK_DISABLE_AFTER_FAILURES attempts in a row is disabled. The beat sends what
# is due every WEBHOOK_SWEEP_SECONDS.
WEBHOOK_CONNECT_TIMEOUT_SECONDS = env.float("WEBHOOK_CONNECT_TIMEOUT_SECONDS", default=5)
WEBHOOK_READ_TIMEOUT_SECONDS = env.float("WEBHOOK_READ_TIMEOUT_SECONDS", default=10)
WEBHOOK_MAX_RESPONSE_BYTES = env.int("WEBHOOK_MAX_RESPONSE_BYTES", default=64 * 1024)
WEBHOOK_RETRY_SECONDS = env.float("WEBHOOK_RETRY_SECONDS", default=30)
WEBHOOK_RETRY_MAX_SECONDS = env.float("WEBHOOK_RETRY_MAX_SECONDS", default=6 * 60 * 60)
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=8)
WEBHOOK_DISABLE_AFTER_FAILURES = env.int("WEBHOOK_DISABLE_AFTER_FAILURES", default=20)
WEBHOOK_SWEEP_SECONDS = env.int("WEBHOOK_SWEEP_SECONDS", default=10)
# Certificates of https receivers are checked against this CA bundle (a file), or the usual
# public CAs when empty.
WEBHOOK_CA_BUNDLE = env.str("WEBHOOK_CA_BUNDLE", default="")
CELERY_BEAT_SCHEDULE["deliver-webhooks"] = {
    "task": "apps.events.tasks.webhooks_deliver_due_task",
    "schedule": WEBHOOK_SWEEP_SECONDS,
}
# OAI-PMH: records per page of a list answer.
OAI_PAGE_SIZE = env.int("OAI_PAGE_SIZE", default=100)
# Harvesters write here; the OAI-PMH schema wants a dotted domain. Set a real address.
OAI_ADMIN_EMAIL = env.str("OAI_ADMIN_EMAIL", default="oai-admin@research-exchange.invalid")
