"""Signed node-to-node calls on this node's side: the one DRF authentication class every
node-to-node endpoint uses (a peer's pinned keys, an unknown node's published ones, nonces seen),
the permissions that go with it, signing outbound requests and answers with this node's key.
The signature format itself is in httpsig.py.

Replays: a verified nonce is stored in SeenNonce inside the request's transaction
(ATOMIC_REQUESTS). A request refused after its signature was checked (403, a 4xx of its view)
rolls its nonce back with everything else it wrote; a replay of it can therefore do at most
once what its signer asked for once. A replay of a request that succeeded is refused.
"""

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.federation import client, keys
from apps.federation.contract import REQUEST_COMPONENTS, RESPONSE_COMPONENTS, SIGNATURE_LABEL
from apps.federation.httpsig import (
    NONCE_HEADER,
    AnswerMessage,
    BadSignature,
    RequestMessage,
    SignatureParams,
    check_params,
    new_nonce,
    read_signature,
    sign_message,
    verify_message,
)
from apps.federation.models import Peer, PeerKey, SeenNonce

logger = logging.getLogger("apps.federation.signatures")

# Expired nonces are deleted by about one signed request in this many (and by the beat).
_PRUNE_ONE_IN = 100


@dataclass(frozen=True)
class SignedPeer:
    """The caller of a node-to-node endpoint: request.user. `peer` (also request.auth) is its
    Peer row, None for a node that is not a peer yet (only where a view admits unknown nodes);
    then `identity` is the well-known document its keys were taken from."""

    node_id: str
    key_id: str
    nonce: str
    peer: Peer | None
    identity: dict[str, Any] | None = field(default=None, compare=False)

    is_authenticated: ClassVar[bool] = True
    is_anonymous: ClassVar[bool] = False
    is_staff: ClassVar[bool] = False
    is_superuser: ClassVar[bool] = False

    @property
    def pk(self) -> str:
        # Throttles key authenticated callers by pk: one bucket per peer node.
        return f"peer:{self.node_id}"


def node_keyid(key_id: str) -> str:
    return f"{settings.FEDERATION_NODE_URL}#{key_id}"


def sign_outbound(prepared: requests.PreparedRequest) -> str:
    """Signs a request this node sends with its own key; returns the request's nonce."""
    key = keys.signing_key()
    body = prepared.body or b""
    if isinstance(body, str):
        body = body.encode()
    if not isinstance(body, bytes):
        raise TypeError("Only a buffered body can be signed (its digest is covered).")
    nonce = new_nonce()
    sign_message(
        prepared,
        private_key=key.private_key,
        keyid=node_keyid(key.key_id),
        body=body,
        nonce=nonce,
    )
    return nonce


def pinned_keys(peer: Peer) -> dict[str, Ed25519PublicKey]:
    """A peer's pinned keys still valid now (a retiring key until its valid_until)."""
    valid = peer.keys.filter(Q(retiring_until__isnull=True) | Q(retiring_until__gt=timezone.now()))
    return {key.key_id: keys.public_key_from_text(key.public_key) for key in valid}


def peer_keys_refresh(*, peer: Peer) -> bool:
    """Fetches a peer's well-known document again and pins its keys, at most once per
    FEDERATION_KEY_REFETCH_SECONDS per peer. A claim in the cache paces it too: a refused
    request rolls back its transaction, identity_fetched_at included."""
    interval = settings.FEDERATION_KEY_REFETCH_SECONDS
    now = timezone.now()
    if peer.identity_fetched_at and peer.identity_fetched_at > now - timedelta(seconds=interval):
        return False
    if not cache.add(f"federation:key-refetch:{peer.node_id}", 1, timeout=interval):
        return False
    Peer.objects.filter(pk=peer.pk).update(identity_fetched_at=now)
    peer.identity_fetched_at = now
    try:
        identity = client.fetch_identity(peer.node_id)
    except client.FederationError as error:
        # Info only: the refusal that follows is the one warning of this request.
        logger.info("Could not refetch the keys of %s: %s", peer.node_id, error)
        return False
    peer_keys_pin(peer=peer, identity=identity)
    return True


