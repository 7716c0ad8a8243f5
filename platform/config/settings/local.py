"""A developer's or demo node: the embedded defaults (SQLite, filesystem broker) unless the
environment names PostgreSQL and Redis."""

from .base import *  # noqa: F403
from .base import env

DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = env.str(
    "SECRET_KEY", default="local-development-only-key-never-use-in-production-5d1f9c2a"
)

# The demo's nodes, and a developer's, peer on 127.0.0.1.
FEDERATION_ALLOW_PRIVATE_ADDRESSES = env.bool("FEDERATION_ALLOW_PRIVATE_ADDRESSES", default=True)
