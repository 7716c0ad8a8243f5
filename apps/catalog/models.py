"""The catalogue: research models and their versions, content-addressed artifacts, papers,
datasets, benchmarks and the discussions on them.

On PostgreSQL, models, papers, datasets and benchmarks carry a stored, generated `search_vector`
column with a GIN index (migration 0002). Django does not manage that column: the database keeps
it up to date on every write, and selectors.search reads it.
"""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from apps.accounts.models import Institution
from apps.catalog.validators import validate_arxiv_id, validate_doi, validate_spdx_license
from apps.core.models import MirrorOrigin

MIN_MEMORY_LIMIT_MB = 64
MAX_MEMORY_LIMIT_MB = 4 * 1024 * 1024


class Visibility(models.TextChoices):
    PUBLIC = "public", "Public: everyone, including peer nodes"
    INSTITUTION = "institution", "Institution: members of the owning institution"
    PRIVATE = "private", "Private: the creator and the institution's admins"


class Tag(models.Model):
    name = models.SlugField(max_length=50, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Artifact(models.Model):
    """A file stored once by its sha256, whatever records use it and under which file names."""

    sha256 = models.CharField(max_length=64, unique=True)
    size = models.BigIntegerField()
    format = models.CharField(max_length=16)
    # Pickle-based files run code when loaded: they are kept, but never evaluated.
    unsafe = models.BooleanField(default=False)
    format_info = models.JSONField(default=dict, blank=True)
    storage_name = models.CharField(max_length=255)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    # A file of a mirrored record: where its origin node serves it. `storage_name` stays empty
    # until the first download fetches it (and checks its sha256).
    origin_url = models.URLField(max_length=1000, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"sha256:{self.sha256[:12]}… ({self.format}, {self.size} bytes)"

    @property
    def is_stored(self) -> bool:
        return bool(self.storage_name)


class CatalogRecord(MirrorOrigin):
    """What every published record shares: an owner institution, a creator, a visibility, and
    its origin when it is mirrored from a peer node."""

    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    visibility = models.CharField(
        max_length=16, choices=Visibility.choices, default=Visibility.PUBLIC
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class Dataset(CatalogRecord):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80)
    description = models.TextField(blank=True)
    license = models.CharField(max_length=200, validators=[validate_spdx_license])
    tags = models.ManyToManyField(Tag, blank=True, related_name="datasets")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["origin_node", "origin_id"],
                condition=~Q(origin_node=""),
                name="unique_dataset_origin",
            ),
            models.UniqueConstraint(
                fields=["institution", "slug"],
                name="unique_dataset_slug_per_institution",
                violation_error_message="This institution already has a dataset with this slug.",
            ),
        ]
        indexes = [
            models.Index(fields=["visibility", "institution"]),
            # OAI-PMH lists records by their last change.
            models.Index(fields=["updated_at", "id"], name="catalog_dataset_changed_idx"),
        ]

    def __str__(self) -> str:
        return self.name


class DatasetFile(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="files")
    artifact = models.ForeignKey(Artifact, on_delete=models.PROTECT, related_name="dataset_files")
    filename = models.CharField(max_length=255)

    class Meta:
        ordering = ["filename"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "filename"], name="unique_dataset_filename")
        ]

    def __str__(self) -> str:
        return self.filename


class Benchmark(CatalogRecord):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80)
    description = models.TextField(blank=True)
    task_type = models.CharField(max_length=64)
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="benchmarks")
    # [{"name": "accuracy", "higher_is_better": true}, ...]
    metrics = models.JSONField(default=list)
    evaluator = models.CharField(max_length=64)
    evaluator_config = models.JSONField(default=dict, blank=True)
    gpu_count = models.PositiveSmallIntegerField(default=0)
    gpu_memory_gb = models.PositiveSmallIntegerField(default=0)
    time_limit_minutes = models.PositiveIntegerField(default=60)
    # Host memory one evaluation may use (its whole process tree); the worker stops it beyond.
    memory_limit_mb = models.PositiveIntegerField(
        default=8192,
        validators=[MinValueValidator(MIN_MEMORY_LIMIT_MB), MaxValueValidator(MAX_MEMORY_LIMIT_MB)],
    )
    # Whether only fully isolated evaluations (bubblewrap on the worker) may count; None: the
    # default, required for public benchmarks.
    requires_full_isolation = models.BooleanField(null=True, blank=True, default=None)
    # How far a reproduction's metric may be from the original's and still agree (absolute);
    # 0 asks for exact equality, which CPU evaluations with a fixed seed give.
    reproduction_tolerance = models.FloatField(default=0.0, validators=[MinValueValidator(0.0)])
    tags = models.ManyToManyField(Tag, blank=True, related_name="benchmarks")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["origin_node", "origin_id"],
                condition=~Q(origin_node=""),
                name="unique_benchmark_origin",
            ),
            models.UniqueConstraint(
                fields=["institution", "slug"],
                name="unique_benchmark_slug_per_institution",
                violation_error_message="This institution already has a benchmark with this slug.",
            ),
        ]
        indexes = [
            models.Index(fields=["visibility", "institution"]),
            # OAI-PMH lists records by their last change.
            models.Index(fields=["updated_at", "id"], name="catalog_benchmark_changed_idx"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def full_isolation_required(self) -> bool:
        if self.requires_full_isolation is not None:
            return self.requires_full_isolation
        return self.visibility == Visibility.PUBLIC


class Paper(CatalogRecord):
    title = models.CharField(max_length=500)
    abstract = models.TextField(blank=True)
    # The authors' names in order, kept with the author rows so search can match them.
    author_names = models.TextField(blank=True, editable=False)
    venue = models.CharField(max_length=300, blank=True)
    year = models.PositiveSmallIntegerField(null=True, blank=True)
    doi = models.CharField("DOI", max_length=255, blank=True, validators=[validate_doi])
    arxiv_id = models.CharField(
        "arXiv id", max_length=40, blank=True, validators=[validate_arxiv_id]
    )
    bibtex_key = models.CharField(max_length=100, blank=True)
    pdf = models.ForeignKey(
        Artifact, null=True, blank=True, on_delete=models.PROTECT, related_name="papers"
    )
    datasets = models.ManyToManyField(Dataset, blank=True, related_name="papers")
    benchmarks = models.ManyToManyField(Benchmark, blank=True, related_name="papers")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["origin_node", "origin_id"],
                condition=~Q(origin_node=""),
                name="unique_paper_origin",
            ),
            # One public record per publication; papers others cannot see never block anyone
            # (and so never reveal themselves). A peer's copy of the same paper is its own.
            models.UniqueConstraint(
                fields=["doi"],
                condition=~Q(doi="") & Q(visibility="public") & Q(origin_node=""),
                name="unique_public_paper_doi",
                violation_error_message="A public paper with this DOI is already in the catalogue.",
            ),
        ]
        indexes = [
            # OAI-PMH lists records by their last change.
            models.Index(fields=["updated_at", "id"], name="catalog_paper_changed_idx"),
            models.Index(fields=["visibility", "institution"]),
            models.Index(fields=["year"]),
            # The list's default order: pages are read from the index, not sorted per request.
            models.Index(fields=["-created_at", "-id"], name="catalog_paper_newest_idx"),
        ]

    def __str__(self) -> str:
        return self.title


