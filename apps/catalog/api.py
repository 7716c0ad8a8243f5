"""REST endpoints of the catalogue: models and versions, artifacts, papers (with BibTeX),
datasets, benchmarks, discussions and search.

Lists are declarative (selector queryset + filterset + ordering); writes validate with an input
serializer and call one service.
"""

import django_filters
from django.conf import settings
from django.http import Http404, HttpResponse, HttpResponseBase
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import generics, serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.fields import InstitutionSlugField, OrcidField
from apps.accounts.models import Institution
from apps.accounts.typing import AuthenticatedRequest
from apps.catalog import selectors, services
from apps.catalog.bibtex import papers_to_bibtex
from apps.catalog.downloads import artifact_response
from apps.catalog.models import (
    MAX_MEMORY_LIMIT_MB,
    MIN_MEMORY_LIMIT_MB,
    Artifact,
    Benchmark,
    Comment,
    Dataset,
    ModelVersion,
    Paper,
    ResearchModel,
    Visibility,
)
from apps.catalog.pagination import CatalogPagination
from apps.catalog.presenters import paper_draft
from apps.core.filters import ORIGIN_HELP, FilterSet, OriginFilter
from apps.core.parsers import JSONParser, MultiPartParser
from apps.core.schema import ErrorOutput
from apps.core.serializers import PatchInputMixin, StrictSerializer
from worker.evaluators import evaluator_specs

MAX_BIBTEX_EXPORT = 1000


class TagsField(serializers.ListField):
    def __init__(self, **kwargs):
        super().__init__(
            child=serializers.SlugField(max_length=50), max_length=20, required=False, **kwargs
        )


def _tag_names(record) -> list[str]:
    return [tag.name for tag in record.tags.all()]


class ArtifactOutput(serializers.ModelSerializer):
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Artifact
        fields = ["sha256", "size", "format", "unsafe", "format_info", "created_at", "download_url"]

    def get_download_url(self, artifact: Artifact) -> str:
        return f"/api/v1/artifacts/{artifact.sha256}/download"


class FileOutput(serializers.Serializer):
    filename = serializers.CharField()
    artifact = ArtifactOutput()


class OriginOutput(serializers.Serializer):
    """Where a mirrored record comes from; null for records published on this node."""

    node = serializers.CharField(source="origin_node")
    id = serializers.CharField(source="origin_id")
    url = serializers.URLField(source="origin_url")
    synced_at = serializers.DateTimeField(source="origin_synced_at")


@extend_schema_field(OriginOutput(allow_null=True))
class OriginField(serializers.Field):
    def __init__(self, **kwargs) -> None:
        super().__init__(source="*", read_only=True, **kwargs)

    def to_representation(self, record) -> dict | None:
        return OriginOutput(record).data if record.origin_node else None


class RecordOutput(serializers.Serializer):
    id = serializers.IntegerField()
    institution = serializers.SlugField(source="institution.slug")
    institution_name = serializers.CharField(source="institution.name")
    visibility = serializers.CharField()
    origin = OriginField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class VersionOutput(serializers.ModelSerializer):
    is_published = serializers.BooleanField()
    files = FileOutput(many=True)

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "label",
            "release_notes",
            "is_published",
            "published_at",
            "created_at",
            "files",
        ]


class LinkOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField(source="__str__")


class ModelOutput(RecordOutput):
    name = serializers.CharField()
    slug = serializers.SlugField()
    summary = serializers.CharField()
    license = serializers.CharField()
    task = serializers.CharField()
    tags = serializers.SerializerMethodField()
    latest_version = serializers.CharField(allow_null=True)

    def get_tags(self, model: ResearchModel) -> list[str]:
        return _tag_names(model)


class ModelDetailOutput(ModelOutput):
    card = serializers.CharField()
    versions = VersionOutput(many=True)
    papers = LinkOutput(many=True)
    benchmarks = LinkOutput(many=True)


class ModelCreateInput(StrictSerializer):
    institution = InstitutionSlugField()
    name = serializers.CharField(max_length=200)
    slug = serializers.SlugField(max_length=80)
    summary = serializers.CharField(max_length=500, required=False, allow_blank=True)
    card = serializers.CharField(
        max_length=200_000, required=False, allow_blank=True, help_text="Markdown."
    )
    license = serializers.CharField(max_length=200, help_text="SPDX id or expression, e.g. MIT.")
    task = serializers.CharField(max_length=64, required=False, allow_blank=True)
    visibility = serializers.ChoiceField(choices=Visibility.choices, default=Visibility.PUBLIC)
    tags = TagsField()
    paper_ids = serializers.ListField(child=serializers.IntegerField(), required=False)
    benchmark_ids = serializers.ListField(child=serializers.IntegerField(), required=False)


class ModelUpdateInput(PatchInputMixin, ModelCreateInput):
    institution = None  # type: ignore[assignment]  # a model stays with its institution
    slug = None  # type: ignore[assignment]


