"""Portal forms of the catalogue. They turn what a researcher typed into the services' arguments
and explain typing mistakes; the services still decide what may be written."""

import json
import re

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_slug
from django.http import Http404

from apps.accounts.models import Institution, User
from apps.accounts.selectors import institution_list
from apps.accounts.validators import normalize_orcid
from apps.catalog import selectors
from apps.catalog.models import MAX_MEMORY_LIMIT_MB, MIN_MEMORY_LIMIT_MB, Dataset, Visibility
from apps.catalog.services import COMMENT_MAX_LENGTH, AuthorInput
from apps.catalog.validators import normalize_arxiv_id, normalize_doi
from worker.evaluators import evaluator_specs

SHA256 = re.compile(r"[0-9a-fA-F]{64}")
LICENSE_HELP = "An SPDX identifier or expression, e.g. MIT, Apache-2.0 or CC-BY-4.0."
TAGS_HELP = "Optional. Separated by commas, e.g. vision, onnx, distilled."


def show_refused_upload(form: forms.Form, *, field: str, message: str) -> None:
    """The request body was cut off at the size limit, so nothing that was typed can be shown
    again: the form starts afresh, with the reason on its file field."""
    form.full_clean()
    form.cleaned_data = {}
    form.add_error(field, message)


def _institution_choices() -> list[tuple[str, str]]:
    return [("", "All institutions"), *institution_list().values_list("slug", "name")]


class InstitutionChoiceField(forms.ModelChoiceField):
    def __init__(self, **kwargs) -> None:
        super().__init__(queryset=Institution.objects.none(), empty_label=None, **kwargs)

    def label_from_instance(self, obj: Institution) -> str:
        return obj.name


class UserForm(forms.Form):
    """A form whose choices and checks depend on who fills it in."""

    def __init__(self, *args, user: User, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.user = user


class PublishingForm(UserForm):
    """A form that publishes for one of the user's institutions."""

    institution = InstitutionChoiceField(help_text="The institution that publishes it.")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["institution"].queryset = selectors.publishing_institutions(  # type: ignore[attr-defined]
            user=self.user
        ).order_by("name")


class TagsField(forms.CharField):
    def __init__(self, **kwargs) -> None:
        super().__init__(required=False, max_length=1000, help_text=TAGS_HELP, **kwargs)

    def clean(self, value: str) -> list[str]:
        text = super().clean(value)
        tags = sorted({tag.strip().lower() for tag in text.split(",") if tag.strip()})
        for tag in tags:
            if len(tag) > 50:
                raise ValidationError(f"The tag “{tag}” is longer than 50 characters.")
            try:
                validate_slug(tag)
            except ValidationError as error:
                raise ValidationError(
                    f"“{tag}” is not a tag: use letters, digits, hyphens and underscores."
                ) from error
        return tags

    def prepare_value(self, value: object) -> object:
        if isinstance(value, list | tuple):
            return ", ".join(value)
        return value


def visibility_field() -> forms.ChoiceField:
    return forms.ChoiceField(choices=Visibility.choices, initial=Visibility.PUBLIC)


class ModelEditForm(forms.Form):
    name = forms.CharField(max_length=200)
    summary = forms.CharField(
        max_length=500, required=False, help_text="One or two sentences shown in lists."
    )
    card = forms.CharField(
        label="Model card",
        max_length=200_000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 12}),
        help_text="Markdown: what the model does, how it was trained, its limits.",
    )
    license = forms.CharField(max_length=200, help_text=LICENSE_HELP)
    task = forms.CharField(
        max_length=64, required=False, help_text="Optional, e.g. image-classification."
    )
    tags = TagsField()
    visibility = visibility_field()


class ModelCreateForm(PublishingForm, ModelEditForm):
    slug = forms.SlugField(
        max_length=80,
        help_text="Part of the model's address: lower-case letters, digits and hyphens.",
    )

    field_order = ["institution", "name", "slug"]