def peer_keys_pin(*, peer: Peer, identity: Mapping[str, Any]) -> None:
    """Pins the keys a peer's well-known document lists. A new key id is added; a pinned key id
    keeps its public key and follows the document's validity; a pinned key the document no
    longer lists is accepted no more (a peer withdraws a compromised key by dropping it)."""
    listed = []
    for entry in identity.get("keys", []):
        listed.append(entry["key_id"])
        pinned, made = PeerKey.objects.get_or_create(
            peer=peer,
            key_id=entry["key_id"],
            defaults={
                "public_key": entry["public_key"],
                "retiring_until": client.parse_valid_until(entry),
            },
        )
        if not made and pinned.public_key == entry["public_key"]:
            pinned.retiring_until = client.parse_valid_until(entry)
            pinned.save(update_fields=["retiring_until"])
    now = timezone.now()
    PeerKey.objects.filter(peer=peer).exclude(key_id__in=listed).filter(
        Q(retiring_until__isnull=True) | Q(retiring_until__gt=now)
    ).update(retiring_until=now)


def _key_for_peer(peer: Peer, params: SignatureParams) -> Ed25519PublicKey:
    who = {"node_id": params.node_id, "key_id": params.key_id}
    pinned = PeerKey.objects.filter(peer=peer, key_id=params.key_id).first()
    if pinned is None and peer_keys_refresh(peer=peer):
        pinned = PeerKey.objects.filter(peer=peer, key_id=params.key_id).first()
    if pinned is None:
        raise BadSignature(
            "unknown_key", f"{params.key_id} is not a key pinned for {peer.node_id}.", **who
        )
    if pinned.retiring_until is not None and pinned.retiring_until <= timezone.now():
        raise BadSignature(
            "key_expired",
            f"{params.key_id} of {peer.node_id} was valid until "
            f"{pinned.retiring_until.isoformat()}.",
            **who,
        )
    return keys.public_key_from_text(pinned.public_key)


def _key_from_identity(params: SignatureParams) -> tuple[Ed25519PublicKey, dict[str, Any]]:
    """The key an unknown node publishes. Its document is kept for the refetch interval and
    fetched at most that often: anyone can claim any node id, and must not make this node
    fetch a third party's document on every request."""
    who = {"node_id": params.node_id, "key_id": params.key_id}
    interval = settings.FEDERATION_KEY_REFETCH_SECONDS
    identity = cache.get(f"federation:identity:{params.node_id}")
    if identity is None:
        if not cache.add(f"federation:identity-fetch:{params.node_id}", 1, timeout=interval):
            raise BadSignature(
                "unknown_key",
                f"The keys of {params.node_id} were looked up less than {interval} s ago and "
                "could not be read; retry later.",
                **who,
            )
        try:
            identity = client.fetch_identity(params.node_id)
        except client.FederationError as error:
            raise BadSignature(
                "unknown_key", f"The keys of {params.node_id} could not be fetched: {error}", **who
            ) from error
        cache.set(f"federation:identity:{params.node_id}", identity, timeout=interval)
    for entry in identity["keys"]:
        if entry["key_id"] == params.key_id:
            valid_until = client.parse_valid_until(entry)
            if valid_until is not None and valid_until <= timezone.now():
                raise BadSignature("key_expired", f"{params.key_id} is past its validity.", **who)
            return keys.public_key_from_text(entry["public_key"]), identity
    raise BadSignature(
        "unknown_key", f"{params.node_id} does not publish the key {params.key_id}.", **who
    )


