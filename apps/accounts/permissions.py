from rest_framework import permissions
from rest_framework.request import Request

from apps.accounts.models import ApiToken


def authenticated_by_token(request: Request) -> bool:
    return isinstance(request.auth, ApiToken)


class IsStaffOrReadOnly(permissions.BasePermission):
    message = "Only platform staff can do this."

    def has_permission(self, request: Request, view) -> bool:
        return request.method in permissions.SAFE_METHODS or bool(
            request.user and request.user.is_staff
        )


class IsStaff(permissions.BasePermission):
    """Checked before the body is read: who may not act learns nothing from validation."""

    message = "Only platform staff can do this."

    def has_permission(self, request: Request, view) -> bool:
        return bool(request.user and request.user.is_staff)


class SessionOnly(permissions.BasePermission):
    """Token management needs a password-backed session: a leaked token must not mint others."""

    message = "API tokens can only be created from a signed-in session, not with another token."

    def has_permission(self, request: Request, view) -> bool:
        return request.method in permissions.SAFE_METHODS or not authenticated_by_token(request)
