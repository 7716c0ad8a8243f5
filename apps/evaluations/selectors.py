"""Reads of evaluation results, with who-may-see-what applied.

A result is visible to whoever may see both its model and its benchmark (the catalogue's
public / institution / private rules): a public model on a public benchmark has a public
result, whoever paid for it. Logs and history stay with the job (its institution and staff).
A reproduction (a result that re-ran another) shows beside its original, compared with it, and
is never ranked as a leaderboard entry of its own.
"""

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import BooleanField, Exists, ExpressionWrapper, OuterRef, Q, QuerySet
from django.http import Http404

from apps.accounts.models import Institution, User
from apps.catalog import selectors as catalog_selectors
from apps.catalog.models import Benchmark, Dataset
from apps.compute import selectors as compute_selectors
from apps.compute.models import Job
from apps.evaluations.models import Result

Viewer = catalog_selectors.Viewer


def results_visible_to(user: Viewer) -> Q:
    return catalog_selectors.visible_to(user, "model_version__model__") & (
        catalog_selectors.visible_to(user, "benchmark__")
    )


# Users whose view of one result is computed in one query.
VIEWERS_PER_QUERY = 100


def result_viewers(*, result: Result, users: Iterable[User]) -> list[User]:
    """Those of `users` who may see `result`, by the very rule lists and pages apply
    (`results_visible_to`), each user's rule a column of one query per VIEWERS_PER_QUERY."""
    users = [user for user in users if user.is_active]
    viewers = [user for user in users if user.is_staff]
    others = [user for user in users if not user.is_staff]
    for start in range(0, len(others), VIEWERS_PER_QUERY):
        chunk = others[start : start + VIEWERS_PER_QUERY]
        columns = {
            f"sees_{user.pk}": ExpressionWrapper(
                results_visible_to(user), output_field=BooleanField()
            )
            for user in chunk
        }
        sees = Result.objects.filter(pk=result.pk).annotate(**columns).values_list(*columns).first()
        if sees is not None:
            viewers += [user for user, seen in zip(chunk, sees, strict=True) if seen]
    return viewers


def result_list(*, user: Viewer) -> QuerySet[Result]:
    """Visible results, each annotated with what else its viewer may see: the job's page
    (`sees_job`), its details such as logs and host (`sees_job_details`), and the benchmark's
    dataset (`sees_dataset`)."""
    job = Job.objects.filter(pk=OuterRef("job_id"))
    return (
        Result.objects.filter(results_visible_to(user))
        .select_related(
            "model_version__model__institution",
            "benchmark__institution",
            "institution",
            "node__institution",
        )
        .annotate(
            sees_job=Exists(job.filter(compute_selectors.jobs_visible_to(user))),
            sees_job_details=Exists(job.filter(compute_selectors.job_details_visible_to(user))),
            sees_dataset=Exists(
                Dataset.objects.filter(
                    catalog_selectors.visible_to(user), pk=OuterRef("benchmark__dataset_id")
                )
            ),
        )
        .order_by("-created_at", "-id")
    )


def result_get(*, user: Viewer, result_id: int) -> Result:
    """One visible result; `sees_original` says whether the viewer may see the result it
    reproduces."""
    result = (
        result_list(user=user)
        .select_related("job")
        .annotate(
            sees_original=Exists(
                Result.objects.filter(results_visible_to(user), pk=OuterRef("reproduction_of_id"))
            )
        )
        .filter(pk=result_id)
        .first()
    )
    if result is None:
        raise Http404("No such result.")
    return result


# What only those who may see the job's details learn: the host's name, the GPUs' serials and
# the host paths the sandbox mounted.
HOST_DETAILS = ("host",)


def result_provenance(result: Result) -> dict[str, Any]:
    """The provenance record, as the result's viewer (see `result_list`) may see it: what the
    worker reported, and what the node itself knows (which node ran it, for which institution,
    for how long)."""
    node = result.node
    reported = dict(result.provenance)
    if not getattr(result, "sees_job_details", False):
        for key in HOST_DETAILS:
            reported.pop(key, None)
        if isinstance(reported.get("gpus"), list):
            reported["gpus"] = [
                {key: value for key, value in gpu.items() if key != "uuid"}
                for gpu in reported["gpus"]
                if isinstance(gpu, dict)
            ]
        if isinstance(reported.get("isolation"), dict):
            reported["isolation"] = {
                key: value for key, value in reported["isolation"].items() if key != "mounted"
            }
    if not getattr(result, "sees_dataset", False):
        reported.pop("dataset_files", None)
    return {
        **reported,
        "job": result.job_id,
        "attempt": result.attempt,
        "node": node.name if node else None,
        "node_institution": node.institution.slug if node else None,
        "institution": result.institution.slug,
        "gpu_seconds": result.gpu_seconds,
        "started_at": result.started_at.isoformat() if result.started_at else None,
        "finished_at": result.finished_at.isoformat() if result.finished_at else None,
    }


