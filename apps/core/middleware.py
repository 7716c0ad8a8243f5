"""Request checks that hold for every view, API and portal alike."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse

from apps.core.exceptions import error_body, is_api_request

NUL_MESSAGE = "NUL characters (%00) are not allowed in the {where}."


class RefuseNulCharactersMiddleware:
    """A NUL in the path or the query string would reach the database, which refuses it
    (PostgreSQL text cannot hold one): answer 400 before any view or filter runs."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path_info:
            return self._refuse(request, "path")
        for key, values in request.GET.lists():
            if "\x00" in key or any("\x00" in value for value in values):
                return self._refuse(request, "query string")
        return self.get_response(request)

    @staticmethod
    def _refuse(request: HttpRequest, where: str) -> HttpResponse:
        message = NUL_MESSAGE.format(where=where)
        if is_api_request(request):
            return JsonResponse(error_body(status=400, code="invalid", message=message), status=400)
        return HttpResponseBadRequest(message, content_type="text/plain; charset=utf-8")
