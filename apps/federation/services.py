"""Writes of federation: peering (adding a peer, answering, suspending, revoking), the
identity document, syncing peers' feeds and fetching mirrored artifacts from their origin.

Every call to a peer goes through client.py (signed, bounded, behind a circuit breaker).
"""

import hashlib
import logging
import tempfile
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files import File
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.accounts.models import Institution, User
from apps.catalog.formats import InvalidArtifact, inspect_artifact
from apps.catalog.models import Artifact
from apps.catalog.services import artifact_storage, storage_name_for
from apps.federation import client, grants, notifications
from apps.federation.contract import (
    CAPABILITIES,
    FEED_PATH,
    PEERING_REQUEST_PATH,
    PEERING_STATE_PATH,
    PROTOCOL_VERSION,
    WELL_KNOWN_PATH,
)
from apps.federation.keys import node_key_ensure, published_keys
from apps.federation.models import Peer, PeerEvent
from apps.federation.signatures import peer_keys_pin
from apps.federation.sync import SyncReport, peer_sync

logger = logging.getLogger(__name__)

State = Peer.State


def node_identity() -> dict[str, Any]:
    """The well-known document: who this node is and which keys it signs with."""
    node_key_ensure()
    now = timezone.now()
    keys = [
        {
            "key_id": key.key_id,
            "algorithm": "ed25519",
            "public_key": key.public_key,
            "status": "active" if key.retiring_until is None else "retiring",
            "created_at": key.created_at.isoformat(),
            "valid_until": key.retiring_until.isoformat() if key.retiring_until else None,
        }
        for key in published_keys()
        if key.retiring_until is None or key.retiring_until > now
    ]
    institutions = Institution.objects.filter(origin_node="").order_by("name")[:200]
    base = settings.FEDERATION_NODE_URL
    return {
        "node_id": base,
        "name": settings.NODE_NAME,
        "institutions": [
            {"name": i.name, "slug": i.slug, "country": str(i.country), "ror_id": i.ror_id}
            for i in institutions
        ],
        "protocol_version": PROTOCOL_VERSION,
        "capabilities": list(CAPABILITIES),
        "endpoints": {
            "well_known": base + WELL_KNOWN_PATH,
            "peering": base + PEERING_REQUEST_PATH,
            "feed": base + FEED_PATH,
            "oai": base + "/oai",
        },
        "keys": keys,
    }


def normalize_node_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValidationError({"base_url": "Give the peer's base URL, e.g. https://node.example."})
    return f"{parts.scheme}://{parts.netloc.lower()}{parts.path.rstrip('/')}"


def _event(peer: Peer, *, to_state: str, actor: User | None, by_peer: bool, note: str = ""):
    PeerEvent.objects.create(
        peer=peer,
        from_state=peer.state,
        to_state=to_state,
        actor=actor,
        by_peer=by_peer,
        note=note[:500],
    )
    peer.state = to_state


def _identity_fields(identity: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": str(identity.get("name", ""))[:200],
        "institutions": identity.get("institutions", [])[:200],
        "protocol_version": str(identity.get("protocol_version", ""))[:16],
        "capabilities": [str(c)[:64] for c in identity.get("capabilities", [])][:50],
        "identity_fetched_at": timezone.now(),
    }


def _remote_error(error: Exception) -> ValidationError:
    return ValidationError({"base_url": f"The peer could not be reached or refused: {error}"})


def peer_add(*, base_url: str, actor: User) -> Peer:
    """A staff member asks another node to peer: its identity is fetched and its keys pinned,
    then a signed peering request is sent; its staff approves or refuses it there."""
    node_id = normalize_node_url(base_url)
    if node_id == settings.FEDERATION_NODE_URL:
        raise ValidationError({"base_url": "That is this node's own address."})
    existing = Peer.objects.filter(node_id=node_id).first()
    if existing is not None and existing.state not in (State.REFUSED,):
        raise ValidationError(
            {"base_url": f"{node_id} is already a peer ({existing.get_state_display()})."}
        )
    try:
        identity = client.fetch_identity(node_id)
    except client.FederationError as error:
        raise _remote_error(error) from error
    with transaction.atomic():
        peer = existing or Peer(node_id=node_id, state=State.REQUESTED)
        for name, value in _identity_fields(identity).items():
            setattr(peer, name, value)
        peer.save()
        peer_keys_pin(peer=peer, identity=identity)
        _event(peer, to_state=State.REQUESTED, actor=actor, by_peer=False, note="Asked to peer.")
        peer.save()
    try:
        client.peer_call(
            peer,
            "POST",
            PEERING_REQUEST_PATH,
            json={"node_id": settings.FEDERATION_NODE_URL, "name": settings.NODE_NAME},
            allow_unapproved=True,
        )
    except client.FederationError as error:
        peer.last_error = str(error)[:2000]
        peer.save(update_fields=["last_error", "updated_at"])
        raise _remote_error(error) from error
    return peer


