"""The project's routes plus the signed ping, for tests that must not depend on whether
config/urls.py includes it yet, and a test-only endpoint that admits nodes asking to peer."""

from django.urls import include, path
from rest_framework.request import Request
from rest_framework.response import Response

from apps.federation.signatures import (
    AllowPeeringRequest,
    PeerSignatureAuthentication,
    SignedAnswerMixin,
    signed_peer_of,
)
from config.urls import urlpatterns as project_urlpatterns

PEERING_PROBE_PATH = "/federation/test/peering"


class PeeringProbe(SignedAnswerMixin):
    authentication_classes = [PeerSignatureAuthentication]
    permission_classes = [AllowPeeringRequest]

    def post(self, request: Request) -> Response:
        signed = signed_peer_of(request)
        assert signed is not None
        identity = signed.identity or {}
        return Response(
            {
                "node_id": signed.node_id,
                "known": signed.peer is not None,
                "published_keys": [key["key_id"] for key in identity.get("keys", [])],
            }
        )


urlpatterns = [
    path("", include("apps.federation.ping_urls")),
    path(PEERING_PROBE_PATH.lstrip("/"), PeeringProbe.as_view()),
    *project_urlpatterns,
]
