"""Webhooks: endpoints that receive events as signed POSTs, following the Standard Webhooks
conventions (webhook-id, webhook-timestamp, webhook-signature).

A delivery row is written with its event, in the transaction of the change; after commit a
Celery task makes the first attempt, and a beat task picks whatever is due (a retry, or an
attempt whose message was lost). An attempt claims the row by its attempt count, so a message
delivered twice sends once. A non-2xx answer, a time-out or a refused connection schedules the
next attempt with exponential back-off; an endpoint that keeps failing is disabled and its
owner told.
"""

import base64
import json
import random
import secrets
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Exists, F, OuterRef
from django.urls import reverse
from django.utils import timezone

from apps.accounts.models import Institution, Membership, User
from apps.core import addresses
from apps.events import webhook_http
from apps.events.models import (
    Event,
    EventType,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)

TEST_EVENT_TYPE = "webhook.test"
# Events of a whole institution: what its endpoints receive.
INSTITUTION_EVENT_TYPES = (
    EventType.JOB_SUCCEEDED,
    EventType.JOB_FAILED,
    EventType.JOB_TIMED_OUT,
    EventType.JOB_CANCELLED,
    EventType.COMPUTE_REQUEST_REVIEWED,
    EventType.GRANT_RECEIVED,
    EventType.COMMENT_CREATED,
)
STAFF_EVENT_TYPES = (EventType.PEER_REQUESTED,)
State = WebhookDelivery.State


def receivable_event_types(*, user: User | None, institution: Institution | None) -> list[str]:
    """What an endpoint of this owner may receive: an institution's events, or a user's (the
    staff's among them only for staff)."""
    if institution is not None:
        return [str(value) for value in INSTITUTION_EVENT_TYPES]
    return [
        str(value)
        for value in EventType
        if value not in STAFF_EVENT_TYPES or (user is not None and user.is_staff)
    ]


def admin_institution_ids(user: User) -> list[int]:
    return list(
        Membership.objects.filter(user=user, role=Membership.Role.ADMIN).values_list(
            "institution_id", flat=True
        )
    )


def webhook_require_owner(*, user: User, endpoint: WebhookEndpoint) -> None:
    if endpoint.user_id is not None and endpoint.user_id == user.pk:
        return
    if (
        endpoint.institution_id is not None
        and Membership.objects.filter(
            user=user, institution_id=endpoint.institution_id, role=Membership.Role.ADMIN
        ).exists()
    ):
        return
    raise PermissionDenied("Only the endpoint's owner manages it.")


def _new_secret() -> str:
    return webhook_http.SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def _clean_event_types(
    event_types: Iterable[str], *, user: User | None, institution: Institution | None
) -> list[str]:
    chosen = list(dict.fromkeys(event_types))
    unknown = [name for name in chosen if name not in EventType.values]
    if unknown:
        raise ValidationError(
            {"event_types": f"Unknown event type(s): {', '.join(map(str, unknown))}."}
        )
    allowed = receivable_event_types(user=user, institution=institution)
    refused = [name for name in chosen if name not in allowed]
    if refused:
        who = "an institution's endpoint" if institution is not None else "your endpoint"
        raise ValidationError(
            {
                "event_types": f"{', '.join(refused)} cannot reach {who}; it may receive "
                f"{', '.join(allowed)}."
            }
        )
    return sorted(chosen)


def _check_url(url: str, *, allow_private: bool) -> None:
    try:
        webhook_http.target_addresses(url, allow_private=allow_private)
    except addresses.AddressRefused as error:
        raise ValidationError({"url": str(error)}) from error


def _check_private_flag(user: User, allow_private_addresses: bool) -> None:
    if allow_private_addresses and not user.is_staff:
        raise ValidationError(
            {"allow_private_addresses": "Only platform staff may allow private addresses."}
        )


@transaction.atomic
def webhook_endpoint_create(
    *,
    user: User,
    url: str,
    description: str = "",
    event_types: Iterable[str] = (),
    institution: Institution | None = None,
    allow_private_addresses: bool = False,
) -> WebhookEndpoint:
    """A personal endpoint, or, for an admin of `institution`, one of that institution."""
    if institution is not None and institution.pk not in admin_institution_ids(user):
        raise ValidationError(
            {"institution": f"Only the admins of {institution.name} register its endpoints."}
        )
    _check_private_flag(user, allow_private_addresses)
    owner = None if institution is not None else user
    endpoint = WebhookEndpoint(
        user=owner,
        institution=institution,
        created_by=user,
        url=url.strip(),
        description=description.strip(),
        event_types=_clean_event_types(event_types, user=owner, institution=institution),
        allow_private_addresses=allow_private_addresses,
        secret=_new_secret(),
    )
    _check_url(endpoint.url, allow_private=allow_private_addresses)
    endpoint.full_clean()
    endpoint.save()
    return endpoint


