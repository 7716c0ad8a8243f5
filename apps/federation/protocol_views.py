"""The node-to-node protocol: the identity document, peering messages and the change feed.
Every endpoint but the identity document goes through PeerSignatureAuthentication, and every
answer to a signed request is signed (SignedAnswerMixin)."""

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.serializers import StrictSerializer
from apps.federation import feed, services
from apps.federation.models import Peer
from apps.federation.signatures import (
    AllowPeeringRequest,
    IsApprovedPeer,
    PeerSignatureAuthentication,
    SignedAnswerMixin,
    signed_peer_of,
)

MAX_FEED_PAGE = 1000


@transaction.non_atomic_requests
@require_GET
def well_known(request: HttpRequest) -> JsonResponse:
    """Who this node is and which keys it signs with. Public and cacheable: peers read it when
    they pin keys and again, once, when they meet a key id they do not know. It reads outside a
    request transaction: on the embedded SQLite node a request transaction takes the database's
    write lock, and a peer reads this document while a request of ours (asking it to peer,
    telling it a state) waits for that peer's answer."""
    response = JsonResponse(services.node_identity())
    response["Cache-Control"] = "public, max-age=300"
    response["Access-Control-Allow-Origin"] = "*"
    return response


class IsKnownPeer(BasePermission):
    """A node this node knows as a peer, in any state: peering messages change the state."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        signed = signed_peer_of(request)
        if signed is None or signed.peer is None:
            raise exceptions.PermissionDenied(
                "This node does not know yours: ask to peer first.", code="peer_not_approved"
            )
        return True


class ProtocolView(SignedAnswerMixin, APIView):
    authentication_classes = [PeerSignatureAuthentication]
    throttle_classes: list = []

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, DjangoValidationError):
            exc = exceptions.ValidationError(
                exc.message_dict if hasattr(exc, "error_dict") else exc.messages
            )
        elif isinstance(exc, DjangoPermissionDenied):
            exc = exceptions.PermissionDenied(str(exc), code="peer_revoked")
        return super().handle_exception(exc)


class PeeringRequestInput(StrictSerializer):
    node_id = serializers.URLField(max_length=255)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)


class PeeringStateInput(StrictSerializer):
    state = serializers.ChoiceField(
        choices=[Peer.State.APPROVED, Peer.State.REFUSED, Peer.State.SUSPENDED, Peer.State.REVOKED]
    )


class PeeringRequestApi(ProtocolView):
    permission_classes = [AllowPeeringRequest]

    @extend_schema(exclude=True)
    def post(self, request: Request) -> Response:
        signed = signed_peer_of(request)
        assert signed is not None  # noqa: S101 - the permission admits only signed requests
        data = PeeringRequestInput(data=request.data)
        data.is_valid(raise_exception=True)
        if data.validated_data["node_id"].rstrip("/") != signed.node_id:
            raise exceptions.ValidationError(
                {"node_id": "The node id must be the node whose key signed the request."}
            )
        # None for a known peer asking again (its pinned keys signed): what we know stays.
        peer = services.peering_request_receive(node_id=signed.node_id, identity=signed.identity)
        return Response({"state": peer.state}, status=status.HTTP_202_ACCEPTED)


class PeeringStateApi(ProtocolView):
    permission_classes = [IsKnownPeer]

    @extend_schema(exclude=True)
    def post(self, request: Request) -> Response:
        data = PeeringStateInput(data=request.data)
        data.is_valid(raise_exception=True)
        signed = signed_peer_of(request)
        assert signed is not None and signed.peer is not None  # noqa: S101 - IsKnownPeer
        peer = services.peer_state_receive(peer=signed.peer, state=data.validated_data["state"])
        return Response({"state": peer.state})


class FeedApi(ProtocolView):
    permission_classes = [IsApprovedPeer]

    @extend_schema(exclude=True)
    def get(self, request: Request) -> Response:
        try:
            limit = min(int(request.query_params.get("limit", "500")), MAX_FEED_PAGE)
        except ValueError as error:
            raise exceptions.ValidationError({"limit": "A whole number."}) from error
        if limit < 1:
            raise exceptions.ValidationError({"limit": "At least 1."})
        try:
            page = feed.feed_page(cursor=request.query_params.get("cursor", ""), limit=limit)
        except feed.BadCursor as error:
            raise exceptions.ValidationError({"cursor": str(error)}, code="bad_cursor") from error
        return Response(page)