@dataclass(frozen=True)
class RanBy:
    """Whose GPUs ran a result: the platform node (its id, a base URL, and its name) and the
    institution there, where known."""

    node: str
    node_name: str
    institution: str | None


def result_ran_by(result: Result) -> RanBy:
    if result.ran_on_node:
        return RanBy(result.ran_on_node, result.ran_on_node, result.ran_by_institution or None)
    if result.origin_node:
        # A peer's own result, mirrored here: its pool ran it.
        return RanBy(result.origin_node, result.origin_node, result.ran_by_institution or None)
    host = result.node
    return RanBy(
        settings.FEDERATION_NODE_URL,
        settings.NODE_NAME,
        host.institution.name if host is not None else None,
    )


def result_hardware(result: Result) -> str:
    """What the evaluation ran on, as its worker reported it: "CPU", or its GPUs' names
    ("2 x NVIDIA A100 80GB"); empty where the worker did not say."""
    gpus = result.provenance.get("gpus")
    if gpus == "cpu":
        return "CPU"
    if not isinstance(gpus, list):
        return ""
    names = Counter(str(gpu.get("name") or "GPU") for gpu in gpus if isinstance(gpu, dict))
    return ", ".join(name if count == 1 else f"{count} x {name}" for name, count in names.items())


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool


def benchmark_metrics(benchmark: Benchmark) -> list[Metric]:
    return [
        Metric(str(metric["name"]), bool(metric.get("higher_is_better", True)))
        for metric in benchmark.metrics
    ]


def leaderboard_metric(benchmark: Benchmark, name: str | None) -> Metric:
    """The metric to rank by: the one named, else the benchmark's first."""
    metrics = benchmark_metrics(benchmark)
    if not metrics:
        raise ValidationError({"metric": "This benchmark declares no metrics to rank by."})
    if not name:
        return metrics[0]
    for metric in metrics:
        if metric.name == name:
            return metric
    names = ", ".join(metric.name for metric in metrics)
    raise ValidationError({"metric": f"This benchmark ranks by {names}; not by {name!r}."})


@dataclass(frozen=True)
class MetricComparison:
    name: str
    original: float | None
    reproduced: float | None
    difference: float | None  # reproduced minus original; None where either lacks the metric
    agrees: bool


def metrics_compare(
    benchmark: Benchmark, original: dict[str, Any], reproduced: dict[str, Any]
) -> list[MetricComparison]:
    """Each metric the benchmark declares: a reproduction agrees on it when both results report
    it and they differ by at most the benchmark's tolerance (0: exactly equal)."""
    comparisons = []
    for metric in benchmark_metrics(benchmark):
        before, after = _score(original, metric), _score(reproduced, metric)
        difference = None if before is None or after is None else after - before
        agrees = difference is not None and abs(difference) <= benchmark.reproduction_tolerance
        comparisons.append(MetricComparison(metric.name, before, after, difference, agrees))
    return comparisons


@dataclass(frozen=True)
class Reproduction:
    result: Result
    ran_by: RanBy
    hardware: str
    comparisons: list[MetricComparison]

    @property
    def differences(self) -> list[MetricComparison]:
        return [comparison for comparison in self.comparisons if not comparison.agrees]

    @property
    def agrees(self) -> bool:
        return not self.differences


def result_reproductions(*, user: Viewer, result: Result) -> list[Reproduction]:
    """The visible results that re-ran `result`, oldest first, each compared with it."""
    reproductions = (
        result_list(user=user).filter(reproduction_of=result).order_by("created_at", "id")
    )
    return [
        Reproduction(
            result=reproduction,
            ran_by=result_ran_by(reproduction),
            hardware=result_hardware(reproduction),
            comparisons=metrics_compare(result.benchmark, result.metrics, reproduction.metrics),
        )
        for reproduction in reproductions
    ]


@dataclass(frozen=True)
class ReproductionSummary:
    count: int
    all_agree: bool | None  # None where there is none


def reproduction_summaries(
    *, user: Viewer, benchmark: Benchmark, originals: Iterable[Result]
) -> dict[int, ReproductionSummary]:
    """For each of `originals` (results of `benchmark`): how many visible reproductions it has
    and whether they all agree with it. One query, whatever the number of originals."""
    metrics_of = {original.pk: original.metrics for original in originals}
    agreement: dict[int, list[bool]] = defaultdict(list)
    rows = Result.objects.filter(
        results_visible_to(user), reproduction_of_id__in=list(metrics_of)
    ).values_list("reproduction_of_id", "metrics")
    for original_id, metrics in rows:
        comparisons = metrics_compare(benchmark, metrics_of[original_id], metrics)
        agreement[original_id].append(all(comparison.agrees for comparison in comparisons))
    summaries = {}
    for original_id in metrics_of:
        agreed = agreement[original_id]
        summaries[original_id] = ReproductionSummary(len(agreed), all(agreed) if agreed else None)
    return summaries