class RecordListApi(generics.ListAPIView):
    """A list of catalogue records: newest first, with the cached row count."""

    pagination_class = CatalogPagination
    ordering = ["-created_at", "-id"]


class ModelFilter(FilterSet):
    origin = OriginFilter()
    institution = django_filters.CharFilter(field_name="institution__slug")
    tag = django_filters.CharFilter(field_name="tags__name")
    license = django_filters.CharFilter(lookup_expr="iexact")

    class Meta:
        model = ResearchModel
        fields = ["institution", "slug", "tag", "task", "license", "visibility"]


@extend_schema_view(get=extend_schema(summary="List research models you can see"))
class ModelListApi(RecordListApi):
    serializer_class = ModelOutput
    filterset_class = ModelFilter
    ordering_fields = ["name", "created_at", "updated_at"]

    def get_queryset(self):
        return selectors.model_list(user=self.request.user)

    @extend_schema(
        request=ModelCreateInput,
        responses={201: ModelDetailOutput},
        summary="Publish a research model for one of your institutions",
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        payload = ModelCreateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        model = services.model_create(user=request.user, **payload.validated_data)
        detail = selectors.model_get(user=request.user, model_id=model.pk)
        return Response(ModelDetailOutput(detail).data, status=status.HTTP_201_CREATED)


class ModelDetailApi(APIView):
    @extend_schema(responses=ModelDetailOutput, summary="A research model with its versions")
    def get(self, request: Request, model_id: int) -> Response:
        return Response(
            ModelDetailOutput(selectors.model_get(user=request.user, model_id=model_id)).data
        )

    @extend_schema(
        request=ModelUpdateInput,
        responses=ModelDetailOutput,
        summary="Edit a research model (its creator, institution admins, staff)",
    )
    def patch(self, request: AuthenticatedRequest, model_id: int) -> Response:
        model = selectors.model_get(user=request.user, model_id=model_id)
        services.record_require_editor(user=request.user, record=model)
        payload = ModelUpdateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        services.model_update(user=request.user, model=model, **payload.validated_data)
        return Response(
            ModelDetailOutput(selectors.model_get(user=request.user, model_id=model_id)).data
        )


class VersionFileInput(StrictSerializer):
    filename = serializers.CharField(max_length=255)
    sha256 = serializers.RegexField(r"^[0-9a-fA-F]{64}$", help_text="An uploaded artifact.")


class VersionCreateInput(StrictSerializer):
    label = serializers.RegexField(  # type: ignore[assignment]
        r"^[\w.+-]+$", max_length=64, help_text="Letters, digits and . _ + - (e.g. 1.0, 2.1-rc1)."
    )
    release_notes = serializers.CharField(max_length=50_000, required=False, allow_blank=True)
    files = VersionFileInput(many=True, required=False)
    publish = serializers.BooleanField(
        default=False, help_text="Publish at once: the version can then never change."
    )


class VersionListApi(APIView):
    @extend_schema(responses=VersionOutput(many=True), summary="A model's versions, newest first")
    def get(self, request: Request, model_id: int) -> Response:
        model = selectors.model_get(user=request.user, model_id=model_id)
        return Response(VersionOutput(model.versions.all(), many=True).data)

    @extend_schema(
        request=VersionCreateInput,
        responses={201: VersionOutput},
        summary="Create a version from uploaded artifacts (optionally published at once)",
    )
    def post(self, request: AuthenticatedRequest, model_id: int) -> Response:
        model = selectors.model_get(user=request.user, model_id=model_id)
        services.record_require_editor(user=request.user, record=model)
        payload = VersionCreateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        version = services.version_create(
            user=request.user,
            model=model,
            label=data["label"],
            release_notes=data.get("release_notes", ""),
            files=[(item["filename"], item["sha256"]) for item in data.get("files", [])],
            publish=data["publish"],
        )
        version = selectors.version_get(user=request.user, model=model, label=version.label)
        return Response(VersionOutput(version).data, status=status.HTTP_201_CREATED)


class VersionDetailApi(APIView):
    @extend_schema(responses=VersionOutput, summary="One version of a model")
    def get(self, request: Request, model_id: int, label: str) -> Response:
        model = selectors.model_get(user=request.user, model_id=model_id)
        return Response(
            VersionOutput(selectors.version_get(user=request.user, model=model, label=label)).data
        )


class VersionFileApi(APIView):
    @extend_schema(
        request=VersionFileInput,
        responses={201: VersionOutput},
        summary="Add an uploaded artifact to a draft version",
    )
    def post(self, request: AuthenticatedRequest, model_id: int, label: str) -> Response:
        model = selectors.model_get(user=request.user, model_id=model_id)
        version = selectors.version_get(user=request.user, model=model, label=label)
        services.record_require_editor(user=request.user, record=model)
        payload = VersionFileInput(data=request.data)
        payload.is_valid(raise_exception=True)
        services.version_add_file(user=request.user, version=version, **payload.validated_data)
        version = selectors.version_get(user=request.user, model=model, label=label)
        return Response(VersionOutput(version).data, status=status.HTTP_201_CREATED)


class VersionPublishApi(APIView):
    @extend_schema(request=None, responses=VersionOutput, summary="Publish a draft version")
    def post(self, request: AuthenticatedRequest, model_id: int, label: str) -> Response:
        model = selectors.model_get(user=request.user, model_id=model_id)
        version = selectors.version_get(user=request.user, model=model, label=label)
        services.version_publish(user=request.user, version=version)
        version = selectors.version_get(user=request.user, model=model, label=label)
        return Response(VersionOutput(version).data)


class ArtifactUploadInput(StrictSerializer):
    file = serializers.FileField(allow_empty_file=False)
    sha256 = serializers.RegexField(
        r"^[0-9a-fA-F]{64}$",
        required=False,
        help_text="The sha256 you computed; the upload is refused when the server's differs.",
    )


class ArtifactListApi(generics.ListAPIView):
    serializer_class = ArtifactOutput
    parser_classes = [MultiPartParser]
    filter_backends: list = []

    def get_queryset(self):
        if not self.request.user.is_authenticated:
            return Artifact.objects.none()
        return Artifact.objects.filter(uploaded_by=self.request.user)

    @extend_schema(summary="The artifacts you uploaded")
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        request={"multipart/form-data": ArtifactUploadInput},
        responses={201: ArtifactOutput, 200: ArtifactOutput},
        summary="Upload a file (streamed to disk; stored once by sha256)",
        description=(
            "Answers 201 for new bytes and 200 when the node already had them. Pickle-based "
            "formats are stored but flagged `unsafe` and never evaluated. Over the node's size "
            "limit: 413."
        ),
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        payload = ArtifactUploadInput(data=request.data)
        payload.is_valid(raise_exception=True)
        upload = payload.validated_data["file"]
        existed = Artifact.objects.filter(sha256=upload.sha256).exists()
        artifact = services.artifact_store(
            user=request.user,
            upload=upload,
            declared_sha256=payload.validated_data.get("sha256", ""),
        )
        code = status.HTTP_200_OK if existed else status.HTTP_201_CREATED
        return Response(ArtifactOutput(artifact).data, status=code)


class ArtifactDetailApi(APIView):
    @extend_schema(responses=ArtifactOutput, summary="An artifact's metadata")
    def get(self, request: Request, sha256: str) -> Response:
        return Response(
            ArtifactOutput(selectors.artifact_get(user=request.user, sha256=sha256)).data
        )


class ArtifactDownloadApi(APIView):
    @extend_schema(
        responses={
            (200, "application/octet-stream"): OpenApiTypes.BINARY,
            206: OpenApiTypes.BINARY,
        },
        parameters=[
            OpenApiParameter("filename", str, description="Save the file under this name.")
        ],
        summary="Download an artifact (Range requests, ETag and Digest headers)",
    )
    def get(self, request: Request, sha256: str) -> HttpResponseBase:
        artifact = selectors.artifact_get(user=request.user, sha256=sha256)
        filename = request.query_params.get("filename", "")[:255]
        return artifact_response(request._request, artifact, filename)


class AuthorIO(StrictSerializer):
    name = serializers.CharField(max_length=200)
    orcid = OrcidField(required=False, allow_blank=True)
    institution = serializers.SlugField(
        source="institution.slug", required=False, allow_null=True, default=None
    )


class PaperOutput(RecordOutput):
    title = serializers.CharField()
    abstract = serializers.CharField()
    authors = serializers.SerializerMethodField()
    venue = serializers.CharField()
    year = serializers.IntegerField(allow_null=True)
    doi = serializers.CharField()
    arxiv_id = serializers.CharField()
    pdf = ArtifactOutput(allow_null=True)

    def get_authors(self, paper: Paper) -> list[dict]:
        return [
            {
                "name": author.name,
                "orcid": author.orcid,
                "institution": author.institution.slug if author.institution else None,
            }
            for author in paper.authors.all()
        ]


class PaperDetailOutput(PaperOutput):
    models = LinkOutput(many=True)
    datasets = LinkOutput(many=True)
    benchmarks = LinkOutput(many=True)


class PaperCreateInput(StrictSerializer):
    institution = InstitutionSlugField()
    title = serializers.CharField(max_length=500)
    abstract = serializers.CharField(max_length=50_000, required=False, allow_blank=True)
    authors = AuthorIO(many=True, required=False)
    venue = serializers.CharField(max_length=300, required=False, allow_blank=True)
    year = serializers.IntegerField(min_value=1000, max_value=2100, required=False, allow_null=True)
    doi = serializers.CharField(max_length=300, required=False, allow_blank=True)
    arxiv_id = serializers.CharField(max_length=100, required=False, allow_blank=True)
    pdf = serializers.RegexField(
        r"^[0-9a-fA-F]{64}$",
        required=False,
        allow_null=True,
        help_text="sha256 of an uploaded PDF.",
    )
    visibility = serializers.ChoiceField(choices=Visibility.choices, default=Visibility.PUBLIC)
    dataset_ids = serializers.ListField(child=serializers.IntegerField(), required=False)
    benchmark_ids = serializers.ListField(child=serializers.IntegerField(), required=False)

    def validate_pdf(self, value: str | None) -> Artifact | None:
        if value is None:
            return None
        try:
            return selectors.artifact_get(user=self.context["user"], sha256=value)
        except Http404 as error:
            raise serializers.ValidationError(
                f"No artifact with sha256 {value} that you can read on this node."
            ) from error

    def validate_authors(self, value: list[dict]) -> list[services.AuthorInput]:
        authors = []
        for author in value:
            slug = (author.get("institution") or {}).get("slug")
            institution = None
            if slug:
                institution = Institution.objects.filter(slug=slug).first()
                if institution is None:
                    raise serializers.ValidationError(f"No institution '{slug}'.")
            authors.append(
                services.AuthorInput(
                    name=author["name"], orcid=author.get("orcid", ""), institution=institution
                )
            )
        return authors


class PaperUpdateInput(PatchInputMixin, PaperCreateInput):
    institution = None  # type: ignore[assignment]


class PaperFilter(FilterSet):
    origin = OriginFilter()
    institution = django_filters.CharFilter(field_name="institution__slug")
    year_min = django_filters.NumberFilter(field_name="year", lookup_expr="gte")
    year_max = django_filters.NumberFilter(field_name="year", lookup_expr="lte")
    doi = django_filters.CharFilter(lookup_expr="iexact")

    class Meta:
        model = Paper
        fields = ["institution", "year", "year_min", "year_max", "doi", "arxiv_id", "visibility"]


@extend_schema_view(get=extend_schema(summary="List papers you can see"))
class PaperListApi(RecordListApi):
    serializer_class = PaperOutput
    filterset_class = PaperFilter
    ordering_fields = ["title", "year", "created_at"]

    def get_queryset(self):
        return selectors.paper_list(user=self.request.user)

    @extend_schema(
        request=PaperCreateInput, responses={201: PaperDetailOutput}, summary="Add a paper"
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        payload = PaperCreateInput(data=request.data, context={"user": request.user})
        payload.is_valid(raise_exception=True)
        paper = services.paper_create(user=request.user, **payload.validated_data)
        detail = selectors.paper_get(user=request.user, paper_id=paper.pk)
        return Response(PaperDetailOutput(detail).data, status=status.HTTP_201_CREATED)


class PaperDetailApi(APIView):
    @extend_schema(responses=PaperDetailOutput, summary="A paper")
    def get(self, request: Request, paper_id: int) -> Response:
        return Response(
            PaperDetailOutput(selectors.paper_get(user=request.user, paper_id=paper_id)).data
        )

    @extend_schema(request=PaperUpdateInput, responses=PaperDetailOutput, summary="Edit a paper")
    def patch(self, request: AuthenticatedRequest, paper_id: int) -> Response:
        paper = selectors.paper_get(user=request.user, paper_id=paper_id)
        services.record_require_editor(user=request.user, record=paper)
        payload = PaperUpdateInput(data=request.data, context={"user": request.user})
        payload.is_valid(raise_exception=True)
        services.paper_update(user=request.user, paper=paper, **payload.validated_data)
        return Response(
            PaperDetailOutput(selectors.paper_get(user=request.user, paper_id=paper_id)).data
        )


def _bibtex_response(papers, filename: str) -> HttpResponse:
    response = HttpResponse(
        papers_to_bibtex(paper_draft(paper) for paper in papers),
        content_type="application/x-bibtex; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class PaperBibtexApi(APIView):
    @extend_schema(
        responses={(200, "application/x-bibtex"): OpenApiTypes.STR}, summary="A paper as BibTeX"
    )
    def get(self, request: Request, paper_id: int) -> HttpResponse:
        paper = selectors.paper_get(user=request.user, paper_id=paper_id)
        return _bibtex_response([paper], f"paper-{paper.pk}.bib")


class PaperBibtexExportApi(generics.ListAPIView):
    """The papers a list query selects (same filters and ordering), as one BibTeX file."""

    filterset_class = PaperFilter
    ordering_fields = ["title", "year", "created_at"]
    ordering = ["-created_at", "-id"]

    def get_queryset(self):
        return selectors.paper_list(user=self.request.user)

    @extend_schema(
        operation_id="papers_bibtex_export",
        responses={(200, "application/x-bibtex"): OpenApiTypes.STR},
        summary=f"Export the papers a list query selects as BibTeX (at most {MAX_BIBTEX_EXPORT})",
    )
    def get(self, request: Request, *args, **kwargs) -> HttpResponse:  # type: ignore[override]
        papers = self.filter_queryset(self.get_queryset())[:MAX_BIBTEX_EXPORT]
        return _bibtex_response(papers, "papers.bib")


class BibtexImportInput(StrictSerializer):
    institution = InstitutionSlugField()
    visibility = serializers.ChoiceField(choices=Visibility.choices, default=Visibility.PUBLIC)
    file = serializers.FileField(required=False, help_text="A .bib file.")
    bibtex = serializers.CharField(required=False, help_text="BibTeX text, instead of a file.")

    def validate(self, data: dict) -> dict:
        if ("file" in data) == ("bibtex" in data):
            raise serializers.ValidationError("Send either a .bib `file` or `bibtex` text.")
        if "file" in data:
            upload = data.pop("file")
            if upload.size > settings.BIBTEX_MAX_BYTES:
                raise serializers.ValidationError({"file": "This BibTeX file is too large."})
            try:
                data["bibtex"] = upload.read().decode("utf-8-sig")
            except UnicodeDecodeError as error:
                raise serializers.ValidationError(
                    {"file": f"The file is not UTF-8 text (byte {error.start})."}
                ) from error
        if not data["bibtex"].strip():
            raise serializers.ValidationError({"bibtex": "The BibTeX is empty."})
        return data


class BibtexEntryErrorOutput(serializers.Serializer):
    key = serializers.CharField(allow_blank=True, help_text="The entry's citation key.")
    line = serializers.IntegerField(
        allow_null=True, help_text="Where the entry starts in the BibTeX, when known."
    )
    message = serializers.CharField()


class BibtexImportOutput(serializers.Serializer):
    created = LinkOutput(many=True)
    errors = BibtexEntryErrorOutput(many=True)  # type: ignore[assignment]


class PaperBibtexImportApi(APIView):
    parser_classes = [JSONParser, MultiPartParser]

    @extend_schema(
        request={"multipart/form-data": BibtexImportInput, "application/json": BibtexImportInput},
        responses={
            201: BibtexImportOutput,
            400: OpenApiResponse(
                PolymorphicProxySerializer(
                    component_name="BibtexImportRefusal",
                    serializers=[BibtexImportOutput, ErrorOutput],
                    resource_type_field_name=None,
                ),
                description=(
                    "Every entry was refused (the import report, each entry's error by key), or "
                    "the input itself is invalid (the error format)."
                ),
            ),
        },
        summary="Import papers from BibTeX: good entries are kept, each bad one reported by key",
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        payload = BibtexImportInput(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        report = services.papers_import_bibtex(
            user=request.user,
            institution=data["institution"],
            text=data["bibtex"],
            visibility=data["visibility"],
        )
        body = BibtexImportOutput({"created": report.created, "errors": report.errors}).data
        if not report.created and report.errors:
            return Response(body, status=status.HTTP_400_BAD_REQUEST)
        if not report.created:
            raise ValidationError({"bibtex": "No BibTeX entries were found."})
        return Response(body, status=status.HTTP_201_CREATED)


class DatasetOutput(RecordOutput):
    name = serializers.CharField()
    slug = serializers.SlugField()
    description = serializers.CharField()
    license = serializers.CharField()
    tags = serializers.SerializerMethodField()
    files = FileOutput(many=True)

    def get_tags(self, dataset: Dataset) -> list[str]:
        return _tag_names(dataset)


class DatasetCreateInput(StrictSerializer):
    institution = InstitutionSlugField()
    name = serializers.CharField(max_length=200)
    slug = serializers.SlugField(max_length=80)
    description = serializers.CharField(max_length=50_000, required=False, allow_blank=True)
    license = serializers.CharField(max_length=200)
    visibility = serializers.ChoiceField(choices=Visibility.choices, default=Visibility.PUBLIC)
    tags = TagsField()
    files = VersionFileInput(many=True, required=False)


class DatasetUpdateInput(StrictSerializer):
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(max_length=50_000, required=False, allow_blank=True)
    license = serializers.CharField(max_length=200, required=False)
    visibility = serializers.ChoiceField(choices=Visibility.choices, required=False)
    tags = TagsField()


class DatasetFilter(FilterSet):
    origin = OriginFilter()
    institution = django_filters.CharFilter(field_name="institution__slug")
    tag = django_filters.CharFilter(field_name="tags__name")
    license = django_filters.CharFilter(lookup_expr="iexact")

    class Meta:
        model = Dataset
        fields = ["institution", "tag", "license", "visibility"]


@extend_schema_view(get=extend_schema(summary="List datasets you can see"))
class DatasetListApi(RecordListApi):
    serializer_class = DatasetOutput
    filterset_class = DatasetFilter
    ordering_fields = ["name", "created_at"]

    def get_queryset(self):
        return selectors.dataset_list(user=self.request.user)

    @extend_schema(
        request=DatasetCreateInput, responses={201: DatasetOutput}, summary="Publish a dataset"
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        payload = DatasetCreateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        data["files"] = [(item["filename"], item["sha256"]) for item in data.get("files", [])]
        dataset = services.dataset_create(user=request.user, **data)
        detail = selectors.dataset_get(user=request.user, dataset_id=dataset.pk)
        return Response(DatasetOutput(detail).data, status=status.HTTP_201_CREATED)


class DatasetDetailApi(APIView):
    @extend_schema(responses=DatasetOutput, summary="A dataset")
    def get(self, request: Request, dataset_id: int) -> Response:
        return Response(
            DatasetOutput(selectors.dataset_get(user=request.user, dataset_id=dataset_id)).data
        )

    @extend_schema(request=DatasetUpdateInput, responses=DatasetOutput, summary="Edit a dataset")
    def patch(self, request: AuthenticatedRequest, dataset_id: int) -> Response:
        dataset = selectors.dataset_get(user=request.user, dataset_id=dataset_id)
        services.record_require_editor(user=request.user, record=dataset)
        payload = DatasetUpdateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        services.dataset_update(user=request.user, dataset=dataset, **payload.validated_data)
        return Response(
            DatasetOutput(selectors.dataset_get(user=request.user, dataset_id=dataset_id)).data
        )


class MetricIO(StrictSerializer):
    name = serializers.CharField(max_length=64)
    higher_is_better = serializers.BooleanField()


class DatasetLinkOutput(serializers.Serializer):
    id = serializers.IntegerField(allow_null=True)
    name = serializers.CharField(allow_null=True)
    hidden = serializers.BooleanField(help_text="The dataset is not visible to you.")


class BenchmarkOutput(RecordOutput):
    name = serializers.CharField()
    slug = serializers.SlugField()
    description = serializers.CharField()
    task_type = serializers.CharField()
    dataset = serializers.SerializerMethodField()
    metrics = MetricIO(many=True)
    evaluator = serializers.CharField()
    evaluator_config = serializers.JSONField()
    gpu_count = serializers.IntegerField()
    gpu_memory_gb = serializers.IntegerField()
    time_limit_minutes = serializers.IntegerField()
    memory_limit_mb = serializers.IntegerField()
    reproduction_tolerance = serializers.FloatField(
        help_text="How far a reproduction's metric may be from the original's and still agree "
        "(absolute; 0: exactly equal)."
    )
    tags = serializers.SerializerMethodField()

    def get_tags(self, benchmark: Benchmark) -> list[str]:
        return _tag_names(benchmark)

    @extend_schema_field(DatasetLinkOutput)
    def get_dataset(self, benchmark: Benchmark) -> dict:
        # `dataset_visible` comes from the benchmark selectors, for the viewer.
        if not benchmark.dataset_visible:  # type: ignore[attr-defined]
            return {"id": None, "name": None, "hidden": True}
        return {"id": benchmark.dataset_id, "name": benchmark.dataset.name, "hidden": False}


class BenchmarkCreateInput(StrictSerializer):
    institution = InstitutionSlugField()
    name = serializers.CharField(max_length=200)
    slug = serializers.SlugField(max_length=80)
    description = serializers.CharField(max_length=50_000, required=False, allow_blank=True)
    task_type = serializers.CharField(max_length=64)
    dataset = serializers.PrimaryKeyRelatedField(
        queryset=Dataset.objects.all(),
        # The same answer for a dataset that is hidden from the caller and one that is missing.
        error_messages={"does_not_exist": services.HIDDEN_OR_MISSING_DATASET},
    )
    metrics = MetricIO(many=True, allow_empty=False)
    evaluator = serializers.CharField(max_length=64)
    evaluator_config = serializers.DictField(required=False)
    gpu_count = serializers.IntegerField(min_value=0, max_value=64, required=False)
    gpu_memory_gb = serializers.IntegerField(min_value=0, max_value=4096, required=False)
    time_limit_minutes = serializers.IntegerField(
        min_value=1, max_value=7 * 24 * 60, required=False
    )
    memory_limit_mb = serializers.IntegerField(
        min_value=MIN_MEMORY_LIMIT_MB, max_value=MAX_MEMORY_LIMIT_MB, required=False
    )
    reproduction_tolerance = serializers.FloatField(
        min_value=0,
        required=False,
        help_text="How far a reproduction's metric may be from the original's and still agree "
        "(absolute; default 0: exactly equal).",
    )
    visibility = serializers.ChoiceField(choices=Visibility.choices, default=Visibility.PUBLIC)
    tags = TagsField()


class BenchmarkUpdateInput(PatchInputMixin, BenchmarkCreateInput):
    institution = None  # type: ignore[assignment]
    slug = None  # type: ignore[assignment]
    dataset = None  # type: ignore[assignment]  # results are only comparable on one dataset


class BenchmarkFilter(FilterSet):
    origin = OriginFilter()
    institution = django_filters.CharFilter(field_name="institution__slug")
    tag = django_filters.CharFilter(field_name="tags__name")

    class Meta:
        model = Benchmark
        fields = ["institution", "tag", "task_type", "evaluator", "dataset", "visibility"]


@extend_schema_view(get=extend_schema(summary="List benchmarks you can see"))
class BenchmarkListApi(RecordListApi):
    serializer_class = BenchmarkOutput
    filterset_class = BenchmarkFilter
    ordering_fields = ["name", "created_at"]

    def get_queryset(self):
        return selectors.benchmark_list(user=self.request.user)

    @extend_schema(
        request=BenchmarkCreateInput,
        responses={201: BenchmarkOutput},
        summary="Define a benchmark (its evaluator config is checked against the evaluator)",
    )
    def post(self, request: AuthenticatedRequest) -> Response:
        payload = BenchmarkCreateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        benchmark = services.benchmark_create(user=request.user, **payload.validated_data)
        detail = selectors.benchmark_get(user=request.user, benchmark_id=benchmark.pk)
        return Response(BenchmarkOutput(detail).data, status=status.HTTP_201_CREATED)


class BenchmarkDetailApi(APIView):
    @extend_schema(responses=BenchmarkOutput, summary="A benchmark")
    def get(self, request: Request, benchmark_id: int) -> Response:
        benchmark = selectors.benchmark_get(user=request.user, benchmark_id=benchmark_id)
        return Response(BenchmarkOutput(benchmark).data)

    @extend_schema(
        request=BenchmarkUpdateInput, responses=BenchmarkOutput, summary="Edit a benchmark"
    )
    def patch(self, request: AuthenticatedRequest, benchmark_id: int) -> Response:
        benchmark = selectors.benchmark_get(user=request.user, benchmark_id=benchmark_id)
        services.record_require_editor(user=request.user, record=benchmark)
        payload = BenchmarkUpdateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        services.benchmark_update(user=request.user, benchmark=benchmark, **payload.validated_data)
        benchmark = selectors.benchmark_get(user=request.user, benchmark_id=benchmark_id)
        return Response(BenchmarkOutput(benchmark).data)


class EvaluatorOutput(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    model_formats = serializers.ListField(child=serializers.CharField())
    config_schema = serializers.JSONField()


class EvaluatorListApi(APIView):
    @extend_schema(responses=EvaluatorOutput(many=True), summary="Evaluators this node can run")
    def get(self, request: Request) -> Response:
        specs = sorted(evaluator_specs().values(), key=lambda spec: spec.name)
        return Response(EvaluatorOutput(specs, many=True).data)


class CommentOutput(serializers.ModelSerializer):
    author = serializers.SerializerMethodField()
    body = serializers.CharField()
    is_removed = serializers.SerializerMethodField()

    class Meta:
        model = Comment
        fields = [
            "id", "model", "paper", "benchmark", "parent", "author", "body",
            "is_removed", "created_at", "edited_at",
        ]  # fmt: skip

    def get_author(self, comment: Comment) -> str | None:
        return comment.author.username if comment.author else None

    def get_is_removed(self, comment: Comment) -> bool:
        return comment.removed_at is not None


class CommentCreateInput(StrictSerializer):
    model = serializers.IntegerField(required=False)
    paper = serializers.IntegerField(required=False)
    benchmark = serializers.IntegerField(required=False)
    parent = serializers.IntegerField(required=False, allow_null=True)  # type: ignore[assignment]
    body = serializers.CharField(max_length=services.COMMENT_MAX_LENGTH, help_text="Markdown.")

    def validate(self, data: dict) -> dict:
        targets = [name for name in ("model", "paper", "benchmark") if name in data]
        if len(targets) != 1:
            raise serializers.ValidationError("Name exactly one of model, paper or benchmark.")
        return data


class CommentEditInput(StrictSerializer):
    body = serializers.CharField(max_length=services.COMMENT_MAX_LENGTH)


class CommentFilter(FilterSet):
    class Meta:
        model = Comment
        fields = ["model", "paper", "benchmark", "parent"]


def _comment_target(user, data: dict) -> ResearchModel | Paper | Benchmark:
    """A record named in the body that is missing or hidden is a 400 on that field, as it is
    everywhere else in the API, and both read alike."""
    try:
        if "model" in data:
            return selectors.model_get(user=user, model_id=data["model"])
        if "paper" in data:
            return selectors.paper_get(user=user, paper_id=data["paper"])
        return selectors.benchmark_get(user=user, benchmark_id=data["benchmark"])
    except Http404:
        name = next(name for name in ("model", "paper", "benchmark") if name in data)
        raise ValidationError({name: [f"No such {name} that you can see."]}) from None


@extend_schema_view(get=extend_schema(summary="Comments on records you can see (filter by one)"))
class CommentListApi(generics.ListAPIView):
    serializer_class = CommentOutput
    filterset_class = CommentFilter
    ordering_fields = ["created_at"]
    ordering = ["created_at", "id"]

    def get_queryset(self):
        return selectors.comment_visible_list(user=self.request.user)

    @extend_schema(request=CommentCreateInput, responses={201: CommentOutput}, summary="Comment")
    def post(self, request: AuthenticatedRequest) -> Response:
        payload = CommentCreateInput(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        target = _comment_target(request.user, data)
        parent = None
        if data.get("parent") is not None:
            visible = selectors.comment_visible_list(user=request.user)
            parent = visible.filter(pk=data["parent"]).first()
            if parent is None:
                raise ValidationError({"parent": ["No such comment that you can see."]})
        comment = services.comment_create(
            user=request.user, target=target, body=data["body"], parent=parent
        )
        return Response(CommentOutput(comment).data, status=status.HTTP_201_CREATED)


class CommentDetailApi(APIView):
    def _comment(self, request: Request, comment_id: int) -> Comment:
        return get_object_or_404(selectors.comment_visible_list(user=request.user), pk=comment_id)

    @extend_schema(responses=CommentOutput, summary="A comment")
    def get(self, request: Request, comment_id: int) -> Response:
        return Response(CommentOutput(self._comment(request, comment_id)).data)

    @extend_schema(request=CommentEditInput, responses=CommentOutput, summary="Edit your comment")
    def patch(self, request: AuthenticatedRequest, comment_id: int) -> Response:
        comment = self._comment(request, comment_id)
        services.comment_require_author(user=request.user, comment=comment)
        payload = CommentEditInput(data=request.data)
        payload.is_valid(raise_exception=True)
        comment = services.comment_edit(
            user=request.user, comment=comment, **payload.validated_data
        )
        return Response(CommentOutput(comment).data)

    @extend_schema(
        responses={204: None}, summary="Remove a comment (its author, the record's moderators)"
    )
    def delete(self, request: AuthenticatedRequest, comment_id: int) -> Response:
        services.comment_remove(user=request.user, comment=self._comment(request, comment_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


SEARCH_PAGE_SIZE = 20
SEARCH_MAX_PAGE = 25


class SearchInput(serializers.Serializer):
    q = serializers.CharField(max_length=200, help_text='Words, "phrases", -exclusions.')
    type = serializers.MultipleChoiceField(choices=selectors.SEARCH_TYPES, required=False)
    institution = serializers.SlugField(required=False)
    tag = serializers.SlugField(required=False)
    task = serializers.CharField(max_length=64, required=False)
    license = serializers.CharField(max_length=200, required=False)
    year = serializers.IntegerField(min_value=1000, max_value=2100, required=False)
    origin = serializers.CharField(max_length=255, required=False, help_text=ORIGIN_HELP)
    page = serializers.IntegerField(min_value=1, max_value=SEARCH_MAX_PAGE, default=1)


class SearchHitOutput(serializers.Serializer):
    type = serializers.CharField()
    id = serializers.IntegerField()
    title = serializers.CharField()
    summary = serializers.CharField()
    institution = serializers.CharField()
    origin = serializers.CharField(help_text="The peer node a mirrored record comes from, or ''.")
    rank = serializers.FloatField()


class SearchOutput(serializers.Serializer):
    count = serializers.IntegerField(
        help_text=f"Hits of every type (each counted up to {selectors.SEARCH_RANKED_CANDIDATES})."
    )
    counts = serializers.DictField(
        child=serializers.IntegerField(),
        help_text=(
            f"Hits per type, counted up to {selectors.SEARCH_RANKED_CANDIDATES}: each type ranks "
            f"its {selectors.SEARCH_RANKED_CANDIDATES} newest matches."
        ),
    )
    page = serializers.IntegerField()
    results = SearchHitOutput(many=True)


def search_params(query_params) -> dict:
    """Validates search parameters (shared by the API and the portal's search page)."""
    data = {key: query_params.get(key) for key in query_params if key != "type"}
    if types := query_params.getlist("type"):
        data["type"] = types
    payload = SearchInput(data=data)
    payload.is_valid(raise_exception=True)
    return payload.validated_data


def run_search(user, params: dict) -> selectors.SearchPage:
    types = tuple(t for t in selectors.SEARCH_TYPES if t in params.get("type", ()))
    filters = selectors.SearchFilters(
        types=types or selectors.SEARCH_TYPES,
        institution=params.get("institution", ""),
        tag=params.get("tag", ""),
        task=params.get("task", ""),
        license=params.get("license", ""),
        year=params.get("year"),
        origin=params.get("origin", ""),
    )
    offset = (params["page"] - 1) * SEARCH_PAGE_SIZE
    return selectors.search(
        user=user, query=params["q"], filters=filters, offset=offset, limit=SEARCH_PAGE_SIZE
    )


class SearchApi(APIView):
    @extend_schema(
        parameters=[SearchInput],
        responses=SearchOutput,
        summary="Ranked full-text search across models, papers, datasets and benchmarks",
    )
    def get(self, request: Request) -> Response:
        params = search_params(request.query_params)
        page = run_search(request.user, params)
        body = {
            "count": page.total,
            "counts": page.counts,
            "page": params["page"],
            "results": page.hits,
        }
        return Response(SearchOutput(body).data)
