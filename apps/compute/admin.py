"""Platform staff look after the compute pool here. Every change of state goes through the
services, as it does from the portal and the API: a node's token is never made or shown here,
and jobs, requests and allocations move only through their actions."""

from collections.abc import Callable
from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from apps.compute import selectors, services
from apps.compute.models import (
    Allocation,
    ComputeNode,
    ComputeRequest,
    Job,
    JobEvent,
)
from apps.evaluations.models import Result


class RejectForm(forms.Form):
    comment = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        help_text="Sent to each researcher: say why the request is rejected.",
    )


class AllocationGrantForm(forms.ModelForm):
    gpu_hours = forms.DecimalField(
        label="GPU-hours", min_value=Decimal("0.1"), max_digits=9, decimal_places=1
    )

    class Meta:
        model = Allocation
        fields = ["institution", "name", "gpu_class", "starts_at", "ends_at"]

    def clean(self):
        data = super().clean() or {}
        starts_at, ends_at = data.get("starts_at"), data.get("ends_at")
        if starts_at and ends_at and ends_at <= starts_at:
            self.add_error("ends_at", "The allocation must end after it starts.")
        return data


class PriorityForm(forms.Form):
    priority = forms.IntegerField(
        min_value=-100, max_value=100, help_text="From -100 to 100; higher runs sooner."
    )


def _apply_each(
    request: HttpRequest,
    queryset: QuerySet,
    change: Callable[[object], object],
    done: str,
) -> None:
    """Calls `change` on each selected record; each refusal becomes an error message naming
    the record, and the rest still go through."""
    changed = 0
    for record in queryset:
        try:
            change(record)
        except (ValidationError, PermissionDenied) as error:
            reasons = error.messages if isinstance(error, ValidationError) else [str(error)]
            messages.error(request, f"{record}: {' '.join(reasons)}")
        else:
            changed += 1
    if changed:
        messages.success(request, f"{done}: {changed}.")


def _action_form(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet,
    form: forms.Form,
    *,
    action: str,
    title: str,
) -> TemplateResponse:
    """The intermediate page of an action that needs more input than the selection."""
    return TemplateResponse(
        request,
        "compute/admin_action_form.html",
        {
            **modeladmin.admin_site.each_context(request),
            "title": title,
            "opts": modeladmin.model._meta,
            "queryset": queryset,
            "form": form,
            "action": action,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        },
    )


