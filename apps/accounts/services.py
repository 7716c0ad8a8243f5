"""Writes for users, institutions, memberships and API tokens.

Each function validates (raising django.core.exceptions.ValidationError with the field and the
reason) before it writes, and writes in one transaction.
"""

import hashlib
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from apps.accounts.models import ApiToken, Institution, Membership, User
from apps.accounts.validators import normalize_orcid, normalize_ror
from apps.core.dates import validate_date_in_range

API_TOKEN_PREFIX = "rxp_"  # noqa: S105 - a public marker, not a secret


def _normalized(value: str, normalize) -> str:
    return normalize(value) if value else ""


@transaction.atomic
def user_profile_update(
    *,
    user: User,
    first_name: str | None = None,
    last_name: str | None = None,
    email: str | None = None,
    orcid: str | None = None,
) -> User:
    if first_name is not None:
        user.first_name = first_name
    if last_name is not None:
        user.last_name = last_name
    if email is not None:
        user.email = email
    if orcid is not None:
        try:
            user.orcid = _normalized(orcid, normalize_orcid)
        except ValidationError as error:
            raise ValidationError({"orcid": error.messages}) from error
        if user.orcid and User.objects.filter(orcid=user.orcid).exclude(pk=user.pk).exists():
            raise ValidationError({"orcid": "This ORCID iD is already linked to another account."})
    user.full_clean(exclude=["password"])
    user.save()
    return user


@transaction.atomic
def institution_create(
    *,
    name: str,
    slug: str,
    country: str,
    website: str = "",
    ror_id: str = "",
    description: str = "",
) -> Institution:
    try:
        ror_id = _normalized(ror_id, normalize_ror)
    except ValidationError as error:
        raise ValidationError({"ror_id": error.messages}) from error
    _check_ror_unused(ror_id)
    institution = Institution(
        name=name,
        slug=slug,
        country=country,
        website=website,
        ror_id=ror_id,
        description=description,
    )
    institution.full_clean()
    institution.save()
    return institution


INSTITUTION_EDITABLE_FIELDS = ("name", "country", "website", "ror_id", "description")


@transaction.atomic
def institution_update(*, institution: Institution, **changes: str) -> Institution:
    _require_local(institution)
    unknown = set(changes) - set(INSTITUTION_EDITABLE_FIELDS)
    if unknown:
        raise ValidationError({name: "This field cannot be changed." for name in sorted(unknown)})
    if changes.get("ror_id"):
        try:
            changes["ror_id"] = normalize_ror(changes["ror_id"])
        except ValidationError as error:
            raise ValidationError({"ror_id": error.messages}) from error
        _check_ror_unused(changes["ror_id"], institution_pk=institution.pk)
    for name, value in changes.items():
        setattr(institution, name, value)
    institution.full_clean()
    institution.save()
    return institution


def _check_ror_unused(ror_id: str, *, institution_pk: int | None = None) -> None:
    if not ror_id:
        return
    others = Institution.objects.filter(ror_id=ror_id, origin_node="")
    if institution_pk is not None:
        others = others.exclude(pk=institution_pk)
    if others.exists():
        raise ValidationError({"ror_id": "Another institution already has this ROR id."})


def _require_local(institution: Institution) -> None:
    """An institution mirrored from a peer node is managed on that node only."""
    if institution.origin_node:
        raise ValidationError(
            f"{institution.name} is mirrored from {institution.origin_node}: "
            "it is managed on that node."
        )


def _admin_count(institution: Institution) -> int:
    return institution.memberships.filter(role=Membership.Role.ADMIN).count()


@transaction.atomic
def membership_add(
    *, institution: Institution, user: User, role: str = Membership.Role.MEMBER
) -> Membership:
    _require_local(institution)
    if Membership.objects.filter(institution=institution, user=user).exists():
        raise ValidationError({"username": f"{user.username} is already a member."})
    membership = Membership(institution=institution, user=user, role=role)
    membership.full_clean()
    membership.save()
    return membership


@transaction.atomic
def membership_change_role(*, membership: Membership, role: str) -> Membership:
    # Lock the institution's memberships so two admins demoting each other cannot both succeed.
    list(Membership.objects.select_for_update().filter(institution_id=membership.institution_id))
    if (
        membership.role == Membership.Role.ADMIN
        and role != Membership.Role.ADMIN
        and _admin_count(membership.institution) == 1
    ):
        raise ValidationError(
            {"role": "An institution must keep at least one admin: promote another member first."}
        )
    membership.role = role
    membership.full_clean()
    membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership) -> None:
    list(Membership.objects.select_for_update().filter(institution_id=membership.institution_id))
    if membership.role == Membership.Role.ADMIN and _admin_count(membership.institution) == 1:
        raise ValidationError(
            "An institution must keep at least one admin: promote another member first."
        )
    membership.delete()


def api_token_hash(secret: str) -> str:
    # The secret is 256 random bits, so a fast hash is safe: there is nothing to brute-force,
    # and lookups stay a single indexed equality.
    return hashlib.sha256(secret.encode()).hexdigest()


@transaction.atomic
def api_token_create(
    *,
    user: User,
    name: str,
    scope: str = ApiToken.Scope.READ,
    expires_at: datetime | None = None,
) -> tuple[ApiToken, str]:
    """Returns the token and its secret; the secret is not stored and cannot be shown again."""
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "The expiry must be in the future."})
    if expires_at is not None:
        try:
            validate_date_in_range(expires_at)
        except ValidationError as error:
            raise ValidationError({"expires_at": error.messages}) from error
    secret = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user=user,
        name=name,
        prefix=secret[:12],
        key_hash=api_token_hash(secret),
        scope=scope,
        expires_at=expires_at,
    )
    token.full_clean()
    token.save()
    return token, secret


@transaction.atomic
def api_token_revoke(*, token: ApiToken) -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


class ApiTokenRefused(Exception):
    pass


def api_token_use(*, secret: str) -> ApiToken:
    """Finds the active token for a secret and records its use; raises ApiTokenRefused."""
    token = ApiToken.objects.select_related("user").filter(key_hash=api_token_hash(secret)).first()
    if token is None:
        raise ApiTokenRefused("Invalid API token.")
    if token.revoked_at is not None:
        raise ApiTokenRefused("This API token has been revoked.")
    if token.is_expired:
        raise ApiTokenRefused("This API token has expired.")
    if not token.user.is_active:
        raise ApiTokenRefused("The account that owns this API token is disabled.")
    now = timezone.now()
    resolution = timedelta(seconds=settings.API_TOKEN_LAST_USED_RESOLUTION_SECONDS)
    if token.last_used_at is None or now - token.last_used_at >= resolution:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def api_tokens_purge_stale(*, now: datetime | None = None) -> int:
    """Deletes tokens revoked or expired longer ago than the retention period."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.API_TOKEN_RETENTION_DAYS)
    stale = ApiToken.objects.filter(revoked_at__lt=cutoff) | ApiToken.objects.filter(
        expires_at__lt=cutoff
    )
    deleted, _ = stale.delete()
    return deleted
