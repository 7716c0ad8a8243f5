from django.contrib import admin
from django.http import HttpRequest

from apps.evaluations.models import Result


@admin.register(Result)
class ResultAdmin(admin.ModelAdmin):
    """Results are written only by the worker's post: the admin reads them."""

    list_display = (
        "id",
        "model_version",
        "benchmark",
        "institution",
        "node",
        "isolation",
        "created_at",
    )
    list_filter = ("benchmark", "institution", "isolation")
    list_select_related = ("model_version__model", "benchmark", "institution", "node__institution")
    search_fields = ("model_version__model__name", "benchmark__name")
    readonly_fields = [field.name for field in Result._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
