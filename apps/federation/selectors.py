"""Reads of cross-node work: what peers' pools ran for this node's institutions."""

from collections.abc import Collection

from django.db.models import Sum

from apps.accounts.models import Institution
from apps.federation.models import RemoteJob


def remote_gpu_seconds_by_institution(
    *, institution_ids: Collection[int] | None = None
) -> dict[int, int]:
    """GPU-seconds peers charged each of our institutions for its remote jobs, as their signed
    usage records say."""
    jobs = RemoteJob.objects.filter(gpu_seconds__gt=0)
    if institution_ids is not None:
        jobs = jobs.filter(institution_id__in=institution_ids)
    totals = jobs.values_list("institution_id").annotate(total=Sum("gpu_seconds")).order_by()
    return dict(totals)


def remote_gpu_seconds(*, institution: Institution) -> int:
    return remote_gpu_seconds_by_institution(institution_ids=[institution.pk]).get(
        institution.pk, 0
    )
