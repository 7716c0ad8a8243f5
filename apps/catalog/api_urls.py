from django.urls import path

from apps.catalog import api
from apps.federation import export_views

urlpatterns = [
    path("models/", api.ModelListApi.as_view(), name="model-list"),
    path("models/<int:model_id>/", api.ModelDetailApi.as_view(), name="model-detail"),
    path(
        "models/<int:model_id>/datacite/",
        export_views.ModelDataciteApi.as_view(),
        name="model-datacite",
    ),
    path("models/<int:model_id>/versions/", api.VersionListApi.as_view(), name="version-list"),
    path(
        "models/<int:model_id>/versions/<str:label>/",
        api.VersionDetailApi.as_view(),
        name="version-detail",
    ),
    path(
        "models/<int:model_id>/versions/<str:label>/files/",
        api.VersionFileApi.as_view(),
        name="version-files",
    ),
    path(
        "models/<int:model_id>/versions/<str:label>/publish/",
        api.VersionPublishApi.as_view(),
        name="version-publish",
    ),
    path("artifacts/", api.ArtifactListApi.as_view(), name="artifact-list"),
    path("artifacts/<str:sha256>/", api.ArtifactDetailApi.as_view(), name="artifact-detail"),
    path(
        "artifacts/<str:sha256>/download",
        api.ArtifactDownloadApi.as_view(),
        name="artifact-download",
    ),
    path("papers/", api.PaperListApi.as_view(), name="paper-list"),
    path("papers/bibtex", api.PaperBibtexExportApi.as_view(), name="paper-bibtex-export"),
    path("papers/import-bibtex/", api.PaperBibtexImportApi.as_view(), name="paper-import-bibtex"),
    path("papers/<int:paper_id>/", api.PaperDetailApi.as_view(), name="paper-detail"),
    path("papers/<int:paper_id>/bibtex", api.PaperBibtexApi.as_view(), name="paper-bibtex"),
    path(
        "papers/<int:paper_id>/datacite/",
        export_views.PaperDataciteApi.as_view(),
        name="paper-datacite",
    ),
    path("datasets/", api.DatasetListApi.as_view(), name="dataset-list"),
    path("datasets/<int:dataset_id>/", api.DatasetDetailApi.as_view(), name="dataset-detail"),
    path(
        "datasets/<int:dataset_id>/datacite/",
        export_views.DatasetDataciteApi.as_view(),
        name="dataset-datacite",
    ),
    path(
        "datasets/<int:dataset_id>/croissant/",
        export_views.DatasetCroissantApi.as_view(),
        name="dataset-croissant",
    ),
    path("benchmarks/", api.BenchmarkListApi.as_view(), name="benchmark-list"),
    path(
        "benchmarks/<int:benchmark_id>/", api.BenchmarkDetailApi.as_view(), name="benchmark-detail"
    ),
    path("evaluators/", api.EvaluatorListApi.as_view(), name="evaluator-list"),
    path("discussions/", api.CommentListApi.as_view(), name="comment-list"),
    path("discussions/<int:comment_id>/", api.CommentDetailApi.as_view(), name="comment-detail"),
    path("search/", api.SearchApi.as_view(), name="search"),
]