def _record_nonce(params: SignatureParams) -> str:
    if params.nonce is None:
        raise BadSignature("bad_signature", "The signature carries no nonce.")
    expires_at = datetime.fromtimestamp(params.created, tz=UTC) + timedelta(
        seconds=settings.FEDERATION_SIGNATURE_WINDOW_SECONDS + 1
    )
    try:
        with transaction.atomic():
            SeenNonce.objects.create(
                node_id=params.node_id, nonce=params.nonce, expires_at=expires_at
            )
    except IntegrityError as error:
        raise BadSignature(
            "replayed_nonce",
            "This nonce was already used: the request is a replay.",
            node_id=params.node_id,
            key_id=params.key_id,
        ) from error
    if random.randrange(_PRUNE_ONE_IN) == 0:  # noqa: S311 - pacing, not security
        seen_nonces_prune()
    return params.nonce


def seen_nonces_prune() -> int:
    """Deletes the nonces no signed request could still carry; the beat may call it."""
    deleted, _ = SeenNonce.objects.filter(expires_at__lt=timezone.now()).delete()
    return deleted


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    default_port = {"http": 80, "https": 443}.get(parts.scheme)
    host = (parts.hostname or "").lower()
    port = parts.port if parts.port not in (None, default_port) else None
    return f"{parts.scheme}://{host}:{port}" if port else f"{parts.scheme}://{host}"


def authenticate_signed_request(
    request: HttpRequest, *, admits_unknown_nodes: bool = False
) -> SignedPeer:
    """Checks a Django request's signature; the nonce is recorded. Raises BadSignature."""
    params = read_signature(request.headers)
    check_params(params, required=REQUEST_COMPONENTS)
    who = {"node_id": params.node_id, "key_id": params.key_id}
    # The signature covers the address the signer meant to reach: it must be this node's.
    target = request.build_absolute_uri()
    if _origin_of(target) != _origin_of(settings.FEDERATION_NODE_URL):
        raise BadSignature(
            "wrong_authority",
            f"The request reached this node as {_origin_of(target)}, but this node is "
            f"{settings.FEDERATION_NODE_URL} (behind a proxy: SECURE_PROXY_SSL_HEADER, "
            "USE_X_FORWARDED_HOST).",
            **who,
        )
    peer = Peer.objects.filter(node_id=params.node_id).first()
    identity = None
    if peer is not None:
        public_key = _key_for_peer(peer, params)
    elif admits_unknown_nodes:
        public_key, identity = _key_from_identity(params)
    else:
        raise BadSignature("unknown_key", f"{params.node_id} is not a peer of this node.", **who)
    headers = dict(request.headers.items())
    message = RequestMessage(headers=headers, method=request.method, url=target)
    verify_message(
        message,
        params=params,
        public_key=public_key,
        body=request.body,
        required=REQUEST_COMPONENTS,
    )
    nonce = _record_nonce(params)
    return SignedPeer(
        node_id=params.node_id,
        key_id=params.key_id,
        nonce=nonce,
        peer=peer,
        identity=identity,
    )


def _log_refusal(request: HttpRequest, *, node_id: str, key_id: str, code: str, message: str):
    logger.warning(
        "Refused a signed request: node=%s key=%s path=%s reason=%s: %s",
        node_id or "-",
        key_id or "-",
        request.path,
        code,
        message,
    )


def signed_peer_of(request: HttpRequest | Request) -> SignedPeer | None:
    """The verified caller of a request, if its signature was checked."""
    django_request = request._request if isinstance(request, Request) else request
    signed = getattr(django_request, "federation_signer", None)
    return signed if isinstance(signed, SignedPeer) else None


