"""What leaves this node: the change feed of its public records.

Writers mark a record's FeedEntry (signals.py); `feed_sequence` numbers the committed marks in
one serialised step, so numbers follow commit order and a reader that has passed number N never
misses a change committed later. A page renders each record as it is now: public records as
their data, records gone or no longer public (and once public) as tombstones. Only public,
local records and what is public about them are rendered; nothing names a non-public record.
"""

import base64
import binascii
from collections.abc import Iterable, Iterator
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max, Prefetch, QuerySet, Value
from django.urls import reverse
from django.utils import timezone

from apps.accounts.models import Institution
from apps.catalog.models import (
    Benchmark,
    Dataset,
    DatasetFile,
    ModelFile,
    ModelVersion,
    Paper,
    PaperAuthor,
    ResearchModel,
    Visibility,
)
from apps.evaluations import selectors as evaluation_selectors
from apps.evaluations.models import Result
from apps.federation.attestations import result_attestation
from apps.federation.contract import OP_DELETE, OP_UPSERT, RECORD_TYPES
from apps.federation.models import FeedEntry, FeedSequencer

PUBLIC = Visibility.PUBLIC


class BadCursor(ValueError):
    pass


def public_records(record_type: str) -> QuerySet:
    """The local records of a type that the feed publishes. A benchmark is published with its
    dataset only; a result with its (published) model version and its benchmark."""
    if record_type == "institution":
        return Institution.objects.filter(origin_node="")
    if record_type == "dataset":
        return Dataset.objects.filter(origin_node="", visibility=PUBLIC)
    if record_type == "benchmark":
        return Benchmark.objects.filter(
            origin_node="", visibility=PUBLIC, dataset__visibility=PUBLIC, dataset__origin_node=""
        )
    if record_type == "paper":
        return Paper.objects.filter(origin_node="", visibility=PUBLIC)
    if record_type == "model":
        return ResearchModel.objects.filter(origin_node="", visibility=PUBLIC)
    if record_type == "result":
        # Results here of a peer's model or benchmark are that peer's to publish, not ours.
        return Result.objects.filter(
            origin_node="",
            model_version__model__origin_node="",
            benchmark__origin_node="",
            benchmark__dataset__origin_node="",
            model_version__published_at__isnull=False,
            model_version__model__visibility=PUBLIC,
            benchmark__visibility=PUBLIC,
            benchmark__dataset__visibility=PUBLIC,
        )
    raise ValueError(f"Unknown record type {record_type!r}.")


def records_depending_on(*, record_type: str, record_id: int) -> Iterator[tuple[str, list[int]]]:
    """Records whose place in the feed follows this one's visibility."""
    if record_type == "dataset":
        benchmarks = list(
            Benchmark.objects.filter(dataset_id=record_id, origin_node="").values_list(
                "pk", flat=True
            )
        )
        yield "benchmark", benchmarks
        results = Result.objects.filter(benchmark_id__in=benchmarks, origin_node="")
        yield "result", list(results.values_list("pk", flat=True))
    elif record_type == "benchmark":
        results = Result.objects.filter(benchmark_id=record_id, origin_node="")
        yield "result", list(results.values_list("pk", flat=True))
    elif record_type == "model":
        results = Result.objects.filter(model_version__model_id=record_id, origin_node="")
        yield "result", list(results.values_list("pk", flat=True))


def feed_touch(*, record_type: str, ids: Iterable[int], local_only: bool = False) -> None:
    """Marks records as changed: the next sequencing gives them new numbers."""
    ids = list(ids)
    if not ids:
        return
    if local_only:
        model = public_records(record_type).model
        ids = list(model.objects.filter(pk__in=ids, origin_node="").values_list("pk", flat=True))
        if not ids:  # parts of a mirrored record: nothing of ours changed
            return
    public_ids = set(public_records(record_type).filter(pk__in=ids).values_list("pk", flat=True))
    now = timezone.now()
    entries = [
        FeedEntry(
            record_type=record_type,
            record_id=record_id,
            seq=None,
            ever_public=record_id in public_ids,
            changed_at=now,
        )
        for record_id in ids
    ]
    unique = ["record_type", "record_id"]
    # Two statements: `ever_public` may turn true, never back to false.
    became_public = [entry for entry in entries if entry.ever_public]
    others = [entry for entry in entries if not entry.ever_public]
    if became_public:
        FeedEntry.objects.bulk_create(
            became_public,
            update_conflicts=True,
            unique_fields=unique,
            update_fields=["seq", "ever_public", "changed_at"],
        )
    if others:
        FeedEntry.objects.bulk_create(
            others, update_conflicts=True, unique_fields=unique, update_fields=["seq", "changed_at"]
        )
    transaction.on_commit(feed_sequence)


