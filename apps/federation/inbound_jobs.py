"""Evaluations a peer asks this node to run on its pool (the peer's side is remote_jobs.py).

A signed request names a grant we made to one of the peer's institutions, a benchmark we hold
(ours, or a mirror) and a model version of the peer with its files' sha256. We check what we
can at once and answer accepted or refused with the reason. Accepted, the files are fetched
from the peer (a signed request it answers only for a job it asked for) and checked against
their sha256; then the job joins our own queue, where it runs like a local job but only on a
node that fully isolates evaluations. When it ends, its outcome (state, a signed usage record,
and the result with its signed attestation) is delivered to the peer, retried with back-off
until the peer has it; the peer can also read it at any time."""

import hashlib
import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.http import Http404
from django.urls import reverse
from django.utils import timezone
from rest_framework import serializers

from apps.accounts.models import Institution
from apps.catalog import mirrors as catalog_mirrors
from apps.catalog.models import Benchmark, Visibility
from apps.compute import peer_jobs
from apps.compute import services as compute_services
from apps.compute.models import Job
from apps.core.serializers import StrictSerializer
from apps.evaluations import selectors as evaluation_selectors
from apps.evaluations.models import Result
from apps.federation import attestations, client
from apps.federation.contract import (
    EVALUATION_FINISHED_STATES,
    REQUESTED_FILE_PATH,
    REQUESTED_OUTCOME_PATH,
    USAGE_PREDICATE_TYPE,
)
from apps.federation.grants import grant_payload
from apps.federation.models import InboundJob, Peer
from apps.federation.references import resolve
from apps.federation.services import artifact_fetch_from_origin

logger = logging.getLogger(__name__)

SHA256 = r"^[0-9a-f]{64}$"
MAX_FILES = 1000
# A preparation runs as one task of up to an hour (large models); one that vanished is
# started again after that.
PREPARE_RETRY_SECONDS = 3600


class ReferenceInput(StrictSerializer):
    node = serializers.URLField(max_length=255)
    id = serializers.RegexField(r"^[0-9]{1,18}$")


class FileInput(StrictSerializer):
    filename = serializers.CharField(max_length=255)
    sha256 = serializers.RegexField(SHA256)
    size = serializers.IntegerField(min_value=0, max_value=2**50)
    format = serializers.CharField(max_length=16, allow_blank=True)


