from django.urls import path

from apps.events import views

app_name = "events"

urlpatterns = [
    path("notifications/", views.notification_list, name="notification-list"),
    path("notifications/read-all/", views.notification_read_all, name="notification-read-all"),
    path("notifications/<int:notification_id>/", views.notification_open, name="notification-open"),
    path(
        "notifications/<int:notification_id>/read/",
        views.notification_read,
        name="notification-read",
    ),
    path("account/notifications/", views.preferences, name="preferences"),
    path("benchmarks/<int:benchmark_id>/watch/", views.benchmark_watch, name="benchmark-watch"),
]
