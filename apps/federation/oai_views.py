"""The OAI-PMH endpoint: GET with a query string or POST with a form body, both answered by
oai.py. Harvesters post without a session or CSRF token, and nothing here writes."""

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from apps.federation import oai

CONTENT_TYPE = "text/xml; charset=utf-8"


@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def oai_endpoint(request: HttpRequest) -> HttpResponse:
    query = request.POST if request.method == "POST" else request.GET
    body = oai.oai_response(arguments=oai.oai_arguments(query))
    return HttpResponse(body, content_type=CONTENT_TYPE)
