from django.urls import path

from apps.catalog import views

app_name = "catalog"

MODEL = "models/<slug:institution_slug>/<slug:slug>/"

urlpatterns = [
    path("models/", views.model_list, name="model-list"),
    path("models/new/", views.model_create, name="model-create"),
    path(MODEL, views.model_detail, name="model-detail"),
    path(f"{MODEL}edit/", views.model_edit, name="model-edit"),
    path(f"{MODEL}versions/new/", views.version_create, name="version-create"),
    path(f"{MODEL}versions/<path:label>/publish/", views.version_publish, name="version-publish"),
    path(f"{MODEL}discussion/", views.model_comment, name="model-comment"),
    path("papers/", views.paper_list, name="paper-list"),
    path("papers/new/", views.paper_create, name="paper-create"),
    path("papers/import/", views.paper_import, name="paper-import"),
    path("papers/<int:paper_id>/", views.paper_detail, name="paper-detail"),
    path("papers/<int:paper_id>/discussion/", views.paper_comment, name="paper-comment"),
    path("datasets/", views.dataset_list, name="dataset-list"),
    path("datasets/new/", views.dataset_create, name="dataset-create"),
    path("datasets/<int:dataset_id>/", views.dataset_detail, name="dataset-detail"),
    path("benchmarks/", views.benchmark_list, name="benchmark-list"),
    path("benchmarks/new/", views.benchmark_create, name="benchmark-create"),
    path("benchmarks/<int:benchmark_id>/", views.benchmark_detail, name="benchmark-detail"),
    path(
        "benchmarks/<int:benchmark_id>/discussion/",
        views.benchmark_comment,
        name="benchmark-comment",
    ),
    path("discussion/<int:comment_id>/edit/", views.comment_edit, name="comment-edit"),
    path("discussion/<int:comment_id>/remove/", views.comment_remove, name="comment-remove"),
    path("search/", views.search, name="search"),
]
