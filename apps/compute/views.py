"""Portal pages of the compute pool: the queue, evaluation jobs, GPU-hour requests and compute
nodes. Reads go through the selectors (which apply visibility), writes through the services;
every page works without JavaScript."""

import re
from dataclasses import dataclass

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from apps.accounts.models import Institution
from apps.accounts.selectors import user_can_manage_institution
from apps.accounts.typing import AuthenticatedHttpRequest
from apps.compute import queue_selectors, selectors, services
from apps.compute.forms import (
    ComputeRequestForm,
    JobCancelForm,
    JobFilterForm,
    JobPriorityForm,
    JobSubmitForm,
    NodeForm,
    manageable_institutions,
    request_review_form,
)
from apps.compute.models import ComputeNode, ComputeRequest, Job
from apps.evaluations.models import Result
from apps.federation import selectors as federation_selectors

PAGE_SIZE = 25
HISTORY_SIZE = 20
NEW_NODE_TOKEN_SESSION_KEY = "compute:new-node-token"  # noqa: S105 - a key name, not a secret

CHART_WIDTH = 640
CHART_LABEL_WIDTH = 200
CHART_BAR_AREA = CHART_WIDTH - CHART_LABEL_WIDTH - 80
CHART_ROW_HEIGHT = 48


def _add_errors(
    form: forms.Form, error: ValidationError, *, rename: dict[str, str] | None = None
) -> None:
    """Puts a service's refusal on the fields it names; the rest goes above the form."""
    for field, errors in error.update_error_dict({}).items():
        field = (rename or {}).get(field, field)
        form.add_error(field if field in form.fields else None, errors)


def _report(request: HttpRequest, error: ValidationError) -> None:
    for message in error.messages:
        messages.error(request, message)


def _page(request: HttpRequest, queryset) -> Page:
    return Paginator(queryset, PAGE_SIZE).get_page(request.GET.get("page"))


@dataclass(frozen=True)
class UsageBar:
    """One institution's row of the usage chart, in SVG user units."""

    name: str
    used_gpu_hours: float
    budget_gpu_hours: float
    y: int
    used_width: float
    budget_width: float


def _usage_chart(usage: list[selectors.InstitutionUsageSummary]) -> list[UsageBar]:
    largest = (
        max([max(row.budget_gpu_hours, row.used_gpu_hours) for row in usage], default=0.0) or 1.0
    )
    return [
        UsageBar(
            name=row.institution.name,
            used_gpu_hours=row.used_gpu_hours,
            budget_gpu_hours=row.budget_gpu_hours,
            y=index * CHART_ROW_HEIGHT,
            used_width=round(CHART_BAR_AREA * row.used_gpu_hours / largest, 1),
            budget_width=round(CHART_BAR_AREA * row.budget_gpu_hours / largest, 1),
        )
        for index, row in enumerate(usage)
    ]


@login_required
def queue(request: AuthenticatedHttpRequest) -> HttpResponse:
    entries, pending_count = queue_selectors.job_queue(user=request.user)
    institutions = Institution.objects.in_bulk({entry.institution_id for entry in entries})
    usage = selectors.usage_summary(user=request.user)
    bars = _usage_chart(usage)
    return render(
        request,
        "compute/queue.html",
        {
            "queue": [(entry, institutions.get(entry.institution_id)) for entry in entries],
            "pending_count": pending_count,
            "now": timezone.now(),
            "nodes": selectors.running_by_node(user=request.user),
            "history": selectors.job_list(user=request.user).filter(state__in=Job.FINISHED_STATES)[
                :HISTORY_SIZE
            ],
            "usage": usage,
            "credits": selectors.credit_summary(
                user=request.user,
                consumed_peers=federation_selectors.remote_gpu_seconds_by_institution(),
            ),
            "chart": bars,
            "chart_width": CHART_WIDTH,
            "chart_height": max(len(bars), 1) * CHART_ROW_HEIGHT,
            "chart_label_width": CHART_LABEL_WIDTH,
        },
    )


def job_list(request: HttpRequest) -> HttpResponse:
    filters = JobFilterForm(request.GET)
    jobs = selectors.job_list(user=request.user)
    if filters.is_valid() and filters.cleaned_data["state"]:
        jobs = jobs.filter(state=filters.cleaned_data["state"])
    return render(
        request, "compute/job_list.html", {"filters": filters, "page": _page(request, jobs)}
    )


def _job_page(
    request: HttpRequest,
    job: Job,
    *,
    priority_form: JobPriorityForm | None = None,
    status: int = 200,
) -> HttpResponse:
    user = request.user
    details = selectors.user_can_see_job_details(user=user, job=job)
    try:
        result: Result | None = job.result
    except Result.DoesNotExist:
        result = None
    can_cancel = (
        job.is_active
        and user.is_authenticated
        and (
            job.submitter_id == user.pk
            or user_can_manage_institution(user=user, institution=job.institution)
        )
    )
    return render(
        request,
        "compute/job_detail.html",
        {
            "job": job,
            "result": result,
            "gpu_hours": job.gpu_seconds / 3600,
            "events": job.events.all(),
            "details": details,
            "log": selectors.job_log(job=job, attempt=job.attempt)
            if details and job.attempt
            else "",
            "can_cancel": can_cancel,
            "cancel_form": JobCancelForm(),
            "can_set_priority": user.is_staff and job.is_active,
            "wait": queue_selectors.job_wait_estimate(job=job),
            "now": timezone.now(),
            "priority_form": priority_form or JobPriorityForm(initial={"priority": job.priority}),
        },
        status=status,
    )


