"""Reads behind the OAI-PMH endpoint (oai.py): which records it exposes, their headers in list
order, one page at a time, and their rows for rendering.

Exposed are public, local papers, models, datasets and benchmarks (a benchmark only while its
dataset is public too, as in the change feed). A record is deleted for OAI when its FeedEntry
says it was once public and it is no longer exposed (gone, downgraded or mirrored); a record
that never was public is never named, not even as deleted.

Lists are ordered by (datestamp, record type, id) and paged by keyset: a page starts after the
last position of the previous one, so deep pages cost no OFFSET and concurrent inserts (which
get a newer datestamp) never shift what is still to come.
"""

import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from django.conf import settings
from django.db.models import Exists, Min, OuterRef, Prefetch, Q, QuerySet
from django.utils import timezone

from apps.accounts.models import Institution
from apps.catalog.models import Benchmark, Dataset, Paper, PaperAuthor, ResearchModel, Visibility
from apps.federation.models import FeedEntry

CatalogRow = Paper | ResearchModel | Dataset | Benchmark

# In list order: the type name breaks ties between records with the same datestamp.
RECORD_TYPES = ("benchmark", "dataset", "model", "paper")
MODELS: dict[str, type[CatalogRow]] = {
    "benchmark": Benchmark,
    "dataset": Dataset,
    "model": ResearchModel,
    "paper": Paper,
}
TYPE_SET = "type"
INSTITUTION_SET = "institution"
_LOCAL_ID = re.compile(r"^(benchmark|dataset|model|paper)/([1-9][0-9]{0,17})$")


@dataclass(frozen=True)
class Position:
    """A place in the list order; a page starts strictly after one."""

    datestamp: datetime
    record_type: str
    record_id: int

    def key(self) -> tuple[datetime, str, int]:
        return self.datestamp, self.record_type, self.record_id


@dataclass(frozen=True)
class Header:
    record_type: str
    record_id: int
    datestamp: datetime
    deleted: bool
    institution_slug: str = ""

    @property
    def position(self) -> Position:
        return Position(self.datestamp, self.record_type, self.record_id)

    @property
    def set_specs(self) -> list[str]:
        specs = [f"{TYPE_SET}:{self.record_type}"]
        if self.institution_slug:
            specs.append(f"{INSTITUTION_SET}:{self.institution_slug}")
        return specs


@dataclass(frozen=True)
class Selection:
    """What a list request asks for: datestamps in [start, end) and at most one set."""

    start: datetime | None = None
    end: datetime | None = None
    set_spec: str = ""


def repository_host() -> str:
    return urlsplit(settings.FEDERATION_NODE_URL).netloc


def oai_identifier(record_type: str, record_id: int) -> str:
    return f"oai:{repository_host()}:{record_type}/{record_id}"


def identifier_parse(identifier: str) -> tuple[str, int] | None:
    """(type, id) of one of this repository's identifiers, None for anything else."""
    prefix = f"oai:{repository_host()}:"
    if not identifier.startswith(prefix):
        return None
    match = _LOCAL_ID.match(identifier[len(prefix) :])
    if match is None:
        return None
    return match.group(1), int(match.group(2))


def exposed_records(record_type: str) -> QuerySet:
    if record_type == "benchmark":
        return Benchmark.objects.filter(
            origin_node="", visibility=Visibility.PUBLIC, dataset__visibility=Visibility.PUBLIC
        )
    return MODELS[record_type].objects.filter(origin_node="", visibility=Visibility.PUBLIC)


def local_institutions() -> QuerySet[Institution]:
    return Institution.objects.filter(origin_node="").order_by("slug")


def _set_parts(set_spec: str) -> tuple[str, str]:
    kind, _, value = set_spec.partition(":")
    return kind, value


def _types_in(selection: Selection) -> tuple[str, ...]:
    kind, value = _set_parts(selection.set_spec)
    if kind == TYPE_SET and value:
        return (value,) if value in MODELS else ()
    if selection.set_spec and kind not in (TYPE_SET, INSTITUTION_SET):
        return ()
    return RECORD_TYPES


def _institution_slug(selection: Selection) -> str:
    kind, value = _set_parts(selection.set_spec)
    return value if kind == INSTITUTION_SET else ""


def _after_live(after: Position, record_type: str) -> Q:
    """Rows of one type past `after` in (datestamp, type, id) order: the type is constant in a
    table, so the comparison folds to the datestamp and, on a tie of types, the id."""
    if record_type > after.record_type:
        return Q(updated_at__gte=after.datestamp)
    if record_type < after.record_type:
        return Q(updated_at__gt=after.datestamp)
    return Q(updated_at__gt=after.datestamp) | Q(updated_at=after.datestamp, id__gt=after.record_id)


def _live(record_type: str, selection: Selection) -> QuerySet:
    records = exposed_records(record_type)
    if selection.start is not None:
        records = records.filter(updated_at__gte=selection.start)
    if selection.end is not None:
        records = records.filter(updated_at__lt=selection.end)
    if slug := _institution_slug(selection):
        records = records.filter(institution__slug=slug, institution__origin_node="")
    return records


