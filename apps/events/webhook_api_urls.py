from django.urls import path

from apps.events import webhook_api

urlpatterns = [
    path("webhooks/", webhook_api.WebhookListApi.as_view(), name="webhook-list"),
    path(
        "webhooks/<int:endpoint_id>/", webhook_api.WebhookDetailApi.as_view(), name="webhook-detail"
    ),
    path(
        "webhooks/<int:endpoint_id>/rotate-secret/",
        webhook_api.WebhookRotateSecretApi.as_view(),
        name="webhook-rotate-secret",
    ),
    path(
        "webhooks/<int:endpoint_id>/test/",
        webhook_api.WebhookTestApi.as_view(),
        name="webhook-test",
    ),
    path(
        "webhooks/<int:endpoint_id>/deliveries/",
        webhook_api.WebhookDeliveryListApi.as_view(),
        name="webhook-deliveries",
    ),
]
