"""`GET /federation/v1/ping`: an operator's check that a peering works both ways. The caller's
signature is checked like any node-to-node call's and the answer is signed."""

from django.conf import settings
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from apps.federation.signatures import (
    IsApprovedPeer,
    PeerSignatureAuthentication,
    SignedAnswerMixin,
    signed_peer_of,
)


class PingApi(SignedAnswerMixin):
    """Answers an approved peer's signed call with both node ids, signed: both directions of a
    peering (keys pinned, approval, clocks) work."""

    authentication_classes = [PeerSignatureAuthentication]
    permission_classes = [IsApprovedPeer]
    renderer_classes = [JSONRenderer]

    @extend_schema(
        responses=inline_serializer(
            "PeerPing", {"node_id": serializers.URLField(), "peer": serializers.URLField()}
        ),
        summary="Check a peering: a signed call from an approved peer, answered signed",
    )
    def get(self, request: Request) -> Response:
        signed = signed_peer_of(request)
        if signed is None:  # IsApprovedPeer lets no other caller in
            raise exceptions.NotAuthenticated()
        return Response({"node_id": settings.FEDERATION_NODE_URL, "peer": signed.node_id})
