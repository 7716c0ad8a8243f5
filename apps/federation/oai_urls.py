from django.urls import path

from apps.federation.oai_views import oai_endpoint

app_name = "oai"

urlpatterns = [
    path("oai", oai_endpoint, name="endpoint"),
]
