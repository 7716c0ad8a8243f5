"""The Hub-compatible endpoints (apps.catalog.hub): plain Django views, not the REST API, since
they answer in the Hub's own format: JSON bodies, errors as `{"error": "..."}` with the
`X-Error-Code` header the client reads its exception type from. They authenticate a personal
API token (`Authorization: Bearer`, what HF_TOKEN sends) like the REST API, or the portal's
session, and are throttled like the REST API's reads."""

import base64
import binascii
import math
from collections.abc import Callable
from functools import wraps
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.utils.cache import patch_cache_control, patch_vary_headers
from django.views.decorators.http import require_safe
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request
from rest_framework.views import APIView

from apps.accounts.authentication import ApiTokenAuthentication
from apps.catalog import hub
from apps.catalog.downloads import OriginUnavailable, artifact_response
from apps.catalog.selectors import Viewer

# What the client recognises as a bad token (any other 401 reads as a missing repository).
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


def _error(request: HttpRequest, error: hub.HubError) -> HttpResponse:
    response = JsonResponse({"error": error.message}, status=error.status)
    response["X-Error-Code"] = error.code
    if error.commit:
        # transformers reads it on a missing optional file, to remember that it is missing.
        response["X-Repo-Commit"] = error.commit
    if request.method == "HEAD":
        response.content = b""
    return response


def _viewer(request: Request) -> Viewer:
    try:
        authenticated = ApiTokenAuthentication().authenticate(request)
    except AuthenticationFailed as refusal:
        raise hub.HubError(401, "Unauthorized", str(refusal.detail)) from refusal
    return authenticated[0] if authenticated else request._request.user


def _throttle_wait(request: Request) -> float | None:
    """Seconds to wait when a throttle of the REST API refuses the request; None when none does."""
    waits = []
    view = APIView()  # its throttles are the REST API's defaults
    for throttle in view.get_throttles():
        if not throttle.allow_request(request, view):
            waits.append(throttle.wait() or 1)
    return max(waits) if waits else None


def hub_endpoint(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """GET and HEAD only; the caller authenticated and throttled; Hub errors answered. Every
    answer depends on who asks (a hidden model, the papers they may see): no shared cache
    keeps it."""

    @require_safe
    @wraps(view)
    def wrapped(request: HttpRequest, **kwargs: str) -> HttpResponseBase:
        response = answered(request, **kwargs)
        if "Cache-Control" not in response:
            patch_cache_control(response, private=True)
        patch_vary_headers(response, ("Authorization", "Cookie"))
        return response

    def answered(request: HttpRequest, **kwargs: str) -> HttpResponseBase:
        drf_request = Request(request)
        try:
            viewer = _viewer(drf_request)
            drf_request.user = viewer
            wait = _throttle_wait(drf_request)
            if wait is not None:
                seconds = max(1, math.ceil(wait))
                message = f"Too many requests: retry in {seconds} s."
                response = _error(request, hub.HubError(429, "TooManyRequests", message))
                response["Retry-After"] = str(seconds)
                return response
            return view(request, viewer, **kwargs)
        except hub.HubError as error:
            response = _error(request, error)
            if error.status == 401:
                response["X-Error-Message"] = INVALID_CREDENTIALS
                response["WWW-Authenticate"] = 'Bearer realm="api"'
            return response
        except OriginUnavailable as error:
            return _error(request, hub.HubError(error.status_code, "OriginUnavailable", str(error)))

    return wrapped


@hub_endpoint
def model_info(
    request: HttpRequest, viewer: Viewer, namespace: str, name: str, revision: str = hub.MAIN
) -> HttpResponseBase:
    found = hub.hub_revision_get(user=viewer, namespace=namespace, name=name, revision=revision)
    return JsonResponse(hub.model_info(user=viewer, revision=found))


def _offset(cursor: str) -> int:
    try:
        offset = int(base64.urlsafe_b64decode(cursor.encode() + b"==").decode())
    except (binascii.Error, UnicodeDecodeError, ValueError):
        offset = -1
    if offset < 0:
        raise hub.HubError(400, "BadRequest", "Invalid cursor: follow the Link header's next URL.")
    return offset


@hub_endpoint
def model_tree(
    request: HttpRequest, viewer: Viewer, namespace: str, name: str, revision: str, path: str = ""
) -> HttpResponseBase:
    found = hub.hub_revision_get(user=viewer, namespace=namespace, name=name, revision=revision)
    expand = request.GET.get("expand", "").lower() in ("1", "true")
    entries = hub.tree_entries(revision=found, path=path, expand=expand)
    offset = _offset(request.GET["cursor"]) if "cursor" in request.GET else 0
    page = entries[offset : offset + hub.TREE_PAGE_SIZE]
    response = JsonResponse(page, safe=False)
    if offset + hub.TREE_PAGE_SIZE < len(entries):
        cursor = base64.urlsafe_b64encode(str(offset + hub.TREE_PAGE_SIZE).encode()).decode()
        query = {key: value for key, value in request.GET.items() if key != "cursor"}
        next_url = request.build_absolute_uri(
            f"{request.path}?{urlencode({**query, 'cursor': cursor.rstrip('=')})}"
        )
        response["Link"] = f'<{next_url}>; rel="next"'
    return response


@hub_endpoint
def file_resolve(
    request: HttpRequest, viewer: Viewer, namespace: str, name: str, revision: str, filename: str
) -> HttpResponseBase:
    found = hub.hub_revision_get(user=viewer, namespace=namespace, name=name, revision=revision)
    file = hub.hub_file_get(revision=found, filename=filename)
    response = artifact_response(request, file.artifact, file.filename)
    response["X-Repo-Commit"] = found.commit
    # The client names its cached blob after the linked ETag: the file's sha256, as the Hub
    # gives for Git LFS files.
    response["X-Linked-Etag"] = f'"{file.artifact.sha256}"'
    response["X-Linked-Size"] = str(file.artifact.size)
    return response