@transaction.atomic
def peering_request_receive(*, node_id: str, identity: dict[str, Any] | None) -> Peer:
    """Another node asks to peer (its signature already checked with the keys of its
    well-known document). It waits for our staff; a node we asked ourselves is approved."""
    peer = Peer.objects.select_for_update().filter(node_id=node_id).first()
    if peer is not None and peer.state == State.REVOKED:
        raise PermissionDenied("This node revoked the peering; it cannot be asked again.")
    if peer is None:
        peer = Peer(node_id=node_id, state=State.PENDING)
    if identity is not None:
        for name, value in _identity_fields(identity).items():
            setattr(peer, name, value)
    peer.save()
    if identity is not None:
        peer_keys_pin(peer=peer, identity=identity)
    if peer.state in (State.APPROVED, State.SUSPENDED):
        return peer
    if peer.state == State.REQUESTED:
        _event(peer, to_state=State.APPROVED, actor=None, by_peer=True, note="Both asked.")
    elif peer.state != State.PENDING or not peer.events.exists():
        _event(peer, to_state=State.PENDING, actor=None, by_peer=True, note="Asked to peer.")
        notifications.peer_requested_emit(peer)
    peer.save()
    return peer


# What staff here may do, from which states, and what the peer is told.
LOCAL_TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "approve": ((State.PENDING, State.REFUSED), State.APPROVED),
    "refuse": ((State.PENDING,), State.REFUSED),
    "suspend": ((State.APPROVED,), State.SUSPENDED),
    "reinstate": ((State.SUSPENDED,), State.APPROVED),
    "revoke": (
        (State.REQUESTED, State.PENDING, State.APPROVED, State.SUSPENDED, State.REFUSED),
        State.REVOKED,
    ),
}


def peer_transition(*, peer: Peer, action: str, actor: User, note: str = "") -> Peer:
    """A staff action on a peering; the peer is told with a signed message. If it cannot be
    reached the change holds here anyway and the error is kept on the peer."""
    allowed_from, to_state = LOCAL_TRANSITIONS[action]
    with transaction.atomic():
        peer = Peer.objects.select_for_update().get(pk=peer.pk)
        if peer.state not in allowed_from:
            raise ValidationError(
                f"A peering that is {peer.get_state_display().lower()} cannot be {action}d."
            )
        if action == "reinstate" and peer.suspended_by_peer:
            raise ValidationError("The peer suspended this peering: only it can reinstate it.")
        last = peer.events.first()
        if action == "approve" and peer.state == State.REFUSED and last and last.by_peer:
            raise ValidationError(
                "The peer refused this peering: only a new request (add the peer again) can "
                "reopen it."
            )
        _event(peer, to_state=to_state, actor=actor, by_peer=False, note=note)
        peer.suspended_by_peer = False
        if to_state == State.APPROVED:
            # A reinstated or newly approved peer is probed again at once.
            peer.consecutive_failures, peer.unreachable_since, peer.next_probe_at = 0, None, None
        peer.save()
    try:
        client.peer_call(
            peer, "POST", PEERING_STATE_PATH, json={"state": to_state}, allow_unapproved=True
        )
    except client.FederationError as error:
        peer.last_error = f"The peer was not told ({error})."[:2000]
        peer.save(update_fields=["last_error", "updated_at"])
    return peer


# What a peer may tell us about the peering, from which of our states.
PEER_TRANSITIONS: dict[str, tuple[str, ...]] = {
    State.APPROVED: (State.REQUESTED, State.SUSPENDED),
    State.REFUSED: (State.REQUESTED, State.PENDING),
    State.SUSPENDED: (State.APPROVED,),
    State.REVOKED: (State.REQUESTED, State.PENDING, State.APPROVED, State.SUSPENDED),
}


@transaction.atomic
def peer_state_receive(*, peer: Peer, state: str) -> Peer:
    peer = Peer.objects.select_for_update().get(pk=peer.pk)
    if state == peer.state:
        return peer
    allowed_from = PEER_TRANSITIONS.get(state)
    if allowed_from is None:
        raise ValidationError({"state": f"A peer cannot set the peering to {state!r}."})
    if peer.state not in allowed_from:
        raise ValidationError({"state": f"The peering is {peer.state} here; it cannot go {state}."})
    if state == State.APPROVED and peer.state == State.SUSPENDED and not peer.suspended_by_peer:
        raise ValidationError({"state": "This node suspended the peering; only it can lift it."})
    _event(peer, to_state=state, actor=None, by_peer=True)
    peer.suspended_by_peer = state == State.SUSPENDED
    peer.save()
    return peer


