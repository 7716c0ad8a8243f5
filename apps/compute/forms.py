"""Portal forms of the compute pool. They offer only what the user may pick and turn it into the
services' arguments; the services still decide what may be written."""

from django import forms
from django.db.models import QuerySet
from django.utils import timezone

from apps.accounts.models import Institution, Membership, User
from apps.catalog import selectors as catalog_selectors
from apps.catalog.models import Benchmark, ModelVersion, Paper, ResearchModel
from apps.compute import selectors
from apps.compute.models import Allocation, ComputeRequest, Job, validate_pool_name


class NamedChoiceField(forms.ModelChoiceField):
    """A select that shows what a record is called rather than its str()."""

    def label_from_instance(self, obj) -> str:
        if isinstance(obj, ModelVersion):
            return f"{obj.model.name} {obj.label} ({obj.model.institution.name})"
        if isinstance(obj, Allocation):
            left = (obj.budget_gpu_seconds - obj.used_gpu_seconds) / 3600
            return f"{obj.name}: {left:.1f} GPU-hours left"
        if isinstance(obj, Paper):
            return obj.title
        return str(getattr(obj, "name", obj))


def _memberships(user: User) -> QuerySet[Institution]:
    return Institution.objects.filter(memberships__user=user).order_by("name")


class JobFilterForm(forms.Form):
    state = forms.ChoiceField(choices=[("", "Any state"), *Job.State.choices], required=False)


class JobSubmitForm(forms.Form):
    model_version = NamedChoiceField(
        queryset=ModelVersion.objects.none(),
        label="Model version",
        help_text="A published version in a safe format (safetensors, ONNX, GGUF).",
    )
    benchmark = NamedChoiceField(queryset=Benchmark.objects.none())
    institution = NamedChoiceField(
        queryset=Institution.objects.none(),
        empty_label=None,
        help_text="The institution this evaluation is run for: its allocation pays the GPU time.",
    )
    allocation = NamedChoiceField(
        queryset=Allocation.objects.none(),
        required=False,
        empty_label="Choose for me",
        help_text="Optional: the institution's current allocation with the most time left is "
        "used otherwise.",
    )

    def __init__(self, *args, user: User, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        now = timezone.now()
        fields = self.fields
        fields["model_version"].queryset = (  # type: ignore[attr-defined]
            ModelVersion.objects.filter(
                catalog_selectors.visible_to(user, "model__"), published_at__isnull=False
            )
            .select_related("model__institution")
            .order_by("model__name", "-published_at", "-id")
        )
        fields["benchmark"].queryset = (  # type: ignore[attr-defined]
            catalog_selectors.benchmark_list(user=user).prefetch_related(None).order_by("name")
        )
        fields["institution"].queryset = _memberships(user)  # type: ignore[attr-defined]
        fields["allocation"].queryset = (  # type: ignore[attr-defined]
            selectors.allocation_list(user=user)
            .filter(
                starts_at__lte=now,
                ends_at__gt=now,
                institution__memberships__user=user,
                origin_node="",  # a peer's grant is spent on its pool: a remote evaluation
            )
            .order_by("institution__name", "name")
        )


class JobPriorityForm(forms.Form):
    priority = forms.IntegerField(
        min_value=-100,
        max_value=100,
        help_text="From -100 to 100; higher runs sooner. Only pending jobs are reordered.",
    )


class JobCancelForm(forms.Form):
    reason = forms.CharField(max_length=500, required=False)


class ComputeRequestForm(forms.Form):
    institution = NamedChoiceField(
        queryset=Institution.objects.none(),
        empty_label=None,
        help_text="The institution the GPU time is for.",
    )
    purpose = forms.CharField(
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text="What you will evaluate or train, and why it needs this much time.",
    )
    gpu_hours = forms.DecimalField(label="GPU-hours", min_value=0.1, max_digits=9, decimal_places=1)
    gpu_count = forms.IntegerField(label="GPUs per job", min_value=1, max_value=64, initial=1)
    gpu_class = forms.CharField(
        label="GPU class",
        max_length=64,
        required=False,
        help_text="Optional, e.g. A100 or H100 80GB; empty means any GPU.",
    )
    starts_on = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))
    ends_on = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}))
    model = NamedChoiceField(
        queryset=ResearchModel.objects.none(), required=False, empty_label="None"
    )
    paper = NamedChoiceField(queryset=Paper.objects.none(), required=False, empty_label="None")
    benchmark = NamedChoiceField(
        queryset=Benchmark.objects.none(), required=False, empty_label="None"
    )

    def __init__(self, *args, user: User, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        fields = self.fields
        fields["institution"].queryset = _memberships(user)  # type: ignore[attr-defined]
        fields["model"].queryset = (  # type: ignore[attr-defined]
            ResearchModel.objects.filter(catalog_selectors.visible_to(user)).order_by("name")
        )
        fields["paper"].queryset = (  # type: ignore[attr-defined]
            Paper.objects.filter(catalog_selectors.visible_to(user)).order_by("title")
        )
        fields["benchmark"].queryset = (  # type: ignore[attr-defined]
            Benchmark.objects.filter(catalog_selectors.visible_to(user)).order_by("name")
        )


class RequestReviewForm(forms.Form):
    """Approve or reject: the button pressed says which."""

    decision = forms.ChoiceField(
        choices=[("approve", "Approve"), ("reject", "Reject")], widget=forms.HiddenInput
    )
    comment = forms.CharField(
        max_length=5000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Sent to the researcher. Required to reject.",
    )
    gpu_hours = forms.DecimalField(
        label="GPU-hours granted",
        min_value=0.1,
        max_digits=9,
        decimal_places=1,
        required=False,
        help_text="Optional: grant less than asked.",
    )


class NodeForm(forms.Form):
    institution = NamedChoiceField(queryset=Institution.objects.none(), empty_label=None)
    name = forms.SlugField(
        max_length=64, help_text="Lower-case letters, digits and hyphens, e.g. gpu-01."
    )
    pool = forms.CharField(
        max_length=48,
        initial="default",
        validators=[validate_pool_name],
        help_text="Nodes of one pool share a kind of hardware, e.g. default or a100-80gb.",
    )
    labels = forms.CharField(
        max_length=500, required=False, help_text="Optional, separated by commas."
    )

    def __init__(self, *args, user: User, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["institution"].queryset = manageable_institutions(  # type: ignore[attr-defined]
            user
        )

    def clean_labels(self) -> list[str]:
        return sorted(
            {label.strip() for label in self.cleaned_data["labels"].split(",") if label.strip()}
        )


def manageable_institutions(user: User) -> QuerySet[Institution]:
    """The institutions whose compute nodes the user may add and manage."""
    if user.is_staff:
        return Institution.objects.order_by("name")
    return Institution.objects.filter(
        memberships__user=user, memberships__role=Membership.Role.ADMIN
    ).order_by("name")


def request_review_form(request: ComputeRequest, data=None) -> RequestReviewForm:
    return RequestReviewForm(data, prefix=f"review-{request.pk}")
