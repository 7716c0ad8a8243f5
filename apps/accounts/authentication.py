from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from apps.accounts.models import ApiToken, User
from apps.accounts.services import ApiTokenRefused, api_token_use


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <personal API token>`.

    The token's scope is enforced here, for every view: a read-only token can never write,
    whatever permissions a view declares.
    """

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[User, ApiToken] | None:
        header = authentication.get_authorization_header(request).decode("latin-1").split()
        if not header or header[0].lower() != self.keyword.lower():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(
                "Malformed Authorization header: expected 'Bearer <token>'."
            )
        try:
            token = api_token_use(secret=header[1])
        except ApiTokenRefused as refusal:
            raise exceptions.AuthenticationFailed(str(refusal)) from refusal
        if token.scope == ApiToken.Scope.READ and request.method not in permissions.SAFE_METHODS:
            raise exceptions.PermissionDenied(
                "This API token is read-only: create a read-write token to make changes."
            )
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="api"'