@transaction.atomic
def webhook_endpoint_update(
    *,
    user: User,
    endpoint: WebhookEndpoint,
    url: str | None = None,
    description: str | None = None,
    event_types: Iterable[str] | None = None,
    enabled: bool | None = None,
    allow_private_addresses: bool | None = None,
) -> WebhookEndpoint:
    """Changes what is given. Enabling again clears the failure count and the reason it was
    disabled. A URL changed by someone other than staff loses the private-address allowance:
    staff allowed it for the address they saw. Whoever changes the URL or enables the endpoint
    becomes the one who set its URL (`created_by`), whom an institution's endpoint follows."""
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    webhook_require_owner(user=user, endpoint=endpoint)
    if allow_private_addresses is not None and (
        allow_private_addresses != endpoint.allow_private_addresses
    ):
        if not user.is_staff:
            raise ValidationError(
                {"allow_private_addresses": "Only platform staff may change this."}
            )
        endpoint.allow_private_addresses = allow_private_addresses
    if url is not None and url.strip() != endpoint.url:
        endpoint.url = url.strip()
        endpoint.created_by = user
        if not user.is_staff:
            endpoint.allow_private_addresses = False
    if url is not None or allow_private_addresses is not None:
        _check_url(endpoint.url, allow_private=endpoint.allow_private_addresses)
    if description is not None:
        endpoint.description = description.strip()
    if event_types is not None:
        endpoint.event_types = _clean_event_types(
            event_types, user=endpoint.user, institution=endpoint.institution
        )
    if enabled is not None and enabled != endpoint.enabled:
        endpoint.enabled = enabled
        if enabled:
            endpoint.created_by = user  # who enables it answers for where it leads
            endpoint.consecutive_failures = 0
            endpoint.disabled_reason = ""
            endpoint.disabled_at = None
        else:
            endpoint.disabled_reason = f"Disabled by {user.username}."
            endpoint.disabled_at = timezone.now()
    endpoint.full_clean()
    endpoint.save()
    return endpoint


@transaction.atomic
def webhook_private_addresses_set(
    *, user: User, endpoint: WebhookEndpoint, allow: bool
) -> WebhookEndpoint:
    """Staff let an endpoint reach private networks (a development setup) or stop it."""
    if not user.is_staff:
        raise PermissionDenied("Only platform staff may allow private addresses.")
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        allow_private_addresses=allow, updated_at=timezone.now()
    )
    endpoint.refresh_from_db()
    return endpoint


@transaction.atomic
def webhook_endpoint_delete(*, user: User, endpoint: WebhookEndpoint) -> None:
    webhook_require_owner(user=user, endpoint=endpoint)
    endpoint.delete()


@transaction.atomic
def webhook_secret_rotate(*, user: User, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """A new secret; the old one signs nothing from now on."""
    webhook_require_owner(user=user, endpoint=endpoint)
    endpoint.secret = _new_secret()
    endpoint.save(update_fields=["secret", "updated_at"])
    return endpoint


@transaction.atomic
def webhook_test_send(*, user: User, endpoint: WebhookEndpoint) -> WebhookDelivery:
    """A `webhook.test` event to this endpoint only, delivered like any other."""
    webhook_require_owner(user=user, endpoint=endpoint)
    if not endpoint.enabled:
        raise ValidationError({"enabled": "The endpoint is disabled: enable it first."})
    # One test in flight per endpoint: its owner cannot make the node call a URL over and over.
    in_flight = WebhookDelivery.objects.filter(
        endpoint=endpoint,
        event__type=TEST_EVENT_TYPE,
        state__in=WebhookDelivery.ACTIVE_STATES,
    ).first()
    if in_flight is not None:
        raise ValidationError(
            {
                "endpoint": f"A test event to this endpoint is still being delivered (delivery "
                f"{in_flight.pk}, {in_flight.attempts} attempt(s) so far): wait for it to end."
            }
        )
    event = Event.objects.create(
        type=TEST_EVENT_TYPE,
        summary=f"Test event for webhook {endpoint.pk}, sent by {user.username}",
        url=reverse("webhooks:detail", args=[endpoint.pk]),
        data={"endpoint": endpoint.pk, "sent_by": user.username},
        institution=None,
    )
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint, event=event, next_attempt_at=timezone.now()
    )
    deliveries_enqueue([(delivery.pk, 0)])
    return delivery


