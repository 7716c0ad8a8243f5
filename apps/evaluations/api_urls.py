from django.urls import path

from apps.evaluations import api

urlpatterns = [
    path("results/", api.ResultListApi.as_view(), name="result-list"),
    path("results/<int:result_id>/", api.ResultDetailApi.as_view(), name="result-detail"),
    path(
        "results/<int:result_id>/attestation",
        api.ResultAttestationApi.as_view(),
        name="result-attestation",
    ),
    path(
        "benchmarks/<int:benchmark_id>/leaderboard/",
        api.LeaderboardApi.as_view(),
        name="benchmark-leaderboard",
    ),
]
