"""REST endpoints for webhooks: an owner's endpoints, their secret, a test event and the
delivery log. Someone else's endpoint answers 404, as one that does not exist."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, permissions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.models import Institution
from apps.accounts.typing import AuthenticatedRequest
from apps.core.serializers import PatchInputMixin, StrictSerializer
from apps.events import webhook_selectors, webhooks
from apps.events.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint


class WebhookEndpointOutput(serializers.ModelSerializer):
    owner = serializers.SerializerMethodField(help_text='"user" or "institution".')
    username = serializers.CharField(source="user.username", default=None, read_only=True)
    institution = serializers.SlugField(source="institution.slug", default=None, read_only=True)
    receivable_event_types = serializers.SerializerMethodField(
        help_text="What this endpoint may receive; an empty event_types means all of these."
    )
    secret = serializers.CharField(
        read_only=True,
        help_text="whsec_ and the base64 key: verify each delivery's webhook-signature with it.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "owner",
            "username",
            "institution",
            "url",
            "description",
            "event_types",
            "receivable_event_types",
            "enabled",
            "allow_private_addresses",
            "secret",
            "consecutive_failures",
            "disabled_reason",
            "disabled_at",
            "created_at",
            "updated_at",
        ]

    def get_owner(self, obj: WebhookEndpoint) -> str:
        return "institution" if obj.institution_id else "user"

    def get_receivable_event_types(self, obj: WebhookEndpoint) -> list[str]:
        return webhooks.receivable_event_types(user=obj.user, institution=obj.institution)


class WebhookEndpointCreateInput(StrictSerializer):
    url = serializers.CharField(max_length=500, help_text="http:// or https://, a public address.")
    description = serializers.CharField(
        max_length=200, required=False, default="", allow_blank=True
    )
    event_types = serializers.ListField(
        child=serializers.CharField(max_length=40), max_length=30, required=False, default=list
    )
    institution = serializers.SlugField(
        required=False,
        allow_null=True,
        default=None,
        help_text="An institution you administer: the endpoint receives its events.",
    )
    allow_private_addresses = serializers.BooleanField(
        required=False, default=False, help_text="Staff only: a receiver on a private network."
    )

    def validate_institution(self, value: str | None) -> Institution | None:
        if value is None:
            return None
        institution = Institution.objects.filter(slug=value, origin_node="").first()
        if institution is None:
            raise serializers.ValidationError(f"No institution '{value}' on this node.")
        return institution


class WebhookEndpointUpdateInput(PatchInputMixin, StrictSerializer):
    url = serializers.CharField(max_length=500)
    description = serializers.CharField(max_length=200, allow_blank=True)
    event_types = serializers.ListField(child=serializers.CharField(max_length=40), max_length=30)
    enabled = serializers.BooleanField(help_text="Enabling again resets the failure count.")
    allow_private_addresses = serializers.BooleanField(help_text="Staff only.")


class WebhookAttemptOutput(serializers.ModelSerializer):
    class Meta:
        model = WebhookAttempt
        fields = ["number", "status_code", "error", "response_body", "duration_ms", "created_at"]


class WebhookDeliveryOutput(serializers.ModelSerializer):
    event_id = serializers.UUIDField(source="event.public_id", read_only=True)
    event_type = serializers.CharField(source="event.type", read_only=True)
    message_id = serializers.SerializerMethodField(
        help_text="The webhook-id header it is sent with."
    )
    attempt_log = WebhookAttemptOutput(many=True, read_only=True)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "event_id",
            "event_type",
            "message_id",
            "state",
            "attempts",
            "last_status_code",
            "last_error",
            "next_attempt_at",
            "last_attempt_at",
            "created_at",
            "updated_at",
            "attempt_log",
        ]

    def get_message_id(self, obj: WebhookDelivery) -> str:
        return webhooks.message_id(obj.event)


def _endpoint(request: AuthenticatedRequest, endpoint_id: int) -> WebhookEndpoint:
    return get_object_or_404(
        webhook_selectors.webhook_endpoint_list(user=request.user), pk=endpoint_id
    )


class WebhookListApi(generics.ListAPIView):
    permission_classes = [permissions.IsAuthenticated]
    serializer_class = WebhookEndpointOutput
    filter_backends: list = []

    def get_queryset(self):
        return webhook_selectors.webhook_endpoint_list(user=self.request.user)  # type: ignore[arg-type]

    @extend_schema(summary="Your webhook endpoints and those of the institutions you administer")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        request=WebhookEndpointCreateInput,
        responses={201: WebhookEndpointOutput},
        summary="Register a webhook endpoint (yours, or an institution's you administer)",
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        payload = WebhookEndpointCreateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        endpoint = webhooks.webhook_endpoint_create(user=request.user, **payload.validated_data)
        return Response(WebhookEndpointOutput(endpoint).data, status=status.HTTP_201_CREATED)


class WebhookDetailApi(APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(responses=WebhookEndpointOutput, summary="One of your webhook endpoints")
    def get(self, request: AuthenticatedRequest, endpoint_id: int) -> Response:
        return Response(WebhookEndpointOutput(_endpoint(request, endpoint_id)).data)

    @extend_schema(
        request=WebhookEndpointUpdateInput,
        responses=WebhookEndpointOutput,
        summary="Change a webhook endpoint (enable it again after it was disabled)",
    )
    def patch(self, request: AuthenticatedRequest, endpoint_id: int) -> Response:
        endpoint = _endpoint(request, endpoint_id)
        payload = WebhookEndpointUpdateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        endpoint = webhooks.webhook_endpoint_update(
            user=request.user, endpoint=endpoint, **payload.validated_data
        )
        return Response(WebhookEndpointOutput(endpoint).data)

    @extend_schema(responses={204: None}, summary="Delete a webhook endpoint and its log")
    def delete(self, request: AuthenticatedRequest, endpoint_id: int) -> Response:
        webhooks.webhook_endpoint_delete(
            user=request.user, endpoint=_endpoint(request, endpoint_id)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookRotateSecretApi(APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(
        request=None,
        responses=WebhookEndpointOutput,
        summary="Give a webhook endpoint a new secret (the old one signs nothing more)",
    )
    def post(self, request: AuthenticatedRequest, endpoint_id: int) -> Response:
        endpoint = webhooks.webhook_secret_rotate(
            user=request.user, endpoint=_endpoint(request, endpoint_id)
        )
        return Response(WebhookEndpointOutput(endpoint).data)


class WebhookTestApi(APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(
        request=None,
        responses={202: WebhookDeliveryOutput},
        summary="Send a webhook.test event to the endpoint",
    )
    def post(self, request: AuthenticatedRequest, endpoint_id: int) -> Response:
        delivery = webhooks.webhook_test_send(
            user=request.user, endpoint=_endpoint(request, endpoint_id)
        )
        delivery = webhook_selectors.webhook_delivery_list(endpoint=delivery.endpoint).get(
            pk=delivery.pk
        )
        return Response(WebhookDeliveryOutput(delivery).data, status=status.HTTP_202_ACCEPTED)


class WebhookDeliveryListApi(generics.ListAPIView):
    permission_classes = [permissions.IsAuthenticated]
    serializer_class = WebhookDeliveryOutput
    filter_backends: list = []

    def get_queryset(self):
        endpoint = _endpoint(self.request, self.kwargs["endpoint_id"])  # type: ignore[arg-type]
        return webhook_selectors.webhook_delivery_list(endpoint=endpoint)

    @extend_schema(summary="The delivery log of a webhook endpoint, newest first")
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