def webhook_deliveries_create(*, event: Event, user_ids: Iterable[int]) -> list[int]:
    """One delivery per enabled endpoint that takes the event: those of its audience's users
    and of its institution, that chose its type or every type (in the caller's transaction).
    An institution's endpoint whose URL was set by someone who no longer administers it
    (demoted, gone, deactivated) is disabled instead: its URL may lead to them."""
    user_ids = list(user_ids)
    candidates = WebhookEndpoint.objects.filter(enabled=True).select_related("user")
    personal = candidates.filter(user_id__in=user_ids) if user_ids else candidates.none()
    chosen: list[WebhookEndpoint] = []
    for endpoint in personal:
        if event.type in receivable_event_types(user=endpoint.user, institution=None):
            chosen.append(endpoint)
    if event.institution_id is not None and event.type in INSTITUTION_EVENT_TYPES:
        answering_admin = Membership.objects.filter(
            institution_id=OuterRef("institution_id"),
            user_id=OuterRef("created_by_id"),
            user__is_active=True,
            role=Membership.Role.ADMIN,
        )
        institution_endpoints = (
            candidates.filter(institution_id=event.institution_id)
            .select_related("institution", "created_by")
            .annotate(answered_for=Exists(answering_admin))
        )
        for endpoint in institution_endpoints:
            if endpoint.answered_for:
                chosen.append(endpoint)
            else:
                _disable_unanswered(endpoint)
    chosen = [e for e in chosen if not e.event_types or event.type in e.event_types]
    if not chosen:
        return []
    now = timezone.now()
    deliveries = WebhookDelivery.objects.bulk_create(
        WebhookDelivery(endpoint=endpoint, event=event, next_attempt_at=now) for endpoint in chosen
    )
    return [delivery.pk for delivery in deliveries]


def _disable_unanswered(endpoint: WebhookEndpoint) -> None:
    institution = endpoint.institution
    if institution is None:
        return
    who = endpoint.created_by.username if endpoint.created_by else "the admin who set its URL"
    _disable(
        endpoint,
        reason=f"Disabled: {who}, who set its URL, no longer administers {institution.name}; "
        "an admin who checks the URL enables it again.",
        summary=f"Webhook {endpoint.url} was disabled: {who}, who set its URL, no longer "
        f"administers {institution.name}",
    )


def deliveries_enqueue(pairs: list[tuple[int, int]]) -> None:
    """After commit, one task per (delivery, attempts so far). A broker that is down loses
    nothing: the beat finds the rows due."""
    if not pairs:
        return

    def send() -> None:
        from apps.events.tasks import webhook_deliver_task

        for delivery_id, attempts in pairs:
            webhook_deliver_task.apply_async(
                (delivery_id, attempts), queue=settings.CELERY_TASK_DEFAULT_QUEUE
            )

    transaction.on_commit(send, robust=True)


def webhook_payload(event: Event) -> bytes:
    """The body: the same bytes on every attempt, so a receiver may compare them."""
    data: dict[str, Any] = {"summary": event.summary, **event.data}
    if event.url:
        data.setdefault("url", settings.FEDERATION_NODE_URL + event.url)
    body = {"type": event.type, "timestamp": event.created_at.isoformat(), "data": data}
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def message_id(event: Event) -> str:
    return f"msg_{event.public_id.hex}"


def retry_delay(attempts: int) -> timedelta:
    """Wait before attempt `attempts + 1`: the base doubling each time, up to the cap, with
    ±20 % jitter so that endpoints failing together do not retry together."""
    base = settings.WEBHOOK_RETRY_SECONDS * 2 ** max(attempts - 1, 0)
    seconds = min(base, settings.WEBHOOK_RETRY_MAX_SECONDS)
    return timedelta(seconds=seconds * random.uniform(0.8, 1.2))  # noqa: S311 - jitter


def _claim_seconds() -> timedelta:
    """How long a claimed attempt may take before the beat tries it again."""
    return timedelta(
        seconds=settings.WEBHOOK_CONNECT_TIMEOUT_SECONDS
        + settings.WEBHOOK_READ_TIMEOUT_SECONDS
        + 45
    )


def webhook_deliveries_claim_due(*, now: datetime | None = None, limit: int = 500) -> list:
    """Due deliveries, each pushed out by the claim time so that the next sweep skips it while
    its message waits in the queue. Returns (delivery id, attempts so far) pairs."""
    now = now or timezone.now()
    with transaction.atomic():
        due = list(
            WebhookDelivery.objects.select_for_update(skip_locked=True)
            .filter(state__in=WebhookDelivery.ACTIVE_STATES, next_attempt_at__lte=now)
            .order_by("next_attempt_at")
            .values_list("pk", "attempts")[:limit]
        )
        WebhookDelivery.objects.filter(pk__in=[pk for pk, _ in due]).update(
            next_attempt_at=now + _claim_seconds()
        )
    return due