def _fetch_feed_page(peer: Peer, cursor: str, limit: int) -> dict[str, Any]:
    return client.peer_call(peer, "GET", FEED_PATH, params={"cursor": cursor, "limit": limit})


def peer_sync_now(*, peer_id: int, max_pages: int | None = None) -> SyncReport:
    """Pulls one approved peer's feed from its cursor; a failure is kept on the peer."""
    peer = Peer.objects.get(pk=peer_id)
    if not peer.is_approved:
        raise ValidationError(f"{peer} is not an approved peer: nothing is synced.")
    try:
        report = peer_sync(peer=peer, fetch_page=_fetch_feed_page, max_pages=max_pages)
        # Grants it made to our institutions: what an announcement may have missed.
        if "remote-evaluation" in peer.capabilities:
            grants.grants_pull(peer)
    except (client.FederationError, ValueError) as error:
        Peer.objects.filter(pk=peer.pk).update(last_error=str(error)[:2000])
        logger.warning("Sync with %s stopped: %s", peer.node_id, error)
        raise
    Peer.objects.filter(pk=peer.pk).update(last_error="")
    logger.info("Synced %s: %s", peer.node_id, report.as_dict())
    return report


def peers_due() -> Iterator[Peer]:
    now = timezone.now()
    yield from Peer.objects.filter(state=State.APPROVED).filter(
        Q(next_probe_at__isnull=True) | Q(next_probe_at__lte=now)
    )


def peers_sync_due() -> None:
    for peer in peers_due():
        try:
            peer_sync_now(peer_id=peer.pk)
        except (client.FederationError, ValueError):
            continue  # kept on the peer; the next beat tries again (the breaker paces it)
        except Exception:  # one peer's failure must not stop the others' syncs
            logger.exception("Sync with %s failed", peer.node_id)


def _origin_peer(artifact: Artifact) -> Peer:
    origin = urlsplit(artifact.origin_url)
    for peer in Peer.objects.filter(state=State.APPROVED):
        node = urlsplit(peer.node_id)
        if (node.scheme, node.netloc) == (origin.scheme, origin.netloc):
            return peer
    raise client.PeerUnreachable(
        f"The node that holds sha256:{artifact.sha256} is not an approved peer."
    )


def artifact_fetch_from_origin(
    artifact: Artifact, *, peer: Peer | None = None, url: str = ""
) -> Artifact:
    """Fetches a mirrored file from its origin node on first download, checks it against the
    sha256 the feed gave, and keeps it in the local content-addressed store. A file whose bytes
    do not match is refused and logged, never stored. `peer` and `url` name another place to
    fetch it from (a peer's file of a job it asked us to run)."""
    peer = peer or _origin_peer(artifact)
    url = url or artifact.origin_url
    with tempfile.NamedTemporaryFile(dir=settings.FILE_UPLOAD_TEMP_DIR) as temporary:
        digest = hashlib.sha256()
        size = 0
        for chunk in client.peer_download(peer, url, max_bytes=artifact.size + 1):
            digest.update(chunk)
            size += len(chunk)
            temporary.write(chunk)
        temporary.flush()
        if digest.hexdigest() != artifact.sha256 or size != artifact.size:
            logger.warning(
                "Refused sha256:%s from %s: got sha256:%s (%d bytes)",
                artifact.sha256,
                peer.node_id,
                digest.hexdigest(),
                size,
            )
            raise client.InvalidPeerAnswer(
                f"{peer.node_id} sent other bytes than sha256:{artifact.sha256}; "
                "nothing was stored."
            )
        # What the file is comes from our own reading of its bytes, never from the peer's claim
        # (a pickle announced as safetensors stays unsafe here).
        try:
            report = inspect_artifact(temporary.name, _filename_of(artifact))
        except InvalidArtifact as error:
            raise client.InvalidPeerAnswer(
                f"{peer.node_id} sent sha256:{artifact.sha256} as a corrupt file ({error}); "
                "nothing was stored."
            ) from error
        temporary.seek(0)
        name = storage_name_for(artifact.sha256)
        storage = artifact_storage()
        if not storage.exists(name):
            stored_as = storage.save(name, File(temporary))
            if stored_as != name:
                storage.delete(stored_as)
    fields = {
        "storage_name": name,
        "format": report.format,
        "unsafe": report.unsafe,
        "format_info": report.info,
    }
    Artifact.objects.filter(pk=artifact.pk).update(**fields)
    for field_name, value in fields.items():
        setattr(artifact, field_name, value)
    return artifact


def _filename_of(artifact: Artifact) -> str:
    """A name a record gives the file (its suffix helps tell formats apart)."""
    use = (
        artifact.model_files.values_list("filename", flat=True).first()
        or artifact.dataset_files.values_list("filename", flat=True).first()
    )
    return use or ("paper.pdf" if artifact.papers.exists() else artifact.sha256)