def feed_sequence() -> int:
    """Numbers every committed, unnumbered change, after everything numbered before; returns
    how many. The sequencer row's lock makes numbering one step at a time."""
    with transaction.atomic():
        sequencer = FeedSequencer.objects.select_for_update().filter(pk=1).first()
        if sequencer is None:  # a database emptied without its migrations (a test's flush)
            highest = FeedEntry.objects.aggregate(highest=Max("seq"))["highest"] or 0
            FeedSequencer.objects.get_or_create(pk=1, defaults={"last_seq": highest})
            sequencer = FeedSequencer.objects.select_for_update().get(pk=1)
        table = FeedEntry._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET seq = numbered.seq FROM ("  # noqa: S608 (a model's table)
                f"  SELECT id, %s + ROW_NUMBER() OVER (ORDER BY changed_at, id) AS seq"
                f"  FROM {table} WHERE seq IS NULL"
                f") AS numbered WHERE {table}.id = numbered.id",
                [sequencer.last_seq],
            )
            numbered = cursor.rowcount
        if numbered:
            sequencer.last_seq += numbered
            sequencer.save(update_fields=["last_seq"])
        return numbered


def cursor_encode(seq: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{seq}".encode()).rstrip(b"=").decode()


def cursor_decode(cursor: str) -> int:
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, _, seq = text.partition(":")
        if version != "v1" or not seq.isdigit():
            raise ValueError
        return int(seq)
    except (ValueError, binascii.Error, UnicodeDecodeError) as error:
        raise BadCursor("This cursor was not given out by this node's feed.") from error


def _absolute(path: str) -> str:
    return settings.FEDERATION_NODE_URL + path


def _time(value) -> str | None:
    return value.isoformat() if value else None


def _file(artifact, filename: str) -> dict[str, Any]:
    return {
        "filename": filename,
        "sha256": artifact.sha256,
        "size": artifact.size,
        "format": artifact.format,
        "unsafe": artifact.unsafe,
        "url": _absolute(reverse("artifact-download", args=[artifact.sha256])),
    }


def _common(record) -> dict[str, Any]:
    return {
        "institution": str(record.institution_id),
        "created_at": _time(record.created_at),
        "updated_at": _time(record.updated_at),
    }


def _render_institutions(ids: list[int]) -> dict[int, tuple[str, dict]]:
    return {
        institution.pk: (
            _absolute(reverse("accounts:institution-detail", args=[institution.slug])),
            {
                "name": institution.name,
                "slug": institution.slug,
                "country": str(institution.country),
                "website": institution.website,
                "ror_id": institution.ror_id,
                "description": institution.description,
            },
        )
        for institution in public_records("institution").filter(pk__in=ids)
    }


def _render_datasets(ids: list[int]) -> dict[int, tuple[str, dict]]:
    files = Prefetch("files", queryset=DatasetFile.objects.select_related("artifact"))
    records = public_records("dataset").filter(pk__in=ids).prefetch_related(files, "tags")
    return {
        dataset.pk: (
            _absolute(reverse("catalog:dataset-detail", args=[dataset.pk])),
            {
                **_common(dataset),
                "name": dataset.name,
                "slug": dataset.slug,
                "description": dataset.description,
                "license": dataset.license,
                "tags": [tag.name for tag in dataset.tags.all()],
                "files": [_file(file.artifact, file.filename) for file in dataset.files.all()],
            },
        )
        for dataset in records
    }


def _render_benchmarks(ids: list[int]) -> dict[int, tuple[str, dict]]:
    records = public_records("benchmark").filter(pk__in=ids).prefetch_related("tags")
    return {
        benchmark.pk: (
            _absolute(reverse("catalog:benchmark-detail", args=[benchmark.pk])),
            {
                **_common(benchmark),
                "name": benchmark.name,
                "slug": benchmark.slug,
                "description": benchmark.description,
                "task_type": benchmark.task_type,
                "dataset": str(benchmark.dataset_id),
                "metrics": benchmark.metrics,
                "evaluator": benchmark.evaluator,
                "evaluator_config": benchmark.evaluator_config,
                "gpu_count": benchmark.gpu_count,
                "gpu_memory_gb": benchmark.gpu_memory_gb,
                "time_limit_minutes": benchmark.time_limit_minutes,
                "memory_limit_mb": benchmark.memory_limit_mb,
                "reproduction_tolerance": benchmark.reproduction_tolerance,
                "tags": [tag.name for tag in benchmark.tags.all()],
            },
        )
        for benchmark in records
    }


def _ids(records: Iterable) -> list[str]:
    """Links to other records; the prefetches keep only public ones, so none other is named."""
    return [str(record.pk) for record in records]


def _render_papers(ids: list[int]) -> dict[int, tuple[str, dict]]:
    records = (
        public_records("paper")
        .filter(pk__in=ids)
        .select_related("pdf")
        .prefetch_related(
            Prefetch("authors", queryset=PaperAuthor.objects.select_related("institution")),
            Prefetch("datasets", queryset=public_records("dataset")),
            Prefetch("benchmarks", queryset=public_records("benchmark")),
        )
    )
    return {
        paper.pk: (
            _absolute(reverse("catalog:paper-detail", args=[paper.pk])),
            {
                **_common(paper),
                "title": paper.title,
                "abstract": paper.abstract,
                "venue": paper.venue,
                "year": paper.year,
                "doi": paper.doi,
                "arxiv_id": paper.arxiv_id,
                "authors": [
                    {
                        "name": author.name,
                        "orcid": author.orcid,
                        "institution": str(author.institution_id)
                        if author.institution_id and not author.institution.origin_node
                        else None,
                    }
                    for author in paper.authors.all()
                ],
                "pdf": _file(paper.pdf, f"{paper.pk}.pdf") if paper.pdf else None,
                "datasets": _ids(paper.datasets.all()),
                "benchmarks": _ids(paper.benchmarks.all()),
            },
        )
        for paper in records
    }


def _render_models(ids: list[int]) -> dict[int, tuple[str, dict]]:
    versions = ModelVersion.objects.filter(published_at__isnull=False).prefetch_related(
        Prefetch("files", queryset=ModelFile.objects.select_related("artifact"))
    )
    records = (
        public_records("model")
        .filter(pk__in=ids)
        .select_related("institution")
        .prefetch_related(
            "tags",
            Prefetch("versions", queryset=versions),
            Prefetch("papers", queryset=public_records("paper")),
            Prefetch("benchmarks", queryset=public_records("benchmark")),
        )
    )
    return {
        model.pk: (
            _absolute(reverse("catalog:model-detail", args=[model.institution.slug, model.slug])),
            {
                **_common(model),
                "name": model.name,
                "slug": model.slug,
                "summary": model.summary,
                "card": model.card,
                "license": model.license,
                "task": model.task,
                "tags": [tag.name for tag in model.tags.all()],
                "papers": _ids(model.papers.all()),
                "benchmarks": _ids(model.benchmarks.all()),
                "versions": [
                    {
                        "label": version.label,
                        "release_notes": version.release_notes,
                        "published_at": _time(version.published_at),
                        "files": [
                            _file(file.artifact, file.filename) for file in version.files.all()
                        ],
                    }
                    for version in model.versions.all()
                ],
            },
        )
        for model in records
    }


def _render_results(ids: list[int]) -> dict[int, tuple[str, dict]]:
    records = (
        public_records("result")
        .filter(pk__in=ids)
        .select_related("model_version", "institution", "node__institution")
        # What an anonymous reader may see: the dataset (public, or the result would not be
        # fed) but not the job's details.
        .annotate(sees_dataset=Value(True))
    )
    return {
        result.pk: (
            _absolute(reverse("evaluations:result-detail", args=[result.pk])),
            {
                "model": str(result.model_version.model_id),
                "version": result.model_version.label,
                "benchmark": str(result.benchmark_id),
                "institution": str(result.institution_id),
                "metrics": result.metrics,
                "provenance": evaluation_selectors.result_provenance(result),
                "isolation": result.isolation,
                "gpu_seconds": result.gpu_seconds,
                "started_at": _time(result.started_at),
                "finished_at": _time(result.finished_at),
                "created_at": _time(result.created_at),
                # Signed by this node; a result made before attestations is signed now.
                "attestation": result_attestation(result),
            },
        )
        for result in records
    }


RENDERERS = {
    "institution": _render_institutions,
    "dataset": _render_datasets,
    "benchmark": _render_benchmarks,
    "paper": _render_papers,
    "model": _render_models,
    "result": _render_results,
}


def feed_page(*, cursor: str, limit: int) -> dict[str, Any]:
    """The changes after `cursor`, at most `limit`, oldest first."""
    after = cursor_decode(cursor)
    feed_sequence()
    entries = list(
        FeedEntry.objects.filter(seq__gt=after, ever_public=True).order_by("seq")[: limit + 1]
    )
    has_more = len(entries) > limit
    entries = entries[:limit]
    by_type: dict[str, list[int]] = {}
    for entry in entries:
        by_type.setdefault(entry.record_type, []).append(entry.record_id)
    rendered = {
        record_type: RENDERERS[record_type](ids)
        for record_type, ids in by_type.items()
        if record_type in RECORD_TYPES
    }
    records = []
    for entry in entries:
        found = rendered.get(entry.record_type, {}).get(entry.record_id)
        record: dict[str, Any] = {
            "type": entry.record_type,
            "id": str(entry.record_id),
            "seq": entry.seq,
            "changed_at": _time(entry.changed_at),
        }
        if found is None:
            record["op"] = OP_DELETE
        else:
            record.update(op=OP_UPSERT, url=found[0], data=found[1])
        records.append(record)
    next_seq = entries[-1].seq if entries else after
    return {
        "node_id": settings.FEDERATION_NODE_URL,
        "records": records,
        "next_cursor": cursor_encode(next_seq or 0),
        "has_more": has_more,
    }