@admin.register(ComputeNode)
class ComputeNodeAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "institution",
        "pool",
        "gpu_count",
        "status",
        "isolation",
        "trusted_only",
        "draining",
        "last_heartbeat_at",
    )
    list_filter = ("pool", "draining", "trusted_only", "isolation", "institution")
    list_select_related = ("institution",)
    search_fields = ("name", "institution__name", "token_prefix")
    fields = (
        "institution",
        "name",
        "pool",
        "labels",
        "draining",
        "trusted_only",
        "isolation",
        "gpus",
        "cpu_slots",
        "host_info",
        "token_prefix",
        "token_hash",
        "created_by",
        "created_at",
        "registered_at",
        "last_heartbeat_at",
    )
    readonly_fields = (
        "institution",
        "pool",
        "draining",
        "isolation",
        "gpus",
        "cpu_slots",
        "host_info",
        "token_prefix",
        "token_hash",
        "created_by",
        "created_at",
        "registered_at",
        "last_heartbeat_at",
    )
    actions = ["drain", "undrain"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A node's token is shown once, to the institution admin who adds it in the portal.
        return False

    @admin.display(description="Status")
    def status(self, node: ComputeNode) -> str:
        return selectors.node_status(node)

    def _set_draining(self, request: HttpRequest, queryset: QuerySet, draining: bool) -> None:
        _apply_each(
            request,
            queryset,
            lambda node: services.node_set_draining(
                user=request.user,  # type: ignore[arg-type]
                node=node,  # type: ignore[arg-type]
                draining=draining,
            ),
            "Draining" if draining else "Taking new jobs again",
        )

    @admin.action(description="Drain: finish running jobs, take no new ones")
    def drain(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set_draining(request, queryset, True)

    @admin.action(description="Undrain: take new jobs again")
    def undrain(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set_draining(request, queryset, False)


@admin.register(ComputeRequest)
class ComputeRequestAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "institution",
        "requester",
        "gpu_hours",
        "gpu_class",
        "starts_on",
        "ends_on",
        "state",
        "created_at",
    )
    list_filter = ("state", "institution")
    list_select_related = ("institution", "requester")
    search_fields = ("purpose", "requester__username", "institution__name")
    readonly_fields = [field.name for field in ComputeRequest._meta.fields]
    actions = ["approve", "reject"]
    ordering = ("created_at",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # researchers ask in the portal or through the API

    @admin.action(description="Approve, granting the GPU-hours asked")
    def approve(self, request: HttpRequest, queryset: QuerySet) -> None:
        _apply_each(
            request,
            queryset,
            lambda item: services.compute_request_approve(
                reviewer=request.user,  # type: ignore[arg-type]
                request=item,  # type: ignore[arg-type]
            ),
            "Approved, with an allocation each",
        )

    @admin.action(description="Reject, with a comment to the researcher")
    def reject(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        form = RejectForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            comment = form.cleaned_data["comment"]
            _apply_each(
                request,
                queryset,
                lambda item: services.compute_request_reject(
                    reviewer=request.user,  # type: ignore[arg-type]
                    request=item,  # type: ignore[arg-type]
                    comment=comment,
                ),
                "Rejected",
            )
            return None
        return _action_form(
            self, request, queryset, form, action="reject", title="Reject compute requests"
        )


@admin.register(Allocation)
class AllocationAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "institution",
        "used_hours",
        "budget_hours",
        "gpu_class",
        "starts_at",
        "ends_at",
    )
    list_filter = ("institution",)
    list_select_related = ("institution",)
    search_fields = ("name", "institution__name")
    readonly_fields = (
        "institution",
        "request",
        "budget_gpu_seconds",
        "used_gpu_seconds",
        "created_by",
        "created_at",
        # A grant a peer node made to one of our institutions is that node's to change.
        "origin_node",
        "origin_id",
        "origin_url",
        "origin_synced_at",
    )

    def get_form(self, request: HttpRequest, obj=None, change=False, **kwargs):
        if obj is None:
            # A direct grant, without a request: the service converts hours and checks it.
            kwargs["form"] = AllocationGrantForm
            kwargs["fields"] = AllocationGrantForm.Meta.fields
        return super().get_form(request, obj, change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        return self.readonly_fields if obj is not None else ()

    def get_fields(self, request: HttpRequest, obj=None):
        if obj is None:
            return [*AllocationGrantForm.Meta.fields, "gpu_hours"]
        return super().get_fields(request, obj)

    def save_model(self, request: HttpRequest, obj: Allocation, form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        data = form.cleaned_data
        granted = services.allocation_create(
            user=request.user,  # type: ignore[arg-type]
            institution=data["institution"],
            name=data["name"],
            gpu_hours=data["gpu_hours"],
            gpu_class=data["gpu_class"],
            starts_at=data["starts_at"],
            ends_at=data["ends_at"],
        )
        obj.pk = granted.pk
        obj.budget_gpu_seconds = granted.budget_gpu_seconds

    @admin.display(description="Used GPU-hours", ordering="used_gpu_seconds")
    def used_hours(self, allocation: Allocation) -> str:
        return f"{allocation.used_gpu_hours:.1f}"

    @admin.display(description="Budget GPU-hours", ordering="budget_gpu_seconds")
    def budget_hours(self, allocation: Allocation) -> str:
        return f"{allocation.budget_gpu_hours:.1f}"


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


class JobEventInline(ReadOnlyInline):
    model = JobEvent
    fields = ("created_at", "attempt", "state", "message")
    readonly_fields = fields


class ResultInline(ReadOnlyInline):
    model = Result
    fields = ("attempt", "metrics", "provenance", "created_at")
    readonly_fields = fields


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "model_version",
        "benchmark",
        "institution",
        "state",
        "priority",
        "attempt",
        "node",
        "submitted_at",
    )
    list_filter = ("state", "institution", "node")
    list_select_related = ("model_version__model", "benchmark", "institution", "node__institution")
    search_fields = ("model_version__model__name", "benchmark__name", "submitter__username")
    readonly_fields = [field.name for field in Job._meta.fields]
    inlines = [JobEventInline, ResultInline]
    actions = ["cancel", "set_priority"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # evaluations are submitted in the portal or through the API

    @admin.action(description="Cancel (free of charge, unless you submitted the job)")
    def cancel(self, request: HttpRequest, queryset: QuerySet) -> None:
        _apply_each(
            request,
            queryset,
            lambda job: services.job_cancel(
                user=request.user,  # type: ignore[arg-type]
                job=job,  # type: ignore[arg-type]
                reason="from the admin",
            ),
            "Cancelled",
        )

    @admin.action(description="Set priority")
    def set_priority(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        form = PriorityForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            priority = form.cleaned_data["priority"]
            _apply_each(
                request,
                queryset,
                lambda job: services.job_set_priority(
                    user=request.user,  # type: ignore[arg-type]
                    job=job,  # type: ignore[arg-type]
                    priority=priority,
                ),
                f"Priority set to {priority}",
            )
            return None
        return _action_form(
            self, request, queryset, form, action="set_priority", title="Set job priority"
        )
