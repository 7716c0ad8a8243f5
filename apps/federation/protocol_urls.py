from django.db import transaction
from django.urls import path

from apps.federation import protocol_views
from apps.federation.contract import (
    EVALUATIONS_PATH,
    FEED_PATH,
    GRANTS_PATH,
    PEERING_REQUEST_PATH,
    PEERING_STATE_PATH,
)

urlpatterns = [
    path(".well-known/research-exchange", protocol_views.well_known, name="well-known"),
    path(PEERING_REQUEST_PATH.lstrip("/"), protocol_views.PeeringRequestApi.as_view()),
    path(PEERING_STATE_PATH.lstrip("/"), protocol_views.PeeringStateApi.as_view()),
    # Outside a request transaction: the sequencer's lock is released before the page renders,
    # so writers and other peers' pulls do not wait behind it.
    path(
        FEED_PATH.lstrip("/"),
        transaction.non_atomic_requests(protocol_views.FeedApi.as_view()),
        name="federation-feed",
    ),
    path(GRANTS_PATH.lstrip("/"), protocol_views.GrantsApi.as_view()),
    path(EVALUATIONS_PATH.lstrip("/"), protocol_views.EvaluationsApi.as_view()),
    path(
        EVALUATIONS_PATH.lstrip("/") + "/<uuid:request_id>",
        protocol_views.EvaluationApi.as_view(),
    ),
    path(
        EVALUATIONS_PATH.lstrip("/") + "/<uuid:request_id>/cancel",
        protocol_views.EvaluationCancelApi.as_view(),
    ),
    path(
        "federation/v1/requested-evaluations/<uuid:request_id>/files/<str:sha256>",
        protocol_views.RequestedFileApi.as_view(),
    ),
    path(
        "federation/v1/requested-evaluations/<uuid:request_id>/outcome",
        protocol_views.RequestedOutcomeApi.as_view(),
    ),
]
