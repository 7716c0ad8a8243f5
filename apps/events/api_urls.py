from django.urls import path

from apps.events import api

urlpatterns = [
    path("notifications/", api.NotificationListApi.as_view(), name="notification-list"),
    path(
        "notifications/unread-count/",
        api.UnreadCountApi.as_view(),
        name="notification-unread-count",
    ),
    path(
        "notifications/read-all/",
        api.NotificationReadAllApi.as_view(),
        name="notification-read-all",
    ),
    path(
        "notifications/preferences/",
        api.PreferencesApi.as_view(),
        name="notification-preferences",
    ),
    path(
        "notifications/<int:notification_id>/read/",
        api.NotificationReadApi.as_view(),
        name="notification-read",
    ),
    path(
        "benchmarks/<int:benchmark_id>/watch/",
        api.BenchmarkWatchApi.as_view(),
        name="benchmark-watch",
    ),
]
