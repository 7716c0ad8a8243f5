"""Reads of notifications, preferences and watches. A user reads only their own notifications:
another user's is not found, whoever asks (staff included)."""

from dataclasses import dataclass

from django.db.models import QuerySet
from django.http import Http404
from django.utils.http import url_has_allowed_host_and_scheme

from apps.accounts.models import User
from apps.catalog.models import Benchmark
from apps.events.models import BenchmarkWatch, EventType, Notification, NotificationPreference
from apps.events.services import DEFAULT_CHANNELS, event_types_for, visible_benchmark


def notification_list(*, user: User, unread: bool | None = None) -> QuerySet[Notification]:
    """The user's notifications, newest first, each with its event."""
    notifications = Notification.objects.filter(user=user).select_related("event")
    if unread is not None:
        notifications = notifications.filter(read_at__isnull=unread)
    return notifications.order_by("-created_at", "-id")


def notification_get(*, user: User, notification_id: int) -> Notification:
    notification = notification_list(user=user).filter(pk=notification_id).first()
    if notification is None:
        raise Http404("No such notification.")
    return notification


def notification_unread_count(*, user: User) -> int:
    return Notification.objects.filter(user=user, read_at__isnull=True).count()


def notification_target(notification: Notification) -> str | None:
    """Where opening the notification leads: a path on this node, never another site."""
    url = notification.event.url
    if (
        url.startswith("/")
        and not url.startswith(("//", "/\\"))
        and url_has_allowed_host_and_scheme(url, allowed_hosts=set())
    ):
        return url
    return None


@dataclass(frozen=True)
class PreferenceRow:
    event_type: EventType
    portal: bool
    email: bool
    default_portal: bool
    default_email: bool

    @property
    def description(self) -> str:
        return str(self.event_type.label)


def notification_preferences(*, user: User) -> list[PreferenceRow]:
    """The user's (portal, email) for each type of event they may hear of, defaults applied."""
    chosen = {
        preference.event_type: (preference.portal, preference.email)
        for preference in NotificationPreference.objects.filter(user=user)
    }
    rows = []
    for kind in event_types_for(user):
        default = DEFAULT_CHANNELS[kind]
        portal, email = chosen.get(kind, default)
        rows.append(PreferenceRow(kind, portal, email, *default))
    return rows


def benchmark_watched(*, user: User, benchmark: Benchmark) -> bool:
    return BenchmarkWatch.objects.filter(user=user, benchmark=benchmark).exists()


def benchmark_watched_by_id(*, user: User, benchmark_id: int) -> bool:
    """Whether the user watches a benchmark they may see (one they may not is not found)."""
    benchmark = visible_benchmark(user=user, benchmark_id=benchmark_id)
    return benchmark_watched(user=user, benchmark=benchmark)


def benchmark_watchers(*, benchmark_id: int) -> QuerySet[User]:
    return User.objects.filter(benchmark_watches__benchmark_id=benchmark_id, is_active=True)