class MultipleFileInput(forms.FileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    widget = MultipleFileInput

    def clean(self, data, initial=None) -> list:
        uploads = data if isinstance(data, list | tuple) else [data] if data else []
        return [super(MultipleFileField, self).clean(upload, initial) for upload in uploads]


class UploadedArtifactsField(forms.Field):
    """Files the page's script already sent to the artifact API, as "<filename>:<sha256>"."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value) -> list[tuple[str, str]]:
        pairs = []
        for item in value or []:
            filename, _, sha256 = item.rpartition(":")
            if not filename or not SHA256.fullmatch(sha256):
                raise ValidationError(f"“{item}” does not name an uploaded file.")
            pairs.append((filename, sha256.lower()))
        return pairs


class ArtifactUploadForm(UserForm):
    """Files posted with the form (`uploads`), or already sent to the artifact API by the
    page's script (`uploaded`)."""

    uploads = MultipleFileField(
        label="Files",
        required=False,
        allow_empty_file=False,
        widget=MultipleFileInput(attrs={"data-artifact-input": ""}),
        help_text="Choose one or more files. Each is stored once, by its sha256.",
    )
    uploaded = UploadedArtifactsField(required=False)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Files already on the node for this form: they ride along when it is shown again.
        self.stored: list[tuple[str, str]] = []

    def clean_uploaded(self) -> list[tuple[str, str]]:
        pairs = self.cleaned_data["uploaded"]
        for filename, sha256 in pairs:
            try:
                selectors.artifact_get(user=self.user, sha256=sha256)
            except Http404 as error:
                raise ValidationError(
                    f"{filename} is not on this node (any more): choose it again."
                ) from error
        self.stored = list(pairs)
        return pairs

    def clean(self) -> dict:
        cleaned = super().clean() or {}
        if cleaned.get("uploads") == [] and cleaned.get("uploaded") == []:
            self.add_error("uploads", "Choose at least one file.")
        return cleaned


class VersionForm(ArtifactUploadForm):
    label = forms.CharField(max_length=64, help_text="e.g. v1.0 or 2025-06-rc1.")
    release_notes = forms.CharField(
        max_length=50_000, required=False, widget=forms.Textarea(attrs={"rows": 5})
    )
    publish = forms.BooleanField(
        label="Publish now",
        required=False,
        help_text="A published version can no longer change. Leave unticked to keep a draft.",
    )

    field_order = ["label", "release_notes", "uploads", "publish"]

    def __init__(self, *args, taken_labels: set[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.taken_labels = taken_labels

    def clean_label(self) -> str:
        label = self.cleaned_data["label"]
        if label in self.taken_labels:
            raise ValidationError(f"This model already has a version labelled “{label}”.")
        return label


class DatasetForm(PublishingForm, ArtifactUploadForm):
    name = forms.CharField(max_length=200)
    slug = forms.SlugField(max_length=80, help_text="Lower-case letters, digits and hyphens.")
    license = forms.CharField(max_length=200, help_text=LICENSE_HELP)
    description = forms.CharField(
        max_length=50_000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 8}),
        help_text="Markdown.",
    )
    tags = TagsField()
    visibility = visibility_field()

    field_order = ["institution", "name", "slug", "license", "description", "tags", "visibility"]


class PaperForm(PublishingForm):
    title = forms.CharField(max_length=500)
    authors = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="One author per line, in order: “Name” or “Name | ORCID iD”.",
    )
    abstract = forms.CharField(
        max_length=50_000, required=False, widget=forms.Textarea(attrs={"rows": 8})
    )
    venue = forms.CharField(max_length=300, required=False, help_text="Journal or conference.")
    year = forms.IntegerField(min_value=1000, max_value=2100, required=False)
    doi = forms.CharField(
        label="DOI", max_length=300, required=False, help_text="e.g. 10.1038/nature14539."
    )
    arxiv_id = forms.CharField(
        label="arXiv id", max_length=100, required=False, help_text="e.g. 2106.09685."
    )
    pdf = forms.FileField(label="PDF", required=False, allow_empty_file=False)
    visibility = visibility_field()

    def clean_authors(self) -> list[AuthorInput]:
        authors = []
        for number, line in enumerate(self.cleaned_data["authors"].splitlines(), start=1):
            name, _, orcid = (part.strip() for part in line.partition("|"))
            if not name and not orcid:
                continue
            if not name:
                raise ValidationError(f"Line {number}: the author's name is missing.")
            if orcid:
                try:
                    orcid = normalize_orcid(orcid)
                except ValidationError as error:
                    raise ValidationError(f"Line {number}: {error.messages[0]}") from error
            authors.append(AuthorInput(name=name, orcid=orcid))
        return authors

    def clean_doi(self) -> str:
        doi = self.cleaned_data["doi"]
        return normalize_doi(doi) if doi else ""

    def clean_arxiv_id(self) -> str:
        arxiv_id = self.cleaned_data["arxiv_id"]
        return normalize_arxiv_id(arxiv_id) if arxiv_id else ""


