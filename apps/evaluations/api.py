"""REST endpoints of evaluation results: the results a viewer may see, one with its whole
provenance, its signed attestation, and each benchmark's leaderboard."""

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import generics, serializers
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from apps.accounts.fields import InstitutionSlugField
from apps.catalog import selectors as catalog_selectors
from apps.evaluations import attestations, selectors
from apps.evaluations.filters import ResultFilter
from apps.evaluations.models import AttestationStatus, Result


class ResultModelOutput(serializers.Serializer):
    id = serializers.IntegerField(source="model_version.model_id")
    name = serializers.CharField(source="model_version.model.name")
    institution = serializers.SlugField(source="model_version.model.institution.slug")
    version = serializers.CharField(source="model_version.label")
    version_id = serializers.IntegerField(source="model_version_id")


class ResultBenchmarkOutput(serializers.Serializer):
    id = serializers.IntegerField(source="benchmark_id")
    name = serializers.CharField(source="benchmark.name")
    institution = serializers.SlugField(source="benchmark.institution.slug")


class RanByOutput(serializers.Serializer):
    node = serializers.CharField(help_text="The platform node whose pool ran it: its id (URL).")
    node_name = serializers.CharField()
    institution = serializers.CharField(
        allow_null=True, help_text="The institution whose GPUs ran it, where known."
    )


class ResultOutput(serializers.ModelSerializer):
    model = ResultModelOutput(source="*")
    benchmark = ResultBenchmarkOutput(source="*")
    institution = serializers.SlugField(
        source="institution.slug", help_text="The institution that paid for the evaluation."
    )
    node = serializers.SerializerMethodField()
    ran_by = serializers.SerializerMethodField()
    provenance = serializers.SerializerMethodField()
    attestation_status = serializers.ChoiceField(
        choices=AttestationStatus.choices,
        allow_blank=True,
        help_text="signed (by this node), verified (a peer's, checked against its pinned key), "
        "unverifiable (no attestation or no key to check it); empty: not signed yet.",
    )
    attestation_url = serializers.SerializerMethodField(
        help_text="The signed attestation (in-toto Statement in a DSSE envelope); null when "
        "there is none."
    )

    class Meta:
        model = Result
        fields = [
            "id",
            "job",
            "attempt",
            "model",
            "benchmark",
            "institution",
            "node",
            "ran_by",
            "metrics",
            "provenance",
            "gpu_seconds",
            "started_at",
            "finished_at",
            "created_at",
            "attestation_status",
            "attestation_url",
        ]

    def get_node(self, result: Result) -> str | None:
        return result.node.name if result.node else None

    @extend_schema_field(RanByOutput)
    def get_ran_by(self, result: Result) -> dict[str, Any]:
        return RanByOutput(selectors.result_ran_by(result)).data

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_provenance(self, result: Result) -> dict[str, Any]:
        return selectors.result_provenance(result)

    def get_attestation_url(self, result: Result) -> str | None:
        if not attestations.result_attestable(result):
            return None
        return reverse(
            "result-attestation",
            kwargs={"result_id": result.pk},
            request=self.context.get("request"),
        )


class MetricComparisonOutput(serializers.Serializer):
    name = serializers.CharField()
    original = serializers.FloatField(allow_null=True)
    reproduced = serializers.FloatField(allow_null=True)
    difference = serializers.FloatField(
        allow_null=True, help_text="Reproduced minus original; null where either lacks it."
    )
    agrees = serializers.BooleanField(help_text="Within the benchmark's reproduction tolerance.")


class ReproductionOutput(serializers.Serializer):
    id = serializers.IntegerField(source="result.pk")
    ran_by = RanByOutput()
    hardware = serializers.CharField(help_text='"CPU", the GPUs\' names, or empty.')
    metrics = serializers.JSONField(source="result.metrics")
    agrees = serializers.BooleanField(
        help_text="Every metric the benchmark declares is in both and within its tolerance."
    )
    comparisons = MetricComparisonOutput(many=True)
    created_at = serializers.DateTimeField(source="result.created_at")


class ResultDetailOutput(ResultOutput):
    logs = serializers.SerializerMethodField(
        help_text="The job's log endpoint, for those who may read it (the job's institution)."
    )
    reproduction_of = serializers.SerializerMethodField(
        help_text="The result this one re-ran, where the caller may see it."
    )
    reproductions = serializers.SerializerMethodField(
        help_text="The visible results that re-ran this one, each compared with it."
    )

    class Meta(ResultOutput.Meta):
        fields = [*ResultOutput.Meta.fields, "logs", "reproduction_of", "reproductions"]

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_reproduction_of(self, result: Result) -> int | None:
        sees_original = result.sees_original  # type: ignore[attr-defined]
        return result.reproduction_of_id if sees_original else None

    @extend_schema_field(ReproductionOutput(many=True))
    def get_reproductions(self, result: Result) -> list[Any]:
        reproductions = selectors.result_reproductions(
            user=self.context["request"].user, result=result
        )
        return [ReproductionOutput(reproduction).data for reproduction in reproductions]

    def get_logs(self, result: Result) -> str | None:
        request = self.context["request"]
        if not result.sees_job_details:  # type: ignore[attr-defined]
            return None
        url = reverse("job-logs", kwargs={"job_id": result.job_id}, request=request)
        return f"{url}?attempt={result.attempt}"


