"""API endpoints of the open metadata exports (apps/federation/exports.py). The portal's record
pages link to them: a signed-in session reads the records it may see."""

from collections.abc import Callable, Iterable

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.federation import exports


class SingleRepresentation(BaseContentNegotiation):
    """An export has one representation, whatever the Accept header asks for: a browser
    following a portal link gets the document, not a 406 nor the browsable API, and errors keep
    the API's JSON error format."""

    def select_parser(self, request: Request, parsers: Iterable[BaseParser]) -> BaseParser | None:
        return next(iter(parsers), None)

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


class ExportApi(APIView):
    renderer_classes = [JSONRenderer]
    content_negotiation_class = SingleRepresentation
    media_type = exports.DATACITE_MEDIA_TYPE
    suffix = "datacite.json"

    def _export(self, export: Callable[..., dict], name: str, **ids: int) -> Response:
        data = export(user=self.request.user, base_url=settings.FEDERATION_NODE_URL, **ids)
        response = Response(data, content_type=self.media_type)
        response["Content-Disposition"] = f'inline; filename="{name}.{self.suffix}"'
        return response


def _documented(media_type: str, description: str, summary: str) -> Callable:
    return extend_schema(
        responses={(200, media_type): OpenApiResponse(OpenApiTypes.OBJECT, description)},
        summary=summary,
    )


DATACITE = "DataCite Metadata Schema 4.5, JSON (https://schema.datacite.org/meta/kernel-4.5/)."


class PaperDataciteApi(ExportApi):
    @_documented(exports.DATACITE_MEDIA_TYPE, DATACITE, "A paper's DataCite metadata (JSON)")
    def get(self, request: Request, paper_id: int) -> Response:
        return self._export(exports.paper_datacite, f"paper-{paper_id}", paper_id=paper_id)


class ModelDataciteApi(ExportApi):
    @_documented(exports.DATACITE_MEDIA_TYPE, DATACITE, "A model's DataCite metadata (JSON)")
    def get(self, request: Request, model_id: int) -> Response:
        return self._export(exports.model_datacite, f"model-{model_id}", model_id=model_id)


class DatasetDataciteApi(ExportApi):
    @_documented(exports.DATACITE_MEDIA_TYPE, DATACITE, "A dataset's DataCite metadata (JSON)")
    def get(self, request: Request, dataset_id: int) -> Response:
        return self._export(
            exports.dataset_datacite, f"dataset-{dataset_id}", dataset_id=dataset_id
        )


class DatasetCroissantApi(ExportApi):
    media_type = exports.CROISSANT_MEDIA_TYPE
    suffix = "croissant.json"

    @_documented(
        exports.CROISSANT_MEDIA_TYPE,
        "MLCommons Croissant 1.0 JSON-LD: the dataset, its files (with download URLs and "
        "sha256) and the record sets read from its CSV and JSON Lines files.",
        "A dataset's Croissant metadata (JSON-LD)",
    )
    def get(self, request: Request, dataset_id: int) -> Response:
        return self._export(
            exports.dataset_croissant, f"dataset-{dataset_id}", dataset_id=dataset_id
        )