class VersionInput(StrictSerializer):
    label = serializers.CharField(max_length=64)  # type: ignore[assignment]  # a field, not Field.label
    published_at = serializers.DateTimeField()
    files = serializers.ListField(child=FileInput(), allow_empty=False, max_length=MAX_FILES)

    def validate_files(self, files: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # What this node would accept from its own researchers, in all.
        if sum(file["size"] for file in files) > settings.ARTIFACT_MAX_BYTES:
            raise serializers.ValidationError(
                f"The version's files come to more than {settings.ARTIFACT_MAX_BYTES} bytes."
            )
        return files


class ModelInput(StrictSerializer):
    id = serializers.RegexField(r"^[0-9]{1,18}$")
    institution = serializers.RegexField(r"^[0-9]{1,18}$")
    name = serializers.CharField(max_length=200)
    slug = serializers.SlugField(max_length=80)
    license = serializers.CharField(max_length=200, allow_blank=True)
    public = serializers.BooleanField()
    version = VersionInput()


class EvaluationRequestInput(StrictSerializer):
    request_id = serializers.UUIDField()
    grant = serializers.IntegerField(min_value=1, max_value=2**62)
    institution = serializers.RegexField(r"^[0-9]{1,18}$")
    requested_by = serializers.CharField(max_length=200, allow_blank=True)
    model = ModelInput()
    benchmark = ReferenceInput()
    reproduction_of = ReferenceInput(required=False, allow_null=True)


def _file_url(peer: Peer, request_id: str, sha256: str) -> str:
    return peer.node_id + REQUESTED_FILE_PATH.format(request_id=request_id, sha256=sha256)


@transaction.atomic
def evaluation_receive(*, peer: Peer, data: Any) -> tuple[InboundJob, bool]:
    """Accepts a peer's request (returns it and True), or refuses it with a ValidationError
    that says why. The same request id again returns the job it made (False)."""
    request = EvaluationRequestInput(data=data)
    request.is_valid(raise_exception=True)
    fields = request.validated_data
    request_id = fields["request_id"]
    existing = InboundJob.objects.filter(peer=peer, request_id=request_id).first()
    if existing is not None:
        return existing, False

    institution = Institution.objects.filter(
        origin_node=peer.node_id, origin_id=fields["institution"]
    ).first()
    if institution is None:
        raise ValidationError(
            {
                "institution": f"This node does not know your institution {fields['institution']} "
                "(it has not synced it yet)."
            }
        )
    benchmark = resolve(Benchmark, fields["benchmark"])
    if benchmark is None or benchmark.visibility != Visibility.PUBLIC:
        raise ValidationError({"benchmark": "No such public benchmark on this node."})

    model = fields["model"]
    files = model["version"]["files"]
    allocation = peer_jobs.peer_job_check(
        institution=institution,
        allocation_id=fields["grant"],
        benchmark=benchmark,
        formats={file["format"] for file in files},
    )
    now = timezone.now()
    try:
        version = catalog_mirrors.model_version_mirror(
            origin=catalog_mirrors.Origin(
                node=peer.node_id, id=model["id"], url=peer.node_id, synced_at=now
            ),
            institution=model["institution"],
            fields={"name": model["name"], "slug": model["slug"], "license": model["license"]},
            version=catalog_mirrors.MirroredVersion(
                label=model["version"]["label"],
                release_notes="",
                published_at=model["version"]["published_at"],
                files=[
                    catalog_mirrors.MirroredFile(
                        filename=file["filename"],
                        sha256=file["sha256"],
                        size=file["size"],
                        format=file["format"],
                        unsafe=False,
                        # Bytes a peer lends for its job, maybe of a non-public version: kept
                        # with no origin, so no mirrored record (a public one naming the same
                        # digest) ever makes them readable here.
                        url="",
                    )
                    for file in files
                ],
            ),
            public=model["public"],
        )
    except catalog_mirrors.MissingReference as error:
        raise ValidationError(
            {"model": f"This node does not know the model's institution ({error})."}
        ) from error
    except IntegrityError as error:
        raise ValidationError(
            {"model": "This node holds another model of yours under that slug or version."}
        ) from error
    reproduction_of = None
    if fields.get("reproduction_of"):
        reproduction_of = resolve(Result, fields["reproduction_of"])
        # Only a public result of this very model version on this benchmark: a peer cannot
        # pin a reproduction on any result it likes.
        if (
            reproduction_of is None
            or reproduction_of.model_version_id != version.pk
            or reproduction_of.benchmark_id != benchmark.pk
            or not evaluation_selectors.result_list(user=AnonymousUser())
            .filter(pk=reproduction_of.pk)
            .exists()
        ):
            raise ValidationError(
                {
                    "reproduction_of": "No such public result on this node, of this model "
                    "version on this benchmark."
                }
            )
    inbound = InboundJob.objects.create(
        peer=peer,
        request_id=request_id,
        allocation=allocation,
        model_version=version,
        benchmark=benchmark,
        reproduction_of=reproduction_of,
        requested_by=fields["requested_by"],
    )
    from apps.federation.tasks import evaluation_prepare_task

    transaction.on_commit(lambda: evaluation_prepare_task.delay(inbound.pk))
    return inbound, True


def _fail(inbound: InboundJob, reason: str) -> None:
    InboundJob.objects.filter(pk=inbound.pk, state=InboundJob.State.PREPARING).update(
        state=InboundJob.State.FAILED, reason=reason[:4000]
    )
    outcome_deliver_soon(inbound.pk)


def evaluation_prepare(*, inbound_id: int) -> InboundJob:
    """Fetches the model's files from the peer, checks them, and queues the job."""
    inbound = InboundJob.objects.select_related("peer", "model_version", "allocation").get(
        pk=inbound_id
    )
    if inbound.state != InboundJob.State.PREPARING:
        return inbound
    for model_file in inbound.model_version.files.select_related("artifact"):
        artifact = model_file.artifact
        # Bytes of this node are fetched too: naming a digest of ours proves nothing, so the
        # peer shows it holds them (the same bytes, nothing new is stored).
        if artifact.storage_name and artifact.origin_url:
            continue
        try:
            artifact_fetch_from_origin(
                artifact,
                peer=inbound.peer,
                url=_file_url(inbound.peer, str(inbound.request_id), artifact.sha256),
            )
        except client.FederationError as error:
            _fail(inbound, f"The model file {model_file.filename} could not be fetched: {error}")
            return inbound
        except Exception:  # out of time, out of disk: the job fails, it never hangs
            logger.exception("Preparing %s failed", inbound)
            _fail(inbound, f"The model file {model_file.filename} could not be stored here.")
            raise
    try:
        with transaction.atomic():
            locked = InboundJob.objects.select_for_update().get(pk=inbound.pk)
            if locked.state != InboundJob.State.PREPARING:
                return locked
            job = peer_jobs.peer_job_submit(
                institution=inbound.allocation.institution,
                allocation_id=inbound.allocation_id,
                model_version=inbound.model_version,
                benchmark=inbound.benchmark,
                requested_by=inbound.requested_by or "a researcher",
            )
            locked.job = job
            locked.state = InboundJob.State.QUEUED
            locked.save(update_fields=["job", "state"])
            return locked
    except ValidationError as error:
        messages = error.message_dict if hasattr(error, "error_dict") else {"": error.messages}
        _fail(inbound, " ".join(" ".join(texts) for texts in messages.values()))
        return inbound


def _state(inbound: InboundJob) -> str:
    if inbound.state == InboundJob.State.QUEUED and inbound.job is not None:
        return inbound.job.state
    return {
        InboundJob.State.PREPARING: "preparing",
        InboundJob.State.FAILED: "failed",
        InboundJob.State.CANCELLED: "cancelled",
    }[InboundJob.State(inbound.state)]


def _usage_record(inbound: InboundJob, state: str) -> dict[str, Any]:
    """The signed record of what the job cost the grant: what the peer shows as its figure."""
    job = inbound.job
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [
            {
                "name": f"evaluation/{inbound.request_id}",
                "digest": {"sha256": hashlib.sha256(str(inbound.request_id).encode()).hexdigest()},
            }
        ],
        "predicateType": USAGE_PREDICATE_TYPE,
        "predicate": {
            "node": settings.FEDERATION_NODE_URL,
            "request_id": str(inbound.request_id),
            "grant": str(inbound.allocation_id),
            "job": job.pk if job else None,
            "state": state,
            "gpu_seconds": job.gpu_seconds if job else 0,
            "charged": job.charged if job else False,
            "started_at": job.started_at.isoformat() if job and job.started_at else None,
            "finished_at": job.finished_at.isoformat() if job and job.finished_at else None,
        },
    }
    return attestations.sign_statement(statement)


