from django.contrib import admin

from apps.catalog.models import (
    Artifact,
    Benchmark,
    Comment,
    Dataset,
    DatasetFile,
    ModelFile,
    ModelVersion,
    Paper,
    PaperAuthor,
    ResearchModel,
    Tag,
)

ORIGIN_FIELDS = ("origin_node", "origin_id", "origin_url", "origin_synced_at")


class RecordAdmin(admin.ModelAdmin):
    list_select_related = ("institution",)
    readonly_fields = ("created_by", "created_at", "updated_at", *ORIGIN_FIELDS)

    def has_change_permission(self, request, obj=None) -> bool:
        # A record mirrored from a peer node changes only on that node.
        if obj is not None and obj.origin_node:
            return False
        return super().has_change_permission(request, obj)


class ModelVersionInline(admin.TabularInline):
    model = ModelVersion
    extra = 0
    fields = ("label", "published_at", "created_at")
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False  # versions are built from uploads, through the portal or the API


@admin.register(ResearchModel)
class ResearchModelAdmin(RecordAdmin):
    list_filter = ("visibility", "institution")
    list_display = ("name", "institution", "task", "license", "visibility", "created_at")
    search_fields = ("name", "slug", "summary")
    autocomplete_fields = ("papers", "benchmarks", "tags")
    inlines = [ModelVersionInline]


class ModelFileInline(admin.TabularInline):
    model = ModelFile
    extra = 0
    readonly_fields = ("filename", "artifact")
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("model", "label", "published_at")
    search_fields = ("model__name", "label")
    readonly_fields = ("model", "label", "published_at", "created_by", "created_at")
    inlines = [ModelFileInline]


@admin.register(Artifact)
class ArtifactAdmin(admin.ModelAdmin):
    list_display = ("sha256", "format", "size", "unsafe", "uploaded_by", "created_at")
    list_filter = ("format", "unsafe")
    search_fields = ("sha256",)
    readonly_fields = [field.name for field in Artifact._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False  # the bytes come through the streaming upload, which checks them


class PaperAuthorInline(admin.TabularInline):
    model = PaperAuthor
    extra = 0
    autocomplete_fields = ("institution",)


@admin.register(Paper)
class PaperAdmin(RecordAdmin):
    list_display = ("title", "institution", "year", "doi", "arxiv_id", "visibility")
    list_filter = ("visibility", "institution", "year")
    search_fields = ("title", "doi", "arxiv_id", "author_names")
    raw_id_fields = ("pdf",)
    autocomplete_fields = ("datasets", "benchmarks")
    inlines = [PaperAuthorInline]


class DatasetFileInline(admin.TabularInline):
    model = DatasetFile
    extra = 0
    raw_id_fields = ("artifact",)


@admin.register(Dataset)
class DatasetAdmin(RecordAdmin):
    list_filter = ("visibility", "institution")
    list_display = ("name", "institution", "license", "visibility")
    search_fields = ("name", "slug")
    autocomplete_fields = ("tags",)
    inlines = [DatasetFileInline]


@admin.register(Benchmark)
class BenchmarkAdmin(RecordAdmin):
    list_filter = ("visibility", "requires_full_isolation", "institution")
    list_display = ("name", "institution", "task_type", "evaluator", "visibility")
    search_fields = ("name", "slug", "task_type")
    autocomplete_fields = ("tags",)
    raw_id_fields = ("dataset",)


@admin.register(Comment)
class CommentAdmin(admin.ModelAdmin):
    list_display = ("id", "author", "model", "paper", "benchmark", "created_at", "removed_at")
    list_filter = ("removed_at",)
    search_fields = ("body", "author__username")
    raw_id_fields = ("model", "paper", "benchmark", "parent", "author", "removed_by")


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    search_fields = ("name",)
