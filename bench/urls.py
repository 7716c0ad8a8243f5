"""The project's URLs plus the baseline the catalogue endpoints are measured against."""

from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.http import require_GET

from config.urls import urlpatterns as project_urlpatterns

BARE_BODY = {"status": "ok", "detail": "constant body of the bench baseline"}


@require_GET
def bare(request: HttpRequest) -> JsonResponse:
    """Same server, middleware and per-request transaction as the API; no work of its own."""
    return JsonResponse(BARE_BODY)


urlpatterns = [path("bench/bare", bare, name="bench-bare"), *project_urlpatterns]
