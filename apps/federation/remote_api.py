"""REST endpoints for researchers' evaluations on a peer's GPUs: submit under a grant the peer
made to their institution, follow (state, queue position, the peer's estimated start and its
reasons, log tail, read live from the peer), cancel. The node-to-node side lives in
protocol_views.py."""

from typing import Any

from django.db import transaction
from django.utils.decorators import method_decorator
from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_view
from rest_framework import generics, permissions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.typing import AuthenticatedRequest
from apps.core.serializers import StrictSerializer
from apps.federation import remote_jobs
from apps.federation.models import RemoteJob


class RemoteJobOutput(serializers.ModelSerializer):
    peer = serializers.CharField(source="peer.node_id")
    peer_name = serializers.CharField(source="peer.name")
    allocation = serializers.IntegerField(source="allocation_id")
    institution = serializers.SlugField(source="institution.slug")
    submitter = serializers.CharField(source="submitter.username")
    model = serializers.IntegerField(source="model_version.model_id")
    model_name = serializers.CharField(source="model_version.model.name")
    model_version = serializers.CharField(source="model_version.label")
    model_version_id = serializers.IntegerField()
    benchmark = serializers.IntegerField(source="benchmark_id")
    benchmark_name = serializers.CharField(source="benchmark.name")
    reproduction_of = serializers.IntegerField(source="reproduction_of_id", allow_null=True)
    result = serializers.IntegerField(source="result_id", allow_null=True)

    class Meta:
        model = RemoteJob
        fields = [
            "id",
            "request_id",
            "peer",
            "peer_name",
            "allocation",
            "institution",
            "submitter",
            "model",
            "model_name",
            "model_version",
            "model_version_id",
            "benchmark",
            "benchmark_name",
            "reproduction_of",
            "state",
            "reason",
            "peer_job_id",
            "queue_position",
            "attempt",
            "gpu_seconds",
            "result",
            "last_error",
            "submitted_at",
            "finished_at",
        ]


class RemoteJobDetailOutput(RemoteJobOutput):
    log_tail = serializers.SerializerMethodField(
        help_text="The end of the current attempt's output, as the peer has it now (null when "
        "the peer could not be asked)."
    )
    usage_record = serializers.JSONField(
        allow_null=True, help_text="The peer's signed usage record (a DSSE envelope)."
    )

    queue_estimated_start = serializers.SerializerMethodField(
        help_text="While the job waits in the peer's queue: when the peer estimates it starts "
        "(null when the peer could not be asked or gave no estimate)."
    )
    queue_explanation = serializers.SerializerMethodField(
        help_text="The peer's reasons for the wait, in words (null when it could not be asked "
        "or the job does not wait)."
    )

    class Meta(RemoteJobOutput.Meta):
        fields = [
            *RemoteJobOutput.Meta.fields,
            "queue_estimated_start",
            "queue_explanation",
            "log_tail",
            "usage_record",
        ]

    def get_log_tail(self, remote_job: RemoteJob) -> str | None:
        return self.context.get("log_tail")

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_queue_estimated_start(self, remote_job: RemoteJob) -> str | None:
        queue = self.context.get("queue") or {}
        start = queue.get("queue_estimated_start")
        return serializers.DateTimeField().to_representation(start) if start else None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_queue_explanation(self, remote_job: RemoteJob) -> str | None:
        queue = self.context.get("queue")
        return (queue or {}).get("queue_explanation") or None


class PeerQueueInput(serializers.Serializer):
    """The estimate a peer adds to its status of a pending job (older peers send none)."""

    queue_estimated_start = serializers.DateTimeField(allow_null=True, required=False, default=None)
    queue_explanation = serializers.CharField(
        max_length=2000, allow_blank=True, required=False, default=""
    )


class RemoteJobInput(StrictSerializer):
    model_version = serializers.IntegerField(min_value=1, max_value=2**62)
    benchmark = serializers.IntegerField(min_value=1, max_value=2**62)
    allocation = serializers.IntegerField(
        min_value=1, max_value=2**62, help_text="A peer's grant to your institution."
    )
    reproduction_of = serializers.IntegerField(
        min_value=1,
        max_value=2**62,
        required=False,
        allow_null=True,
        default=None,
        help_text="The result (same model version and benchmark) this evaluation reproduces.",
    )


class RemoteJobCancelInput(StrictSerializer):
    reason = serializers.CharField(max_length=500, allow_blank=True, required=False, default="")


def _detail(remote_job: RemoteJob, answer: dict[str, Any] | None) -> dict[str, Any]:
    log_tail = answer.get("log_tail") if isinstance(answer, dict) else None
    queue = None
    if isinstance(answer, dict):
        reading = PeerQueueInput(data=answer)
        queue = reading.validated_data if reading.is_valid() else None
    context = {"log_tail": log_tail, "queue": queue}
    return RemoteJobDetailOutput(remote_job, context=context).data


@method_decorator(transaction.non_atomic_requests, name="dispatch")
class OutsideRequestTransaction(APIView):
    """Views that talk to a peer run outside a request transaction: a request is committed
    before the peer hears of it (it fetches the model's files from us at once), and no
    transaction waits on a peer's answer. The services open their own transactions."""

    def handle_exception(self, exc: Exception) -> Response:
        # DRF marks the innermost transaction for rollback when it answers an error: let that
        # be one of this answer's own, never one an outer caller holds.
        with transaction.atomic():
            return super().handle_exception(exc)


@extend_schema_view(get=extend_schema(summary="List evaluations on peers' GPUs"))
class RemoteJobListApi(OutsideRequestTransaction, generics.ListAPIView):
    serializer_class = RemoteJobOutput
    permission_classes = [permissions.IsAuthenticated]
    filterset_fields = ["state"]

    def get_queryset(self):
        return remote_jobs.remote_job_list(user=self.request.user)

    @extend_schema(
        request=RemoteJobInput,
        responses={201: RemoteJobDetailOutput},
        summary="Evaluate on a peer's GPUs, under a grant it made to your institution",
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        data = RemoteJobInput(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        remote_job = remote_jobs.remote_job_submit(
            user=request.user,
            model_version_id=fields["model_version"],
            benchmark_id=fields["benchmark"],
            allocation_id=fields["allocation"],
            reproduction_of_id=fields["reproduction_of"],
        )
        return Response(_detail(remote_job, None), status=status.HTTP_201_CREATED)


class RemoteJobDetailApi(OutsideRequestTransaction):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(
        responses=RemoteJobDetailOutput, summary="An evaluation on a peer's GPUs, read live"
    )
    def get(self, request: AuthenticatedRequest, remote_job_id: int) -> Response:
        found = remote_jobs.remote_job_get(user=request.user, remote_job_id=remote_job_id)
        remote_job, answer = remote_jobs.remote_job_refresh(found)
        return Response(_detail(remote_job, answer))


class RemoteJobCancelApi(OutsideRequestTransaction):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(
        request=RemoteJobCancelInput, responses=RemoteJobDetailOutput, summary="Cancel at the peer"
    )
    def post(self, request: AuthenticatedRequest, remote_job_id: int) -> Response:
        data = RemoteJobCancelInput(data=request.data)
        data.is_valid(raise_exception=True)
        found = remote_jobs.remote_job_get(user=request.user, remote_job_id=remote_job_id)
        remote_job = remote_jobs.remote_job_cancel(
            user=request.user, remote_job=found, reason=data.validated_data["reason"]
        )
        return Response(_detail(remote_job, None))
