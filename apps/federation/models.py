"""Federation: this node's public keys, its peers (their pinned keys, state and history), the
nonces seen on signed requests, the change feed of public records and what a sync left pending.

Private keys never enter the database: they live in files under the node's var dir (or come
from the environment); see keys.py.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q


class NodeKey(models.Model):
    """One of this node's Ed25519 signing keys (public half). The newest key that is not retiring
    signs; a retiring key is still accepted and published until `retiring_until`."""

    key_id = models.CharField(max_length=64, unique=True)
    public_key = models.CharField(max_length=64, help_text="Raw Ed25519 key, base64url.")
    created_at = models.DateTimeField(auto_now_add=True)
    retiring_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.key_id


class Peer(models.Model):
    """Another node, known by its id (its base URL)."""

    class State(models.TextChoices):
        REQUESTED = "requested", "Requested: waiting for the peer's approval"
        PENDING = "pending", "Pending: waiting for our staff's approval"
        APPROVED = "approved", "Approved"
        REFUSED = "refused", "Refused"
        SUSPENDED = "suspended", "Suspended"
        REVOKED = "revoked", "Revoked"

    node_id = models.URLField(max_length=255, unique=True)
    name = models.CharField(max_length=200, blank=True)
    institutions = models.JSONField(default=list, blank=True)
    protocol_version = models.CharField(max_length=16, blank=True)
    capabilities = models.JSONField(default=list, blank=True)
    state = models.CharField(max_length=16, choices=State.choices)
    # Which side suspended the peering: only that side may lift the suspension.
    suspended_by_peer = models.BooleanField(default=False)
    # When the well-known document was last fetched (a key id we do not know is looked up once
    # per FEDERATION_KEY_REFETCH_SECONDS, never on every request).
    identity_fetched_at = models.DateTimeField(null=True, blank=True)
    # Circuit breaker: consecutive failed calls; a peer past the threshold is unreachable and
    # only probed again at `next_probe_at`.
    consecutive_failures = models.PositiveIntegerField(default=0)
    unreachable_since = models.DateTimeField(null=True, blank=True)
    next_probe_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    # Catalogue sync: where the next pull starts in the peer's change feed.
    feed_cursor = models.CharField(max_length=200, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["node_id"]

    def __str__(self) -> str:
        return self.name or self.node_id

    @property
    def is_approved(self) -> bool:
        return self.state == self.State.APPROVED


class PeerKey(models.Model):
    """A public key pinned for a peer, from its well-known document."""

    peer = models.ForeignKey(Peer, on_delete=models.CASCADE, related_name="keys")
    key_id = models.CharField(max_length=64)
    public_key = models.CharField(max_length=64)
    retiring_until = models.DateTimeField(null=True, blank=True)
    pinned_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["peer", "-pinned_at"]
        constraints = [
            models.UniqueConstraint(fields=["peer", "key_id"], name="unique_peer_key_id")
        ]

    def __str__(self) -> str:
        return f"{self.peer} {self.key_id}"


class PeerEvent(models.Model):
    """Every change of a peering, with who made it: a user here, or the peer itself."""

    peer = models.ForeignKey(Peer, on_delete=models.CASCADE, related_name="events")
    from_state = models.CharField(max_length=16, blank=True)
    to_state = models.CharField(max_length=16)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    by_peer = models.BooleanField(default=False)
    note = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.peer}: {self.from_state or '-'} → {self.to_state}"


class SeenNonce(models.Model):
    """A nonce of a signed request, kept while a request carrying it could still be accepted."""

    node_id = models.CharField(max_length=255)
    nonce = models.CharField(max_length=128)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["node_id", "nonce"], name="unique_seen_nonce")
        ]

    def __str__(self) -> str:
        return f"{self.node_id} {self.nonce}"


class FeedEntry(models.Model):
    """One row per local record the change feed may speak of. A change sets `seq` to NULL; the
    sequencer numbers committed rows in one serialised step, so a change committed late always
    gets a number above everything a reader has already seen. The feed renders each record's
    current state: a record that is gone or no longer public is a tombstone, but only if it
    was ever public (`ever_public`): the feed never names a record that never left the node."""

    record_type = models.CharField(max_length=16)
    record_id = models.BigIntegerField()
    seq = models.BigIntegerField(null=True, blank=True, unique=True)
    ever_public = models.BooleanField(default=False)
    changed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["record_type", "record_id"], name="unique_feed_record")
        ]
        indexes = [
            models.Index(fields=["seq"], name="feed_unsequenced_idx", condition=Q(seq=None)),
            # OAI-PMH's deleted records, by type and time.
            models.Index(fields=["record_type", "changed_at"], name="feed_type_changed_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.record_type} {self.record_id} @ {self.seq}"


class FeedSequencer(models.Model):
    """A single row: the last sequence number given out. Locking it serialises numbering."""

    last_seq = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"feed sequence at {self.last_seq}"


class SyncPending(models.Model):
    """A mirrored record whose references (its institution, model, benchmark) have not arrived
    yet; retried after every page until they have."""

    peer = models.ForeignKey(Peer, on_delete=models.CASCADE, related_name="pending")
    record_type = models.CharField(max_length=16)
    origin_id = models.CharField(max_length=64)
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["peer", "record_type", "origin_id"], name="unique_pending_record"
            )
        ]

    def __str__(self) -> str:
        return f"{self.peer}: {self.record_type} {self.origin_id}"


class RemoteJob(models.Model):
    """An evaluation a researcher here asked a peer node to run on its pool, under a grant that
    node made to the researcher's institution (an allocation here whose origin is the peer).
    Its state follows the peer's job; the result comes back signed by the peer."""

    class State(models.TextChoices):
        SENDING = "sending", "Sending: the peer has not answered yet"
        REFUSED = "refused", "Refused by the peer"
        PREPARING = "preparing", "Accepted: the peer is fetching the model's files"
        PENDING = "pending", "Queued at the peer"
        DISPATCHED = "dispatched", "Dispatched at the peer"
        RUNNING = "running", "Running at the peer"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        TIMED_OUT = "timed_out", "Timed out"

    ACTIVE_STATES = (
        State.SENDING,
        State.PREPARING,
        State.PENDING,
        State.DISPATCHED,
        State.RUNNING,
    )
    FINISHED_STATES = (
        State.REFUSED,
        State.SUCCEEDED,
        State.FAILED,
        State.CANCELLED,
        State.TIMED_OUT,
    )

    request_id = models.UUIDField(unique=True)
    peer = models.ForeignKey(Peer, on_delete=models.PROTECT, related_name="remote_jobs")
    allocation = models.ForeignKey(
        "compute.Allocation", on_delete=models.PROTECT, related_name="remote_jobs"
    )
    submitter = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="remote_jobs"
    )
    institution = models.ForeignKey(
        "accounts.Institution", on_delete=models.PROTECT, related_name="remote_jobs"
    )
    model_version = models.ForeignKey(
        "catalog.ModelVersion", on_delete=models.PROTECT, related_name="remote_jobs"
    )
    benchmark = models.ForeignKey(
        "catalog.Benchmark", on_delete=models.PROTECT, related_name="remote_jobs"
    )
    reproduction_of = models.ForeignKey(
        "evaluations.Result",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="remote_reproductions",
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.SENDING)
    # Why the peer refused the request or why the job failed, in the peer's words.
    reason = models.TextField(blank=True)
    # What the peer last told us: its job id, the job's place in its queue, its attempt.
    peer_job_id = models.BigIntegerField(null=True, blank=True)
    queue_position = models.PositiveIntegerField(null=True, blank=True)
    attempt = models.PositiveSmallIntegerField(default=0)
    # The signed usage record the peer sent when the job ended, and its figure.
    gpu_seconds = models.BigIntegerField(default=0)
    usage_record = models.JSONField(null=True, blank=True)
    result = models.OneToOneField(
        "evaluations.Result",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="remote_job",
    )
    # Why the last exchange with the peer failed (it is retried).
    last_error = models.TextField(blank=True)
    submitted_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-submitted_at", "-id"]
        indexes = [models.Index(fields=["state", "updated_at"])]

    def __str__(self) -> str:
        return f"remote job {self.request_id} at {self.peer} ({self.state})"

    @property
    def is_active(self) -> bool:
        return self.state in self.ACTIVE_STATES

    @property
    def gpu_hours(self) -> float:
        return self.gpu_seconds / 3600


