"""Thin Celery tasks: they take ids and call services."""

from celery import shared_task

from apps.federation import services, signatures


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