def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    return _job_page(request, selectors.job_get(user=request.user, job_id=job_id))


@login_required
@require_POST
def job_cancel(request: AuthenticatedHttpRequest, job_id: int) -> HttpResponse:
    job = selectors.job_get(user=request.user, job_id=job_id)
    form = JobCancelForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    try:
        services.job_cancel(user=request.user, job=job, reason=reason)
    except ValidationError as error:
        _report(request, error)
    else:
        messages.success(request, f"Job {job.pk} has been cancelled.")
    return redirect("compute:job-detail", job_id=job.pk)


@login_required
@require_POST
def job_priority(request: AuthenticatedHttpRequest, job_id: int) -> HttpResponse:
    if not request.user.is_staff:
        raise PermissionDenied("Only platform admins can change a job's priority.")
    job = selectors.job_get(user=request.user, job_id=job_id)
    form = JobPriorityForm(request.POST)
    if form.is_valid():
        try:
            services.job_set_priority(
                user=request.user, job=job, priority=form.cleaned_data["priority"]
            )
        except ValidationError as error:
            _add_errors(form, error)
        else:
            messages.success(
                request, f"Job {job.pk} now has priority {form.cleaned_data['priority']}."
            )
            return redirect("compute:job-detail", job_id=job.pk)
    return _job_page(request, job, priority_form=form, status=400)


