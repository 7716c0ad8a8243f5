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
