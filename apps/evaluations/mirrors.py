"""Writes of results mirrored from peer nodes (the federation sync calls these)."""

from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q

from apps.accounts.models import Institution
from apps.catalog.mirrors import Origin, mirrored, mirrored_version
from apps.catalog.models import Benchmark
from apps.evaluations.models import AttestationStatus, Result
from apps.evaluations.services import result_announce, result_isolation


@transaction.atomic
def result_mirror(
    *,
    origin: Origin,
    model: str,
    version: str,
    benchmark: str,
    institution: str,
    metrics: dict[str, Any],
    provenance: dict[str, Any],
    gpu_seconds: float,
    started_at: datetime | None,
    finished_at: datetime | None,
    attestation: dict[str, Any] | None = None,
    attestation_status: str = AttestationStatus.UNVERIFIABLE,
) -> Result:
    """Upserts a peer's result by its origin, with its attestation as received and what the
    federation app made of it (verified, or unverifiable)."""
    fields = {
        "model_version": mirrored_version(node=origin.node, model=model, label=version),
        "benchmark": mirrored(Benchmark, node=origin.node, origin_id=benchmark),
        "institution": mirrored(Institution, node=origin.node, origin_id=institution),
        "metrics": metrics,
        "provenance": provenance,
        "isolation": result_isolation(provenance),
        "gpu_seconds": gpu_seconds,
        "started_at": started_at,
        "finished_at": finished_at,
        "attempt": 1,
        "attestation": attestation,
        "attestation_status": attestation_status,
        "origin_url": origin.url,
        "origin_synced_at": origin.synced_at,
    }
    result, created = Result.objects.update_or_create(
        origin_node=origin.node, origin_id=origin.id, defaults=fields
    )
    if created:
        result_announce(result=result)
    return result


def attestation_received_at(
    *, node: str, origin_id: str, attestation: dict[str, Any] | None
) -> datetime | None:
    """When this node first stored the mirrored result with this very attestation (None when
    it is new, or came with another one)."""
    stored = (
        Result.objects.filter(origin_node=node, origin_id=origin_id)
        .values_list("attestation", "created_at")
        .first()
    )
    return stored[1] if stored is not None and stored[0] == attestation else None


RESULTS_DEPENDING_ON = {
    "institution": (
        "institution",
        "model_version__model__institution",
        "benchmark__institution",
        "benchmark__dataset__institution",
    ),
    "dataset": ("benchmark__dataset",),
    "benchmark": ("benchmark",),
    "model": ("model_version__model",),
}


@transaction.atomic
def mirrored_results_delete(*, record_type: str, node: str, origin_id: str) -> int:
    """Deletes a mirrored result, or every mirrored result that refers to the mirrored record
    about to be removed."""
    if record_type == "result":
        return Result.objects.filter(origin_node=node, origin_id=origin_id).delete()[0]
    refers = Q()
    for path in RESULTS_DEPENDING_ON.get(record_type, ()):
        refers |= Q(**{f"{path}__origin_node": node, f"{path}__origin_id": origin_id})
    if not refers:
        return 0
    return Result.objects.filter(refers, origin_node=node).delete()[0]