@extend_schema_view(get=extend_schema(summary="List evaluation results"))
class ResultListApi(generics.ListAPIView):
    serializer_class = ResultOutput
    filterset_class = ResultFilter
    ordering_fields = ["created_at", "finished_at", "gpu_seconds"]

    def get_queryset(self):
        return selectors.result_list(user=self.request.user)


class ResultDetailApi(APIView):
    @extend_schema(responses=ResultDetailOutput, summary="A result with its provenance")
    def get(self, request: Request, result_id: int) -> Response:
        result = selectors.result_get(user=request.user, result_id=result_id)
        return Response(ResultDetailOutput(result, context={"request": request}).data)


class DsseSignatureOutput(serializers.Serializer):
    keyid = serializers.CharField(
        help_text="The signing key's id, as the node's well-known document lists it."
    )
    sig = serializers.CharField(help_text="The Ed25519 signature, base64.")


class AttestationOutput(serializers.Serializer):
    payload = serializers.CharField(help_text="The in-toto Statement v1, JSON in base64.")
    payloadType = serializers.CharField(help_text="application/vnd.in-toto+json")
    signatures = DsseSignatureOutput(many=True)


class ResultAttestationApi(APIView):
    @extend_schema(
        responses=AttestationOutput,
        summary="A result's signed attestation, to verify offline",
        description="A DSSE envelope around an in-toto Statement v1 whose subjects are the "
        "model's and the dataset's files (sha256) and whose predicate "
        "(https://research-exchange.org/attestations/evaluation-result/v1) holds the metrics "
        "and provenance, signed by the node that ran the evaluation. Verify it with that "
        "node's well-known document: `rx-verify-result result-<id>.intoto.json node.json`. "
        "Served as a download, and to whoever may see the result.",
    )
    def get(self, request: Request, result_id: int) -> Response:
        result = selectors.result_get(user=request.user, result_id=result_id)
        envelope = attestations.result_attestation_get(result=result)
        if envelope is None:
            raise NotFound("This result came from a peer node without an attestation.")
        response = Response(envelope)
        filename = attestations.attestation_filename(result)
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


class LeaderboardEntryOutput(serializers.Serializer):
    rank = serializers.IntegerField(
        allow_null=True, help_text="Empty where the version's results lack the metric."
    )
    score = serializers.FloatField(allow_null=True)
    runs = serializers.IntegerField(help_text="Visible results of this version here.")
    reproductions = serializers.IntegerField(
        source="reproductions.count", help_text="Visible reproductions of this result."
    )
    reproductions_agree = serializers.BooleanField(
        source="reproductions.all_agree",
        allow_null=True,
        help_text="Whether they all agree with it; null where there is none.",
    )
    result = ResultOutput()


class LeaderboardOutput(serializers.Serializer):
    benchmark = serializers.IntegerField(source="benchmark.pk")
    metric = serializers.CharField(source="metric.name")
    higher_is_better = serializers.BooleanField(source="metric.higher_is_better")
    metrics = serializers.ListField(child=serializers.CharField())
    entries = LeaderboardEntryOutput(many=True)


class LeaderboardInput(serializers.Serializer):
    metric = serializers.CharField(required=False, max_length=64)
    institution = InstitutionSlugField(required=False)


class LeaderboardApi(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("metric", str, description="Rank by this metric (default: first)."),
            OpenApiParameter(
                "institution", str, description="Only models this institution publishes."
            ),
        ],
        responses=LeaderboardOutput,
        summary="A benchmark's leaderboard: the best result of each model version",
    )
    def get(self, request: Request, benchmark_id: int) -> Response:
        query = LeaderboardInput(data=request.query_params)
        query.is_valid(raise_exception=True)
        benchmark = catalog_selectors.benchmark_get(user=request.user, benchmark_id=benchmark_id)
        metric = selectors.leaderboard_metric(benchmark, query.validated_data.get("metric"))
        entries = selectors.leaderboard(
            user=request.user,
            benchmark=benchmark,
            metric=metric,
            institution=query.validated_data.get("institution"),
        )
        body = {
            "benchmark": benchmark,
            "metric": metric,
            "metrics": [m.name for m in selectors.benchmark_metrics(benchmark)],
            "entries": entries,
        }
        return Response(LeaderboardOutput(body).data)
