"""Reads of the catalogue. Every query that returns records to a caller goes through
`visible_to`, so public / institution / private holds in lists, details, downloads and search.

- public: everyone;
- institution: members of the owning institution;
- private: the creator and the owning institution's admins;
- platform staff see everything.
"""

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.db.models import (
    BooleanField,
    Exists,
    F,
    FloatField,
    Model,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
    prefetch_related_objects,
)
from django.db.models.expressions import RawSQL
from django.http import Http404
from django.shortcuts import get_object_or_404

from apps.accounts.models import Institution, Membership, User
from apps.catalog.models import (
    Artifact,
    Benchmark,
    Comment,
    Dataset,
    DatasetFile,
    ModelFile,
    ModelVersion,
    Paper,
    PaperAuthor,
    ResearchModel,
    Visibility,
)

Viewer = User | AnonymousUser


def _member_institutions(user: User) -> QuerySet[Membership, Any]:
    return Membership.objects.filter(user=user).values("institution_id")


def _admin_institutions(user: User) -> QuerySet[Membership, Any]:
    return Membership.objects.filter(user=user, role=Membership.Role.ADMIN).values("institution_id")


def visible_to(user: Viewer, prefix: str = "") -> Q:
    """The records `user` may see. `prefix` reaches the record through a relation
    (e.g. "model__" for model versions). Membership is a subquery: no extra round trip."""
    public = Q(**{f"{prefix}visibility": Visibility.PUBLIC})
    if not isinstance(user, User) or not user.is_active:
        return public
    if user.is_staff:
        return Q()
    return (
        public
        | Q(
            **{
                f"{prefix}visibility": Visibility.INSTITUTION,
                f"{prefix}institution_id__in": _member_institutions(user),
            }
        )
        | Q(**{f"{prefix}visibility": Visibility.PRIVATE, f"{prefix}created_by": user})
        | Q(
            **{
                f"{prefix}visibility": Visibility.PRIVATE,
                f"{prefix}institution_id__in": _admin_institutions(user),
            }
        )
    )


def user_can_publish_for(*, user: Viewer, institution: Institution) -> bool:
    if not isinstance(user, User):
        return False
    return user.is_staff or Membership.objects.filter(user=user, institution=institution).exists()


def user_can_edit(*, user: Viewer, record: Model) -> bool:
    """The creator (while still a member), the owning institution's admins, and staff."""
    if not isinstance(user, User) or not user.is_active:
        return False
    if user.is_staff:
        return True
    institution_id = record.institution_id  # type: ignore[attr-defined]
    role = (
        Membership.objects.filter(user=user, institution_id=institution_id)
        .values_list("role", flat=True)
        .first()
    )
    if role == Membership.Role.ADMIN:
        return True
    return role is not None and record.created_by_id == user.pk  # type: ignore[attr-defined]


def publishing_institutions(*, user: Viewer) -> QuerySet[Institution]:
    if not isinstance(user, User):
        return Institution.objects.none()
    if user.is_staff:
        return Institution.objects.all()
    return Institution.objects.filter(memberships__user=user)


def _published_versions() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(published_at__isnull=False)


def model_list(*, user: Viewer) -> QuerySet[ResearchModel]:
    latest = _published_versions().filter(model=OuterRef("pk")).order_by("-published_at", "-id")
    return (
        ResearchModel.objects.filter(visible_to(user))
        .select_related("institution")
        .prefetch_related("tags")
        .annotate(latest_version=Subquery(latest.values("label")[:1]))
    )


def model_get(*, user: Viewer, model_id: int) -> ResearchModel:
    """The model with its versions (drafts only for its editors), files, and the linked
    papers and benchmarks this viewer may see."""
    model = get_object_or_404(model_list(user=user), pk=model_id)
    versions = ModelVersion.objects.prefetch_related(
        Prefetch("files", queryset=ModelFile.objects.select_related("artifact"))
    ).order_by(F("published_at").desc(nulls_first=True), "-id")
    if not user_can_edit(user=user, record=model):
        versions = versions.filter(published_at__isnull=False)
    prefetch_related_objects(
        [model],
        Prefetch("versions", queryset=versions),
        Prefetch("papers", queryset=Paper.objects.filter(visible_to(user)).order_by("title")),
        Prefetch(
            "benchmarks", queryset=Benchmark.objects.filter(visible_to(user)).order_by("name")
        ),
    )
    return model


def model_by_slug(*, user: Viewer, institution_slug: str, slug: str) -> ResearchModel:
    model = get_object_or_404(model_list(user=user), institution__slug=institution_slug, slug=slug)
    return model_get(user=user, model_id=model.pk)