class PaperAuthor(models.Model):
    paper = models.ForeignKey(Paper, on_delete=models.CASCADE, related_name="authors")
    position = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=200)
    orcid = models.CharField("ORCID iD", max_length=19, blank=True)
    institution = models.ForeignKey(
        Institution, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["paper", "position"]
        constraints = [
            models.UniqueConstraint(fields=["paper", "position"], name="unique_author_position")
        ]

    def __str__(self) -> str:
        return self.name


class ResearchModel(CatalogRecord):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80)
    summary = models.CharField(max_length=500, blank=True)
    card = models.TextField("model card", blank=True, help_text="Markdown.")
    license = models.CharField(max_length=200, validators=[validate_spdx_license])
    task = models.CharField(max_length=64, blank=True)
    tags = models.ManyToManyField(Tag, blank=True, related_name="models")
    papers = models.ManyToManyField(Paper, blank=True, related_name="models")
    benchmarks = models.ManyToManyField(Benchmark, blank=True, related_name="models")

    class Meta:
        verbose_name = "research model"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["origin_node", "origin_id"],
                condition=~Q(origin_node=""),
                name="unique_model_origin",
            ),
            models.UniqueConstraint(
                fields=["institution", "slug"],
                name="unique_model_slug_per_institution",
                violation_error_message="This institution already has a model with this slug.",
            ),
        ]
        indexes = [
            # OAI-PMH lists records by their last change.
            models.Index(fields=["updated_at", "id"], name="catalog_model_changed_idx"),
            models.Index(fields=["visibility", "institution"]),
            models.Index(fields=["-created_at", "-id"], name="catalog_model_newest_idx"),
        ]

    def __str__(self) -> str:
        return self.name


class ModelVersion(models.Model):
    """A draft collects files; once published, a version never changes."""

    model = models.ForeignKey(ResearchModel, on_delete=models.CASCADE, related_name="versions")
    label = models.CharField(max_length=64)
    release_notes = models.TextField(blank=True)
    published_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["model", "label"],
                name="unique_version_label_per_model",
                violation_error_message="This model already has a version with this label.",
            )
        ]
        indexes = [models.Index(fields=["model", "-published_at"])]

    def __str__(self) -> str:
        return f"{self.model} {self.label}"

    @property
    def is_published(self) -> bool:
        return self.published_at is not None


class ModelFile(models.Model):
    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="files")
    artifact = models.ForeignKey(Artifact, on_delete=models.PROTECT, related_name="model_files")
    filename = models.CharField(max_length=255)

    class Meta:
        ordering = ["filename"]
        constraints = [
            models.UniqueConstraint(fields=["version", "filename"], name="unique_version_filename")
        ]

    def __str__(self) -> str:
        return self.filename


class Comment(models.Model):
    """A comment in the discussion of exactly one model, paper or benchmark."""

    model = models.ForeignKey(
        ResearchModel, null=True, blank=True, on_delete=models.CASCADE, related_name="comments"
    )
    paper = models.ForeignKey(
        Paper, null=True, blank=True, on_delete=models.CASCADE, related_name="comments"
    )
    benchmark = models.ForeignKey(
        Benchmark, null=True, blank=True, on_delete=models.CASCADE, related_name="comments"
    )
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="replies"
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    body = models.TextField(help_text="Markdown.")
    created_at = models.DateTimeField(auto_now_add=True)
    edited_at = models.DateTimeField(null=True, blank=True)
    # A removed comment keeps its place in the thread so the replies still make sense.
    removed_at = models.DateTimeField(null=True, blank=True)
    removed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(model__isnull=False, paper__isnull=True, benchmark__isnull=True)
                    | Q(model__isnull=True, paper__isnull=False, benchmark__isnull=True)
                    | Q(model__isnull=True, paper__isnull=True, benchmark__isnull=False)
                ),
                name="comment_on_exactly_one_record",
            )
        ]

    def __str__(self) -> str:
        return f"Comment {self.pk} by {self.author}"