def _tombstones_of(record_type: str, selection: Selection) -> QuerySet[FeedEntry]:
    # NOT EXISTS per type, so PostgreSQL plans an anti-join (an OR of them it cannot).
    exposed = exposed_records(record_type).filter(pk=OuterRef("record_id"))
    entries = FeedEntry.objects.filter(record_type=record_type, ever_public=True).filter(
        ~Exists(exposed)
    )
    if selection.start is not None:
        entries = entries.filter(changed_at__gte=selection.start)
    if selection.end is not None:
        entries = entries.filter(changed_at__lt=selection.end)
    if slug := _institution_slug(selection):
        # Only a deleted record that still exists can be placed in an institution.
        rows = MODELS[record_type].objects.filter(
            institution__slug=slug, institution__origin_node=""
        )
        entries = entries.filter(record_id__in=rows.values("pk"))
    return entries


TombstoneRows = QuerySet[FeedEntry, tuple[str, int, datetime]]


def _tombstones(selection: Selection, extra: Q | None = None) -> TombstoneRows | None:
    """The deleted records of a selection, one query (a UNION ALL over the types)."""
    parts = [
        _tombstones_of(record_type, selection)
        .filter(extra or Q())
        .values_list("record_type", "record_id", "changed_at")
        for record_type in _types_in(selection)
    ]
    if not parts:
        return None
    return parts[0].union(*parts[1:], all=True) if len(parts) > 1 else parts[0]


def _after_tombstone(after: Position) -> Q:
    return (
        Q(changed_at__gt=after.datestamp)
        | Q(changed_at=after.datestamp, record_type__gt=after.record_type)
        | Q(
            changed_at=after.datestamp,
            record_type=after.record_type,
            record_id__gt=after.record_id,
        )
    )


def header_count(*, selection: Selection) -> int:
    live = sum(_live(record_type, selection).count() for record_type in _types_in(selection))
    tombstones = _tombstones(selection)
    return live + (tombstones.count() if tombstones is not None else 0)


def header_page(
    *, selection: Selection, after: Position | None, size: int
) -> tuple[list[Header], bool]:
    """The next `size` headers after `after`, and whether more follow. Each type and the
    tombstones give their first size + 1 candidates; merged, the first `size` are the page."""
    candidates: list[Header] = []
    for record_type in _types_in(selection):
        live = _live(record_type, selection)
        if after is not None:
            live = live.filter(_after_live(after, record_type))
        rows = live.order_by("updated_at", "id").values_list(
            "id", "updated_at", "institution__slug", "institution__origin_node"
        )[: size + 1]
        candidates += [
            Header(record_type, pk, updated_at, False, "" if origin else slug)
            for pk, updated_at, slug, origin in rows
        ]
    candidates.sort(key=lambda header: header.position.key())
    window = _after_tombstone(after) if after is not None else Q()
    if len(candidates) > size:
        # A tombstone after the first `size + 1` live records cannot be on this page.
        window &= Q(changed_at__lte=candidates[size].datestamp)
    tombstones = _tombstones(selection, window)
    if tombstones is not None:
        entries = tombstones.order_by("changed_at", "record_type", "record_id")[: size + 1]
        candidates += [Header(kind, pk, changed_at, True) for kind, pk, changed_at in entries]
    candidates.sort(key=lambda header: header.position.key())
    return candidates[:size], len(candidates) > size


def header_get(*, record_type: str, record_id: int) -> Header | None:
    row = (
        exposed_records(record_type)
        .filter(pk=record_id)
        .values_list("updated_at", "institution__slug", "institution__origin_node")
        .first()
    )
    if row is not None:
        updated_at, slug, origin = row
        return Header(record_type, record_id, updated_at, False, "" if origin else slug)
    tombstone = _tombstones_of(record_type, Selection()).filter(record_id=record_id)
    changed_at = tombstone.values_list("changed_at", flat=True).first()
    if changed_at is None:
        return None
    return Header(record_type, record_id, changed_at, True)


def earliest_datestamp() -> datetime:
    stamps = [
        exposed_records(record_type).aggregate(first=Min("updated_at"))["first"]
        for record_type in RECORD_TYPES
    ]
    stamps += [
        _tombstones_of(record_type, Selection()).aggregate(first=Min("changed_at"))["first"]
        for record_type in RECORD_TYPES
    ]
    known = [stamp for stamp in stamps if stamp is not None]
    return min(known) if known else timezone.now()


def _rows(record_type: str) -> QuerySet:
    rows = exposed_records(record_type).select_related("institution")
    if record_type == "paper":
        authors = PaperAuthor.objects.select_related("institution").order_by("position")
        return rows.prefetch_related(Prefetch("authors", queryset=authors))
    if record_type == "benchmark":
        rows = rows.select_related("dataset")
    return rows.prefetch_related("tags")


def records_for(headers: list[Header]) -> dict[tuple[str, int], CatalogRow]:
    """The rows of a page's live records, with what their metadata shows, in a bounded
    number of queries: one per type plus one per prefetched relation."""
    wanted: dict[str, list[int]] = {}
    for header in headers:
        if not header.deleted:
            wanted.setdefault(header.record_type, []).append(header.record_id)
    found: dict[tuple[str, int], CatalogRow] = {}
    for record_type, ids in wanted.items():
        for row in _rows(record_type).filter(pk__in=ids):
            found[(record_type, row.pk)] = row
    return found
