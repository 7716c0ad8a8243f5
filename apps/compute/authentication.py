from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from apps.compute import services
from apps.compute.models import ComputeNode


class NodeTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer rxn_...`: a compute node's worker. Only the worker endpoints use
    this class; anywhere else a node token is an unknown API token (401)."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[AnonymousUser, ComputeNode] | None:
        header = authentication.get_authorization_header(request).decode("latin-1").split()
        if not header or header[0].lower() != self.keyword.lower():
            return None
        if len(header) != 2 or not header[1].startswith(services.NODE_TOKEN_PREFIX):
            raise exceptions.AuthenticationFailed(
                f"Expected 'Bearer {services.NODE_TOKEN_PREFIX}...': a compute node token."
            )
        try:
            node = services.node_authenticate(secret=header[1])
        except PermissionDenied as refusal:
            raise exceptions.AuthenticationFailed(str(refusal)) from refusal
        return AnonymousUser(), node

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="worker"'


class IsComputeNode(permissions.BasePermission):
    message = "Only a compute node's worker, with its node token, can call this endpoint."

    def has_permission(self, request, view) -> bool:
        return isinstance(request.auth, ComputeNode)
