from django.urls import path

from apps.federation import views

app_name = "federation"

urlpatterns = [
    path("federation/peers/", views.peer_list, name="peer-list"),
    path("federation/peers/<int:peer_id>/", views.peer_detail, name="peer-detail"),
    path("federation/peers/<int:peer_id>/<slug:action>/", views.peer_action, name="peer-action"),
    path("federation/keys/rotate/", views.key_rotate, name="key-rotate"),
]
