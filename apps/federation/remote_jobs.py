"""Evaluations researchers here run on a peer's GPUs (the peer's side is inbound_jobs.py).

A peer grants GPU-hours to one of our institutions (grants.py); a member submits an evaluation
of one of our published model versions on a benchmark the peer holds, under that grant. We check
what we can, commit the request, and send it signed; the peer answers accepted or refused with
its reason. We follow the job (state, queue position, log tail), can cancel it, and receive its
outcome: a signed usage record (the figure both nodes show) and, when it succeeded, the result
with the peer's signed attestation, verified against the peer's pinned keys before anything is
stored. The outcome is taken once: a copy delivered again changes nothing.
"""

import contextlib
import logging
import uuid
from datetime import datetime
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import Http404
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework import serializers

from apps.accounts.models import Institution, User
from apps.catalog import selectors as catalog_selectors
from apps.catalog.models import Artifact, Benchmark, ModelFile, ModelVersion, Visibility
from apps.compute.models import Allocation
from apps.evaluations import selectors as evaluation_selectors
from apps.evaluations.models import AttestationStatus, Result
from apps.evaluations.remote_results import remote_result_record
from apps.federation import attestations, client, grants, notifications
from apps.federation.contract import (
    EVALUATION_CANCEL_PATH,
    EVALUATION_FINISHED_STATES,
    EVALUATION_PATH,
    EVALUATION_STATES,
    EVALUATIONS_PATH,
    USAGE_PREDICATE_TYPE,
)
from apps.federation.models import Peer, RemoteJob
from apps.federation.references import reference

logger = logging.getLogger(__name__)

State = RemoteJob.State
NO_GRANT = "No such grant of a peer node to an institution of yours."
NO_MODEL_VERSION = "No such published model version of this node that you can see."
NO_BENCHMARK = "No such public benchmark that you can see."


def _grant_for(user: User, allocation_id: int) -> Allocation:
    allocation = (
        Allocation.objects.select_related("institution")
        .filter(pk=allocation_id, institution__memberships__user=user)
        .exclude(origin_node="")
        .first()
    )
    if allocation is None:
        raise ValidationError({"allocation": NO_GRANT})
    now = timezone.now()
    if not allocation.starts_at <= now < allocation.ends_at:
        raise ValidationError(
            {
                "allocation": f"Grant '{allocation.name}' runs from "
                f"{allocation.starts_at:%Y-%m-%d} to {allocation.ends_at:%Y-%m-%d}."
            }
        )
    return allocation


def _peer_for(allocation: Allocation) -> Peer:
    peer = Peer.objects.filter(node_id=allocation.origin_node).first()
    if peer is None or not peer.is_approved:
        state = peer.get_state_display().lower() if peer else "unknown"
        raise ValidationError(
            {"allocation": f"The node that made this grant is not an approved peer ({state})."}
        )
    return peer


@transaction.atomic
def _remote_job_create(
    *,
    user: User,
    model_version_id: int,
    benchmark_id: int,
    allocation_id: int,
    reproduction_of_id: int | None,
) -> RemoteJob:
    allocation = _grant_for(user, allocation_id)
    peer = _peer_for(allocation)
    version = (
        ModelVersion.objects.filter(
            catalog_selectors.visible_to(user, "model__"),
            pk=model_version_id,
            model__origin_node="",
            published_at__isnull=False,
        )
        .select_related("model")
        .first()
    )
    if version is None:
        raise ValidationError({"model_version": NO_MODEL_VERSION})
    if version.files.filter(artifact__unsafe=True).exists():
        raise ValidationError(
            {
                "model_version": f"Version {version.label} holds pickle-based files, which run "
                "code when loaded: no pool evaluates them."
            }
        )
    benchmark = Benchmark.objects.filter(
        catalog_selectors.visible_to(user), pk=benchmark_id, visibility=Visibility.PUBLIC
    ).first()
    if benchmark is None:
        raise ValidationError({"benchmark": NO_BENCHMARK})
    original = None
    if reproduction_of_id is not None:
        original = (
            evaluation_selectors.result_list(user=user)
            .filter(pk=reproduction_of_id, model_version=version, benchmark=benchmark)
            .first()
        )
        if original is None:
            raise ValidationError(
                {
                    "reproduction_of": "No such result that you can see, of this model version "
                    "on this benchmark."
                }
            )
    return RemoteJob.objects.create(
        request_id=uuid.uuid4(),
        peer=peer,
        allocation=allocation,
        submitter=user,
        institution=allocation.institution,
        model_version=version,
        benchmark=benchmark,
        reproduction_of=original,
    )


