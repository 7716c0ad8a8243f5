"""Portal pages of evaluation results: each benchmark's leaderboard with its score chart, the
list of results, and one result with its provenance and logs."""

import json

from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apps.catalog import selectors as catalog_selectors
from apps.compute import selectors as compute_selectors
from apps.evaluations import attestations, selectors
from apps.evaluations.charts import score_chart
from apps.evaluations.filters import ResultFilter

PAGE_SIZE = 50


def leaderboard(request: HttpRequest, benchmark_id: int) -> HttpResponse:
    benchmark = catalog_selectors.benchmark_get(user=request.user, benchmark_id=benchmark_id)
    metrics = selectors.benchmark_metrics(benchmark)
    problem = ""
    metric: selectors.Metric | None
    try:
        metric = selectors.leaderboard_metric(benchmark, request.GET.get("metric"))
    except ValidationError as error:
        problem = " ".join(error.message_dict["metric"])
        metric = selectors.leaderboard_metric(benchmark, None) if metrics else None
    institutions = selectors.institutions_with_results(user=request.user, benchmark=benchmark)
    chosen = request.GET.get("institution", "")
    institution = institutions.filter(slug=chosen).first() if chosen else None
    entries = []
    chart = None
    if metric is not None:
        entries = selectors.leaderboard(
            user=request.user, benchmark=benchmark, metric=metric, institution=institution
        )
        history = selectors.score_history(
            user=request.user, benchmark=benchmark, metric=metric, institution=institution
        )
        chart = score_chart(history, metric=metric.name)
    return render(
        request,
        "evaluations/leaderboard.html",
        {
            "benchmark": benchmark,
            "metrics": metrics,
            "metric": metric,
            "problem": problem,
            "rows": [
                (
                    entry,
                    [entry.result.metrics.get(m.name) for m in metrics],
                    selectors.result_ran_by(entry.result),
                )
                for entry in entries
            ],
            "institutions": institutions,
            "institution": institution,
            "chart": chart,
        },
    )


def result_list(request: HttpRequest) -> HttpResponse:
    results = ResultFilter(request.GET, queryset=selectors.result_list(user=request.user)).qs
    page = Paginator(results, PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [(result, selectors.result_ran_by(result)) for result in page]
    return render(request, "evaluations/result_list.html", {"page": page, "rows": rows})


def result_detail(request: HttpRequest, result_id: int) -> HttpResponse:
    result = selectors.result_get(user=request.user, result_id=result_id)
    provenance = selectors.result_provenance(result)
    # A result mirrored from a peer node has no job here, so no log.
    job = result.job if result.sees_job_details else None  # type: ignore[attr-defined]
    sees_logs = job is not None
    log = compute_selectors.job_log(job=job, attempt=result.attempt) if job is not None else ""
    attestations.result_attestation_ensure(result=result)
    return render(
        request,
        "evaluations/result_detail.html",
        {
            "result": result,
            "metrics": sorted(result.metrics.items()),
            "provenance": provenance,
            "provenance_json": json.dumps(provenance, indent=2, sort_keys=True),
            "ran_by": selectors.result_ran_by(result),
            "sees_original": result.sees_original,  # type: ignore[attr-defined]
            "reproductions": selectors.result_reproductions(user=request.user, result=result),
            "sees_logs": sees_logs,
            "sees_job": result.sees_job,  # type: ignore[attr-defined]
            "log": log,
            "attestable": attestations.result_attestable(result),
            "attestation_filename": attestations.attestation_filename(result),
            "verify_command": attestations.verify_command(result),
        },
    )
