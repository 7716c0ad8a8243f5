from django.urls import path

from apps.events import webhook_views

app_name = "webhooks"

urlpatterns = [
    path("account/webhooks/", webhook_views.webhook_list, name="list"),
    path("account/webhooks/<int:endpoint_id>/", webhook_views.webhook_detail, name="detail"),
    path(
        "account/webhooks/<int:endpoint_id>/rotate-secret/",
        webhook_views.webhook_rotate,
        name="rotate-secret",
    ),
    path(
        "account/webhooks/<int:endpoint_id>/enabled/",
        webhook_views.webhook_set_enabled,
        name="set-enabled",
    ),
    path("account/webhooks/<int:endpoint_id>/test/", webhook_views.webhook_test, name="test"),
    path("account/webhooks/<int:endpoint_id>/delete/", webhook_views.webhook_delete, name="delete"),
]
