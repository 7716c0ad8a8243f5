"""What people wait for, recorded once as an event, and how it reaches them: in-portal
notifications, mail (by each user's preferences) and webhooks.

An event names who it concerns: the users who are told (one `Notification` each) and, for events
of a whole institution (its jobs, its compute requests, its grants, its records' discussions),
that institution, whose admins' webhooks receive it. Its `data` is what every one of them may
see: never more than the event's audience may read elsewhere.
"""

import uuid

from django.conf import settings
from django.db import models

from apps.accounts.models import Institution


class EventType(models.TextChoices):
    JOB_SUCCEEDED = "job.succeeded", "An evaluation job succeeded"
    JOB_FAILED = "job.failed", "An evaluation job failed"
    JOB_TIMED_OUT = "job.timed_out", "An evaluation job ran out of time"
    JOB_CANCELLED = "job.cancelled", "An evaluation job was cancelled"
    RESULT_PUBLISHED = "result.published", "A result was published on a benchmark you watch"
    COMPUTE_REQUEST_REVIEWED = "compute_request.reviewed", "A compute request was reviewed"
    GRANT_RECEIVED = "grant.received", "GPU-hours were granted to your institution"
    COMMENT_CREATED = "comment.created", "A comment on your record"
    PEER_REQUESTED = "peer.requested", "A node asked to peer with this one (staff)"
    WEBHOOK_DISABLED = "webhook.disabled", "A webhook endpoint was disabled after failures"


class Event(models.Model):
    # The id receivers see (webhook-id, mail headers): stable across retries, never reused.
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    type = models.CharField(max_length=40, choices=EventType.choices)
    # One line for people: the notification's text and the mail's subject.
    summary = models.CharField(max_length=300)
    # Where the portal shows what happened (a path on this node).
    url = models.CharField(max_length=500, blank=True)
    data = models.JSONField(default=dict)
    institution = models.ForeignKey(
        Institution, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["institution", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.type}: {self.summary}"


class Notification(models.Model):
    """An event as one user's portal shows it."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
    )
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="notifications")
    read_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["user", "event"], name="unique_notification_per_user")
        ]
        indexes = [models.Index(fields=["user", "read_at", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.user}: {self.event}"


class NotificationPreference(models.Model):
    """How one user wants to hear of one type of event; without a row, the type's defaults
    (services.DEFAULT_CHANNELS) hold."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preferences"
    )
    event_type = models.CharField(max_length=40, choices=EventType.choices)
    portal = models.BooleanField(default=True)
    email = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "event_type"], name="unique_notification_preference"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.event_type}: portal={self.portal} email={self.email}"


class BenchmarkWatch(models.Model):
    """A user who wants to hear of every result published on a benchmark."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="benchmark_watches"
    )
    benchmark = models.ForeignKey(
        "catalog.Benchmark", on_delete=models.CASCADE, related_name="watches"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "benchmark"], name="unique_benchmark_watch")
        ]

    def __str__(self) -> str:
        return f"{self.user} watches {self.benchmark_id}"


class WebhookEndpoint(models.Model):
    """A URL that receives events as signed POSTs (Standard Webhooks). It belongs to a user (the
    events whose audience includes them) or to an institution (the events of that institution),
    and only its owner, the user or the institution's admins, sees and manages it."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="webhook_endpoints",
    )
    institution = models.ForeignKey(
        Institution,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="webhook_endpoints",
    )
    # Who set the URL: the creator, then whoever changed it or enabled the endpoint again. An
    # institution's endpoint receives events only while they administer it.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    url = models.URLField(max_length=500)
    description = models.CharField(max_length=200, blank=True)
    # "whsec_" + base64 of random bytes: what both sides sign with.
    secret = models.CharField(max_length=100)
    # Empty: every type the owner may receive.
    event_types = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)
    # Set only by staff, for a development setup whose receiver is on a private network.
    allow_private_addresses = models.BooleanField(default=False)
    # Failed attempts in a row, across deliveries; a success resets it.
    consecutive_failures = models.PositiveIntegerField(default=0)
    disabled_reason = models.CharField(max_length=500, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(user__isnull=False, institution__isnull=True)
                | models.Q(user__isnull=True, institution__isnull=False),
                name="webhook_endpoint_has_one_owner",
            )
        ]

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(models.Model):
    """One event to one endpoint: attempted until the receiver answers 2xx or the attempts run
    out. The row, not the Celery message, says what is due: a lost message only delays it."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        RETRYING = "retrying", "Retrying"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    ACTIVE_STATES = (State.PENDING, State.RETRYING)

    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="webhook_deliveries")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=1000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "event"], name="unique_webhook_delivery")
        ]
        indexes = [models.Index(fields=["state", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"{self.event_id} to {self.endpoint_id}: {self.state}"


class WebhookAttempt(models.Model):
    """One POST of a delivery and what the receiver answered."""

    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log"
    )
    number = models.PositiveIntegerField()
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=1000, blank=True)
    # The first KiB of the receiver's answer.
    response_body = models.CharField(max_length=1024, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["delivery", "number"]

    def __str__(self) -> str:
        return f"{self.delivery_id} #{self.number}: {self.status_code or self.error}"
