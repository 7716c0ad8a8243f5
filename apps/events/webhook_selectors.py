"""Reads of webhooks: an endpoint and its deliveries are seen by its owner only (the user, or
the admins of its institution); to anyone else they do not exist."""

from django.db.models import Q, QuerySet

from apps.accounts.models import Membership, User
from apps.events.models import WebhookDelivery, WebhookEndpoint


def webhook_endpoint_list(*, user: User) -> QuerySet[WebhookEndpoint]:
    if not getattr(user, "is_authenticated", False):
        return WebhookEndpoint.objects.none()
    administered = Membership.objects.filter(user=user, role=Membership.Role.ADMIN).values(
        "institution_id"
    )
    return WebhookEndpoint.objects.filter(
        Q(user=user) | Q(institution_id__in=administered)
    ).select_related("institution", "user")


def webhook_delivery_list(*, endpoint: WebhookEndpoint) -> QuerySet[WebhookDelivery]:
    return (
        WebhookDelivery.objects.filter(endpoint=endpoint)
        .select_related("event")
        .prefetch_related("attempt_log")
        .order_by("-created_at", "-id")
    )
