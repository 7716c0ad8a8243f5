"""How the OpenAPI schema describes what every operation shares: who may call it without
credentials, and the 4xx answers it can give, all in the one error format of
apps/core/exceptions.py. Both are read from the view (its permissions, authenticators,
throttles, pagination), so no view documents them by hand and none can be forgotten. A view
whose reads can conflict too says so in `error_statuses = (409,)`."""

from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import FieldDoesNotExist
from django.http import HttpRequest
from drf_spectacular import openapi
from rest_framework import permissions, serializers
from rest_framework.request import Request

from apps.core.serializers import StrictInputMixin


class ErrorDetailOutput(serializers.Serializer):
    status = serializers.IntegerField(min_value=400, max_value=599)
    code = serializers.CharField(help_text="Machine-readable, e.g. `invalid`, `not_found`.")
    message = serializers.CharField(help_text="What went wrong, for a person.")
    fields = serializers.DictField(  # type: ignore[assignment]
        child=serializers.JSONField(),
        help_text=(
            "Messages per offending field (a list of strings, or for nested input the same "
            "shape per item); empty when the error is not about fields."
        ),
    )


class ErrorOutput(serializers.Serializer):
    error = ErrorDetailOutput()


ERROR_DESCRIPTIONS = {
    400: "The request is malformed or its input invalid; `fields` says which fields and why.",
    401: "The credentials sent are unknown, expired or revoked, or credentials are required.",
    403: "The caller may not do this (role, token scope, or a signed-in session required).",
    404: "Nothing here, or nothing the caller may see: hidden records are not found.",
    409: "A record written at the same time conflicts with this one; retry the request.",
    413: "The request body is over the node's upload limit.",
    415: "The body's media type or charset is not accepted.",
    429: "Too many requests; `Retry-After` says how many seconds to wait.",
}

HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "schema": {"type": "string"},
            "description": "The authentication scheme to use.",
        }
    },
    429: {
        "Retry-After": {
            "schema": {"type": "string"},
            "description": "Seconds to wait before the next request.",
        }
    },
}


def _may_render_null(field: Any) -> bool:
    """Whether an output field renders null without saying so: its default is None, or its
    source crosses a nullable relation (DRF renders None as soon as a step of it is None)."""
    if not isinstance(field, serializers.Field) or field.allow_null:
        return False
    if field.default is None:
        return True
    model = getattr(getattr(field.parent, "Meta", None), "model", None)
    for attr in getattr(field, "source_attrs", [])[:-1]:
        try:
            relation = model._meta.get_field(attr) if model is not None else None
        except FieldDoesNotExist:
            return False
        if relation is None or not relation.is_relation:
            return False
        if relation.null:
            return True
        model = relation.related_model
    return False


def _decimal_pattern(field: serializers.DecimalField) -> str:
    """drf-spectacular's pattern also matches "", "-" and ".", which DRF refuses."""
    sign = "" if field.min_value is not None and field.min_value >= 0 else "-?"
    digits = field.max_whole_digits
    whole = "0" if digits == 0 else (rf"\d{{1,{digits}}}" if digits else r"\d+")
    places = rf"(?:\.\d{{1,{field.decimal_places}}})?" if field.decimal_places else ""
    return rf"^{sign}{whole}{places}$"


class AutoSchema(openapi.AutoSchema):
    def get_auth(self) -> list[dict[str, Any]]:
        # drf-spectacular only knows AllowAny and IsAuthenticatedOrReadOnly; ask the view's
        # own permissions whether an anonymous caller gets past them.
        auth = [requirement for requirement in super().get_auth() if requirement]
        if self._anonymous_allowed():
            auth.append({})
        return auth

    def _get_serializer_field_meta(self, field: Any, direction: str) -> dict[str, Any]:
        meta = super()._get_serializer_field_meta(field, direction)
        if direction == "response" and _may_render_null(field):
            meta["nullable"] = True
        return meta

    def _map_serializer_field(
        self, field: Any, direction: str, bypass_extensions: bool = False
    ) -> dict[str, Any] | None:
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if schema is None:
            return schema
        if getattr(field, "allow_empty", True) is False:
            bound = "minItems" if schema.get("type") == "array" else "minProperties"
            schema[bound] = max(schema.get(bound, 0), 1)
        if isinstance(field, serializers.DecimalField) and schema.get("format") == "decimal":
            schema["pattern"] = _decimal_pattern(field)
        return schema

    def _map_basic_serializer(self, serializer: Any, direction: str) -> dict[str, Any]:
        schema = super()._map_basic_serializer(serializer, direction)
        if direction == "request" and isinstance(serializer, StrictInputMixin):
            schema["additionalProperties"] = False  # unknown fields are refused (400)
        return schema

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        responses = operation["responses"]
        error = self.resolve_serializer(ErrorOutput, "response").ref
        for status in self._error_statuses(operation):
            responses.setdefault(
                str(status),
                {
                    "description": ERROR_DESCRIPTIONS[status],
                    **({"headers": HEADERS[status]} if status in HEADERS else {}),
                    "content": {"application/json": {"schema": error}},
                },
            )
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _anonymous_allowed(self) -> bool:
        http_request = HttpRequest()
        http_request.method = self.method
        request = Request(http_request)
        request.user = AnonymousUser()
        request.auth = None
        return all(
            permission.has_permission(request, self.view)
            for permission in self.view.get_permissions()
        )

    def _error_statuses(self, operation: dict[str, Any]) -> list[int]:
        writes = self.method not in permissions.SAFE_METHODS
        statuses = [400]
        if self.view.get_authenticators():
            statuses.append(401)  # a bad token is refused even where none is needed
        if writes or {} not in operation.get("security", [{}]):
            statuses.append(403)
        paginated = self._is_list_view() and self._get_paginator() is not None
        if "{" in self.path or paginated:
            statuses.append(404)  # a missing or hidden record, or a page past the last
        if writes or 409 in getattr(self.view, "error_statuses", ()):
            statuses.append(409)
        if "requestBody" in operation:
            statuses += [413, 415]
        if self.view.get_throttles():
            statuses.append(429)
        return statuses
