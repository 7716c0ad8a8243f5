"""The read subset of the Hugging Face Hub API (apps.catalog.hub). Included by the project's
URL configuration after every other page (the file route has `resolve` fixed in third place,
so it takes nothing from the portal) and before the API's catch-all."""

from django.urls import path

from apps.catalog import hub_views

app_name = "hub"

REPO = "<str:namespace>/<str:name>"

urlpatterns = [
    path(f"api/models/{REPO}", hub_views.model_info, name="model-info"),
    path(f"api/models/{REPO}/revision/<path:revision>", hub_views.model_info, name="model-info"),
    path(f"api/models/{REPO}/tree/<str:revision>", hub_views.model_tree, name="model-tree"),
    path(
        f"api/models/{REPO}/tree/<str:revision>/<path:path>",
        hub_views.model_tree,
        name="model-tree",
    ),
    path(f"{REPO}/resolve/<str:revision>/<path:filename>", hub_views.file_resolve, name="resolve"),
]