@login_required
def job_submit(request: AuthenticatedHttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = JobSubmitForm(request.POST, user=request.user)
    else:
        preselected = {
            name: request.GET[name]
            for name in ("model_version", "benchmark")
            if re.fullmatch(r"[0-9]{1,15}", request.GET.get(name, ""))
        }
        form = JobSubmitForm(initial=preselected, user=request.user)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            job = services.job_submit(
                user=request.user,
                model_version=data["model_version"],
                benchmark=data["benchmark"],
                institution=data["institution"],
                allocation_id=data["allocation"].pk if data["allocation"] else None,
            )
        except ValidationError as error:
            _add_errors(form, error)
        else:
            messages.success(request, f"Job {job.pk} has been queued.")
            return redirect("compute:job-detail", job_id=job.pk)
    return render(request, "compute/job_form.html", {"form": form})


@login_required
def request_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    return render(
        request,
        "compute/request_list.html",
        {"page": _page(request, selectors.compute_request_list(user=request.user))},
    )


@login_required
def request_create(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = ComputeRequestForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            compute_request = services.compute_request_submit(
                user=request.user,
                institution=data["institution"],
                purpose=data["purpose"],
                gpu_hours=data["gpu_hours"],
                gpu_count=data["gpu_count"],
                gpu_class=data["gpu_class"],
                starts_on=data["starts_on"],
                ends_on=data["ends_on"],
                model_id=data["model"].pk if data["model"] else None,
                paper_id=data["paper"].pk if data["paper"] else None,
                benchmark_id=data["benchmark"].pk if data["benchmark"] else None,
            )
        except ValidationError as error:
            _add_errors(form, error)
        else:
            messages.success(request, "Your request has been sent to the platform admins.")
            return redirect("compute:request-detail", request_id=compute_request.pk)
    return render(request, "compute/request_form.html", {"form": form})


def _request_page(
    request: AuthenticatedHttpRequest,
    compute_request: ComputeRequest,
    *,
    review_form=None,
    status: int = 200,
) -> HttpResponse:
    submitted = compute_request.state == ComputeRequest.State.SUBMITTED
    return render(
        request,
        "compute/request_detail.html",
        {
            "compute_request": compute_request,
            "links": selectors.compute_request_links(user=request.user, request=compute_request),
            "allocation": selectors.allocation_list(user=request.user)
            .filter(request=compute_request)
            .first(),
            "can_withdraw": submitted and compute_request.requester_id == request.user.pk,
            "review_form": (review_form or request_review_form(compute_request))
            if submitted and request.user.is_staff
            else None,
        },
        status=status,
    )


@login_required
def request_detail(request: AuthenticatedHttpRequest, request_id: int) -> HttpResponse:
    return _request_page(
        request, selectors.compute_request_get(user=request.user, request_id=request_id)
    )


@login_required
@require_POST
def request_withdraw(request: AuthenticatedHttpRequest, request_id: int) -> HttpResponse:
    compute_request = selectors.compute_request_get(user=request.user, request_id=request_id)
    try:
        services.compute_request_withdraw(user=request.user, request=compute_request)
    except ValidationError as error:
        _report(request, error)
    else:
        messages.success(request, "Your request has been withdrawn.")
    return redirect("compute:request-detail", request_id=compute_request.pk)


def _require_staff(request: AuthenticatedHttpRequest) -> None:
    if not request.user.is_staff:
        raise PermissionDenied("Only platform admins review compute requests.")


@login_required
@require_POST
def request_review(request: AuthenticatedHttpRequest, request_id: int) -> HttpResponse:
    _require_staff(request)
    compute_request = selectors.compute_request_get(user=request.user, request_id=request_id)
    form = request_review_form(compute_request, request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            if data["decision"] == "approve":
                allocation = services.compute_request_approve(
                    reviewer=request.user,
                    request=compute_request,
                    comment=data["comment"],
                    gpu_hours=data["gpu_hours"],
                )
                done = f"Approved: {allocation.budget_gpu_hours:.1f} GPU-hours allocated."
            else:
                services.compute_request_reject(
                    reviewer=request.user, request=compute_request, comment=data["comment"]
                )
                done = "The request has been rejected."
        except ValidationError as error:
            _add_errors(form, error)
        else:
            messages.success(request, f"Request {compute_request.pk}: {done}")
            if request.POST.get("return_to") == "review":
                return redirect("compute:request-review-list")
            return redirect("compute:request-detail", request_id=compute_request.pk)
    return _request_page(request, compute_request, review_form=form, status=400)


@login_required
def request_review_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    _require_staff(request)
    submitted = (
        selectors.compute_request_list(user=request.user)
        .filter(state=ComputeRequest.State.SUBMITTED)
        .order_by("created_at", "id")
    )
    return render(
        request,
        "compute/request_review.html",
        {"reviews": [(item, request_review_form(item)) for item in submitted]},
    )


@login_required
def node_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    nodes = selectors.node_list(user=request.user)
    return render(
        request,
        "compute/node_list.html",
        {
            "nodes": [(node, selectors.node_status(node)) for node in nodes],
            "can_add": manageable_institutions(request.user).exists(),
        },
    )


def _show_token_once(request: HttpRequest, node: ComputeNode, secret: str) -> HttpResponse:
    # Post/redirect/get: the token rides in the session to the next view of the node's page
    # only, so a reload shows it no more.
    request.session[NEW_NODE_TOKEN_SESSION_KEY] = {"node": node.pk, "secret": secret}
    return redirect("compute:node-detail", node_id=node.pk)


@login_required
def node_create(request: AuthenticatedHttpRequest) -> HttpResponse:
    if not manageable_institutions(request.user).exists():
        raise PermissionDenied("Only an institution's admins can add its compute nodes.")
    form = NodeForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        try:
            node, secret = services.node_create(user=request.user, **form.cleaned_data)
        except ValidationError as error:
            _add_errors(form, error)
        else:
            messages.success(request, f"Node {node.name} has been added.")
            return _show_token_once(request, node, secret)
    return render(request, "compute/node_form.html", {"form": form})


@login_required
def node_detail(request: AuthenticatedHttpRequest, node_id: int) -> HttpResponse:
    node = selectors.node_get(user=request.user, node_id=node_id)
    shown = request.session.pop(NEW_NODE_TOKEN_SESSION_KEY, None)
    return render(
        request,
        "compute/node_detail.html",
        {
            "node": node,
            "status": selectors.node_status(node),
            "new_secret": shown["secret"] if shown and shown["node"] == node.pk else None,
            "can_manage": user_can_manage_institution(
                user=request.user, institution=node.institution
            ),
            "jobs": selectors.job_list(user=request.user).filter(
                node=node, state__in=Job.ACTIVE_STATES
            ),
            "api_url": request.build_absolute_uri(reverse("portal:home")),
        },
    )


@login_required
@require_POST
def node_set_draining(
    request: AuthenticatedHttpRequest, node_id: int, draining: bool
) -> HttpResponse:
    node = selectors.node_get(user=request.user, node_id=node_id)
    services.node_set_draining(user=request.user, node=node, draining=draining)
    if draining:
        messages.success(request, f"{node.name} is draining: it finishes its jobs, takes no new.")
    else:
        messages.success(request, f"{node.name} takes new jobs again.")
    return redirect("compute:node-detail", node_id=node.pk)


@login_required
@require_POST
def node_set_trusted_only(
    request: AuthenticatedHttpRequest, node_id: int, trusted_only: bool
) -> HttpResponse:
    node = selectors.node_get(user=request.user, node_id=node_id)
    services.node_set_trusted_only(user=request.user, node=node, trusted_only=trusted_only)
    if trusted_only:
        messages.success(
            request, f"{node.name} now runs only {node.institution.name}'s own benchmarks."
        )
    else:
        messages.success(request, f"{node.name} runs every institution's benchmarks again.")
    return redirect("compute:node-detail", node_id=node.pk)


@login_required
@require_POST
def node_token_rotate(request: AuthenticatedHttpRequest, node_id: int) -> HttpResponse:
    node = selectors.node_get(user=request.user, node_id=node_id)
    secret = services.node_token_rotate(user=request.user, node=node)
    messages.success(request, f"{node.name} has a new token; the old one no longer works.")
    return _show_token_once(request, node, secret)