@dataclass(frozen=True)
class LeaderboardEntry:
    rank: int | None  # None: the version's results do not report the metric
    result: Result  # the version's best result by the metric
    score: float | None
    runs: int  # how many visible results the version has on this benchmark
    reproductions: ReproductionSummary  # of `result`, those the viewer may see


def _score(metrics: dict[str, Any], metric: Metric) -> float | None:
    value = metrics.get(metric.name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _better(score: float, than: float, metric: Metric) -> bool:
    return score > than if metric.higher_is_better else score < than


class _Scored(NamedTuple):
    id: int
    model_version_id: int
    metrics: dict[str, Any]
    created_at: datetime
    finished_at: datetime | None
    label: str


def _scored_results(
    user: Viewer, benchmark: Benchmark, institution: Institution | None
) -> list[_Scored]:
    """The visible results of the benchmark, oldest first, with only what ranking needs: a
    benchmark with thousands of results is ranked without loading their provenance.
    Reproductions are not entries of their own: they show beside the result they re-ran."""
    results = Result.objects.filter(
        results_visible_to(user), benchmark=benchmark, reproduction_of__isnull=True
    )
    if institution is not None:
        results = results.filter(model_version__model__institution=institution)
    rows = results.order_by("created_at", "id").values_list(
        "id",
        "model_version_id",
        "metrics",
        "created_at",
        "finished_at",
        "model_version__model__name",
        "model_version__label",
    )
    return [_Scored(*row[:5], label=f"{row[5]} {row[6]}") for row in rows]


def leaderboard(
    *,
    user: Viewer,
    benchmark: Benchmark,
    metric: Metric,
    institution: Institution | None = None,
) -> list[LeaderboardEntry]:
    """The best visible result of each model version on the benchmark, best first. Equal
    scores rank in the order they were reached; `institution` keeps the models it publishes."""
    best: dict[int, tuple[_Scored, float | None]] = {}
    runs: dict[int, int] = defaultdict(int)
    for row in _scored_results(user, benchmark, institution):
        runs[row.model_version_id] += 1
        score = _score(row.metrics, metric)
        held = best.get(row.model_version_id)
        if held is None or (
            score is not None and (held[1] is None or _better(score, held[1], metric))
        ):
            best[row.model_version_id] = (row, score)
    scored: list[tuple[_Scored, float]] = [
        (row, score) for row, score in best.values() if score is not None
    ]
    direction = -1 if metric.higher_is_better else 1
    # Equal scores: the version that reached its score first ranks first.
    scored.sort(key=lambda pair: (direction * pair[1], pair[0].created_at, pair[0].id))
    unscored = [(row, None) for row, score in best.values() if score is None]
    chosen = result_list(user=user).in_bulk([row.id for row, _score in best.values()])
    reproductions = reproduction_summaries(
        user=user, benchmark=benchmark, originals=chosen.values()
    )
    return [
        LeaderboardEntry(
            rank if score is not None else None,
            chosen[row.id],
            score,
            runs[row.model_version_id],
            reproductions[row.id],
        )
        for rank, (row, score) in enumerate([*scored, *unscored], start=1)
    ]


@dataclass(frozen=True)
class ScorePoint:
    at: datetime
    score: float
    result_id: int


@dataclass(frozen=True)
class ScoreSeries:
    label: str  # model name and version
    points: list[ScorePoint]


# A chart of more points is unreadable: it shows the latest ones.
MAX_CHART_POINTS = 2000


def score_history(
    *,
    user: Viewer,
    benchmark: Benchmark,
    metric: Metric,
    institution: Institution | None = None,
) -> list[ScoreSeries]:
    """The visible results' scores over time (the latest MAX_CHART_POINTS), one series per
    model version."""
    scored = [
        (row, score)
        for row in _scored_results(user, benchmark, institution)
        if (score := _score(row.metrics, metric)) is not None
    ]
    series: dict[int, ScoreSeries] = {}
    for row, score in scored[-MAX_CHART_POINTS:]:
        entry = series.setdefault(row.model_version_id, ScoreSeries(row.label, []))
        entry.points.append(ScorePoint(row.finished_at or row.created_at, score, row.id))
    return list(series.values())


def institutions_with_results(*, user: Viewer, benchmark: Benchmark) -> QuerySet[Institution]:
    """The institutions whose models have visible results on the benchmark (for filters)."""
    model_institutions = Result.objects.filter(
        results_visible_to(user), benchmark=benchmark, reproduction_of__isnull=True
    ).values("model_version__model__institution_id")
    return Institution.objects.filter(pk__in=model_institutions).order_by("name")
