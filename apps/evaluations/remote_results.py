"""Results of evaluations a peer node ran for us (a remote job): kept with their origin (the
peer, the result's id there) and the peer's signed attestation, which the federation app has
verified before it calls this."""

from datetime import datetime
from typing import Any

from django.db import transaction

from apps.accounts.models import Institution
from apps.catalog.models import Benchmark, ModelVersion
from apps.evaluations.models import Result
from apps.evaluations.services import result_announce, result_isolation


@transaction.atomic
def remote_result_record(
    *,
    node: str,
    origin_id: str,
    origin_url: str,
    model_version: ModelVersion,
    benchmark: Benchmark,
    institution: Institution,
    attempt: int,
    metrics: dict[str, Any],
    provenance: dict[str, Any],
    gpu_seconds: float,
    started_at: datetime | None,
    finished_at: datetime | None,
    ran_by_institution: str,
    attestation: dict[str, Any],
    attestation_status: str,
    reproduction_of: Result | None,
) -> Result:
    """Stores the result (the caller has checked it is not stored yet)."""
    result = Result.objects.create(
        origin_node=node,
        origin_id=origin_id,
        origin_url=origin_url,
        attempt=attempt,
        model_version=model_version,
        benchmark=benchmark,
        institution=institution,
        metrics=metrics,
        provenance=provenance,
        isolation=result_isolation(provenance),
        gpu_seconds=gpu_seconds,
        started_at=started_at,
        finished_at=finished_at,
        ran_on_node=node,
        ran_by_institution=ran_by_institution[:200],
        attestation=attestation,
        attestation_status=attestation_status,
        reproduction_of=reproduction_of,
    )
    result_announce(result=result)
    return result
