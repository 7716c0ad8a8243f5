"""REST endpoints for the signed-in user's notifications, their preferences, and benchmark
watches. Another user's notification is not found, whoever asks."""

import django_filters
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import generics, permissions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.typing import AuthenticatedRequest
from apps.core.filters import FilterSet
from apps.core.serializers import StrictSerializer
from apps.events import selectors, services
from apps.events.models import EventType, Notification


class NotificationOutput(serializers.Serializer):
    id = serializers.IntegerField()
    event_id = serializers.UUIDField(source="event.public_id", help_text="The event's own id.")
    type = serializers.ChoiceField(source="event.type", choices=EventType.choices)
    summary = serializers.CharField(source="event.summary")
    url = serializers.CharField(source="event.url", help_text="A path on this node.")
    # DRF's metaclass takes declared fields off the class: this does not hide `.data`.
    data = serializers.JSONField(source="event.data")  # type: ignore[assignment]
    read = serializers.SerializerMethodField()
    read_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()

    def get_read(self, notification: Notification) -> bool:
        return notification.read_at is not None


class UnreadCountOutput(serializers.Serializer):
    unread = serializers.IntegerField()


class MarkedReadOutput(serializers.Serializer):
    marked = serializers.IntegerField(help_text="How many notifications were unread.")


class NotificationFilter(FilterSet):
    unread = django_filters.ChoiceFilter(
        choices=[("true", "Unread only"), ("false", "Read only")],
        method="filter_unread",
        help_text="`true`: unread only; `false`: read only.",
    )

    class Meta:
        model = Notification
        fields = ["unread"]

    def filter_unread(self, queryset, name: str, value: str):
        return queryset.filter(read_at__isnull=value == "true")


@extend_schema_view(get=extend_schema(summary="List your notifications, newest first"))
class NotificationListApi(generics.ListAPIView):
    permission_classes = [permissions.IsAuthenticated]
    serializer_class = NotificationOutput
    filterset_class = NotificationFilter
    ordering_fields: list[str] = []

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # the schema generator has no user
            return Notification.objects.none()
        return selectors.notification_list(user=self.request.user)  # type: ignore[arg-type]


class NotificationReadApi(APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(
        request=None, responses={200: NotificationOutput}, summary="Mark a notification read"
    )
    def post(self, request: AuthenticatedRequest, notification_id: int) -> Response:
        notification = selectors.notification_get(
            user=request.user, notification_id=notification_id
        )
        notification = services.notification_mark_read(user=request.user, notification=notification)
        return Response(NotificationOutput(notification).data)


class NotificationReadAllApi(APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(
        request=None, responses={200: MarkedReadOutput}, summary="Mark all your notifications read"
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        marked = services.notifications_mark_all_read(user=request.user)
        return Response(MarkedReadOutput({"marked": marked}).data)


class UnreadCountApi(APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(responses=UnreadCountOutput, summary="How many of your notifications are unread")
    def get(self, request: AuthenticatedRequest) -> Response:
        unread = selectors.notification_unread_count(user=request.user)
        return Response(UnreadCountOutput({"unread": unread}).data)


class PreferenceOutput(serializers.Serializer):
    event_type = serializers.ChoiceField(choices=EventType.choices)
    description = serializers.CharField()
    portal = serializers.BooleanField()
    email = serializers.BooleanField()
    default_portal = serializers.BooleanField()
    default_email = serializers.BooleanField()


class PreferencesOutput(serializers.Serializer):
    email_address = serializers.CharField(
        help_text="Where mail goes; empty: none is sent until the account has an address."
    )
    preferences = PreferenceOutput(many=True)


class PreferenceInput(StrictSerializer):
    event_type = serializers.ChoiceField(choices=EventType.choices)
    portal = serializers.BooleanField()
    email = serializers.BooleanField()


class PreferencesInput(StrictSerializer):
    preferences = PreferenceInput(
        many=True, help_text="The types named are set; the others keep their channels."
    )

    def validate_preferences(self, value: list[dict]) -> list[dict]:
        kinds = [item["event_type"] for item in value]
        if len(set(kinds)) != len(kinds):
            raise serializers.ValidationError("Name each event type once.")
        return value


def _preferences(request: AuthenticatedRequest) -> Response:
    rows = selectors.notification_preferences(user=request.user)
    return Response(
        PreferencesOutput({"email_address": request.user.email, "preferences": rows}).data
    )


class PreferencesApi(APIView):
    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(
        responses=PreferencesOutput, summary="Your channels (portal, mail) by type of event"
    )
    def get(self, request: AuthenticatedRequest) -> Response:
        return _preferences(request)

    @extend_schema(
        request=PreferencesInput,
        responses={200: PreferencesOutput},
        summary="Set your channels for the types of event named",
    )
    def put(self, request: AuthenticatedRequest) -> Response:
        payload = PreferencesInput(data=request.data)
        payload.is_valid(raise_exception=True)
        services.notification_preferences_set(
            user=request.user,
            channels={
                item["event_type"]: (item["portal"], item["email"])
                for item in payload.validated_data["preferences"]
            },
        )
        return _preferences(request)


class WatchOutput(serializers.Serializer):
    benchmark = serializers.IntegerField()
    watching = serializers.BooleanField()


class BenchmarkWatchApi(APIView):
    """A benchmark the caller may not see is not found."""

    permission_classes = [permissions.IsAuthenticated]

    def _answer(self, benchmark_id: int, watching: bool) -> Response:
        return Response(WatchOutput({"benchmark": benchmark_id, "watching": watching}).data)

    @extend_schema(responses=WatchOutput, summary="Whether you watch a benchmark")
    def get(self, request: AuthenticatedRequest, benchmark_id: int) -> Response:
        return self._answer(
            benchmark_id,
            selectors.benchmark_watched_by_id(user=request.user, benchmark_id=benchmark_id),
        )

    @extend_schema(
        request=None,
        responses={200: WatchOutput},
        summary="Watch a benchmark: hear of every result published on it that you may see",
    )
    def post(self, request: AuthenticatedRequest, benchmark_id: int) -> Response:
        services.benchmark_watch(user=request.user, benchmark_id=benchmark_id)
        return self._answer(benchmark_id, True)

    @extend_schema(request=None, responses={200: WatchOutput}, summary="Stop watching a benchmark")
    def delete(self, request: AuthenticatedRequest, benchmark_id: int) -> Response:
        services.benchmark_unwatch(user=request.user, benchmark_id=benchmark_id)
        return self._answer(benchmark_id, False)
