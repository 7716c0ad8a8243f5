"""REST endpoints for node operators (platform staff): peers, their history, sync on demand,
and this node's keys. The node-to-node protocol itself lives in protocol_views.py."""

from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, permissions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.permissions import IsStaff
from apps.accounts.typing import AuthenticatedRequest
from apps.core.serializers import StrictSerializer
from apps.federation import client, keys, services
from apps.federation.models import NodeKey, Peer, PeerEvent


def _input(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class PeerEventOutput(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor.username", allow_null=True, default=None)

    class Meta:
        model = PeerEvent
        fields = ["from_state", "to_state", "actor", "by_peer", "note", "created_at"]


class PeerOutput(serializers.ModelSerializer):
    reachable = serializers.SerializerMethodField()
    pending_records = serializers.IntegerField(source="pending.count", read_only=True)

    class Meta:
        model = Peer
        fields = [
            "id",
            "node_id",
            "name",
            "institutions",
            "protocol_version",
            "capabilities",
            "state",
            "suspended_by_peer",
            "reachable",
            "consecutive_failures",
            "unreachable_since",
            "next_probe_at",
            "last_error",
            "last_synced_at",
            "pending_records",
            "created_at",
            "updated_at",
        ]

    def get_reachable(self, peer: Peer) -> bool:
        return peer.unreachable_since is None


class PeerDetailOutput(PeerOutput):
    events = PeerEventOutput(many=True, read_only=True)

    class Meta(PeerOutput.Meta):
        fields = [*PeerOutput.Meta.fields, "events"]


class PeerAddInput(StrictSerializer):
    base_url = serializers.URLField(max_length=255, help_text="The peer node's base URL.")


class PeerActionInput(StrictSerializer):
    note = serializers.CharField(max_length=500, required=False, default="", allow_blank=True)


class SyncReportOutput(serializers.Serializer):
    pages = serializers.IntegerField()
    upserted = serializers.IntegerField()
    deleted = serializers.IntegerField()
    pending = serializers.IntegerField()
    rejected = serializers.IntegerField()
    refusals = serializers.ListField(child=serializers.CharField())


@extend_schema_view(get=extend_schema(summary="List peer nodes (platform staff)"))
class PeerListApi(generics.ListAPIView):
    serializer_class = PeerOutput
    permission_classes = [permissions.IsAuthenticated, IsStaff]
    filterset_fields = ["state"]
    ordering_fields = ["node_id", "created_at", "last_synced_at"]

    def get_queryset(self):
        return Peer.objects.order_by("node_id")

    @extend_schema(
        request=PeerAddInput,
        responses={201: PeerDetailOutput},
        summary="Ask another node to peer (platform staff)",
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        peer = services.peer_add(actor=request.user, **_input(PeerAddInput, request))
        return Response(PeerDetailOutput(peer).data, status=status.HTTP_201_CREATED)


class PeerDetailApi(APIView):
    permission_classes = [permissions.IsAuthenticated, IsStaff]

    @extend_schema(responses=PeerDetailOutput, summary="A peer node and its history")
    def get(self, request: Request, peer_id: int) -> Response:
        peer = get_object_or_404(Peer.objects.prefetch_related("events__actor"), pk=peer_id)
        return Response(PeerDetailOutput(peer).data)


def _peer_action_view(action: str, summary: str) -> type[APIView]:
    class PeerActionApi(APIView):
        permission_classes = [permissions.IsAuthenticated, IsStaff]

        @extend_schema(request=PeerActionInput, responses=PeerDetailOutput, summary=summary)
        def post(self, request: AuthenticatedRequest, peer_id: int) -> Response:
            peer = get_object_or_404(Peer, pk=peer_id)
            peer = services.peer_transition(
                peer=peer, action=action, actor=request.user, **_input(PeerActionInput, request)
            )
            return Response(PeerDetailOutput(peer).data)

    PeerActionApi.__name__ = f"Peer{action.title()}Api"
    PeerActionApi.__qualname__ = PeerActionApi.__name__
    return PeerActionApi


PeerApproveApi = _peer_action_view("approve", "Approve a peering request (platform staff)")
PeerRefuseApi = _peer_action_view("refuse", "Refuse a peering request (platform staff)")
PeerSuspendApi = _peer_action_view("suspend", "Suspend a peering (platform staff)")
PeerReinstateApi = _peer_action_view("reinstate", "Lift a suspension (platform staff)")
PeerRevokeApi = _peer_action_view("revoke", "Revoke a peering for good (platform staff)")


class PeerSyncApi(APIView):
    permission_classes = [permissions.IsAuthenticated, IsStaff]

    @extend_schema(
        request=None, responses=SyncReportOutput, summary="Pull the peer's feed now (staff)"
    )
    def post(self, request: Request, peer_id: int) -> Response:
        peer = get_object_or_404(Peer, pk=peer_id)
        try:
            report = services.peer_sync_now(peer_id=peer.pk)
        except (client.FederationError, ValueError) as error:
            raise serializers.ValidationError(f"The sync stopped: {error}") from error
        return Response(SyncReportOutput(report.as_dict()).data)


class NodeKeyOutput(serializers.ModelSerializer):
    status = serializers.SerializerMethodField()

    class Meta:
        model = NodeKey
        fields = ["key_id", "public_key", "status", "created_at", "retiring_until"]

    def get_status(self, key: NodeKey) -> str:
        return "active" if key.retiring_until is None else "retiring"


class NodeKeyListApi(APIView):
    permission_classes = [permissions.IsAuthenticated, IsStaff]

    @extend_schema(responses=NodeKeyOutput(many=True), summary="This node's published keys")
    def get(self, request: Request) -> Response:
        keys.node_key_ensure()
        return Response(NodeKeyOutput(keys.published_keys(), many=True).data)

    @extend_schema(
        request=None,
        responses={201: NodeKeyOutput},
        summary="Rotate the signing key (the old one is retiring for the grace period)",
    )
    def post(self, request: Request) -> Response:
        return Response(NodeKeyOutput(keys.node_key_rotate()).data, status=status.HTTP_201_CREATED)
