from django.urls import path

from apps.evaluations import views

app_name = "evaluations"

urlpatterns = [
    path(
        "benchmarks/<int:benchmark_id>/leaderboard/",
        views.leaderboard,
        name="leaderboard",
    ),
    path("results/", views.result_list, name="result-list"),
    path("results/<int:result_id>/", views.result_detail, name="result-detail"),
]