class InboundJob(models.Model):
    """A job a peer asked this node to run for one of its institutions. Accepted, its model
    files are fetched from the peer and checked; then it becomes a job in our own queue. When
    that job ends, its outcome (state, signed usage record and signed result) is delivered to
    the peer, retried until the peer has it."""

    class State(models.TextChoices):
        PREPARING = "preparing", "Fetching the model's files from the peer"
        QUEUED = "queued", "A job in the pool"
        FAILED = "failed", "Failed before it reached the pool"
        CANCELLED = "cancelled", "Cancelled before it reached the pool"

    peer = models.ForeignKey(Peer, on_delete=models.PROTECT, related_name="inbound_jobs")
    request_id = models.UUIDField()
    allocation = models.ForeignKey(
        "compute.Allocation", on_delete=models.PROTECT, related_name="inbound_jobs"
    )
    model_version = models.ForeignKey(
        "catalog.ModelVersion", on_delete=models.PROTECT, related_name="inbound_jobs"
    )
    benchmark = models.ForeignKey(
        "catalog.Benchmark", on_delete=models.PROTECT, related_name="inbound_jobs"
    )
    # The result of ours (mirrored here) this job reproduces, if the peer asked for that.
    reproduction_of = models.ForeignKey(
        "evaluations.Result", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Who asked, as the peer named them: shown in the job's events.
    requested_by = models.CharField(max_length=200, blank=True)
    job = models.OneToOneField(
        "compute.Job", null=True, blank=True, on_delete=models.PROTECT, related_name="inbound"
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.PREPARING)
    reason = models.TextField(blank=True)
    # Delivery of the outcome to the peer.
    delivered_at = models.DateTimeField(null=True, blank=True)
    delivery_attempts = models.PositiveIntegerField(default=0)
    next_delivery_at = models.DateTimeField(null=True, blank=True)
    last_delivery_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["peer", "request_id"], name="unique_inbound_request_per_peer"
            )
        ]
        indexes = [models.Index(fields=["delivered_at", "next_delivery_at"])]

    def __str__(self) -> str:
        return f"job {self.request_id} of {self.peer} ({self.state})"
