from django.urls import path

from apps.compute import views

app_name = "compute"

urlpatterns = [
    path("compute/", views.queue, name="queue"),
    path("compute/jobs/", views.job_list, name="job-list"),
    path("compute/jobs/new/", views.job_submit, name="job-submit"),
    path("compute/jobs/<int:job_id>/", views.job_detail, name="job-detail"),
    path("compute/jobs/<int:job_id>/cancel/", views.job_cancel, name="job-cancel"),
    path("compute/jobs/<int:job_id>/priority/", views.job_priority, name="job-priority"),
    path("compute/requests/", views.request_list, name="request-list"),
    path("compute/requests/new/", views.request_create, name="request-create"),
    path("compute/requests/review/", views.request_review_list, name="request-review-list"),
    path("compute/requests/<int:request_id>/", views.request_detail, name="request-detail"),
    path(
        "compute/requests/<int:request_id>/withdraw/",
        views.request_withdraw,
        name="request-withdraw",
    ),
    path("compute/requests/<int:request_id>/review/", views.request_review, name="request-review"),
    path("compute/nodes/", views.node_list, name="node-list"),
    path("compute/nodes/new/", views.node_create, name="node-create"),
    path("compute/nodes/<int:node_id>/", views.node_detail, name="node-detail"),
    path(
        "compute/nodes/<int:node_id>/drain/",
        views.node_set_draining,
        {"draining": True},
        name="node-drain",
    ),
    path(
        "compute/nodes/<int:node_id>/undrain/",
        views.node_set_draining,
        {"draining": False},
        name="node-undrain",
    ),
    path(
        "compute/nodes/<int:node_id>/trusted-only/",
        views.node_set_trusted_only,
        {"trusted_only": True},
        name="node-trusted-only",
    ),
    path(
        "compute/nodes/<int:node_id>/all-institutions/",
        views.node_set_trusted_only,
        {"trusted_only": False},
        name="node-all-institutions",
    ),
    path("compute/nodes/<int:node_id>/token/", views.node_token_rotate, name="node-token-rotate"),
]
