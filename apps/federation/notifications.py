"""What federation tells people, as events (apps.events): an evaluation a researcher here ran
on a peer's GPUs that ended, a peer's grant to one of our institutions, a node asking to
peer. Each is recorded in the transaction of the change."""

from typing import Any

from django.urls import reverse

from apps.accounts.models import User
from apps.compute.models import Allocation
from apps.compute.notifications import evaluation_summary, grant_received_emit
from apps.events.models import EventType
from apps.events.services import event_emit
from apps.federation.models import Peer, RemoteJob

State = RemoteJob.State
REMOTE_JOB_EVENT_TYPES: dict[str, EventType] = {
    State.SUCCEEDED: EventType.JOB_SUCCEEDED,
    State.FAILED: EventType.JOB_FAILED,
    State.REFUSED: EventType.JOB_FAILED,
    State.TIMED_OUT: EventType.JOB_TIMED_OUT,
    State.CANCELLED: EventType.JOB_CANCELLED,
}
REMOTE_STATE_WORDS: dict[str, str] = {
    State.SUCCEEDED: "succeeded",
    State.FAILED: "failed",
    State.REFUSED: "was refused",
    State.TIMED_OUT: "timed out",
    State.CANCELLED: "was cancelled",
}


def _peer_name(peer: Peer) -> str:
    return peer.name or peer.node_id


def remote_job_finished_emit(remote_job: RemoteJob) -> None:
    """Tells the submitter (and the institution's webhooks) that their evaluation at a peer
    ended, with the result's metrics when it succeeded."""
    if remote_job.state not in REMOTE_JOB_EVENT_TYPES:
        return
    version = remote_job.model_version
    benchmark = remote_job.benchmark
    result = remote_job.result
    metrics: dict[str, Any] = dict(result.metrics) if result is not None else {}
    peer = _peer_name(remote_job.peer)
    state = State.FAILED if remote_job.state == State.REFUSED else remote_job.state
    event_emit(
        type=REMOTE_JOB_EVENT_TYPES[remote_job.state],
        summary=evaluation_summary(
            what=f"Remote job {remote_job.pk} at {peer}",
            state_words=REMOTE_STATE_WORDS[remote_job.state],
            model=f"{version.model.name} {version.label}",
            benchmark=benchmark.name,
            metrics=metrics,
            declared=benchmark.metrics,
        ),
        data={
            "remote_job": remote_job.pk,
            "request_id": str(remote_job.request_id),
            "peer": remote_job.peer.node_id,
            "peer_job": remote_job.peer_job_id,
            "state": state,
            "model": {"id": version.model_id, "name": version.model.name, "version": version.label},
            "benchmark": {"id": benchmark.pk, "name": benchmark.name},
            "failure_reason": "" if state == State.SUCCEEDED else remote_job.reason,
            "metrics": metrics,
            "result": result.pk if result is not None else None,
            "gpu_hours": round((remote_job.gpu_seconds or 0) / 3600, 4),
        },
        users=[remote_job.submitter],
        institution=remote_job.institution,
        url=reverse("federation:remote-job-detail", args=[remote_job.pk]),
    )


def peer_grant_received_emit(allocation: Allocation, *, peer: Peer) -> None:
    grant_received_emit(allocation, granted_by=_peer_name(peer))


def peer_requested_emit(peer: Peer) -> None:
    """Tells every active staff member that a node asks to peer: they approve or refuse it."""
    name = _peer_name(peer)
    event_emit(
        type=EventType.PEER_REQUESTED,
        summary=f"{name} asks to peer with this node",
        data={"peer": peer.pk, "node_id": peer.node_id, "name": peer.name},
        users=User.objects.filter(is_staff=True, is_active=True),
        url=reverse("federation:peer-detail", args=[peer.pk]),
    )
