"""Cross-node work reacts to the pool: a grant to a peer's institution is announced to that
peer, a peer's job that ends has its outcome delivered (both after the writer commits), and
the result of a peer's reproduction names the result it reproduces, and a revoked peering
ends the evaluations either node was running for the other."""

from typing import Any

from django.db import transaction
from django.db.models.signals import post_save

from apps.compute.models import Allocation, Job
from apps.evaluations.models import Result
from apps.federation.grants import grant_announce_soon
from apps.federation.inbound_jobs import inbound_jobs_withdraw, outcome_deliver_soon
from apps.federation.models import InboundJob, Peer
from apps.federation.remote_jobs import remote_jobs_end


def _allocation_saved(sender: type, instance: Allocation, **kwargs: Any) -> None:
    if kwargs.get("raw") or instance.origin_node:
        return
    grant_announce_soon(instance)


def _job_saved(sender: type, instance: Job, **kwargs: Any) -> None:
    if kwargs.get("raw") or not instance.from_peer or instance.state not in Job.FINISHED_STATES:
        return
    inbound_id = InboundJob.objects.filter(job=instance).values_list("pk", flat=True).first()
    if inbound_id is not None:
        outcome_deliver_soon(inbound_id)


def _result_saved(sender: type, instance: Result, created: bool, **kwargs: Any) -> None:
    """A peer's job that reproduces one of the results we hold: its result says so."""
    if kwargs.get("raw") or not created or instance.job_id is None:
        return
    original = (
        InboundJob.objects.filter(job_id=instance.job_id, reproduction_of__isnull=False)
        .values_list("reproduction_of_id", flat=True)
        .first()
    )
    if original is not None:
        Result.objects.filter(pk=instance.pk).update(reproduction_of_id=original)
        instance.reproduction_of_id = original


def _peer_saved(sender: type, instance: Peer, **kwargs: Any) -> None:
    """A revoked peering ends the evaluations either node ran for the other."""
    if kwargs.get("raw") or instance.state != Peer.State.REVOKED:
        return
    peer = instance

    def end() -> None:
        inbound_jobs_withdraw(peer=peer)
        remote_jobs_end(peer=peer)

    transaction.on_commit(end)


post_save.connect(_allocation_saved, sender=Allocation, dispatch_uid="grant-announce")
post_save.connect(_job_saved, sender=Job, dispatch_uid="remote-outcome-deliver")
post_save.connect(_result_saved, sender=Result, dispatch_uid="remote-reproduction")
post_save.connect(_peer_saved, sender=Peer, dispatch_uid="remote-evaluations-revoked")
