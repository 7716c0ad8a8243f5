"""Recording events and telling people: an event is written in the transaction of the change it
reports, with one notification per user who sees it in the portal; mail and webhooks go out from
Celery once that transaction has committed."""

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone

from apps.accounts.models import Institution, User
from apps.catalog import selectors as catalog_selectors
from apps.catalog.models import Benchmark
from apps.events import webhooks
from apps.events.models import (
    BenchmarkWatch,
    Event,
    EventType,
    Notification,
    NotificationPreference,
)

# (portal, email) for a type without a preference row: mail for what people wait on, not for
# what happens often.
DEFAULT_CHANNELS: dict[str, tuple[bool, bool]] = {
    EventType.JOB_SUCCEEDED: (True, True),
    EventType.JOB_FAILED: (True, True),
    EventType.JOB_TIMED_OUT: (True, True),
    EventType.JOB_CANCELLED: (True, False),
    EventType.RESULT_PUBLISHED: (True, False),
    EventType.COMPUTE_REQUEST_REVIEWED: (True, True),
    EventType.GRANT_RECEIVED: (True, True),
    EventType.COMMENT_CREATED: (True, False),
    EventType.PEER_REQUESTED: (True, True),
    EventType.WEBHOOK_DISABLED: (True, True),
}


def notification_channels(
    *, users: Iterable[User], event_type: str
) -> dict[int, tuple[bool, bool]]:
    """(portal, email) of each user for one type of event."""
    users = list(users)
    chosen = {
        preference.user_id: (preference.portal, preference.email)
        for preference in NotificationPreference.objects.filter(
            user__in=users, event_type=event_type
        )
    }
    default = DEFAULT_CHANNELS[event_type]
    return {user.pk: chosen.get(user.pk, default) for user in users}


def event_emit(
    *,
    type: EventType,
    summary: str,
    data: dict[str, Any],
    users: Iterable[User] = (),
    institution: Institution | None = None,
    url: str = "",
) -> Event:
    """Records an event for `users` (each may see what `data` holds) and, when given, the
    institution it concerns (its webhooks receive it). Call it inside the transaction of the
    change: a rolled-back change tells no one."""
    audience = {user.pk: user for user in users if user.is_active}
    with transaction.atomic():
        event = Event.objects.create(
            type=type, summary=summary[:300], url=url, data=data, institution=institution
        )
        channels = notification_channels(users=audience.values(), event_type=type)
        Notification.objects.bulk_create(
            Notification(user_id=user_id, event=event)
            for user_id, (portal, _email) in channels.items()
            if portal
        )
        mail_to = sorted(
            user_id
            for user_id, (_portal, email) in channels.items()
            if email and audience[user_id].email
        )
        deliveries = webhooks.webhook_deliveries_create(event=event, user_ids=audience)
    webhooks.deliveries_enqueue([(delivery_id, 0) for delivery_id in deliveries])

    def deliver() -> None:
        from apps.events import tasks

        tasks.event_deliver_task.delay(event.pk, mail_to)

    transaction.on_commit(deliver)
    return event


def event_mail(*, event_id: int, user_ids: list[int]) -> int:
    """Mails the event to each user (one message each: no one sees the others' addresses).
    Returns how many were sent."""
    event = Event.objects.filter(pk=event_id).first()
    if event is None:
        return 0
    node = settings.FEDERATION_NODE_URL
    lines = [event.summary, ""]
    if event.url:
        lines.append(f"{node}{event.url}")
    lines += ["", f"Choose what this node tells you and how: {node}{reverse('events:preferences')}"]
    messages = [
        EmailMessage(
            subject=f"[{settings.NODE_NAME}] {event.summary}",
            body="\n".join(lines),
            to=[user.email],
            headers={
                "X-Research-Exchange-Event": event.type,
                "Message-ID": _message_id(event, user),
            },
        )
        for user in User.objects.filter(pk__in=user_ids, is_active=True).exclude(email="")
    ]
    if not messages:
        return 0
    with get_connection() as connection:
        return connection.send_messages(messages) or 0


def _message_id(event: Event, user: User) -> str:
    host = urlsplit(settings.FEDERATION_NODE_URL).hostname or "localhost"
    return f"<{event.public_id}.{user.pk}@{host}>"


# Types only platform staff hear of: nobody else may choose channels for them.
STAFF_ONLY_TYPES = frozenset({EventType.PEER_REQUESTED})


def event_types_for(user: User) -> list[EventType]:
    """The types of event `user` may hear of, in the order the portal lists them."""
    return [kind for kind in EventType if user.is_staff or kind not in STAFF_ONLY_TYPES]


def notification_mark_read(*, user: User, notification: Notification) -> Notification:
    """Marks one of the user's own notifications read (another user's is not found)."""
    if notification.user_id != user.pk:
        raise Http404("No such notification.")
    if notification.read_at is None:
        notification.read_at = timezone.now()
        Notification.objects.filter(pk=notification.pk, read_at__isnull=True).update(
            read_at=notification.read_at
        )
    return notification


def notifications_mark_all_read(*, user: User) -> int:
    """Marks every unread notification of the user read; returns how many."""
    return Notification.objects.filter(user=user, read_at__isnull=True).update(
        read_at=timezone.now()
    )


@transaction.atomic
def notification_preferences_set(*, user: User, channels: Mapping[str, tuple[bool, bool]]) -> None:
    """Sets (portal, email) for each type named; the others keep theirs. A choice equal to the
    type's default keeps no row, so the user follows the default if it changes."""
    allowed = set(event_types_for(user))
    refused = sorted(kind for kind in channels if kind not in allowed)
    if refused:
        raise ValidationError({"event_type": f"Not an event type you can choose: {refused[0]}."})
    for kind, (portal, email) in channels.items():
        if (portal, email) == DEFAULT_CHANNELS[kind]:
            NotificationPreference.objects.filter(user=user, event_type=kind).delete()
        else:
            NotificationPreference.objects.update_or_create(
                user=user, event_type=kind, defaults={"portal": portal, "email": email}
            )


def visible_benchmark(*, user: User, benchmark_id: int) -> Benchmark:
    """A benchmark the user may see; one they may not is not found, as one that does not exist."""
    return get_object_or_404(
        Benchmark.objects.filter(catalog_selectors.visible_to(user)), pk=benchmark_id
    )


def benchmark_watch(*, user: User, benchmark_id: int) -> BenchmarkWatch:
    """Starts watching a benchmark the user may see; watching it again changes nothing."""
    benchmark = visible_benchmark(user=user, benchmark_id=benchmark_id)
    watch, _created = BenchmarkWatch.objects.get_or_create(user=user, benchmark=benchmark)
    return watch


def benchmark_unwatch(*, user: User, benchmark_id: int) -> None:
    benchmark = visible_benchmark(user=user, benchmark_id=benchmark_id)
    BenchmarkWatch.objects.filter(user=user, benchmark=benchmark).delete()
