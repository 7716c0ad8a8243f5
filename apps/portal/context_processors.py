from django.conf import settings
from django.http import HttpRequest


def node(request: HttpRequest) -> dict:
    return {"node_name": settings.NODE_NAME}
