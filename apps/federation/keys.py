"""This node's identity: its Ed25519 signing keys.

A private key lives in a file of FEDERATION_KEY_DIR (mode 600, named by its key id) or, for one
key, in FEDERATION_PRIVATE_KEY (PEM, or the raw 32-byte seed in base64url); the database holds
only the public half (NodeKey). The first key is made on first use. Rotation makes a new key
that signs from then on; the previous one stays published and accepted, as retiring, for
FEDERATION_KEY_GRACE_SECONDS.
"""

import base64
import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from apps.federation.models import NodeKey


class KeyUnavailable(RuntimeError):
    """The node has no private key it can sign with."""


@dataclass(frozen=True)
class SigningKey:
    key_id: str
    private_key: Ed25519PrivateKey


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_key_text(private_key: Ed25519PrivateKey) -> str:
    raw = private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return b64url(raw)


def public_key_from_text(text: str) -> Ed25519PublicKey:
    raw = b64url_decode(text)
    if len(raw) != 32:
        raise ValueError("An Ed25519 public key is 32 bytes.")
    return Ed25519PublicKey.from_public_bytes(raw)


def key_id_for(public_key: str) -> str:
    """A short, stable name for a public key: peers pin keys by it."""
    return "ed25519-" + hashlib.sha256(b64url_decode(public_key)).hexdigest()[:16]


def _key_dir() -> Path:
    return Path(settings.FEDERATION_KEY_DIR)


def _key_path(key_id: str) -> Path:
    return _key_dir() / f"{key_id}.pem"


def _private_key_from_environment() -> Ed25519PrivateKey | None:
    text = settings.FEDERATION_PRIVATE_KEY.strip()
    if not text:
        return None
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_private_key(text.encode(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyUnavailable("FEDERATION_PRIVATE_KEY is not an Ed25519 key.")
        return key
    return Ed25519PrivateKey.from_private_bytes(b64url_decode(text))


def _write_private_key(key: Ed25519PrivateKey, path: Path) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


@contextmanager
def _key_dir_lock() -> Iterator[None]:
    """Web and Celery processes may start together: one of them makes the first key."""
    directory = _key_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with (directory / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _load_private_key(key_id: str) -> Ed25519PrivateKey | None:
    environment_key = _private_key_from_environment()
    if environment_key is not None:
        return environment_key if key_id_for(public_key_text(environment_key)) == key_id else None
    path = _key_path(key_id)
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    # Every signed request and answer needs the key: parse its file once, again only when
    # the file changes (a var dir restored from a backup).
    version = (str(path), stat.st_mtime_ns, stat.st_size)
    cached = _parsed_keys.get(key_id)
    if cached is not None and cached[0] == version:
        return cached[1]
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        return None
    _parsed_keys[key_id] = (version, key)
    return key


_parsed_keys: dict[str, tuple[tuple[str, int, int], Ed25519PrivateKey]] = {}


def _new_key() -> NodeKey:
    key = Ed25519PrivateKey.generate()
    public = public_key_text(key)
    key_id = key_id_for(public)
    _write_private_key(key, _key_path(key_id))
    return NodeKey.objects.create(key_id=key_id, public_key=public)


def published_keys() -> QuerySet[NodeKey]:
    """The keys peers may verify this node's signatures with: the active one and those still
    in their grace period."""
    return NodeKey.objects.filter(
        Q(retiring_until__isnull=True) | Q(retiring_until__gt=timezone.now())
    ).order_by("-created_at", "-id")


def node_key_ensure() -> NodeKey:
    """The key this node signs with, made on first use."""
    active = NodeKey.objects.filter(retiring_until__isnull=True).order_by("-created_at").first()
    if active is not None and _load_private_key(active.key_id) is not None:
        return active
    with _key_dir_lock(), transaction.atomic():
        environment_key = _private_key_from_environment()
        if environment_key is not None:
            public = public_key_text(environment_key)
            key_id = key_id_for(public)
            grace_end = timezone.now() + timedelta(seconds=settings.FEDERATION_KEY_GRACE_SECONDS)
            NodeKey.objects.exclude(key_id=key_id).filter(retiring_until__isnull=True).update(
                retiring_until=grace_end
            )
            node_key, _ = NodeKey.objects.get_or_create(
                key_id=key_id, defaults={"public_key": public}
            )
            if node_key.retiring_until is not None:
                node_key.retiring_until = None
                node_key.save(update_fields=["retiring_until"])
            return node_key
        active = NodeKey.objects.filter(retiring_until__isnull=True).order_by("-created_at").first()
        if active is not None and _load_private_key(active.key_id) is not None:
            return active
        if active is not None:
            # The row outlived its file (a var dir restored without keys): it can sign nothing.
            active.retiring_until = timezone.now()
            active.save(update_fields=["retiring_until"])
        return _new_key()


def node_key_rotate() -> NodeKey:
    """Makes a new signing key; the previous one is retiring for the grace period."""
    if settings.FEDERATION_PRIVATE_KEY.strip():
        raise ValidationError(
            "This node's key comes from FEDERATION_PRIVATE_KEY: set a new key there and restart."
        )
    node_key_ensure()
    with _key_dir_lock(), transaction.atomic():
        grace_end = timezone.now() + timedelta(seconds=settings.FEDERATION_KEY_GRACE_SECONDS)
        NodeKey.objects.filter(retiring_until__isnull=True).update(retiring_until=grace_end)
        return _new_key()


def signing_key() -> SigningKey:
    node_key = node_key_ensure()
    private_key = _load_private_key(node_key.key_id)
    if private_key is None:
        raise KeyUnavailable(f"The private key {node_key.key_id} cannot be read.")
    return SigningKey(key_id=node_key.key_id, private_key=private_key)
