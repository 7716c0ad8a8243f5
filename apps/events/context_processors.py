from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from apps.events import selectors


def notifications(request: HttpRequest) -> dict:
    """The signed-in user's unread count for the bell: one COUNT on an index, run only when a
    page shows it."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        "unread_notifications": SimpleLazyObject(
            lambda: selectors.notification_unread_count(user=user)
        )
    }
