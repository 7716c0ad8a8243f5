from django.urls import path

from apps.federation import remote_views, views

app_name = "federation"

urlpatterns = [
    path("federation/peers/", views.peer_list, name="peer-list"),
    path("federation/peers/<int:peer_id>/", views.peer_detail, name="peer-detail"),
    path("federation/peers/<int:peer_id>/<slug:action>/", views.peer_action, name="peer-action"),
    path("federation/keys/rotate/", views.key_rotate, name="key-rotate"),
    path("remote-jobs/", remote_views.remote_job_list, name="remote-job-list"),
    path("remote-jobs/new/", remote_views.remote_job_create, name="remote-job-create"),
    path(
        "remote-jobs/<int:remote_job_id>/",
        remote_views.remote_job_detail,
        name="remote-job-detail",
    ),
    path(
        "remote-jobs/<int:remote_job_id>/cancel/",
        remote_views.remote_job_cancel,
        name="remote-job-cancel",
    ),
]