def webhook_delivery_attempt(*, delivery_id: int, attempts: int) -> WebhookDelivery | None:
    """Makes attempt `attempts + 1` of the delivery, unless another message made it already.
    No transaction is held open while the receiver is called."""
    now = timezone.now()
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_id, attempts=attempts, state__in=WebhookDelivery.ACTIVE_STATES
    ).update(attempts=attempts + 1, last_attempt_at=now, next_attempt_at=now + _claim_seconds())
    if not claimed:
        return None
    delivery = (
        WebhookDelivery.objects.select_related("endpoint", "event").filter(pk=delivery_id).first()
    )
    if delivery is None:  # its endpoint was deleted meanwhile
        return None
    endpoint = delivery.endpoint
    if not endpoint.enabled:
        WebhookDelivery.objects.filter(pk=delivery_id).update(
            attempts=attempts,
            state=State.FAILED,
            next_attempt_at=None,
            last_error="Not sent: the endpoint is disabled.",
        )
        return WebhookDelivery.objects.get(pk=delivery_id)
    body = webhook_payload(delivery.event)
    sent_at = int(time.time())
    msg_id = message_id(delivery.event)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": webhook_http.USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(sent_at),
        "webhook-signature": webhook_http.signature(
            secret=endpoint.secret, message_id=msg_id, timestamp=sent_at, body=body
        ),
    }
    answer = webhook_http.post(
        url=endpoint.url,
        body=body,
        headers=headers,
        allow_private=endpoint.allow_private_addresses,
    )
    return _record(delivery_id=delivery_id, answer=answer)


@transaction.atomic
def _record(*, delivery_id: int, answer: webhook_http.Answer) -> WebhookDelivery | None:
    delivery = (
        WebhookDelivery.objects.select_for_update(of=("self",))
        .select_related("endpoint")
        .filter(pk=delivery_id)
        .first()
    )
    if delivery is None:  # its endpoint was deleted while the receiver was called
        return None
    now = timezone.now()
    WebhookAttempt.objects.create(
        delivery=delivery,
        number=delivery.attempts,
        status_code=answer.status_code,
        error=answer.error,
        response_body=answer.body,
        duration_ms=answer.duration_ms,
    )
    delivery.last_status_code = answer.status_code
    delivery.last_error = answer.error
    endpoints = WebhookEndpoint.objects.filter(pk=delivery.endpoint_id)
    if answer.ok:
        delivery.state = State.SUCCEEDED
        delivery.next_attempt_at = None
        endpoints.update(consecutive_failures=0)
    else:
        if delivery.attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
            delivery.state = State.FAILED
            delivery.next_attempt_at = None
        else:
            delivery.state = State.RETRYING
            delivery.next_attempt_at = now + retry_delay(delivery.attempts)
        endpoints.update(consecutive_failures=F("consecutive_failures") + 1)
        failures = endpoints.values_list("consecutive_failures", flat=True).first() or 0
        if failures >= settings.WEBHOOK_DISABLE_AFTER_FAILURES:
            _disable(
                delivery.endpoint,
                reason=f"Disabled after {failures} failed attempts in a row; the last: "
                f"{answer.error}",
                summary=f"Webhook {delivery.endpoint.url} was disabled: it failed {failures} "
                "times in a row",
            )
    delivery.save()
    return delivery


def _disable(endpoint: WebhookEndpoint, *, reason: str, summary: str) -> None:
    """Stops an endpoint and tells its owner (once: the first to get here)."""
    from apps.events.services import event_emit

    reason = reason[:500]
    disabled = WebhookEndpoint.objects.filter(pk=endpoint.pk, enabled=True).update(
        enabled=False, disabled_reason=reason, disabled_at=timezone.now()
    )
    if not disabled:
        return
    owners = (
        User.objects.filter(pk=endpoint.user_id)
        if endpoint.user_id is not None
        else User.objects.filter(
            memberships__institution=endpoint.institution,
            memberships__role=Membership.Role.ADMIN,
        )
    )
    event_emit(
        type=EventType.WEBHOOK_DISABLED,
        summary=summary,
        data={"endpoint": endpoint.pk, "url": endpoint.url, "reason": reason},
        users=owners,
        url=reverse("webhooks:detail", args=[endpoint.pk]),
    )
