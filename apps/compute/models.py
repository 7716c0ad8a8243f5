"""The compute pool: nodes and their devices, GPU-hour requests and allocations, evaluation jobs.

The database is the source of truth for every job. A broker message only says "attempt N of
job J is yours"; the dispatcher, the reconciler and the worker endpoints move jobs between
states here, and a message that no longer matches the job's current attempt is ignored.
"""

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

from apps.accounts.models import Institution
from apps.catalog.models import Benchmark, ModelVersion, Paper, ResearchModel
from apps.core.models import MirrorOrigin

validate_pool_name = RegexValidator(
    r"^[a-z0-9][a-z0-9-]{0,47}$",
    "A pool name uses lowercase letters, digits and hyphens (e.g. default, a100-80gb).",
)


class ComputeNode(models.Model):
    """A worker host of an institution: its devices, its pool, and when it last reported."""

    class Status(models.TextChoices):
        ONLINE = "online", "Online"
        DRAINING = "draining", "Draining: finishes its jobs, takes no new ones"
        OFFLINE = "offline", "Offline: no heartbeat"

    institution = models.ForeignKey(
        Institution, on_delete=models.PROTECT, related_name="compute_nodes"
    )
    name = models.SlugField(max_length=64)
    pool = models.CharField(max_length=48, default="default", validators=[validate_pool_name])
    labels = models.JSONField(default=list, blank=True)
    # As the worker reported them: [{"index", "uuid", "name", "memory_bytes"}].
    gpus = models.JSONField(default=list, blank=True)
    # How many jobs that need no GPU this host runs at once.
    cpu_slots = models.PositiveSmallIntegerField(default=1)
    host_info = models.JSONField(default=dict, blank=True)
    # What its worker said at registration it can give an evaluation: full, partial or none.
    isolation = models.CharField(max_length=16, blank=True)
    # Set by an admin: the node runs only its own institution's benchmarks, so a worker that
    # cannot isolate evaluations may still run them.
    trusted_only = models.BooleanField(default=False)
    draining = models.BooleanField(default=False)
    token_prefix = models.CharField(max_length=16)
    token_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    registered_at = models.DateTimeField(null=True, blank=True)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["institution__name", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["institution", "name"], name="unique_node_name_per_institution"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.institution.slug})"

    @property
    def queue(self) -> str:
        """The broker queue this node's worker consumes: placement is the dispatcher's, so each
        node has its own queue within its pool."""
        return f"pool.{self.pool}.node-{self.pk}"

    @property
    def gpu_count(self) -> int:
        return len(self.gpus)

    def status_at(self, now, offline_after_seconds: int) -> str:
        if (
            self.last_heartbeat_at is None
            or (now - self.last_heartbeat_at).total_seconds() > offline_after_seconds
        ):
            return self.Status.OFFLINE
        return self.Status.DRAINING if self.draining else self.Status.ONLINE


class ComputeRequest(models.Model):
    """A researcher asks for GPU time; an admin approves (creating an allocation) or rejects."""

    class State(models.TextChoices):
        SUBMITTED = "submitted", "Submitted"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        WITHDRAWN = "withdrawn", "Withdrawn"

    requester = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="compute_requests"
    )
    institution = models.ForeignKey(
        Institution, on_delete=models.PROTECT, related_name="compute_requests"
    )
    purpose = models.TextField()
    model = models.ForeignKey(
        ResearchModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    paper = models.ForeignKey(
        Paper, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    benchmark = models.ForeignKey(
        Benchmark, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Free text matched against GPU names (e.g. "A100", "H100 80GB"); empty means any GPU.
    gpu_class = models.CharField(max_length=64, blank=True)
    gpu_count = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(64)]
    )
    gpu_hours = models.DecimalField(
        max_digits=9, decimal_places=1, validators=[MinValueValidator(Decimal("0.1"))]
    )
    starts_on = models.DateField()
    ends_on = models.DateField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.SUBMITTED)
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    review_comment = models.TextField(blank=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_on__gte=models.F("starts_on")),
                name="compute_request_window_ordered",
            )
        ]
        indexes = [models.Index(fields=["state", "institution"])]

    def __str__(self) -> str:
        return f"{self.gpu_hours} GPU-h for {self.institution.slug} ({self.state})"


