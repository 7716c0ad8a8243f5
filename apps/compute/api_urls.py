from django.urls import path

from apps.compute import api

urlpatterns = [
    path("nodes/", api.NodeListApi.as_view(), name="node-list"),
    path("nodes/<int:node_id>/", api.NodeDetailApi.as_view(), name="node-detail"),
    path("nodes/<int:node_id>/rotate-token/", api.NodeTokenRotateApi.as_view(), name="node-rotate"),
    path("compute-requests/", api.ComputeRequestListApi.as_view(), name="compute-request-list"),
    path(
        "compute-requests/<int:request_id>/",
        api.ComputeRequestDetailApi.as_view(),
        name="compute-request-detail",
    ),
    path(
        "compute-requests/<int:request_id>/approve/",
        api.ComputeRequestApproveApi.as_view(),
        name="compute-request-approve",
    ),
    path(
        "compute-requests/<int:request_id>/reject/",
        api.ComputeRequestRejectApi.as_view(),
        name="compute-request-reject",
    ),
    path(
        "compute-requests/<int:request_id>/withdraw/",
        api.ComputeRequestWithdrawApi.as_view(),
        name="compute-request-withdraw",
    ),
    path("allocations/", api.AllocationListApi.as_view(), name="allocation-list"),
    path(
        "allocations/<int:allocation_id>/",
        api.AllocationDetailApi.as_view(),
        name="allocation-detail",
    ),
    path("jobs/", api.JobListApi.as_view(), name="job-list"),
    path("jobs/queue/", api.JobQueueApi.as_view(), name="job-queue"),
    path("jobs/<int:job_id>/", api.JobDetailApi.as_view(), name="job-detail"),
    path("jobs/<int:job_id>/cancel/", api.JobCancelApi.as_view(), name="job-cancel"),
    path("jobs/<int:job_id>/priority/", api.JobPriorityApi.as_view(), name="job-priority"),
    path("jobs/<int:job_id>/logs/", api.JobLogApi.as_view(), name="job-logs"),
    path("worker/register", api.WorkerRegisterApi.as_view(), name="worker-register"),
    path("worker/heartbeat", api.WorkerHeartbeatApi.as_view(), name="worker-heartbeat"),
    path("worker/jobs/<int:job_id>/claim", api.WorkerClaimApi.as_view(), name="worker-claim"),
    path(
        "worker/jobs/<int:job_id>/files/<str:sha256>",
        api.WorkerFileApi.as_view(),
        name="worker-file",
    ),
    path("worker/jobs/<int:job_id>/logs", api.WorkerLogApi.as_view(), name="worker-logs"),
    path("worker/jobs/<int:job_id>/status", api.WorkerStatusApi.as_view(), name="worker-status"),
    path("worker/jobs/<int:job_id>/result", api.WorkerResultApi.as_view(), name="worker-result"),
]
