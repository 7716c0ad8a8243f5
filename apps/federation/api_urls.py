from django.urls import path

from apps.federation import api, remote_api

urlpatterns = [
    path("federation/peers/", api.PeerListApi.as_view(), name="peer-list"),
    path("federation/peers/<int:peer_id>/", api.PeerDetailApi.as_view(), name="peer-detail"),
    path("federation/peers/<int:peer_id>/approve/", api.PeerApproveApi.as_view()),
    path("federation/peers/<int:peer_id>/refuse/", api.PeerRefuseApi.as_view()),
    path("federation/peers/<int:peer_id>/suspend/", api.PeerSuspendApi.as_view()),
    path("federation/peers/<int:peer_id>/reinstate/", api.PeerReinstateApi.as_view()),
    path("federation/peers/<int:peer_id>/revoke/", api.PeerRevokeApi.as_view()),
    path("federation/peers/<int:peer_id>/sync/", api.PeerSyncApi.as_view()),
    path("federation/keys/", api.NodeKeyListApi.as_view(), name="node-key-list"),
    path("federation/remote-jobs/", remote_api.RemoteJobListApi.as_view(), name="remote-jobs"),
    path("federation/remote-jobs/<int:remote_job_id>/", remote_api.RemoteJobDetailApi.as_view()),
    path(
        "federation/remote-jobs/<int:remote_job_id>/cancel/",
        remote_api.RemoteJobCancelApi.as_view(),
    ),
]
