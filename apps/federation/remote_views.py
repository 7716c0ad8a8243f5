"""Portal pages for researchers' evaluations on a peer's GPUs: the list, the form (also used
to ask for a result to be reproduced on a peer's pool), a job's page read live from the peer,
and cancel. Every page works without JavaScript."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from apps.accounts.typing import AuthenticatedHttpRequest
from apps.catalog import selectors as catalog_selectors
from apps.catalog.models import Benchmark, ModelVersion, Visibility
from apps.compute.models import Allocation
from apps.evaluations import selectors as evaluation_selectors
from apps.federation import remote_jobs


class RemoteJobForm(forms.Form):
    allocation = forms.ModelChoiceField(
        queryset=Allocation.objects.none(),
        label="Grant",
        help_text="A peer node's grant of GPU-hours to your institution: the job runs on that "
        "node's pool.",
    )
    model_version = forms.ModelChoiceField(
        queryset=ModelVersion.objects.none(), label="Model version"
    )
    benchmark = forms.ModelChoiceField(queryset=Benchmark.objects.none())
    reproduction_of = forms.IntegerField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        fields = self.fields
        grants = remote_jobs.grants_held_at_peers(user=user)
        fields["allocation"].queryset = grants  # type: ignore[attr-defined]
        fields["allocation"].label_from_instance = (  # type: ignore[attr-defined]
            lambda grant: (
                f"{grant.name} ({grant.institution.name}), held at {grant.origin_node}: "
                f"{(grant.budget_gpu_seconds - grant.used_gpu_seconds) / 3600:.1f} GPU-hours left"
            )
        )
        fields["model_version"].queryset = (  # type: ignore[attr-defined]
            ModelVersion.objects.filter(
                catalog_selectors.visible_to(user, "model__"),
                model__origin_node="",
                published_at__isnull=False,
            )
            .select_related("model")
            .order_by("model__name", "-published_at")
        )
        fields["model_version"].label_from_instance = (  # type: ignore[attr-defined]
            lambda version: f"{version.model.name} {version.label}"
        )
        fields["benchmark"].queryset = Benchmark.objects.filter(  # type: ignore[attr-defined]
            visibility=Visibility.PUBLIC
        ).order_by("name")


@login_required
@transaction.non_atomic_requests
def remote_job_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    jobs = remote_jobs.remote_job_list(user=request.user)[:100]
    return render(request, "federation/remote_job_list.html", {"jobs": jobs})


@login_required
@transaction.non_atomic_requests
def remote_job_create(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Outside a request transaction: the request is committed before the peer hears of it."""
    initial = {}
    original = None
    reproduce = request.GET.get("reproduce", "")
    if reproduce.isdigit():
        original = (
            evaluation_selectors.result_list(user=request.user).filter(pk=int(reproduce)).first()
        )
    if original is not None:
        initial = {
            "model_version": original.model_version_id,
            "benchmark": original.benchmark_id,
            "reproduction_of": original.pk,
        }
    form = RemoteJobForm(request.POST or None, user=request.user, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            remote_job = remote_jobs.remote_job_submit(
                user=request.user,
                model_version_id=data["model_version"].pk,
                benchmark_id=data["benchmark"].pk,
                allocation_id=data["allocation"].pk,
                reproduction_of_id=data["reproduction_of"],
            )
        except ValidationError as error:
            for message in error.messages:
                form.add_error(None, message)
        else:
            if remote_job.state == remote_job.State.REFUSED:
                messages.error(request, f"The peer refused the evaluation: {remote_job.reason}")
            else:
                messages.success(request, "Sent to the peer node.")
            return redirect("federation:remote-job-detail", remote_job_id=remote_job.pk)
    return render(request, "federation/remote_job_form.html", {"form": form, "original": original})


@login_required
@transaction.non_atomic_requests
def remote_job_detail(request: AuthenticatedHttpRequest, remote_job_id: int) -> HttpResponse:
    found = remote_jobs.remote_job_get(user=request.user, remote_job_id=remote_job_id)
    remote_job, answer = remote_jobs.remote_job_refresh(found)
    can_cancel = remote_job.is_active
    try:
        remote_jobs.remote_job_require_canceller(user=request.user, remote_job=remote_job)
    except PermissionDenied:
        can_cancel = False
    return render(
        request,
        "federation/remote_job_detail.html",
        {
            "job": remote_job,
            "log_tail": answer.get("log_tail") if isinstance(answer, dict) else None,
            "can_cancel": can_cancel,
        },
    )


@login_required
@require_POST
@transaction.non_atomic_requests
def remote_job_cancel(request: AuthenticatedHttpRequest, remote_job_id: int) -> HttpResponse:
    found = remote_jobs.remote_job_get(user=request.user, remote_job_id=remote_job_id)
    try:
        remote_jobs.remote_job_cancel(user=request.user, remote_job=found)
    except ValidationError as error:
        for message in error.messages:
            messages.error(request, message)
    else:
        messages.success(request, "The job is cancelled.")
    return redirect("federation:remote-job-detail", remote_job_id=found.pk)
