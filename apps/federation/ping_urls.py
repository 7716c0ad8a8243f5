from django.urls import path

from apps.federation.ping_views import PingApi

urlpatterns = [
    path("federation/v1/ping", PingApi.as_view(), name="federation-ping"),
]