class PeerSignatureAuthentication(BaseAuthentication):
    """The one authentication of node-to-node endpoints: a valid signature of a peer's pinned
    key (or, where the view's permission admits unknown nodes, of a key the claimed node
    publishes). request.user is the SignedPeer, request.auth its Peer row (or None)."""

    def authenticate(self, request: Request) -> tuple[SignedPeer, Peer | None]:
        view = request.parser_context.get("view") if request.parser_context else None
        admits = view is not None and any(
            getattr(permission, "admits_unknown_nodes", False)
            for permission in view.get_permissions()
        )
        try:
            signed = authenticate_signed_request(request._request, admits_unknown_nodes=admits)
        except BadSignature as refusal:
            _log_refusal(
                request._request,
                node_id=refusal.node_id,
                key_id=refusal.key_id,
                code=refusal.code,
                message=refusal.message,
            )
            raise exceptions.AuthenticationFailed(refusal.message, code=refusal.code) from refusal
        request._request.federation_signer = signed  # type: ignore[attr-defined]
        return signed, signed.peer

    def authenticate_header(self, request: Request) -> str:
        # Without a challenge DRF would turn every 401 into a 403.
        return f'Signature label="{SIGNATURE_LABEL}"'


_STATE_REFUSALS: dict[str, tuple[str, str]] = {
    Peer.State.SUSPENDED: ("peer_suspended", "The peering with {node} is suspended."),
    Peer.State.REVOKED: ("peer_revoked", "The peering with {node} was revoked."),
}


def _refuse(request: Request, signed: SignedPeer, code: str, message: str) -> None:
    _log_refusal(
        request._request, node_id=signed.node_id, key_id=signed.key_id, code=code, message=message
    )
    raise exceptions.PermissionDenied(message, code=code)


class IsApprovedPeer(BasePermission):
    """The caller is a peer this node approved (not pending, suspended or revoked)."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        signed = signed_peer_of(request)
        if signed is None:
            return False
        peer = signed.peer
        if peer is not None and peer.state == Peer.State.APPROVED:
            return True
        state = peer.state if peer is not None else ""
        code, message = _STATE_REFUSALS.get(
            state, ("peer_not_approved", "{node} is not an approved peer of this node.")
        )
        _refuse(request, signed, code, message.format(node=signed.node_id))
        return False


class AllowPeeringRequest(BasePermission):
    """Any node whose signature checks out, even one that is not a peer yet (its key is taken
    from its own well-known document), except one whose peering was revoked."""

    admits_unknown_nodes = True

    def has_permission(self, request: Request, view: APIView) -> bool:
        signed = signed_peer_of(request)
        if signed is None:
            return False
        if signed.peer is not None and signed.peer.state == Peer.State.REVOKED:
            code, message = _STATE_REFUSALS[Peer.State.REVOKED]
            _refuse(request, signed, code, message.format(node=signed.node_id))
        return True


def sign_response(
    request: HttpRequest | Request, response: HttpResponse, *, key: keys.SigningKey | None = None
) -> HttpResponse:
    """Signs a rendered answer to a verified request with this node's key: its status, its body
    (Content-Digest) and X-Request-Nonce, the nonce of the request it answers. Pass `key` when
    the request's transaction may be broken by now (an error answer)."""
    signed = signed_peer_of(request)
    if signed is None:
        raise ValueError("Only an answer to a verified signed request is signed.")
    if response.streaming:
        raise ValueError("A streamed answer cannot be signed: its digest covers the whole body.")
    key = key or keys.signing_key()
    response[NONCE_HEADER] = signed.nonce
    sign_message(
        AnswerMessage(status_code=response.status_code, headers=response.headers),
        private_key=key.private_key,
        keyid=node_keyid(key.key_id),
        body=response.content,
        components=RESPONSE_COMPONENTS,
    )
    return response


class SignedAnswerMixin(APIView):
    """For node-to-node views: every answer to a verified request is signed, refusals too."""

    _answer_key: keys.SigningKey | None = None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # Read before a refusal rolls the request's transaction back: no query works after.
        self._answer_key = keys.signing_key()
        super().initial(request, *args, **kwargs)

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        if signed_peer_of(request) is not None and not response.streaming:
            response.render()
            sign_response(request, response, key=self._answer_key)
        return response