def remote_job_submit(
    *,
    user: User,
    model_version_id: int,
    benchmark_id: int,
    allocation_id: int,
    reproduction_of_id: int | None = None,
) -> RemoteJob:
    """Checks and records the request (committed first: the peer fetches the model's files
    from us as soon as it accepts), then sends it. Returns the job with the peer's answer:
    accepted (and following the peer's state), refused with its reason, or still sending when
    the peer did not answer (the beat sends it again)."""
    remote_job = _remote_job_create(
        user=user,
        model_version_id=model_version_id,
        benchmark_id=benchmark_id,
        allocation_id=allocation_id,
        reproduction_of_id=reproduction_of_id,
    )
    return remote_job_send(remote_job)


def _request(remote_job: RemoteJob) -> dict[str, Any]:
    version = remote_job.model_version
    model = version.model
    user = remote_job.submitter
    files = ModelFile.objects.filter(version=version).select_related("artifact")
    return {
        "request_id": str(remote_job.request_id),
        "grant": int(remote_job.allocation.origin_id),
        "institution": str(remote_job.institution_id),
        "requested_by": f"{user.get_full_name() or user.username} ({user.username})"[:200],
        "model": {
            "id": str(model.pk),
            "institution": str(model.institution_id),
            "name": model.name,
            "slug": model.slug,
            "license": model.license,
            "public": model.visibility == Visibility.PUBLIC,
            "version": {
                "label": version.label,
                "published_at": version.published_at.isoformat() if version.published_at else "",
                "files": [
                    {
                        "filename": file.filename,
                        "sha256": file.artifact.sha256,
                        "size": file.artifact.size,
                        "format": file.artifact.format,
                    }
                    for file in files
                ],
            },
        },
        "benchmark": reference(remote_job.benchmark),
        "reproduction_of": reference(remote_job.reproduction_of)
        if remote_job.reproduction_of
        else None,
    }


def _refused(error: client.PeerRefused) -> bool:
    """A refusal that is the peer's answer to this request (it checked it and said no), not a
    passing trouble worth sending again: a signature the peer could not check yet (a key it
    has not fetched, clocks apart), a suspension that may be lifted, a busy peer."""
    return error.status in (400, 404, 413, 422)


def remote_job_send(remote_job: RemoteJob) -> RemoteJob:
    remote_job = RemoteJob.objects.select_related(
        "peer", "allocation", "model_version__model", "submitter", "benchmark", "reproduction_of"
    ).get(pk=remote_job.pk)
    if remote_job.state != State.SENDING:
        return remote_job
    try:
        answer = client.peer_call(
            remote_job.peer, "POST", EVALUATIONS_PATH, json=_request(remote_job)
        )
    except client.PeerRefused as error:
        if not _refused(error):
            return _note_error(remote_job, error)
        with transaction.atomic():
            refused = RemoteJob.objects.filter(pk=remote_job.pk, state=State.SENDING).update(
                state=State.REFUSED, reason=error.message[:4000], finished_at=timezone.now()
            )
            remote_job = RemoteJob.objects.get(pk=remote_job.pk)
            if refused:
                notifications.remote_job_finished_emit(remote_job)
        return remote_job
    except client.FederationError as error:
        return _note_error(remote_job, error)
    try:
        return remote_job_apply(remote_job_id=remote_job.pk, data=answer)
    except PEER_DATA_ERRORS as error:
        return _note_error(remote_job, error)


# What a peer's answer that does not hold raises while it is applied.
PEER_DATA_ERRORS = (ValidationError, serializers.ValidationError)


def _note_error(remote_job: RemoteJob, error: Exception) -> RemoteJob:
    RemoteJob.objects.filter(pk=remote_job.pk).update(last_error=str(error)[:2000])
    logger.warning("Remote job %s: %s", remote_job.request_id, error)
    return RemoteJob.objects.get(pk=remote_job.pk)


class ResultInput(serializers.Serializer):
    id = serializers.RegexField(r"^[0-9]{1,18}$")
    url = serializers.URLField(max_length=500)
    attempt = serializers.IntegerField(min_value=1, max_value=1000)
    metrics = serializers.DictField()
    provenance = serializers.DictField()
    isolation = serializers.CharField(max_length=16, allow_blank=True)
    gpu_seconds = serializers.FloatField(min_value=0)
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    ran_by_institution = serializers.CharField(max_length=200, allow_blank=True)
    attestation = serializers.JSONField(allow_null=True)


