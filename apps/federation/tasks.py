"""Thin Celery tasks: they take ids and call services."""

import logging

from celery import shared_task

from apps.federation import grants, inbound_jobs, remote_jobs, services, signatures

logger = logging.getLogger(__name__)


@shared_task
def peers_sync_task() -> None:
    """The beat's pull of every approved, reachable peer's change feed."""
    services.peers_sync_due()


@shared_task
def peer_sync_task(peer_id: int) -> None:
    services.peer_sync_now(peer_id=peer_id)


@shared_task
def seen_nonces_prune_task() -> None:
    """Nonces older than the signature window can no longer be replayed: forget them."""
    signatures.seen_nonces_prune()


@shared_task
def grant_announce_task(allocation_id: int) -> None:
    grants.grant_announce(allocation_id=allocation_id)


@shared_task(soft_time_limit=inbound_jobs.PREPARE_RETRY_SECONDS - 120,
             time_limit=inbound_jobs.PREPARE_RETRY_SECONDS - 60)  # fmt: skip
def evaluation_prepare_task(inbound_id: int) -> None:
    inbound_jobs.evaluation_prepare(inbound_id=inbound_id)


@shared_task
def outcome_deliver_task(inbound_id: int) -> None:
    inbound_jobs.outcome_deliver(inbound_id=inbound_id)


@shared_task
def remote_evaluations_task() -> None:
    """The beat's sweep of remote evaluations, both ways: outcomes of peers' jobs not yet
    delivered, requests whose preparation was lost, and our jobs at peers to follow."""
    for sweep in (
        inbound_jobs.outcomes_deliver_due,
        inbound_jobs.evaluations_prepare_stuck,
        remote_jobs.remote_jobs_refresh_due,
    ):
        try:
            sweep()
        except Exception:  # each sweep runs whatever the others do
            logger.exception("%s failed", sweep.__name__)
