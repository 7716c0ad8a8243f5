"""Platform staff see webhook endpoints and their deliveries here; the only change made here is
the one only staff may make, through the service: letting an endpoint reach private networks."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.events import webhooks
from apps.events.models import WebhookDelivery, WebhookEndpoint


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ["url", "user", "institution", "enabled", "allow_private_addresses"]
    list_filter = ["enabled", "allow_private_addresses"]
    search_fields = ["url", "user__username", "institution__name"]
    exclude = ["secret"]
    actions = ["allow_private_addresses", "refuse_private_addresses"]

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in WebhookEndpoint._meta.fields if field.name != "secret"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def _set(self, request: HttpRequest, queryset: QuerySet, allow: bool) -> None:
        for endpoint in queryset:
            webhooks.webhook_private_addresses_set(
                user=request.user,  # type: ignore[arg-type]
                endpoint=endpoint,
                allow=allow,
            )
        word = "may now reach" if allow else "may no longer reach"
        self.message_user(
            request, f"{queryset.count()} endpoint(s) {word} private addresses.", messages.SUCCESS
        )

    @admin.action(description="Allow private addresses (a development setup)")
    def allow_private_addresses(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set(request, queryset, True)

    @admin.action(description="Refuse private addresses")
    def refuse_private_addresses(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set(request, queryset, False)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["event", "endpoint", "state", "attempts", "last_status_code", "created_at"]
    list_filter = ["state"]

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in WebhookDelivery._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