def _result(result: Result) -> dict[str, Any]:
    # What an anonymous reader of a public result sees: no host details, GPU serials or mounts.
    result.sees_dataset = True  # type: ignore[attr-defined]
    node = result.node
    return {
        "id": str(result.pk),
        "url": settings.FEDERATION_NODE_URL
        + reverse("evaluations:result-detail", args=[result.pk]),
        "attempt": result.attempt,
        "metrics": result.metrics,
        "provenance": evaluation_selectors.result_provenance(result),
        "isolation": result.isolation,
        "gpu_seconds": result.gpu_seconds,
        "started_at": result.started_at.isoformat() if result.started_at else None,
        "finished_at": result.finished_at.isoformat() if result.finished_at else None,
        "ran_by_institution": node.institution.name if node else "",
        "attestation": attestations.result_attestation(result),
    }


def evaluation_status(inbound: InboundJob) -> dict[str, Any]:
    """What the peer may know of its job: state and reason, place in our queue, the end of its
    log, the grant's figures, and once it ended the signed usage record and the result."""
    job = inbound.job
    state = _state(inbound)
    wait = peer_jobs.peer_job_wait(job) if job else None
    status: dict[str, Any] = {
        "request_id": str(inbound.request_id),
        "state": state,
        "reason": inbound.reason or (job.failure_reason if job else ""),
        "job": job.pk if job else None,
        "attempt": job.attempt if job else 0,
        "queue_position": wait.position if wait else None,
        "queue_estimated_start": wait.estimated_start.isoformat()
        if wait and wait.estimated_start
        else None,
        "queue_explanation": wait.explanation if wait else "",
        "log_tail": peer_jobs.peer_job_log_tail(job) if job else "",
        "grant": grant_payload(inbound.allocation),
        "usage": None,
        "result": None,
    }
    if state in EVALUATION_FINISHED_STATES:
        status["usage"] = _usage_record(inbound, state)
        result = Result.objects.filter(job=job).select_related("node__institution").first()
        if state == "succeeded" and result is not None:
            status["result"] = _result(result)
    return status


def inbound_get(*, peer: Peer, request_id: str) -> InboundJob:
    inbound = (
        InboundJob.objects.select_related("job", "allocation__institution")
        .filter(peer=peer, request_id=request_id)
        .first()
    )
    if inbound is None:
        raise Http404("No evaluation of yours with this request id.")
    return inbound