class BibtexImportForm(PublishingForm):
    file = forms.FileField(label="BibTeX file", required=False, help_text="A .bib file.")
    bibtex = forms.CharField(
        label="Or paste BibTeX",
        required=False,
        widget=forms.Textarea(attrs={"rows": 10, "spellcheck": "false"}),
    )
    visibility = visibility_field()

    def clean(self) -> dict:
        cleaned = super().clean() or {}
        upload, pasted = cleaned.get("file"), cleaned.get("bibtex", "")
        if upload and pasted.strip():
            raise ValidationError("Choose a file or paste BibTeX, not both.")
        if upload:
            if upload.size > settings.BIBTEX_MAX_BYTES:
                self.add_error("file", "This BibTeX file is too large.")
                return cleaned
            try:
                cleaned["text"] = upload.read().decode("utf-8-sig")
            except UnicodeDecodeError as error:
                self.add_error("file", f"The file is not UTF-8 text (byte {error.start}).")
        elif pasted.strip():
            cleaned["text"] = pasted
        elif "file" in cleaned:
            raise ValidationError("Choose a .bib file or paste BibTeX.")
        return cleaned


class DatasetChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Dataset) -> str:
        return f"{obj.name} ({obj.institution.name})"


class BenchmarkForm(PublishingForm):
    name = forms.CharField(max_length=200)
    slug = forms.SlugField(max_length=80, help_text="Lower-case letters, digits and hyphens.")
    description = forms.CharField(
        max_length=50_000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text="Markdown.",
    )
    task_type = forms.CharField(max_length=64, help_text="e.g. image-classification.")
    dataset = DatasetChoiceField(
        queryset=Dataset.objects.none(),
        empty_label="Choose a dataset",
        help_text="The data every model is evaluated on.",
    )
    metrics = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        help_text="One per line: the name, then “higher” or “lower” (which is better), "
        "e.g. “accuracy higher”.",
    )
    evaluator = forms.ChoiceField(
        choices=(), help_text="What runs each evaluation: see the evaluators below the form."
    )
    evaluator_config = forms.CharField(
        label="Evaluator configuration",
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false", "class": "code"}),
        help_text='A JSON object, e.g. {"task": "classification", "data_file": "test.npz"}.',
    )
    gpu_count = forms.IntegerField(label="GPUs", min_value=0, max_value=64, initial=0)
    gpu_memory_gb = forms.IntegerField(
        label="GPU memory (GB)", min_value=0, max_value=4096, initial=0
    )
    time_limit_minutes = forms.IntegerField(
        label="Time limit (minutes)", min_value=1, max_value=7 * 24 * 60, initial=60
    )
    memory_limit_mb = forms.IntegerField(
        label="Memory limit (MiB)",
        min_value=MIN_MEMORY_LIMIT_MB,
        max_value=MAX_MEMORY_LIMIT_MB,
        initial=8192,
        help_text="Host memory one evaluation may use; the worker stops it beyond this.",
    )
    requires_full_isolation = forms.TypedChoiceField(
        label="Isolation",
        choices=[
            ("", "Default: full isolation for a public benchmark"),
            ("true", "Full isolation only (bubblewrap on the worker)"),
            ("false", "Any isolation the node accepts"),
        ],
        coerce=lambda value: value == "true",
        empty_value=None,
        required=False,
        help_text="Which workers' results count: fully isolated ones only, or also those of "
        "workers without bubblewrap.",
    )
    reproduction_tolerance = forms.FloatField(
        label="Reproduction tolerance",
        min_value=0,
        initial=0,
        required=False,
        help_text="How far a reproduction's metric may be from the original's and still agree "
        "(absolute); 0 asks for exactly equal values.",
    )
    tags = TagsField()
    visibility = visibility_field()

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["dataset"].queryset = (  # type: ignore[attr-defined]
            selectors.dataset_list(user=self.user).prefetch_related(None).order_by("name")
        )
        self.fields["evaluator"].choices = [  # type: ignore[attr-defined]
            (name, name) for name in sorted(evaluator_specs())
        ]

    def clean_metrics(self) -> list[dict]:
        metrics = []
        for number, line in enumerate(self.cleaned_data["metrics"].splitlines(), start=1):
            if not line.strip():
                continue
            name, _, direction = line.strip().rpartition(" ")
            if not name.strip() or direction.lower() not in ("higher", "lower"):
                raise ValidationError(
                    f"Line {number}: write the metric's name, then “higher” or “lower”, "
                    "e.g. “accuracy higher”."
                )
            metrics.append(
                {"name": name.strip(), "higher_is_better": direction.lower() == "higher"}
            )
        return metrics

    def clean_reproduction_tolerance(self) -> float:
        return self.cleaned_data["reproduction_tolerance"] or 0.0

    def clean_evaluator_config(self) -> dict:
        text = self.cleaned_data["evaluator_config"].strip()
        if not text:
            return {}
        try:
            config = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValidationError(
                f"This is not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})."
            ) from error
        if not isinstance(config, dict):
            raise ValidationError("The configuration must be a JSON object: {…}.")
        return config