def version_get(*, user: Viewer, model: ResearchModel, label: str) -> ModelVersion:
    versions = ModelVersion.objects.filter(model=model).prefetch_related(
        Prefetch("files", queryset=ModelFile.objects.select_related("artifact"))
    )
    if not user_can_edit(user=user, record=model):
        versions = versions.filter(published_at__isnull=False)
    return get_object_or_404(versions, label=label)


def paper_list(*, user: Viewer) -> QuerySet[Paper]:
    return (
        Paper.objects.filter(visible_to(user))
        .select_related("institution", "pdf")
        .prefetch_related(
            Prefetch("authors", queryset=PaperAuthor.objects.select_related("institution"))
        )
    )


def paper_get(*, user: Viewer, paper_id: int) -> Paper:
    return get_object_or_404(
        paper_list(user=user).prefetch_related(
            Prefetch("models", queryset=ResearchModel.objects.filter(visible_to(user))),
            Prefetch("datasets", queryset=Dataset.objects.filter(visible_to(user))),
            Prefetch("benchmarks", queryset=Benchmark.objects.filter(visible_to(user))),
        ),
        pk=paper_id,
    )


def dataset_list(*, user: Viewer) -> QuerySet[Dataset]:
    return (
        Dataset.objects.filter(visible_to(user))
        .select_related("institution")
        .prefetch_related(
            "tags", Prefetch("files", queryset=DatasetFile.objects.select_related("artifact"))
        )
    )


def dataset_get(*, user: Viewer, dataset_id: int) -> Dataset:
    return get_object_or_404(dataset_list(user=user), pk=dataset_id)


def benchmark_list(*, user: Viewer) -> QuerySet[Benchmark]:
    return (
        Benchmark.objects.filter(visible_to(user))
        .select_related("institution", "dataset")
        .prefetch_related("tags")
    )


def benchmark_get(*, user: Viewer, benchmark_id: int) -> Benchmark:
    return get_object_or_404(benchmark_list(user=user), pk=benchmark_id)


def artifact_get(*, user: Viewer, sha256: str) -> Artifact:
    """An artifact is readable by whoever may see a record that uses it, and by its uploader
    before any record does."""
    artifact = get_object_or_404(Artifact, sha256=sha256.lower())
    if isinstance(user, User) and (user.is_staff or artifact.uploaded_by_id == user.pk):
        return artifact
    readable_versions = ModelVersion.objects.filter(visible_to(user, prefix="model__"))
    if isinstance(user, User):
        editable = ResearchModel.objects.filter(
            Q(institution_id__in=_admin_institutions(user)) | Q(created_by=user)
        )
        readable_versions = readable_versions.filter(
            Q(published_at__isnull=False) | Q(model__in=editable)
        )
    else:
        readable_versions = readable_versions.filter(published_at__isnull=False)
    used_by_visible_record = (
        Exists(ModelFile.objects.filter(artifact=artifact, version__in=readable_versions))
        | Exists(
            DatasetFile.objects.filter(artifact=artifact).filter(visible_to(user, "dataset__"))
        )
        | Exists(Paper.objects.filter(pdf=artifact).filter(visible_to(user)))
    )
    if not Artifact.objects.filter(pk=artifact.pk).filter(used_by_visible_record).exists():
        raise Http404("No such artifact, or you may not read it.")
    return artifact


def comment_list(*, user: Viewer, target: ResearchModel | Paper | Benchmark) -> QuerySet[Comment]:
    """The discussion of a record the caller may already see (the caller checks that)."""
    field = _comment_target_field(target)
    return Comment.objects.filter(**{field: target}).select_related("author", "removed_by")


def _comment_target_field(target: ResearchModel | Paper | Benchmark) -> str:
    fields: dict[type[Model], str] = {
        ResearchModel: "model",
        Paper: "paper",
        Benchmark: "benchmark",
    }
    return fields[type(target)]


def comment_visible_list(*, user: Viewer) -> QuerySet[Comment]:
    """Every comment whose record the caller may see."""
    return Comment.objects.filter(
        Q(model__in=ResearchModel.objects.filter(visible_to(user)))
        | Q(paper__in=Paper.objects.filter(visible_to(user)))
        | Q(benchmark__in=Benchmark.objects.filter(visible_to(user)))
    ).select_related("author", "removed_by")


def user_can_moderate(*, user: Viewer, comment: Comment) -> bool:
    if not isinstance(user, User):
        return False
    if user.is_staff:
        return True
    record = comment.model or comment.paper or comment.benchmark
    if record is None:
        return False
    return Membership.objects.filter(
        user=user, institution_id=record.institution_id, role=Membership.Role.ADMIN
    ).exists()


@dataclass(frozen=True)
class SearchFilters:
    types: tuple[str, ...] = ("model", "paper", "dataset", "benchmark")
    institution: str = ""
    tag: str = ""
    task: str = ""
    license: str = ""
    year: int | None = None


@dataclass(frozen=True)
class SearchHit:
    type: str
    id: int
    title: str
    summary: str
    institution: str
    rank: float


@dataclass(frozen=True)
class SearchPage:
    hits: list[SearchHit]
    total: int
    counts: dict[str, int]


SEARCH_TYPES = ("model", "paper", "dataset", "benchmark")
# The columns each type shows as its title and summary in a hit.
_SEARCH_COLUMNS: dict[str, tuple[type[Model], str, str]] = {
    "model": (ResearchModel, "name", "summary"),
    "paper": (Paper, "title", "author_names"),
    "dataset": (Dataset, "name", "description"),
    "benchmark": (Benchmark, "name", "description"),
}


def _filtered(kind: str, queryset: QuerySet, filters: SearchFilters) -> QuerySet | None:
    """Applies the filters; None when a filter rules the whole type out (e.g. year on models)."""
    if filters.institution:
        queryset = queryset.filter(institution__slug=filters.institution)
    if filters.tag:
        if kind == "paper":
            return None
        queryset = queryset.filter(tags__name=filters.tag)
    if filters.task:
        if kind == "model":
            queryset = queryset.filter(task=filters.task)
        elif kind == "benchmark":
            queryset = queryset.filter(task_type=filters.task)
        else:
            return None
    if filters.license:
        if kind not in ("model", "dataset"):
            return None
        queryset = queryset.filter(license__iexact=filters.license)
    if filters.year is not None:
        if kind != "paper":
            return None
        queryset = queryset.filter(year=filters.year)
    return queryset


# Counting and ranking cost grows with the number of hits (a common word matches most rows):
# each type counts at most SEARCH_COUNT_CAP hits and ranks at most SEARCH_RANKED_CANDIDATES.
SEARCH_COUNT_CAP = 1000
SEARCH_RANKED_CANDIDATES = 1000
_TSQUERY = "websearch_to_tsquery('english', %s)"


def _text_match(kind: str, queryset: QuerySet, query: str) -> QuerySet:
    _model, title, summary = _SEARCH_COLUMNS[kind]
    if connection.vendor == "postgresql":
        # The column is named without its table: the match also runs inside subqueries, where
        # Django renames the table.
        return queryset.filter(
            RawSQL(f"search_vector @@ {_TSQUERY}", [query], output_field=BooleanField())  # noqa: S611
        )
    # The embedded SQLite node has no full-text index: a substring match on every word.
    for word in query.split():
        queryset = queryset.filter(
            Q(**{f"{title}__icontains": word}) | Q(**{f"{summary}__icontains": word})
        )
    return queryset


def _ranked(queryset: QuerySet, query: str) -> QuerySet:
    if connection.vendor == "postgresql":
        rank = RawSQL(f"ts_rank_cd(search_vector, {_TSQUERY})", [query])  # noqa: S611
        return queryset.annotate(rank=rank)
    return queryset.annotate(rank=Value(1.0, output_field=FloatField()))


def search(
    *, user: Viewer, query: str, filters: SearchFilters, offset: int, limit: int
) -> SearchPage:
    """Ranked hits across types: each type's top `offset + limit` by rank, merged.
    `offset + limit` must not exceed SEARCH_RANKED_CANDIDATES."""
    candidates: list[SearchHit] = []
    counts: dict[str, int] = {}
    for kind in filters.types:
        model, title, summary = _SEARCH_COLUMNS[kind]
        queryset = _filtered(kind, model._default_manager.filter(visible_to(user)), filters)
        if queryset is None:
            counts[kind] = 0
            continue
        # Unordered: an ORDER BY here would make PostgreSQL walk the newest-first index and test
        # every row's vector instead of reading the GIN index.
        matches = _text_match(kind, queryset, query).order_by().values("id")
        counts[kind] = matches[:SEARCH_COUNT_CAP].count()
        if not counts[kind]:
            continue
        bounded = model._default_manager.filter(
            id__in=matches.values("id")[:SEARCH_RANKED_CANDIDATES]
        )
        rows = (
            _ranked(bounded, query)
            .order_by("-rank", "-created_at", "-id")
            .values(
                "id",
                "rank",
                title_text=F(title),
                summary_text=F(summary),
                institution_name=F("institution__name"),
            )[: offset + limit]
        )
        candidates.extend(
            SearchHit(
                type=kind,
                id=row["id"],
                title=row["title_text"],
                summary=row["summary_text"][:300],
                institution=row["institution_name"],
                rank=float(row["rank"]),
            )
            for row in rows
        )
    candidates.sort(key=lambda hit: hit.rank, reverse=True)
    return SearchPage(
        hits=candidates[offset : offset + limit], total=sum(counts.values()), counts=counts
    )
