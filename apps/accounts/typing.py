"""Request types for views that already require a signed-in user (login_required, or a DRF
permission such as IsAuthenticated), so that `request.user` is known to be a User."""

from django.http import HttpRequest
from rest_framework.request import Request

from apps.accounts.models import User


class AuthenticatedHttpRequest(HttpRequest):
    user: User


class AuthenticatedRequest(Request):
    user: User