class CommentForm(forms.Form):
    body = forms.CharField(max_length=COMMENT_MAX_LENGTH)
    parent = forms.IntegerField(required=False)


def _origin_choices() -> list[tuple[str, str]]:
    peers = (
        Institution.objects.exclude(origin_node="")
        .values_list("origin_node", flat=True)
        .distinct()
        .order_by("origin_node")
    )
    return [
        ("", "All nodes"),
        ("local", "This node"),
        ("peers", "Peer nodes"),
        *((node, node) for node in peers),
    ]


class OriginFilterForm(forms.Form):
    origin = forms.ChoiceField(label="Published on", choices=_origin_choices, required=False)


class ModelFilterForm(OriginFilterForm):
    institution = forms.ChoiceField(choices=_institution_choices, required=False)
    tag = forms.SlugField(required=False)
    task = forms.CharField(max_length=64, required=False)
    license = forms.CharField(max_length=200, required=False)


class PaperFilterForm(OriginFilterForm):
    institution = forms.ChoiceField(choices=_institution_choices, required=False)
    year = forms.IntegerField(min_value=1000, max_value=2100, required=False)


class DatasetFilterForm(OriginFilterForm):
    institution = forms.ChoiceField(choices=_institution_choices, required=False)
    tag = forms.SlugField(required=False)
    license = forms.CharField(max_length=200, required=False)


class BenchmarkFilterForm(OriginFilterForm):
    institution = forms.ChoiceField(choices=_institution_choices, required=False)
    task_type = forms.CharField(label="Task type", max_length=64, required=False)


SEARCH_TYPE_CHOICES = [
    ("model", "Models"),
    ("paper", "Papers"),
    ("dataset", "Datasets"),
    ("benchmark", "Benchmarks"),
]


class SearchForm(OriginFilterForm):
    q = forms.CharField(label="Search for", max_length=200, required=False)
    type = forms.MultipleChoiceField(
        label="Only",
        choices=SEARCH_TYPE_CHOICES,
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    institution = forms.ChoiceField(choices=_institution_choices, required=False)
    tag = forms.SlugField(required=False)
    task = forms.CharField(max_length=64, required=False)
    license = forms.CharField(max_length=200, required=False)
    year = forms.IntegerField(min_value=1000, max_value=2100, required=False)
