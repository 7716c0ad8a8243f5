"""The node-to-node protocol: the identity document, peering messages and the change feed.
Every endpoint but the identity document goes through PeerSignatureAuthentication, and every
answer to a signed request is signed (SignedAnswerMixin)."""

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.http.response import HttpResponseBase
from django.views.decorators.http import require_GET
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.catalog.downloads import artifact_response
from apps.core.serializers import StrictSerializer
from apps.federation import feed, grants, inbound_jobs, remote_jobs, services
from apps.federation.models import Peer
from apps.federation.remote_api import RemoteJobCancelInput
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


class GrantsApi(ProtocolView):
    """The granting node announces a grant (POST); the grantee's node lists them (GET)."""

    permission_classes = [IsApprovedPeer]

    @extend_schema(exclude=True)
    def get(self, request: Request) -> Response:
        peer = _approved_peer(request)
        return Response({"grants": [grants.grant_payload(a) for a in grants.grants_to(peer)]})

    @extend_schema(exclude=True)
    def post(self, request: Request) -> Response:
        if not isinstance(request.data, dict) or "grant" not in request.data:
            raise exceptions.ValidationError({"grant": "Send the grant as `grant`."})
        allocation = grants.grant_receive(peer=_approved_peer(request), data=request.data["grant"])
        return Response({"allocation": allocation.pk})


def _approved_peer(request: Request) -> Peer:
    signed = signed_peer_of(request)
    assert signed is not None and signed.peer is not None  # noqa: S101 - IsApprovedPeer
    return signed.peer


class EvaluationsApi(ProtocolView):
    """A peer asks this node to run an evaluation under a grant we made it."""

    permission_classes = [IsApprovedPeer]

    @extend_schema(exclude=True)
    def post(self, request: Request) -> Response:
        inbound, created = inbound_jobs.evaluation_receive(
            peer=_approved_peer(request), data=request.data
        )
        return Response(
            inbound_jobs.evaluation_status(inbound),
            status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK,
        )


class EvaluationApi(ProtocolView):
    permission_classes = [IsApprovedPeer]

    @extend_schema(exclude=True)
    def get(self, request: Request, request_id: str) -> Response:
        inbound = inbound_jobs.inbound_get(peer=_approved_peer(request), request_id=request_id)
        return Response(inbound_jobs.evaluation_status(inbound))


class EvaluationCancelApi(ProtocolView):
    permission_classes = [IsApprovedPeer]

    @extend_schema(exclude=True)
    def post(self, request: Request, request_id: str) -> Response:
        data = RemoteJobCancelInput(data=request.data)
        data.is_valid(raise_exception=True)
        inbound = inbound_jobs.evaluation_cancel(
            peer=_approved_peer(request),
            request_id=request_id,
            reason=data.validated_data["reason"],
        )
        return Response(inbound_jobs.evaluation_status(inbound))


class RequestedFileApi(ProtocolView):
    """A file of the model of an evaluation we asked the calling peer to run (streamed; the
    peer checks it against the sha256 we sent)."""

    permission_classes = [IsApprovedPeer]

    @extend_schema(exclude=True)
    def get(self, request: Request, request_id: str, sha256: str) -> HttpResponseBase:
        artifact, filename = remote_jobs.requested_file(
            peer=_approved_peer(request), request_id=request_id, sha256=sha256
        )
        return artifact_response(request._request, artifact, filename)


class RequestedOutcomeApi(ProtocolView):
    """The calling peer delivers the outcome of an evaluation we asked it to run."""

    permission_classes = [IsApprovedPeer]

    @extend_schema(exclude=True)
    def post(self, request: Request, request_id: str) -> Response:
        remote_job = remote_jobs.outcome_receive(
            peer=_approved_peer(request), request_id=request_id, data=request.data
        )
        return Response({"state": remote_job.state})
