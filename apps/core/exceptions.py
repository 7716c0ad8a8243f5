"""One error format for every 4xx answer of the API:

    {"error": {"status": 400, "code": "invalid", "message": "orcid: ...", "fields": {...}}}

`fields` maps each offending field to its messages (empty when the error is not about fields).
"""

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import csrf, defaults
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import set_rollback

from apps.core.parsers import PayloadTooLarge


class Conflict(exceptions.APIException):
    status_code = 409
    default_detail = "This conflicts with a record written at the same time; retry the request."
    default_code = "conflict"


def error_body(*, status: int, code: str, message: str, fields: dict | None = None) -> dict:
    return {"error": {"status": status, "code": code, "message": message, "fields": fields or {}}}


def _as_text(detail: Any) -> Any:
    if isinstance(detail, dict):
        return {key: _as_text(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_as_text(item) for item in detail]
    return str(detail)


def _first_message(messages: Any) -> str:
    while isinstance(messages, list | dict) and messages:
        messages = next(iter(messages.values())) if isinstance(messages, dict) else messages[0]
    return str(messages)


def _summary(fields: dict) -> str:
    parts = []
    for name, messages in fields.items():
        text = _first_message(messages)
        parts.append(text if name == "non_field_errors" else f"{name}: {text}")
    return "; ".join(parts) or "Invalid input."


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(as_serializer_error(exc))
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        # A service's refusal says why (e.g. a mirrored record is edited on its origin node).
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    elif isinstance(exc, SuspiciousOperation):
        # Too many form fields or files, a malformed multipart body: the client's fault.
        exc = exceptions.ParseError(str(exc) or "The request is malformed.")
    elif isinstance(exc, IntegrityError):
        # Validation runs before every write; this is a concurrent request that won the race.
        exc = Conflict()

    if not isinstance(exc, exceptions.APIException):
        return None  # a bug: let it surface as a 500 and be logged

    headers = {}
    if auth_header := getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = auth_header
    if wait := getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(wait))

    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        fields = {
            ("non_field_errors" if name == "__all__" else name): messages
            for name, messages in _as_text(detail).items()
        }
        body = error_body(
            status=exc.status_code, code="invalid", message=_summary(fields), fields=fields
        )
    else:
        codes = exc.get_codes()
        body = error_body(
            status=exc.status_code,
            code=codes if isinstance(codes, str) else "error",
            message=_first_message(_as_text(exc.detail)),
        )

    set_rollback()
    return Response(body, status=exc.status_code, headers=headers)


@csrf_exempt  # no view is here to protect: a write to a missing path is a 404, not a 403
def api_not_found(request, exception=None) -> JsonResponse:
    return JsonResponse(
        error_body(status=404, code="not_found", message=f"No API endpoint at {request.path}."),
        status=404,
    )


def is_api_request(request: HttpRequest) -> bool:
    return request.path_info.startswith("/api/")


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's 400 (raised outside a DRF view, e.g. by a middleware reading the body): the
    error format under /api/, Django's page elsewhere; an oversized body is a 413."""
    if not is_api_request(request):
        return defaults.bad_request(request, exception)  # type: ignore[arg-type]
    if isinstance(exception, RequestDataTooBig):
        too_large = PayloadTooLarge()
        return JsonResponse(
            error_body(status=413, code="payload_too_large", message=str(too_large.detail)),
            status=413,
        )
    return JsonResponse(
        error_body(status=400, code="bad_request", message=str(exception or "Bad request.")),
        status=400,
    )


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if not is_api_request(request):
        return defaults.permission_denied(request, exception)  # type: ignore[arg-type]
    return JsonResponse(
        error_body(status=403, code="permission_denied", message=str(exception or "Forbidden.")),
        status=403,
    )


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A session-authenticated write without its CSRF token: the error format under /api/."""
    if not is_api_request(request):
        return csrf.csrf_failure(request, reason)
    return JsonResponse(
        error_body(status=403, code="csrf_failed", message=f"CSRF check failed: {reason}"),
        status=403,
    )


def server_error(request: HttpRequest) -> HttpResponse:
    """A 500 says nothing of its cause (it is logged); under /api/ in the error format."""
    if not is_api_request(request):
        return defaults.server_error(request)
    return JsonResponse(
        error_body(
            status=500,
            code="server_error",
            message="The server failed to answer this request; it has been logged.",
        ),
        status=500,
    )
