"""The test suite: real PostgreSQL and Redis on this machine (URLs overridable by environment)."""

import tempfile
from pathlib import Path

from .base import *  # noqa: F403
from .base import REST_FRAMEWORK, env

DEBUG = False
SECRET_KEY = "test-suite-key-not-secret"  # noqa: S105

DATABASES = {
    "default": env.db(
        "DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/research_exchange"
    )
}
DATABASES["default"]["ATOMIC_REQUESTS"] = True

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379")
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=f"{REDIS_URL}/15")
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CACHES = {"default": env.cache("CACHE_URL", default=f"{REDIS_URL}/14")}
CACHES["default"]["KEY_PREFIX"] = "test-suite"

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

REST_FRAMEWORK = {
    **REST_FRAMEWORK,
    "DEFAULT_THROTTLE_RATES": {"anon": "10000/minute", "user": "10000/minute"},
}

# The suite's node keys live in a folder of their own, never in the repository's var dir.
FEDERATION_KEY_DIR = Path(tempfile.mkdtemp(prefix="research-exchange-test-keys-"))

# The suite's peers are nodes on 127.0.0.1.
FEDERATION_ALLOW_PRIVATE_ADDRESSES = True

# Webhook retries in a test come after a fraction of a second, not half a minute.
WEBHOOK_RETRY_SECONDS = 0.05
WEBHOOK_RETRY_MAX_SECONDS = 1.0