def evaluation_cancel(*, peer: Peer, request_id: str, reason: str) -> InboundJob:
    """The peer's researcher cancels. Before the job reached the pool it costs nothing; after,
    as when a submitter cancels here, the run time so far is charged."""
    with transaction.atomic():
        inbound = InboundJob.objects.select_for_update().get(
            pk=inbound_get(peer=peer, request_id=request_id).pk
        )
        if inbound.state == InboundJob.State.PREPARING:
            inbound.state = InboundJob.State.CANCELLED
            inbound.reason = f"Cancelled by the requester before it was queued. {reason}".strip()
            inbound.save(update_fields=["state", "reason"])
            outcome_deliver_soon(inbound.pk)
            return inbound
        if inbound.job is None or not inbound.job.is_active:
            raise ValidationError({"state": f"The evaluation is already {_state(inbound)}."})
        peer_jobs.peer_job_cancel(job=inbound.job, reason=reason)
    return inbound_get(peer=peer, request_id=request_id)


def is_finished(inbound: InboundJob) -> bool:
    return _state(inbound) in EVALUATION_FINISHED_STATES


def outcome_deliver_soon(inbound_id: int) -> None:
    from apps.federation.tasks import outcome_deliver_task

    transaction.on_commit(lambda: outcome_deliver_task.delay(inbound_id))


def _retry_delay(attempts: int) -> timedelta:
    base = settings.FEDERATION_DELIVERY_RETRY_SECONDS
    return timedelta(seconds=min(base * 2 ** max(attempts - 1, 0), 3600))


def outcome_deliver(*, inbound_id: int) -> bool:
    """Sends the finished job's outcome to the peer; on failure, schedules the next try."""
    inbound = (
        InboundJob.objects.select_related("peer", "job", "allocation__institution")
        .filter(pk=inbound_id, delivered_at=None)
        .first()
    )
    if inbound is None or not is_finished(inbound):
        return False
    path = REQUESTED_OUTCOME_PATH.format(request_id=inbound.request_id)
    try:
        client.peer_call(inbound.peer, "POST", path, json=evaluation_status(inbound))
    except client.FederationError as error:
        attempts = inbound.delivery_attempts + 1
        InboundJob.objects.filter(pk=inbound.pk).update(
            delivery_attempts=attempts,
            next_delivery_at=timezone.now() + _retry_delay(attempts),
            last_delivery_error=str(error)[:2000],
        )
        logger.warning("Outcome of %s not delivered to %s: %s", inbound, inbound.peer, error)
        return False
    InboundJob.objects.filter(pk=inbound.pk).update(
        delivered_at=timezone.now(),
        delivery_attempts=inbound.delivery_attempts + 1,
        last_delivery_error="",
    )
    return True


def outcomes_deliver_due() -> int:
    """Every finished job's outcome not yet delivered and due for a try (the beat's sweep,
    which also covers a delivery task lost with the broker)."""
    finished = Q(state__in=(InboundJob.State.FAILED, InboundJob.State.CANCELLED)) | Q(
        job__state__in=Job.FINISHED_STATES
    )
    due = InboundJob.objects.filter(
        finished,
        Q(next_delivery_at=None) | Q(next_delivery_at__lte=timezone.now()),
        delivered_at=None,
        peer__state=Peer.State.APPROVED,
    ).values_list("pk", flat=True)
    delivered = 0
    for inbound_id in list(due.order_by("next_delivery_at", "pk")[:200]):
        try:
            delivered += outcome_deliver(inbound_id=inbound_id)
        except Exception:  # one outcome's trouble must not hold back the others
            logger.exception("Delivering the outcome of inbound job %s failed", inbound_id)
    return delivered


def evaluations_prepare_stuck() -> None:
    """Requests still preparing long after they came (their task lost with a flushed broker)
    get a new preparation task, at most once per PREPARE_RETRY_SECONDS each."""
    from apps.federation.tasks import evaluation_prepare_task

    stale = timezone.now() - timedelta(seconds=PREPARE_RETRY_SECONDS)
    for inbound_id in InboundJob.objects.filter(
        state=InboundJob.State.PREPARING, created_at__lt=stale
    ).values_list("pk", flat=True)[:50]:
        if cache.add(f"federation:prepare:{inbound_id}", 1, timeout=PREPARE_RETRY_SECONDS):
            evaluation_prepare_task.delay(inbound_id)


def inbound_jobs_withdraw(*, peer: Peer) -> int:
    """The peering was revoked: the peer's jobs still preparing or queued here stop, at no
    cost to its grant (it will hear nothing more from us)."""
    reason = f"Stopped: the peering with {peer.node_id} was revoked."
    stopped = InboundJob.objects.filter(peer=peer, state=InboundJob.State.PREPARING).update(
        state=InboundJob.State.CANCELLED, reason=reason
    )
    for job in Job.objects.filter(inbound__peer=peer, state__in=Job.ACTIVE_STATES):
        compute_services.job_withdraw(job=job, reason=reason)
        stopped += 1
    return stopped
