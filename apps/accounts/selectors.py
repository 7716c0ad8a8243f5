"""Reads for users, institutions, memberships and API tokens."""

from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ValidationError
from django.db.models import Count, Prefetch, QuerySet

from apps.accounts.models import ApiToken, Institution, Membership, User


def institution_list() -> QuerySet[Institution]:
    # An aggregate drops Meta.ordering, so the order is restated for stable pages.
    return Institution.objects.annotate(member_count=Count("memberships")).order_by("name")


def membership_list(*, institution: Institution) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(institution=institution)
        .select_related("user")
        .order_by("user__username")
    )


def active_user_by_username(*, username: str) -> User:
    """Raises ValidationError naming the username when no active account has it."""
    user = User.objects.filter(username=username, is_active=True).first()
    if user is None:
        raise ValidationError(f"There is no active user named '{username}'.")
    return user


def user_with_memberships(*, user: User) -> User:
    return User.objects.prefetch_related(
        Prefetch("memberships", queryset=Membership.objects.select_related("institution"))
    ).get(pk=user.pk)


def user_can_manage_institution(*, user: User | AnonymousUser, institution: Institution) -> bool:
    """Platform staff and the institution's admins manage its profile and members; a peer
    node's institution is managed on that node."""
    if not isinstance(user, User) or institution.origin_node:
        return False
    if user.is_staff:
        return True
    return Membership.objects.filter(
        user=user, institution=institution, role=Membership.Role.ADMIN
    ).exists()


def api_token_list(*, user: User) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user)