class StatusInput(serializers.Serializer):
    request_id = serializers.UUIDField()
    state = serializers.ChoiceField(choices=EVALUATION_STATES)
    reason = serializers.CharField(max_length=20_000, allow_blank=True, trim_whitespace=False)
    job = serializers.IntegerField(allow_null=True, min_value=1)
    attempt = serializers.IntegerField(min_value=0, max_value=1000)
    queue_position = serializers.IntegerField(allow_null=True, min_value=1)
    log_tail = serializers.CharField(max_length=100_000, allow_blank=True, trim_whitespace=False)
    grant = serializers.DictField()
    usage = serializers.JSONField(allow_null=True)
    result = ResultInput(allow_null=True)


def _refuse(message: str) -> ValidationError:
    return ValidationError({"outcome": message})


def _usage_figure(peer: Peer, remote_job: RemoteJob, envelope: Any) -> int:
    """The GPU-seconds the peer's signed usage record states for this job."""
    if not isinstance(envelope, dict):
        raise _refuse("A finished evaluation comes with its signed usage record.")
    now = timezone.now()
    keys = {
        key.key_id: key.public_key
        for key in peer.keys.all()
        if key.retiring_until is None or key.retiring_until > now
    }
    try:
        statement = attestations.verify_envelope(envelope, keys)
    except attestations.AttestationInvalid as error:
        raise _refuse(f"The usage record's signature does not hold: {error}") from error
    predicate = statement.get("predicate")
    if (
        statement.get("predicateType") != USAGE_PREDICATE_TYPE
        or not isinstance(predicate, dict)
        or predicate.get("request_id") != str(remote_job.request_id)
        or predicate.get("node") != peer.node_id
    ):
        raise _refuse("The usage record is not about this evaluation.")
    seconds = predicate.get("gpu_seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
        raise _refuse("The usage record's gpu_seconds is not a whole number of seconds.")
    return seconds


def _signed(predicate: dict[str, Any], *path: str) -> Any:
    value: Any = predicate
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _store_result(peer: Peer, remote_job: RemoteJob, data: dict[str, Any]) -> Result:
    """Stores the peer's result of this job once its attestation holds. What the result says
    of itself (its id and page there, GPU-seconds, times, who ran it, isolation) is taken from
    the signed statement, never from the unsigned answer around it."""
    version, benchmark = remote_job.model_version, remote_job.benchmark
    try:
        status = attestations.verify_peer_result(
            peer=peer,
            envelope=data["attestation"],
            metrics=data["metrics"],
            model_sha256s=list(version.files.values_list("artifact__sha256", flat=True)),
            dataset_sha256s=list(
                benchmark.dataset.files.values_list("artifact__sha256", flat=True)
            ),
            live=True,
        )
    except attestations.AttestationRefused as error:
        raise _refuse(f"The result's attestation does not hold: {error}") from error
    if status != AttestationStatus.VERIFIED:
        raise _refuse("The result carries no attestation signed by a key pinned for the peer.")
    predicate = attestations.statement_unverified(data["attestation"])["predicate"]
    origin_id = str(_signed(predicate, "result", "id") or "")
    if not origin_id or origin_id != data["id"]:
        raise _refuse("The result's id is not the one its attestation names.")
    if Result.objects.filter(origin_node=peer.node_id, origin_id=origin_id).exists():
        raise _refuse(f"Result {origin_id} of the peer is already stored here, for another job.")
    provenance = dict(data["provenance"])
    provenance["isolation"] = _signed(predicate, "isolation") or {}
    gpu_seconds = _signed(predicate, "gpu_seconds")
    return remote_result_record(
        node=peer.node_id,
        origin_id=origin_id,
        origin_url=str(_signed(predicate, "result", "url") or "")[:500],
        model_version=version,
        benchmark=benchmark,
        institution=Institution.objects.get(pk=remote_job.institution_id),
        attempt=data["attempt"],
        metrics=data["metrics"],
        provenance=provenance,
        gpu_seconds=float(gpu_seconds) if isinstance(gpu_seconds, int | float) else 0.0,
        started_at=_signed_time(predicate, "started_at"),
        finished_at=_signed_time(predicate, "finished_at"),
        ran_by_institution=str(_signed(predicate, "ran_by", "institution", "name") or ""),
        attestation=data["attestation"],
        attestation_status=status,
        reproduction_of=remote_job.reproduction_of,
    )


def _signed_time(predicate: dict[str, Any], key: str) -> datetime | None:
    value = predicate.get(key)
    try:
        return parse_datetime(value) if isinstance(value, str) else None
    except ValueError:
        return None


@transaction.atomic
def remote_job_apply(*, remote_job_id: int, data: Any) -> RemoteJob:
    """Takes what the peer says of the job: an answer to the request, a status read, or its
    outcome. Anything that does not hold (a usage record or attestation whose signature fails,
    a result that does not match our files) is refused whole: nothing is stored."""
    remote_job = (
        RemoteJob.objects.select_for_update(of=("self",))
        .select_related("peer", "allocation", "model_version", "benchmark__dataset")
        .get(pk=remote_job_id)
    )
    status = StatusInput(data=data)
    status.is_valid(raise_exception=True)
    fields = status.validated_data
    if fields["request_id"] != remote_job.request_id:
        raise _refuse("The status is about another evaluation.")
    peer = remote_job.peer
    if remote_job.state in RemoteJob.FINISHED_STATES:
        if remote_job.usage_record is None and fields["state"] in EVALUATION_FINISHED_STATES:
            # Cancelled here while the request was on its way, yet the peer ran it: both nodes
            # still show the figure it charged.
            remote_job.gpu_seconds = _usage_figure(peer, remote_job, fields["usage"])
            remote_job.usage_record = fields["usage"]
            remote_job.save(update_fields=["gpu_seconds", "usage_record", "updated_at"])
        return remote_job  # taken once; a copy delivered again changes nothing
    if str(fields["grant"].get("id")) != remote_job.allocation.origin_id:
        raise _refuse("The status names another grant.")
    grants.grant_receive(peer=peer, data=fields["grant"])
    state = fields["state"]
    remote_job.peer_job_id = fields["job"]
    remote_job.attempt = fields["attempt"]
    remote_job.queue_position = fields["queue_position"]
    remote_job.reason = fields["reason"][:4000]
    if state in EVALUATION_FINISHED_STATES:
        remote_job.gpu_seconds = _usage_figure(peer, remote_job, fields["usage"])
        remote_job.usage_record = fields["usage"]
        if state == State.SUCCEEDED:
            if fields["result"] is None:
                raise _refuse("A succeeded evaluation comes with its result.")
            remote_job.result = _store_result(peer, remote_job, fields["result"])
        remote_job.finished_at = timezone.now()
    remote_job.state = state
    remote_job.last_error = ""
    remote_job.save()
    if state in EVALUATION_FINISHED_STATES:
        notifications.remote_job_finished_emit(remote_job)
    return remote_job


def remote_job_refresh(remote_job: RemoteJob) -> tuple[RemoteJob, dict[str, Any] | None]:
    """Reads the job's status from the peer (and its outcome once it ended). Returns the job
    and what the peer said (None when it could not be reached or did not hold)."""
    if remote_job.state == State.SENDING:
        return remote_job_send(remote_job), None
    if not remote_job.is_active:
        return remote_job, None
    path = EVALUATION_PATH.format(request_id=remote_job.request_id)
    try:
        answer = client.peer_call(remote_job.peer, "GET", path)
        return remote_job_apply(remote_job_id=remote_job.pk, data=answer), answer
    except (client.FederationError, *PEER_DATA_ERRORS) as error:
        return _note_error(remote_job, error), None


def remote_jobs_refresh_due() -> None:
    """The beat follows every job still active at a peer (and sends requests not yet sent)."""
    due = (
        RemoteJob.objects.filter(state__in=RemoteJob.ACTIVE_STATES, peer__state=Peer.State.APPROVED)
        .select_related("peer")
        .order_by("updated_at")[:200]
    )
    for remote_job in due:
        try:
            remote_job_refresh(remote_job)
        except Exception:  # one job's trouble must not stop the others being followed
            logger.exception("Following remote job %s failed", remote_job.request_id)


def remote_job_require_canceller(*, user: User, remote_job: RemoteJob) -> None:
    from apps.accounts.selectors import user_can_manage_institution

    if user.pk != remote_job.submitter_id and not user_can_manage_institution(
        user=user, institution=remote_job.institution
    ):
        raise PermissionDenied("Only the submitter or an admin of the institution can cancel it.")


def remote_job_cancel(*, user: User, remote_job: RemoteJob, reason: str = "") -> RemoteJob:
    """Asks the peer to stop the job; its answer (the job's new state) is taken at once."""
    remote_job_require_canceller(user=user, remote_job=remote_job)
    if not remote_job.is_active:
        raise ValidationError(
            {"state": f"The job is already {remote_job.get_state_display().lower()}."}
        )
    path = EVALUATION_CANCEL_PATH.format(request_id=remote_job.request_id)
    if remote_job.state == State.SENDING:
        with transaction.atomic():
            cancelled = RemoteJob.objects.filter(pk=remote_job.pk, state=State.SENDING).update(
                state=State.CANCELLED, reason="Cancelled before the peer answered.",
                finished_at=timezone.now(),
            )  # fmt: skip
            if cancelled:
                notifications.remote_job_finished_emit(RemoteJob.objects.get(pk=remote_job.pk))
        # The request may have reached the peer although its answer did not reach us. If the
        # peer never got it, or runs it anyway, there is nothing to undo: its figure is taken.
        with contextlib.suppress(client.FederationError):
            client.peer_call(remote_job.peer, "POST", path, json={"reason": "by the requester"})
        return RemoteJob.objects.get(pk=remote_job.pk)
    try:
        client.peer_call(
            remote_job.peer, "POST", path, json={"reason": f"by {user.username}. {reason}".strip()}
        )
    except client.PeerRefused as error:
        raise ValidationError({"state": error.message}) from error
    except client.FederationError as error:
        raise ValidationError(
            {"state": f"The peer could not be reached to cancel the job: {error}"}
        ) from error
    return remote_job_refresh(remote_job)[0]


def outcome_receive(*, peer: Peer, request_id: str, data: Any) -> RemoteJob:
    remote_job = RemoteJob.objects.filter(request_id=request_id, peer=peer).first()
    if remote_job is None:
        raise Http404("No evaluation this node asked yours to run has this id.")
    return remote_job_apply(remote_job_id=remote_job.pk, data=data)


def requested_file(*, peer: Peer, request_id: str, sha256: str) -> tuple[Artifact, str]:
    """A file of the model version of a job we asked the peer to run, while it is active:
    the only way a non-public version's files leave this node."""
    remote_job = (
        RemoteJob.objects.filter(
            request_id=request_id, peer=peer, state__in=RemoteJob.ACTIVE_STATES
        )
        .select_related("model_version")
        .first()
    )
    if remote_job is None:
        raise Http404("No active evaluation this node asked yours to run has this id.")
    file = (
        ModelFile.objects.filter(version=remote_job.model_version, artifact__sha256=sha256)
        .select_related("artifact")
        .first()
    )
    if file is None:
        raise Http404("The job's model version has no file with this sha256.")
    return file.artifact, file.filename


def remote_job_list(*, user: Any) -> Any:
    """The remote jobs a viewer may follow: their institutions' (all of them for staff)."""
    jobs = RemoteJob.objects.select_related(
        "peer", "allocation", "institution", "model_version__model", "benchmark", "submitter"
    )
    if not getattr(user, "is_authenticated", False):
        return jobs.none()
    if user.is_staff:
        return jobs
    return jobs.filter(institution__memberships__user=user)


def remote_job_get(*, user: Any, remote_job_id: int) -> RemoteJob:
    # Its own transaction: the views that call it run outside a request transaction, and an
    # id the database cannot hold must not break the connection for what follows.
    with transaction.atomic():
        remote_job = remote_job_list(user=user).filter(pk=remote_job_id).first()
    if remote_job is None:
        raise Http404("No such remote job that you can see.")
    return remote_job


def grants_held_at_peers(*, user: User) -> Any:
    """Current grants of peer nodes to the user's institutions: what a remote job spends."""
    now = timezone.now()
    return (
        Allocation.objects.filter(
            institution__memberships__user=user, starts_at__lte=now, ends_at__gt=now
        )
        .exclude(origin_node="")
        .select_related("institution")
        .order_by("institution__name", "name")
    )


@transaction.atomic
def remote_jobs_end(*, peer: Peer) -> int:
    """The peering was revoked: our jobs at that peer end here (it will not be asked again)."""
    active = RemoteJob.objects.select_for_update().filter(
        peer=peer, state__in=RemoteJob.ACTIVE_STATES
    )
    ended = list(active.values_list("pk", flat=True))
    RemoteJob.objects.filter(pk__in=ended).update(
        state=State.FAILED,
        reason=f"The peering with {peer.node_id} was revoked before the job ended.",
        finished_at=timezone.now(),
    )
    for remote_job in RemoteJob.objects.filter(pk__in=ended).select_related(
        "peer", "model_version__model", "benchmark", "submitter", "institution", "result"
    ):
        notifications.remote_job_finished_emit(remote_job)
    return len(ended)
