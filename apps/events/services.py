"""Recording events and telling people: an event is written in the transaction of the change it
reports, with one notification per user who sees it in the portal; mail and webhooks go out from
Celery once that transaction has committed."""

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.urls import reverse

from apps.accounts.models import Institution, User
from apps.events import webhooks
from apps.events.models import Event, EventType, Notification, NotificationPreference

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