class Allocation(MirrorOrigin):
    """A GPU-hour budget an institution's researchers spend within a window.

    An allocation with an origin node is a grant that peer node made to one of our institutions:
    it is spent on that node's pool through remote jobs, never on ours, and the peer keeps its
    figures (we show what it announced)."""

    institution = models.ForeignKey(
        Institution, on_delete=models.PROTECT, related_name="allocations"
    )
    request = models.OneToOneField(
        ComputeRequest,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="allocation",
    )
    name = models.CharField(max_length=200)
    gpu_class = models.CharField(max_length=64, blank=True)
    budget_gpu_seconds = models.BigIntegerField(validators=[MinValueValidator(1)])
    used_gpu_seconds = models.BigIntegerField(default=0)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-starts_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__gt=models.F("starts_at")), name="allocation_window_ordered"
            ),
            models.UniqueConstraint(
                fields=["origin_node", "origin_id"],
                condition=~Q(origin_node=""),
                name="unique_allocation_origin",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.institution.slug})"

    @property
    def budget_gpu_hours(self) -> float:
        return self.budget_gpu_seconds / 3600

    @property
    def used_gpu_hours(self) -> float:
        return self.used_gpu_seconds / 3600


class InstitutionUsage(models.Model):
    """GPU-seconds an institution used, decayed with a half-life: the fair-share input."""

    institution = models.OneToOneField(
        Institution, on_delete=models.CASCADE, related_name="compute_usage"
    )
    decayed_gpu_seconds = models.FloatField(default=0.0)
    total_gpu_seconds = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.institution}: {self.total_gpu_seconds / 3600:.1f} GPU-hours used"


class Job(models.Model):
    """One evaluation: a model version on a benchmark, queued, placed on a node, run, accounted."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        DISPATCHED = "dispatched", "Dispatched"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        TIMED_OUT = "timed_out", "Timed out"

    ACTIVE_STATES = (State.PENDING, State.DISPATCHED, State.RUNNING)
    FINISHED_STATES = (State.SUCCEEDED, State.FAILED, State.CANCELLED, State.TIMED_OUT)

    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="jobs")
    benchmark = models.ForeignKey(Benchmark, on_delete=models.PROTECT, related_name="jobs")
    submitter = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="jobs"
    )
    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="jobs")
    allocation = models.ForeignKey(
        Allocation, null=True, blank=True, on_delete=models.PROTECT, related_name="jobs"
    )
    # Copied from the benchmark at submission: a later benchmark edit does not move a queued job.
    gpu_count = models.PositiveSmallIntegerField()
    gpu_memory_gb = models.PositiveSmallIntegerField()
    gpu_class = models.CharField(max_length=64, blank=True)
    time_limit_minutes = models.PositiveIntegerField()
    priority = models.SmallIntegerField(
        default=0, validators=[MinValueValidator(-100), MaxValueValidator(100)]
    )
    # Submitted by a peer node for one of its researchers: its code is untrusted by definition,
    # so it runs only on a node that fully isolates evaluations.
    from_peer = models.BooleanField(default=False)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempt = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField(default=3)
    node = models.ForeignKey(
        ComputeNode, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    devices = models.JSONField(default=list, blank=True)
    submitted_at = models.DateTimeField(auto_now_add=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    gpu_seconds = models.BigIntegerField(default=0)
    # Whether gpu_seconds were debited: cancelled by an admin or lost by the platform costs nothing.
    charged = models.BooleanField(default=False)
    failure_reason = models.TextField(blank=True)
    cancel_requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        ordering = ["-submitted_at", "-id"]
        indexes = [
            models.Index(fields=["state", "submitted_at"]),
            models.Index(fields=["institution", "-submitted_at"]),
            models.Index(fields=["node", "state"]),
        ]

    def __str__(self) -> str:
        return f"job {self.pk} ({self.state})"

    @property
    def is_active(self) -> bool:
        return self.state in self.ACTIVE_STATES

    @property
    def max_gpu_seconds(self) -> int:
        """The most this job can cost: every requested GPU for its whole time limit."""
        return self.gpu_count * self.time_limit_minutes * 60


class DeviceAssignment(models.Model):
    """A device held by an active job. The unique constraint is what makes double-booking
    impossible, whatever the dispatchers do."""

    node = models.ForeignKey(ComputeNode, on_delete=models.CASCADE, related_name="assignments")
    # "gpu:<index>" or "cpu:<slot>".
    device = models.CharField(max_length=16)
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="assignments")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["node", "device"], name="one_job_per_device")
        ]

    def __str__(self) -> str:
        return f"{self.device} of node {self.node_id}: job {self.job_id}"


class JobEvent(models.Model):
    """What happened to a job and why: the history shown on its page."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events")
    attempt = models.PositiveSmallIntegerField()
    state = models.CharField(max_length=16, choices=Job.State.choices)
    message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"job {self.job_id} attempt {self.attempt}: {self.state}"


class JobLogChunk(models.Model):
    """A piece of a job attempt's output, in the order the worker sent it."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="log_chunks")
    attempt = models.PositiveSmallIntegerField()
    offset = models.BigIntegerField()
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["attempt", "offset"]
        constraints = [
            models.UniqueConstraint(
                fields=["job", "attempt", "offset"], name="unique_log_chunk_offset"
            )
        ]

    def __str__(self) -> str:
        return f"job {self.job_id} attempt {self.attempt} @{self.offset}"
