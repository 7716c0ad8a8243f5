"""REST endpoints of the compute pool.

For researchers and admins: nodes, compute requests (with approve/reject), allocations and
evaluation jobs (submit, list, detail, cancel, logs, queue). For workers, under /worker/: the
calls a node's worker makes with its node token, each checked against the job attempt the node
was given.
"""

from dataclasses import asdict
from decimal import Decimal
from typing import Any

import django_filters
from django.conf import settings
from django.http import Http404, HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    extend_schema,
    extend_schema_field,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import generics, permissions, serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.fields import InstitutionSlugField
from apps.accounts.permissions import IsStaff, IsStaffOrReadOnly
from apps.accounts.typing import AuthenticatedRequest
from apps.catalog.downloads import artifact_response
from apps.catalog.models import Artifact, Benchmark, ModelVersion
from apps.compute import queue_selectors, selectors, services
from apps.compute.authentication import IsComputeNode, NodeTokenAuthentication
from apps.compute.models import Allocation, ComputeNode, ComputeRequest, Job
from apps.core.exceptions import Conflict
from apps.core.filters import FilterSet, IdFilter
from apps.core.serializers import BoundedDateField, BoundedDateTimeField, StrictSerializer


def _input(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class NodeOutput(serializers.ModelSerializer):
    institution = serializers.SlugField(source="institution.slug")
    status = serializers.SerializerMethodField()
    queue = serializers.CharField(read_only=True)

    class Meta:
        model = ComputeNode
        fields = [
            "id",
            "institution",
            "name",
            "pool",
            "queue",
            "labels",
            "gpus",
            "cpu_slots",
            "status",
            "draining",
            "registered_at",
            "last_heartbeat_at",
            "created_at",
        ]

    def get_status(self, node: ComputeNode) -> str:
        return selectors.node_status(node)


class NodeWithTokenOutput(NodeOutput):
    token = serializers.SerializerMethodField(
        help_text="The node token, shown once: give it to the node's worker (WORKER_NODE_TOKEN)."
    )

    class Meta(NodeOutput.Meta):
        fields = [*NodeOutput.Meta.fields, "token_prefix", "token"]

    def get_token(self, node: ComputeNode) -> str:
        return self.context["token"]


class NodeInput(StrictSerializer):
    institution = InstitutionSlugField()
    name = serializers.SlugField(max_length=64)
    pool = serializers.CharField(max_length=48, required=False, default="default")
    labels = serializers.ListField(
        child=serializers.SlugField(max_length=50), max_length=20, required=False, default=list
    )


class NodeUpdateInput(StrictSerializer):
    draining = serializers.BooleanField(
        help_text="A draining node finishes its jobs and takes no new ones."
    )


@extend_schema_view(get=extend_schema(summary="List compute nodes"))
class NodeListApi(generics.ListAPIView):
    serializer_class = NodeOutput
    permission_classes = [permissions.IsAuthenticated]
    filterset_fields = ["pool", "draining"]
    ordering_fields = ["name", "created_at", "last_heartbeat_at"]

    def get_queryset(self):
        return selectors.node_list(user=self.request.user)

    @extend_schema(request=NodeInput, responses={201: NodeWithTokenOutput}, summary="Add a node")
    def post(self, request: AuthenticatedRequest) -> Response:
        node, token = services.node_create(user=request.user, **_input(NodeInput, request))
        body = NodeWithTokenOutput(node, context={"token": token}).data
        return Response(body, status=status.HTTP_201_CREATED)


class NodeDetailApi(APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(responses=NodeOutput, summary="A compute node")
    def get(self, request: AuthenticatedRequest, node_id: int) -> Response:
        return Response(NodeOutput(selectors.node_get(user=request.user, node_id=node_id)).data)

    @extend_schema(request=NodeUpdateInput, responses=NodeOutput, summary="Drain or undrain")
    def patch(self, request: AuthenticatedRequest, node_id: int) -> Response:
        node = selectors.node_get(user=request.user, node_id=node_id)
        services.node_require_manager(user=request.user, node=node)
        node = services.node_set_draining(
            user=request.user, node=node, **_input(NodeUpdateInput, request)
        )
        return Response(NodeOutput(node).data)


class NodeTokenRotateApi(APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(request=None, responses=NodeWithTokenOutput, summary="Replace the node token")
    def post(self, request: AuthenticatedRequest, node_id: int) -> Response:
        node = selectors.node_get(user=request.user, node_id=node_id)
        token = services.node_token_rotate(user=request.user, node=node)
        node.refresh_from_db()
        return Response(NodeWithTokenOutput(node, context={"token": token}).data)


class ComputeRequestOutput(serializers.ModelSerializer):
    requester = serializers.CharField(source="requester.username")
    institution = serializers.SlugField(source="institution.slug")
    reviewer = serializers.CharField(source="reviewer.username", default=None)
    allocation = serializers.SerializerMethodField()

    class Meta:
        model = ComputeRequest
        fields = [
            "id",
            "requester",
            "institution",
            "purpose",
            "model",
            "paper",
            "benchmark",
            "gpu_class",
            "gpu_count",
            "gpu_hours",
            "starts_on",
            "ends_on",
            "state",
            "reviewer",
            "review_comment",
            "reviewed_at",
            "created_at",
            "allocation",
        ]

    def get_allocation(self, request: ComputeRequest) -> int | None:
        allocation = getattr(request, "allocation", None)
        return allocation.pk if allocation else None


class ComputeRequestInput(StrictSerializer):
    institution = InstitutionSlugField()
    purpose = serializers.CharField(max_length=5000)
    gpu_hours = serializers.DecimalField(max_digits=9, decimal_places=1, min_value=Decimal("0.1"))
    gpu_count = serializers.IntegerField(min_value=1, max_value=64, required=False, default=1)
    gpu_class = serializers.CharField(max_length=64, required=False, default="", allow_blank=True)
    starts_on = BoundedDateField()
    ends_on = BoundedDateField()
    model = serializers.IntegerField(required=False, source="model_id")
    paper = serializers.IntegerField(required=False, source="paper_id")
    benchmark = serializers.IntegerField(required=False, source="benchmark_id")


class ReviewInput(StrictSerializer):
    comment = serializers.CharField(max_length=5000, required=False, default="", allow_blank=True)


class ApproveInput(ReviewInput):
    gpu_hours = serializers.DecimalField(
        max_digits=9,
        decimal_places=1,
        required=False,
        help_text="Grant less than asked; the whole request by default.",
    )


class ComputeRequestFilter(FilterSet):
    institution = django_filters.CharFilter(field_name="institution__slug")

    class Meta:
        model = ComputeRequest
        fields = ["state", "institution"]


@extend_schema_view(get=extend_schema(summary="List compute requests"))
class ComputeRequestListApi(generics.ListAPIView):
    serializer_class = ComputeRequestOutput
    permission_classes = [permissions.IsAuthenticated]
    filterset_class = ComputeRequestFilter
    ordering_fields = ["created_at", "gpu_hours"]

    def get_queryset(self):
        return selectors.compute_request_list(user=self.request.user).select_related("allocation")

    @extend_schema(
        request=ComputeRequestInput,
        responses={201: ComputeRequestOutput},
        summary="Ask for GPU time",
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        compute_request = services.compute_request_submit(
            user=request.user, **_input(ComputeRequestInput, request)
        )
        return Response(ComputeRequestOutput(compute_request).data, status=status.HTTP_201_CREATED)


class ComputeRequestDetailApi(APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(responses=ComputeRequestOutput, summary="A compute request")
    def get(self, request: AuthenticatedRequest, request_id: int) -> Response:
        found = selectors.compute_request_get(user=request.user, request_id=request_id)
        return Response(ComputeRequestOutput(found).data)


class AllocationOutput(serializers.ModelSerializer):
    institution = serializers.SlugField(source="institution.slug")
    budget_gpu_hours = serializers.FloatField()
    used_gpu_hours = serializers.FloatField()
    held_at = serializers.SerializerMethodField(
        help_text="The peer node whose pool this grant is spent on (null: this node's pool). "
        "Its figures are that node's."
    )

    class Meta:
        model = Allocation
        fields = [
            "id",
            "institution",
            "name",
            "request",
            "held_at",
            "gpu_class",
            "budget_gpu_hours",
            "used_gpu_hours",
            "starts_at",
            "ends_at",
            "created_at",
        ]

    def get_held_at(self, allocation: Allocation) -> str | None:
        return allocation.origin_node or None


class ComputeRequestApproveApi(APIView):
    permission_classes = [permissions.IsAuthenticated, IsStaff]

    @extend_schema(
        request=ApproveInput,
        responses={201: AllocationOutput},
        summary="Approve (platform admins): creates the allocation",
    )
    def post(self, request: AuthenticatedRequest, request_id: int) -> Response:
        found = selectors.compute_request_get(user=request.user, request_id=request_id)
        allocation = services.compute_request_approve(
            reviewer=request.user, request=found, **_input(ApproveInput, request)
        )
        return Response(AllocationOutput(allocation).data, status=status.HTTP_201_CREATED)


class ComputeRequestRejectApi(APIView):
    permission_classes = [permissions.IsAuthenticated, IsStaff]

    @extend_schema(
        request=ReviewInput,
        responses=ComputeRequestOutput,
        summary="Reject (platform admins), saying why",
    )
    def post(self, request: AuthenticatedRequest, request_id: int) -> Response:
        found = selectors.compute_request_get(user=request.user, request_id=request_id)
        rejected = services.compute_request_reject(
            reviewer=request.user, request=found, **_input(ReviewInput, request)
        )
        return Response(ComputeRequestOutput(rejected).data)


class ComputeRequestWithdrawApi(APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(request=None, responses=ComputeRequestOutput, summary="Withdraw (requester)")
    def post(self, request: AuthenticatedRequest, request_id: int) -> Response:
        found = selectors.compute_request_get(user=request.user, request_id=request_id)
        withdrawn = services.compute_request_withdraw(user=request.user, request=found)
        return Response(ComputeRequestOutput(withdrawn).data)


class AllocationInput(StrictSerializer):
    institution = InstitutionSlugField()
    name = serializers.CharField(max_length=200)
    gpu_hours = serializers.DecimalField(max_digits=9, decimal_places=1, min_value=Decimal("0.1"))
    gpu_class = serializers.CharField(max_length=64, required=False, default="", allow_blank=True)
    starts_at = BoundedDateTimeField()
    ends_at = BoundedDateTimeField()


class AllocationFilter(FilterSet):
    institution = django_filters.CharFilter(field_name="institution__slug")
    current = django_filters.BooleanFilter(method="filter_current")

    class Meta:
        model = Allocation
        fields = ["institution"]

    def filter_current(self, queryset, name, value):
        from django.utils import timezone

        now = timezone.now()
        window = {"starts_at__lte": now, "ends_at__gt": now}
        return queryset.filter(**window) if value else queryset.exclude(**window)


@extend_schema_view(get=extend_schema(summary="List GPU-hour allocations"))
class AllocationListApi(generics.ListAPIView):
    serializer_class = AllocationOutput
    permission_classes = [permissions.IsAuthenticated, IsStaffOrReadOnly]
    filterset_class = AllocationFilter
    ordering_fields = ["starts_at", "ends_at"]

    def get_queryset(self):
        return selectors.allocation_list(user=self.request.user)

    @extend_schema(
        request=AllocationInput,
        responses={201: AllocationOutput},
        summary="Grant GPU-hours directly (platform admins)",
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        allocation = services.allocation_create(
            user=request.user, **_input(AllocationInput, request)
        )
        return Response(AllocationOutput(allocation).data, status=status.HTTP_201_CREATED)


class AllocationDetailApi(APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(responses=AllocationOutput, summary="An allocation and its use")
    def get(self, request: AuthenticatedRequest, allocation_id: int) -> Response:
        found = selectors.allocation_get(user=request.user, allocation_id=allocation_id)
        return Response(AllocationOutput(found).data)


class JobQueueOutput(serializers.Serializer):
    position = serializers.IntegerField(help_text="1 = the next job the dispatcher considers.")
    pending = serializers.IntegerField(help_text="How many jobs are pending in all.")
    estimated_start = serializers.DateTimeField(
        allow_null=True,
        help_text="Null when no node that can run the job is online or registered, or when it "
        "is too far back in the queue to estimate.",
    )
    explanation = serializers.CharField()


class JobOutput(serializers.ModelSerializer):
    model = serializers.IntegerField(source="model_version.model_id")
    model_name = serializers.CharField(source="model_version.model.name")
    model_version = serializers.CharField(source="model_version.label")
    benchmark_name = serializers.CharField(source="benchmark.name")
    submitter = serializers.CharField(source="submitter.username")
    institution = serializers.SlugField(source="institution.slug")
    node = serializers.CharField(source="node.name", default=None)
    gpu_hours = serializers.SerializerMethodField()
    queue = serializers.SerializerMethodField(
        help_text="While the job is pending: its position in the dispatcher's order, its "
        "estimated start and the reasons for its wait, in words; null otherwise."
    )

    class Meta:
        model = Job
        fields = [
            "id",
            "model",
            "model_name",
            "model_version",
            "benchmark",
            "benchmark_name",
            "submitter",
            "institution",
            "allocation",
            "gpu_count",
            "gpu_memory_gb",
            "time_limit_minutes",
            "priority",
            "state",
            "attempt",
            "max_attempts",
            "node",
            "devices",
            "submitted_at",
            "dispatched_at",
            "started_at",
            "finished_at",
            "gpu_hours",
            "charged",
            "queue",
        ]

    def get_gpu_hours(self, job: Job) -> float:
        return round(job.gpu_seconds / 3600, 4)

    @extend_schema_field(JobQueueOutput(allow_null=True))
    def get_queue(self, job: Job) -> dict[str, Any] | None:
        if job.state != Job.State.PENDING:
            return None
        # A list computes its page's estimates at one instant, in one pass (see JobListApi).
        estimates = self.context.get("queue_estimates")
        wait = (
            estimates.get(job.pk)
            if estimates is not None
            else queue_selectors.job_wait_estimate(job=job)
        )
        if wait is None:
            return None
        return JobQueueOutput(wait).data


class JobDetailOutput(JobOutput):
    failure_reason = serializers.SerializerMethodField()
    metrics = serializers.SerializerMethodField()
    events = serializers.SerializerMethodField()

    class Meta(JobOutput.Meta):
        fields = [*JobOutput.Meta.fields, "failure_reason", "metrics", "events"]

    def _details_visible(self, job: Job) -> bool:
        return selectors.user_can_see_job_details(user=self.context["user"], job=job)

    def get_failure_reason(self, job: Job) -> str:
        return job.failure_reason if self._details_visible(job) else ""

    def get_metrics(self, job: Job) -> dict | None:
        result = getattr(job, "result", None)
        return result.metrics if result else None

    @extend_schema_field(serializers.ListField(child=serializers.DictField()))
    def get_events(self, job: Job) -> list[dict]:
        if not self._details_visible(job):
            return []
        return [
            {
                "attempt": event.attempt,
                "state": event.state,
                "message": event.message,
                "at": event.created_at,
            }
            for event in job.events.all()
        ]


class JobInput(StrictSerializer):
    model_version = serializers.IntegerField(help_text="The id of a published model version.")
    benchmark = serializers.IntegerField()
    institution = InstitutionSlugField(
        required=False, help_text="Which of your institutions pays; needed if you have several."
    )
    allocation = serializers.IntegerField(
        required=False, help_text="Which of its allocations; the one with most left by default."
    )


class JobFilter(FilterSet):
    institution = django_filters.CharFilter(field_name="institution__slug")
    model = IdFilter(field_name="model_version__model_id")
    node = IdFilter(field_name="node_id")
    mine = django_filters.BooleanFilter(method="filter_mine")

    class Meta:
        model = Job
        fields = ["state", "institution", "benchmark", "model", "node"]

    def filter_mine(self, queryset, name, value):
        user = self.request.user if self.request else None
        if not value or user is None or not user.is_authenticated:
            return queryset
        return queryset.filter(submitter=user)


@extend_schema_view(get=extend_schema(summary="List evaluation jobs"))
class JobListApi(generics.ListAPIView):
    serializer_class = JobOutput
    filterset_class = JobFilter
    ordering_fields = ["submitted_at", "finished_at", "priority"]

    def get_queryset(self):
        return selectors.job_list(user=self.request.user)

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        jobs = list(page) if page is not None else []
        pending = [job.pk for job in jobs if job.state == Job.State.PENDING]
        context = {
            **self.get_serializer_context(),
            "queue_estimates": queue_selectors.job_queue_estimates(job_ids=pending),
        }
        return self.get_paginated_response(JobOutput(jobs, many=True, context=context).data)

    @extend_schema(request=JobInput, responses={201: JobDetailOutput}, summary="Submit a job")
    def post(self, request: AuthenticatedRequest) -> Response:
        data = _input(JobInput, request)
        version = ModelVersion.objects.filter(pk=data["model_version"]).first()
        benchmark = Benchmark.objects.filter(pk=data["benchmark"]).first()
        if version is None:
            raise serializers.ValidationError(
                {"model_version": [services.NO_VISIBLE_MODEL_VERSION]}
            )
        if benchmark is None:
            raise serializers.ValidationError({"benchmark": [services.NO_VISIBLE_BENCHMARK]})
        job = services.job_submit(
            user=request.user,
            model_version=version,
            benchmark=benchmark,
            institution=data.get("institution"),
            allocation_id=data.get("allocation"),
        )
        job = selectors.job_get(user=request.user, job_id=job.pk)
        body = JobDetailOutput(job, context={"user": request.user}).data
        return Response(body, status=status.HTTP_201_CREATED)


class JobDetailApi(APIView):
    @extend_schema(responses=JobDetailOutput, summary="A job, its history and metrics")
    def get(self, request: Request, job_id: int) -> Response:
        job = selectors.job_get(user=request.user, job_id=job_id)
        return Response(JobDetailOutput(job, context={"user": request.user}).data)


class CancelInput(StrictSerializer):
    reason = serializers.CharField(max_length=1000, required=False, default="", allow_blank=True)


class JobCancelApi(APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(request=CancelInput, responses=JobDetailOutput, summary="Cancel a job")
    def post(self, request: AuthenticatedRequest, job_id: int) -> Response:
        job = selectors.job_get(user=request.user, job_id=job_id)
        services.job_require_canceller(user=request.user, job=job)
        services.job_cancel(user=request.user, job=job, **_input(CancelInput, request))
        job = selectors.job_get(user=request.user, job_id=job_id)
        return Response(JobDetailOutput(job, context={"user": request.user}).data)


class PriorityInput(StrictSerializer):
    priority = serializers.IntegerField(min_value=-100, max_value=100)


class JobPriorityApi(APIView):
    permission_classes = [permissions.IsAuthenticated, IsStaff]

    @extend_schema(
        request=PriorityInput, responses=JobDetailOutput, summary="Set priority (platform admins)"
    )
    def post(self, request: AuthenticatedRequest, job_id: int) -> Response:
        job = selectors.job_get(user=request.user, job_id=job_id)
        services.job_set_priority(user=request.user, job=job, **_input(PriorityInput, request))
        job = selectors.job_get(user=request.user, job_id=job_id)
        return Response(JobDetailOutput(job, context={"user": request.user}).data)


class JobLogOutput(serializers.Serializer):
    attempt = serializers.IntegerField()
    offset = serializers.IntegerField()
    next_offset = serializers.IntegerField()
    text = serializers.CharField()
    finished = serializers.BooleanField(help_text="Whether the attempt can still write more.")


MAX_WHOLE_NUMBER = 10**15 - 1


class JobLogQuery(serializers.Serializer):
    attempt = serializers.IntegerField(
        min_value=0, max_value=MAX_WHOLE_NUMBER, required=False,
        help_text="The current attempt by default.",
    )  # fmt: skip
    offset = serializers.IntegerField(
        min_value=0, max_value=MAX_WHOLE_NUMBER, default=0, help_text="Characters already read."
    )


class WorkerFileQuery(serializers.Serializer):
    attempt = serializers.IntegerField(min_value=0, max_value=MAX_WHOLE_NUMBER)


def _query(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    """Query parameters, validated by the serializer that also describes them in the schema."""
    serializer = serializer_class(data=request.query_params)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


class JobLogApi(APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(
        parameters=[JobLogQuery],
        responses=JobLogOutput,
        summary="A job attempt's output",
    )
    def get(self, request: AuthenticatedRequest, job_id: int) -> Response:
        job = selectors.job_get(user=request.user, job_id=job_id)
        if not selectors.user_can_see_job_details(user=request.user, job=job):
            raise Http404("No such job.")
        query = _query(JobLogQuery, request)
        attempt = query.get("attempt", job.attempt)
        offset = query["offset"]
        text = selectors.job_log(job=job, attempt=attempt, offset=offset)
        finished = attempt != job.attempt or not job.is_active
        body = {
            "attempt": attempt,
            "offset": offset,
            "next_offset": offset + len(text),
            "text": text,
            "finished": finished,
        }
        return Response(body)


class QueueEntryOutput(serializers.Serializer):
    position = serializers.IntegerField()
    job = serializers.IntegerField(source="job_id", allow_null=True)
    institution = serializers.IntegerField(source="institution_id")
    gpu_count = serializers.IntegerField()
    priority = serializers.IntegerField()
    score = serializers.FloatField()
    submitted_at = serializers.DateTimeField(allow_null=True)
    estimated_start = serializers.DateTimeField(allow_null=True)


class JobQueueApi(APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(
        responses=inline_serializer(
            "JobQueue",
            {"pending": serializers.IntegerField(), "results": QueueEntryOutput(many=True)},
        ),
        summary="Pending jobs in the order the dispatcher will run them",
    )
    def get(self, request: AuthenticatedRequest) -> Response:
        entries, pending = queue_selectors.job_queue(user=request.user)
        rows = []
        for entry in entries:
            row = QueueEntryOutput(entry).data
            if entry.job is None:
                # Another institution's job: its place, not its contents (as the portal shows).
                row["job"] = row["submitted_at"] = None
            rows.append(row)
        return Response({"pending": pending, "results": rows})


class WorkerApi(APIView):
    """Base of the worker endpoints: node token only, and no throttling (a busy node makes
    several calls per job; its token is the trust)."""

    authentication_classes = [NodeTokenAuthentication]
    permission_classes = [IsComputeNode]
    throttle_classes: list = []
    # An attempt that is no longer this node's is a 409, for reads as for writes.
    error_statuses = (409,)

    def node(self, request: Request) -> ComputeNode:
        node = request.auth
        if not isinstance(node, ComputeNode):  # IsComputeNode lets only a node through
            raise PermissionDenied(IsComputeNode.message)
        return node


class GpuInput(StrictSerializer):
    index = serializers.IntegerField(min_value=0, max_value=255)
    uuid = serializers.CharField(max_length=100, required=False, default="", allow_blank=True)
    name = serializers.CharField(max_length=200)
    memory_bytes = serializers.IntegerField(min_value=0)


class RegisterInput(StrictSerializer):
    gpus = serializers.ListField(child=GpuInput(), max_length=64)
    cpu_slots = serializers.IntegerField(min_value=0, max_value=256)
    host = serializers.DictField(required=False, default=dict)


class WorkerTimingOutput(serializers.Serializer):
    heartbeat_seconds = serializers.IntegerField()
    lease_seconds = serializers.IntegerField()


class RegisterOutput(WorkerTimingOutput):
    node = inline_serializer(
        "RegisteredNode",
        {
            "id": serializers.IntegerField(),
            "name": serializers.CharField(),
            "institution": serializers.CharField(),
            "pool": serializers.CharField(),
            "queue": serializers.CharField(),
            "trusted_only": serializers.BooleanField(),
        },
    )


class WorkerRegisterApi(WorkerApi):
    @extend_schema(request=RegisterInput, responses=RegisterOutput, summary="Worker: register")
    def post(self, request: Request) -> Response:
        data = _input(RegisterInput, request)
        node = services.node_register(
            node=self.node(request),
            gpus=data["gpus"],
            cpu_slots=data["cpu_slots"],
            host_info=data["host"],
        )
        return Response(
            {
                "node": {
                    "id": node.pk,
                    "name": node.name,
                    "institution": node.institution.slug,
                    "pool": node.pool,
                    "queue": node.queue,
                    "trusted_only": node.trusted_only,
                },
                "heartbeat_seconds": settings.COMPUTE_HEARTBEAT_SECONDS,
                "lease_seconds": settings.COMPUTE_LEASE_SECONDS,
            }
        )


class AttemptInput(StrictSerializer):
    job = serializers.IntegerField(min_value=1)
    attempt = serializers.IntegerField(min_value=1)


class HeartbeatInput(StrictSerializer):
    running = serializers.ListField(child=AttemptInput(), max_length=1024)


class HeartbeatOutput(WorkerTimingOutput):
    stop = AttemptInput(many=True)


class WorkerHeartbeatApi(WorkerApi):
    @extend_schema(request=HeartbeatInput, responses=HeartbeatOutput, summary="Worker: heartbeat")
    def post(self, request: Request) -> Response:
        running = _input(HeartbeatInput, request)["running"]
        reply = services.node_heartbeat(node=self.node(request), running=running)
        return Response(asdict(reply))


def _worker_call(call, **kwargs):
    """Runs a worker service call; an attempt that is not the node's to run answers 409."""
    try:
        return call(**kwargs)
    except services.JobConflict as conflict:
        raise Conflict(str(conflict)) from conflict


class ClaimInput(StrictSerializer):
    attempt = serializers.IntegerField(min_value=1)


def _file_entry(job: Job, attempt: int, filename: str, artifact: Artifact) -> dict[str, Any]:
    return {
        "filename": filename,
        "sha256": artifact.sha256,
        "size": artifact.size,
        "format": artifact.format,
        "url": f"/api/v1/worker/jobs/{job.pk}/files/{artifact.sha256}?attempt={attempt}",
    }


class WorkerClaimApi(WorkerApi):
    @extend_schema(
        request=ClaimInput,
        responses=OpenApiTypes.OBJECT,
        summary="Worker: start an attempt and get what it needs",
    )
    def post(self, request: Request, job_id: int) -> Response:
        attempt = _input(ClaimInput, request)["attempt"]
        job = _worker_call(
            services.job_claim, node=self.node(request), job_id=job_id, attempt=attempt
        )
        version = job.model_version
        benchmark = job.benchmark
        model_files = version.files.select_related("artifact").order_by("filename")
        dataset_files = benchmark.dataset.files.select_related("artifact").order_by("filename")
        return Response(
            {
                "job": job.pk,
                "attempt": job.attempt,
                "devices": job.devices,
                "gpu_indices": [
                    int(device.split(":")[1]) for device in job.devices if device.startswith("gpu:")
                ],
                "time_limit_seconds": job.time_limit_minutes * 60,
                "gpu_memory_gb": job.gpu_memory_gb,
                "memory_limit_mb": benchmark.memory_limit_mb,
                **selectors.job_isolation_terms(job=job, node=self.node(request)),
                "model": {
                    "id": version.model_id,
                    "name": version.model.name,
                    "version": version.label,
                    "files": [
                        _file_entry(job, attempt, file.filename, file.artifact)
                        for file in model_files
                    ],
                },
                "benchmark": {
                    "id": benchmark.pk,
                    "name": benchmark.name,
                    "task_type": benchmark.task_type,
                    "evaluator": benchmark.evaluator,
                    "config": benchmark.evaluator_config,
                    "metrics": benchmark.metrics,
                    "dataset": {
                        "id": benchmark.dataset_id,
                        "name": benchmark.dataset.name,
                        "files": [
                            _file_entry(job, attempt, file.filename, file.artifact)
                            for file in dataset_files
                        ],
                    },
                },
            }
        )


class WorkerFileApi(WorkerApi):
    @extend_schema(
        parameters=[WorkerFileQuery],
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY},
        summary="Worker: download a file of a job it runs",
    )
    def get(self, request: Request, job_id: int, sha256: str) -> HttpResponseBase:
        attempt = _query(WorkerFileQuery, request)["attempt"]
        artifact = _worker_call(
            selectors.job_artifact,
            node=self.node(request),
            job_id=job_id,
            attempt=attempt,
            sha256=sha256,
        )
        return artifact_response(request, artifact)


class LogInput(StrictSerializer):
    attempt = serializers.IntegerField(min_value=1)
    offset = serializers.IntegerField(min_value=0)
    text = serializers.CharField(max_length=1_000_000, trim_whitespace=False, allow_blank=True)


class WorkerLogApi(WorkerApi):
    @extend_schema(
        request=LogInput,
        responses=inline_serializer("LogLength", {"length": serializers.IntegerField()}),
        summary="Worker: append output",
    )
    def post(self, request: Request, job_id: int) -> Response:
        length = _worker_call(
            services.job_log_append,
            node=self.node(request),
            job_id=job_id,
            **_input(LogInput, request),
        )
        return Response({"length": length})


class StatusInput(StrictSerializer):
    attempt = serializers.IntegerField(min_value=1)
    state = serializers.ChoiceField(choices=[Job.State.FAILED, Job.State.TIMED_OUT])
    reason = serializers.CharField(max_length=4000)


class WorkerStatusApi(WorkerApi):
    @extend_schema(
        request=StatusInput,
        responses=OpenApiTypes.OBJECT,
        summary="Worker: end an attempt without a result",
    )
    def post(self, request: Request, job_id: int) -> Response:
        job = _worker_call(
            services.job_report_failure,
            node=self.node(request),
            job_id=job_id,
            **_input(StatusInput, request),
        )
        return Response({"job": job.pk, "attempt": job.attempt, "state": job.state})


class ResultInput(StrictSerializer):
    attempt = serializers.IntegerField(min_value=1)
    metrics = serializers.DictField(allow_empty=False)
    provenance = serializers.DictField(required=False, default=dict)


class WorkerResultApi(WorkerApi):
    @extend_schema(
        request=ResultInput,
        responses={201: OpenApiTypes.OBJECT, 200: OpenApiTypes.OBJECT},
        summary="Worker: post the result of an attempt (idempotent)",
    )
    def post(self, request: Request, job_id: int) -> Response:
        result, created = _worker_call(
            services.job_result_post,
            node=self.node(request),
            job_id=job_id,
            **_input(ResultInput, request),
        )
        return Response(
            {"job": result.job_id, "attempt": result.attempt, "metrics": result.metrics},
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )
