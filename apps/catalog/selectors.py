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
    Exists,
    F,
    Model,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    TextField,
    prefetch_related_objects,
)
from django.db.models.expressions import RawSQL
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.urls import reverse

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
from apps.core.filters import filter_by_origin

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
    if not isinstance(user, User) or institution.origin_node:
        return False
    return user.is_staff or Membership.objects.filter(user=user, institution=institution).exists()


def user_can_edit(*, user: Viewer, record: Model) -> bool:
    """The creator (while still a member), the owning institution's admins, and staff. Nobody
    edits a record mirrored from a peer node here."""
    if not isinstance(user, User) or not user.is_active or bool(getattr(record, "origin_node", "")):
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
        return Institution.objects.filter(origin_node="")
    return Institution.objects.filter(memberships__user=user, origin_node="")


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
    return _model_detail(user, pk=model_id)


def model_by_slug(*, user: Viewer, institution_slug: str, slug: str) -> ResearchModel:
    return _model_detail(user, institution__slug=institution_slug, slug=slug)


def _model_detail(user: Viewer, **lookup) -> ResearchModel:
    """The model with its versions (drafts only for its editors), files, and the linked
    papers and benchmarks this viewer may see."""
    model = get_object_or_404(model_list(user=user), **lookup)
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
    """Each benchmark carries `dataset_visible`: a public benchmark may stand on a dataset that
    the viewer may not see, and then nothing of that dataset is shown."""
    visible_dataset = Dataset.objects.filter(visible_to(user), pk=OuterRef("dataset_id"))
    return (
        Benchmark.objects.filter(visible_to(user))
        .annotate(dataset_visible=Exists(visible_dataset))
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
    model_files = ModelFile.objects.filter(artifact=artifact, version__in=readable_versions)
    dataset_files = DatasetFile.objects.filter(artifact=artifact).filter(
        visible_to(user, "dataset__")
    )
    papers = Paper.objects.filter(pdf=artifact).filter(visible_to(user))
    if not artifact.origin_url:
        # Bytes of this node: a peer naming their digest in its feed must not make them
        # readable here, so only local records count.
        model_files = model_files.filter(version__model__origin_node="")
        dataset_files = dataset_files.filter(dataset__origin_node="")
        papers = papers.filter(origin_node="")
    used_by_visible_record = Exists(model_files) | Exists(dataset_files) | Exists(papers)
    if not Artifact.objects.filter(pk=artifact.pk).filter(used_by_visible_record).exists():
        raise Http404("No such artifact, or you may not read it.")
    return artifact


def comment_list(*, target: ResearchModel | Paper | Benchmark) -> QuerySet[Comment]:
    """The discussion of a record the caller may already see (the caller checks that)."""
    field = comment_target_field(target)
    return Comment.objects.filter(**{field: target}).select_related("author", "removed_by")


def comment_target_field(target: ResearchModel | Paper | Benchmark) -> str:
    fields: dict[type[Model], str] = {
        ResearchModel: "model",
        Paper: "paper",
        Benchmark: "benchmark",
    }
    return fields[type(target)]


def record_page_url(record: ResearchModel | Paper | Benchmark) -> str:
    """The portal page of a discussed record (a path on this node)."""
    if isinstance(record, ResearchModel):
        return reverse(
            "catalog:model-detail",
            kwargs={"institution_slug": record.institution.slug, "slug": record.slug},
        )
    if isinstance(record, Paper):
        return reverse("catalog:paper-detail", kwargs={"paper_id": record.pk})
    return reverse("catalog:benchmark-detail", kwargs={"benchmark_id": record.pk})


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
    origin: str = ""  # local, peers, a peer node's id, or all


@dataclass(frozen=True)
class SearchHit:
    type: str
    id: int
    title: str
    summary: str
    institution: str
    rank: float
    origin: str = ""  # the peer node a mirrored record comes from; empty for local records


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
    queryset = filter_by_origin(queryset, "origin", filters.origin)
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


# Ranking reads the vector of every row it ranks, and counting every match reads them all:
# each type ranks and counts its newest matches only. One more than the deepest page reaches
# (25 pages of 20), so a count that reaches it means "more than 500".
SEARCH_RANKED_CANDIDATES = 501


def _ranked(kind: str, queryset: QuerySet, query: str, limit: int) -> tuple[list[SearchHit], int]:
    """The `limit` best-ranked of the newest SEARCH_RANKED_CANDIDATES matches, and how many of those
    there are: one statement per type."""
    model, title, summary = _SEARCH_COLUMNS[kind]
    table = model._meta.db_table
    tsquery = "websearch_to_tsquery('english', %s)"
    newest = (
        queryset.extra(where=[f"{table}.search_vector @@ {tsquery}"], params=[query])  # noqa: S610
        .order_by("-created_at", "-id")
        .values(
            "id",
            "created_at",
            title_text=F(title),
            summary_text=F(summary),
            institution_name=F("institution__name"),
            origin=F("origin_node"),
            vector=RawSQL(f"{table}.search_vector", [], output_field=TextField()),  # noqa: S611
        )[:SEARCH_RANKED_CANDIDATES]
    )
    sql, params = newest.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, title_text, summary_text, institution_name, origin, "  # noqa: S608
            f"ts_rank_cd(vector, {tsquery}) AS rank, count(*) OVER () "
            f"FROM ({sql}) AS newest ORDER BY rank DESC, created_at DESC, id DESC LIMIT %s",
            [query, *params, limit],
        )
        rows = cursor.fetchall()
    hits = [
        SearchHit(
            type=kind, id=row[0], title=row[1], summary=row[2][:300], institution=row[3],
            origin=row[4], rank=float(row[5]),
        )
        for row in rows
    ]  # fmt: skip
    return hits, rows[0][6] if rows else 0


def _substring_matches(
    kind: str, queryset: QuerySet, query: str, limit: int
) -> tuple[list[SearchHit], int]:
    """The embedded SQLite node has no full-text index: a substring match, newest first."""
    _model, title, summary = _SEARCH_COLUMNS[kind]
    for word in query.split():
        queryset = queryset.filter(
            Q(**{f"{title}__icontains": word}) | Q(**{f"{summary}__icontains": word})
        )
    rows = queryset.order_by("-created_at", "-id").values(
        "id", title_text=F(title), summary_text=F(summary),
        institution_name=F("institution__name"), origin=F("origin_node"),
    )[:limit]  # fmt: skip
    hits = [
        SearchHit(
            type=kind, id=row["id"], title=row["title_text"], summary=row["summary_text"][:300],
            institution=row["institution_name"], origin=row["origin"], rank=1.0,
        )
        for row in rows
    ]  # fmt: skip
    return hits, queryset.count()


def search(
    *, user: Viewer, query: str, filters: SearchFilters, offset: int, limit: int
) -> SearchPage:
    """Ranked hits across types: each type's top `offset + limit` by rank, merged."""
    candidates: list[SearchHit] = []
    counts: dict[str, int] = {}
    querysets = {
        "model": ResearchModel.objects.all(),
        "paper": Paper.objects.all(),
        "dataset": Dataset.objects.all(),
        "benchmark": Benchmark.objects.all(),
    }
    matcher = _ranked if connection.vendor == "postgresql" else _substring_matches
    for kind in filters.types:
        queryset = _filtered(kind, querysets[kind].filter(visible_to(user)), filters)
        if queryset is None:
            counts[kind] = 0
            continue
        hits, counts[kind] = matcher(kind, queryset, query, offset + limit)
        candidates.extend(hits)
    candidates.sort(key=lambda hit: hit.rank, reverse=True)
    return SearchPage(
        hits=candidates[offset : offset + limit], total=sum(counts.values()), counts=counts
    )
