"""Settings of the catalogue benchmark's server: production's, pointed at a bench database.

Production refuses to start without its secrets and addresses, so the ones it reads at import
get bench defaults first; every value that matters is then set explicitly below. The database
name must end in `_bench`: the seed script drops and refills it.
"""

import os

from django.core.exceptions import ImproperlyConfigured

BENCH_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/research_exchange_bench"
BENCH_REDIS_URL = "redis://127.0.0.1:6379/13"

os.environ.setdefault("DATABASE_URL", BENCH_DATABASE_URL)
os.environ.setdefault("SECRET_KEY", "bench-only-not-secret-" + "x" * 40)
os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1")
os.environ.setdefault("CELERY_BROKER_URL", BENCH_REDIS_URL)

from config.settings.production import *  # noqa: E402, F403
from config.settings.production import REST_FRAMEWORK, env  # noqa: E402

DEBUG = False
SECRET_KEY = "bench-only-not-secret-" + "x" * 40
ALLOWED_HOSTS = ["127.0.0.1"]
ROOT_URLCONF = "bench.urls"

DATABASES = {"default": env.db("DATABASE_URL", default=BENCH_DATABASE_URL)}
if not DATABASES["default"]["NAME"].endswith("_bench"):
    raise ImproperlyConfigured(
        f"The bench database must be named *_bench (got {DATABASES['default']['NAME']!r}): "
        "the seed script drops it."
    )
DATABASES["default"]["ATOMIC_REQUESTS"] = True
DATABASES["default"]["CONN_MAX_AGE"] = 60
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=BENCH_REDIS_URL)
CACHES = {"default": env.cache("CACHE_URL", default=BENCH_REDIS_URL)}
CACHES["default"]["KEY_PREFIX"] = "bench"

# One client address sends every request: the throttles would measure themselves (DRF keeps a
# list of every request's timestamp in the window and rewrites it to the cache on each request).
REST_FRAMEWORK = {**REST_FRAMEWORK, "DEFAULT_THROTTLE_CLASSES": []}

# The load client talks plain HTTP to gunicorn on loopback; no TLS proxy sits in front.
SECURE_SSL_REDIRECT = False
