"""GPU-hour grants across nodes. This node's staff grant an allocation of our pool to an
institution of an approved peer (an allocation of that institution's mirror here); the grant is
announced to the peer over the signed protocol and listed for it on demand, so the peer shows
it in that institution's allocations, marked as held here. The figures are ours: the peer keeps
what we last told it (announcements, its pulls, and every job outcome carry them)."""

import logging
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from rest_framework import serializers

from apps.accounts.models import Institution
from apps.compute.models import Allocation
from apps.core.serializers import StrictSerializer
from apps.federation import client, notifications
from apps.federation.contract import GRANTS_PATH
from apps.federation.models import Peer

logger = logging.getLogger(__name__)


def grants_to(peer: Peer) -> QuerySet[Allocation]:
    """Our grants to the peer's institutions."""
    return Allocation.objects.filter(
        origin_node="", institution__origin_node=peer.node_id
    ).select_related("institution")


def grant_payload(allocation: Allocation) -> dict[str, Any]:
    return {
        "id": str(allocation.pk),
        # The institution's id on the peer, which it knows it by.
        "institution": allocation.institution.origin_id,
        "name": allocation.name,
        "gpu_class": allocation.gpu_class,
        "budget_gpu_seconds": allocation.budget_gpu_seconds,
        "used_gpu_seconds": allocation.used_gpu_seconds,
        "starts_at": allocation.starts_at.isoformat(),
        "ends_at": allocation.ends_at.isoformat(),
    }


def grant_peer(allocation: Allocation) -> Peer | None:
    """The approved peer whose institution holds the grant, if any."""
    node = allocation.institution.origin_node
    if not node or allocation.origin_node:
        return None
    return Peer.objects.filter(node_id=node, state=Peer.State.APPROVED).first()


def grant_announce(*, allocation_id: int) -> bool:
    """Tells the grantee's node about the grant (new, or its figures changed). A peer that does
    not answer gets it at its next pull."""
    allocation = Allocation.objects.select_related("institution").filter(pk=allocation_id).first()
    peer = grant_peer(allocation) if allocation is not None else None
    if allocation is None or peer is None:
        return False
    try:
        client.peer_call(peer, "POST", GRANTS_PATH, json={"grant": grant_payload(allocation)})
    except client.FederationError as error:
        logger.warning("Grant %s not announced to %s: %s", allocation_id, peer.node_id, error)
        return False
    return True


def grant_announce_soon(allocation: Allocation) -> None:
    if grant_peer(allocation) is None:
        return
    from apps.federation.tasks import grant_announce_task

    transaction.on_commit(lambda: grant_announce_task.delay(allocation.pk))


class GrantInput(StrictSerializer):
    id = serializers.RegexField(r"^[0-9]{1,18}$")
    institution = serializers.RegexField(r"^[0-9]{1,18}$")
    name = serializers.CharField(max_length=200)
    gpu_class = serializers.CharField(max_length=64, allow_blank=True)
    budget_gpu_seconds = serializers.IntegerField(min_value=1, max_value=2**62)
    used_gpu_seconds = serializers.IntegerField(min_value=0, max_value=2**62)
    starts_at = serializers.DateTimeField()
    ends_at = serializers.DateTimeField()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["ends_at"] <= attrs["starts_at"]:
            raise serializers.ValidationError({"ends_at": "A grant ends after it starts."})
        return attrs


@transaction.atomic
def grant_receive(*, peer: Peer, data: Any) -> Allocation:
    """Keeps (or updates) the peer's grant to one of our institutions, as the peer states it."""
    grant = GrantInput(data=data)
    grant.is_valid(raise_exception=True)
    fields = grant.validated_data
    institution = Institution.objects.filter(pk=int(fields["institution"]), origin_node="").first()
    if institution is None:
        raise ValidationError(
            {"institution": f"No institution {fields['institution']} of this node."}
        )
    allocation, created = Allocation.objects.update_or_create(
        origin_node=peer.node_id,
        origin_id=fields["id"],
        defaults={
            "institution": institution,
            "name": fields["name"],
            "gpu_class": fields["gpu_class"],
            "budget_gpu_seconds": fields["budget_gpu_seconds"],
            "used_gpu_seconds": fields["used_gpu_seconds"],
            "starts_at": fields["starts_at"],
            "ends_at": fields["ends_at"],
            "origin_synced_at": timezone.now(),
        },
    )
    if created:
        notifications.peer_grant_received_emit(allocation, peer=peer)
    return allocation


def grants_pull(peer: Peer) -> int:
    """Reads every grant the peer made to our institutions (what an announcement missed)."""
    answer = client.peer_call(peer, "GET", GRANTS_PATH)
    grants = answer.get("grants") if isinstance(answer, dict) else None
    if not isinstance(grants, list):
        raise client.InvalidPeerAnswer(f"{peer.node_id} listed no grants.")
    taken = 0
    for data in grants:
        try:
            grant_receive(peer=peer, data=data)
            taken += 1
        except (ValidationError, serializers.ValidationError) as error:
            logger.warning("Refused a grant of %s: %s", peer.node_id, error)
    return taken
