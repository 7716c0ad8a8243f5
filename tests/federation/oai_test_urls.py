"""The project's routes plus the OAI-PMH endpoint, for tests that must not depend on whether
config/urls.py includes it yet."""

from django.urls import include, path

from config.urls import urlpatterns as project_urlpatterns

urlpatterns = [
    path("", include("apps.federation.oai_urls")),
    *project_urlpatterns,
]
