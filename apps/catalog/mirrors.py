"""Writes of records mirrored from peer nodes (the federation sync calls these). A mirrored
record keeps its origin (node, id, page there, last sync), is public, and is written only
here: local services refuse to edit it. Each write is an idempotent upsert by origin, and each
record is validated like a local one before it is saved."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from django.db import transaction
from django.db.models import Model
from django.utils.text import slugify

from apps.accounts.models import Institution
from apps.catalog.models import (
    Artifact,
    Benchmark,
    Dataset,
    DatasetFile,
    ModelFile,
    ModelVersion,
    Paper,
    PaperAuthor,
    ResearchModel,
    Tag,
    Visibility,
)
from apps.catalog.services import _validate_metrics

RecordT = TypeVar("RecordT", bound=Model)


class MissingReference(LookupError):
    """The record refers to one of the same node that has not been mirrored (yet)."""


@dataclass(frozen=True)
class Origin:
    node: str
    id: str
    url: str
    synced_at: datetime


@dataclass(frozen=True)
class MirroredFile:
    filename: str
    sha256: str
    size: int
    format: str
    unsafe: bool
    url: str


def mirrored(model: type[RecordT], *, node: str, origin_id: str) -> RecordT:
    record = model._default_manager.filter(origin_node=node, origin_id=origin_id).first()
    if record is None:
        raise MissingReference(f"{model._meta.verbose_name} {origin_id} of {node}")
    return record


def _save(model: type[RecordT], origin: Origin, fields: dict[str, Any]) -> tuple[RecordT, bool]:
    """Upserts the record by its origin; returns it and whether it is new here."""
    record = model._default_manager.filter(origin_node=origin.node, origin_id=origin.id).first()
    created = record is None
    if record is None:
        record = model(origin_node=origin.node, origin_id=origin.id)
    for name, value in fields.items():
        setattr(record, name, value)
    record.origin_url = origin.url  # type: ignore[attr-defined]
    record.origin_synced_at = origin.synced_at  # type: ignore[attr-defined]
    # The related records were just resolved here (no query to check them again), and nobody
    # here created it: the creator stays empty.
    related = [field.name for field in model._meta.concrete_fields if field.is_relation]
    record.full_clean(exclude=related, validate_unique=False, validate_constraints=False)
    record.save()
    return record, created


def _set_links(relation: Any, targets: Any, ids: Sequence[str], *, created: bool) -> None:
    """Sets a record's links; a record new here with none to set needs no query."""
    if created and not ids:
        return
    relation.set(targets)


def _set_tags(record: Any, names: Sequence[str], *, created: bool) -> None:
    tags = [Tag.objects.get_or_create(name=slugify(name)[:50])[0] for name in names if name]
    _set_links(record.tags, tags, names, created=created)


def _artifact(file: MirroredFile) -> Artifact:
    """The local artifact of those bytes if there is one; otherwise a record of where the origin
    serves them, fetched on first download."""
    artifact, _ = Artifact.objects.get_or_create(
        sha256=file.sha256,
        defaults={
            "size": file.size,
            "format": file.format[:16],
            "unsafe": file.unsafe,
            "storage_name": "",
            "origin_url": file.url,
        },
    )
    return artifact


def institution_slug(*, node: str, slug: str) -> str:
    """A peer's institution gets a slug of its own here: the peer's host follows its slug."""
    host = node.split("://", 1)[-1]
    return slugify(f"{slug}-{host.replace('.', '-').replace(':', '-')}")[:80]


@transaction.atomic
def institution_mirror(*, origin: Origin, fields: dict[str, Any]) -> Institution:
    fields = {**fields, "slug": institution_slug(node=origin.node, slug=fields["slug"])}
    return _save(Institution, origin, fields)[0]


def _owner(origin: Origin, institution_id: str) -> Institution:
    return mirrored(Institution, node=origin.node, origin_id=institution_id)


@transaction.atomic
def dataset_mirror(
    *,
    origin: Origin,
    institution: str,
    fields: dict[str, Any],
    tags: Sequence[str],
    files: Sequence[MirroredFile],
) -> Dataset:
    owner = _owner(origin, institution)
    dataset, created = _save(
        Dataset, origin, {**fields, "institution": owner, "visibility": Visibility.PUBLIC}
    )
    _set_tags(dataset, tags, created=created)
    kept = []
    for file in files:
        DatasetFile.objects.update_or_create(
            dataset=dataset, filename=file.filename, defaults={"artifact": _artifact(file)}
        )
        kept.append(file.filename)
    dataset.files.exclude(filename__in=kept).delete()
    return dataset


@transaction.atomic
def benchmark_mirror(
    *, origin: Origin, institution: str, dataset: str, fields: dict[str, Any], tags: Sequence[str]
) -> Benchmark:
    owner = _owner(origin, institution)
    on = mirrored(Dataset, node=origin.node, origin_id=dataset)
    # Leaderboards read the metrics: they take the shape a local benchmark's must have.
    metrics = _validate_metrics(fields.get("metrics", []))
    benchmark, created = _save(
        Benchmark,
        origin,
        {
            **fields,
            "metrics": metrics,
            "institution": owner,
            "dataset": on,
            "visibility": Visibility.PUBLIC,
        },
    )
    _set_tags(benchmark, tags, created=created)
    return benchmark


@dataclass(frozen=True)
class MirroredAuthor:
    name: str
    orcid: str
    institution: str | None


@transaction.atomic
def paper_mirror(
    *,
    origin: Origin,
    institution: str,
    fields: dict[str, Any],
    authors: Sequence[MirroredAuthor],
    pdf: MirroredFile | None,
    datasets: Sequence[str],
    benchmarks: Sequence[str],
) -> Paper:
    owner = _owner(origin, institution)
    paper, created = _save(
        Paper,
        origin,
        {
            **fields,
            "institution": owner,
            "visibility": Visibility.PUBLIC,
            "pdf": _artifact(pdf) if pdf else None,
            "author_names": "; ".join(author.name for author in authors),
        },
    )
    if not created:
        paper.authors.all().delete()
    affiliations = {
        institution.origin_id: institution
        for institution in Institution.objects.filter(
            origin_node=origin.node,
            origin_id__in=[author.institution for author in authors if author.institution],
        )
    }
    PaperAuthor.objects.bulk_create(
        PaperAuthor(
            paper=paper,
            position=position,
            name=author.name[:200],
            orcid=author.orcid[:19],
            institution=affiliations.get(author.institution or ""),
        )
        for position, author in enumerate(authors, start=1)
    )
    _set_links(
        paper.datasets,
        Dataset.objects.filter(origin_node=origin.node, origin_id__in=datasets),
        datasets,
        created=created,
    )
    _set_links(
        paper.benchmarks,
        Benchmark.objects.filter(origin_node=origin.node, origin_id__in=benchmarks),
        benchmarks,
        created=created,
    )
    return paper


@dataclass(frozen=True)
class MirroredVersion:
    label: str
    release_notes: str
    published_at: datetime
    files: Sequence[MirroredFile]


@transaction.atomic
def model_mirror(
    *,
    origin: Origin,
    institution: str,
    fields: dict[str, Any],
    tags: Sequence[str],
    versions: Sequence[MirroredVersion],
    papers: Sequence[str],
    benchmarks: Sequence[str],
) -> ResearchModel:
    owner = _owner(origin, institution)
    model, created = _save(
        ResearchModel, origin, {**fields, "institution": owner, "visibility": Visibility.PUBLIC}
    )
    _set_tags(model, tags, created=created)
    _set_links(
        model.papers,
        Paper.objects.filter(origin_node=origin.node, origin_id__in=papers),
        papers,
        created=created,
    )
    _set_links(
        model.benchmarks,
        Benchmark.objects.filter(origin_node=origin.node, origin_id__in=benchmarks),
        benchmarks,
        created=created,
    )
    for version in versions:
        row, _ = ModelVersion.objects.update_or_create(
            model=model,
            label=version.label[:64],
            defaults={
                "release_notes": version.release_notes,
                "published_at": version.published_at,
            },
        )
        kept = []
        for file in version.files:
            ModelFile.objects.update_or_create(
                version=row, filename=file.filename[:255], defaults={"artifact": _artifact(file)}
            )
            kept.append(file.filename)
        row.files.exclude(filename__in=kept).delete()
    return model


def mirrored_version(*, node: str, model: str, label: str) -> ModelVersion:
    version = ModelVersion.objects.filter(
        model__origin_node=node, model__origin_id=model, label=label
    ).first()
    if version is None:
        raise MissingReference(f"version {label} of model {model} of {node}")
    return version


def mirrored_file_digests(
    *, node: str, model: str, label: str, benchmark: str
) -> tuple[list[str], list[str]]:
    """The sha256 of a mirrored model version's files and of its benchmark's dataset files:
    what a peer's result attests it evaluated."""
    version = mirrored_version(node=node, model=model, label=label)
    on = mirrored(Benchmark, node=node, origin_id=benchmark)
    model_sha256s = ModelFile.objects.filter(version=version).values_list(
        "artifact__sha256", flat=True
    )
    dataset_sha256s = DatasetFile.objects.filter(dataset_id=on.dataset_id).values_list(
        "artifact__sha256", flat=True
    )
    return list(model_sha256s), list(dataset_sha256s)


@transaction.atomic
def mirror_delete(*, record_type: str, node: str, origin_id: str) -> bool:
    """Removes a mirrored record and the mirrored records that cannot stand without it (a
    dataset's benchmarks, an institution's records). The results that refer to any of them
    go first (apps.evaluations.mirrors). Returns whether the record existed."""
    model: type[Model] = {
        "institution": Institution,
        "dataset": Dataset,
        "benchmark": Benchmark,
        "paper": Paper,
        "model": ResearchModel,
    }[record_type]
    record = model._default_manager.filter(origin_node=node, origin_id=origin_id).first()
    if record is None:
        return False
    if isinstance(record, Institution):
        for owned in (ResearchModel, Paper, Benchmark, Dataset):
            for child in owned._default_manager.filter(institution=record).only("origin_id"):
                mirror_delete(record_type=_TYPE_OF[owned], node=node, origin_id=child.origin_id)
    elif isinstance(record, Dataset):
        for benchmark in record.benchmarks.filter(origin_node=node).only("origin_id"):
            mirror_delete(record_type="benchmark", node=node, origin_id=benchmark.origin_id)
    record.delete()
    return True


_TYPE_OF: dict[type[Model], str] = {
    ResearchModel: "model",
    Paper: "paper",
    Benchmark: "benchmark",
    Dataset: "dataset",
}


@transaction.atomic
def model_version_mirror(
    *,
    origin: Origin,
    institution: str,
    fields: dict[str, Any],
    version: MirroredVersion,
    public: bool,
) -> ModelVersion:
    """One version of a peer's model that the peer asked us to evaluate. The model is created
    if we have no mirror of it yet (public only if the peer says it is; a non-public one stays
    private here, seen by nobody but staff); a mirror the sync keeps is left as it is, bar this
    version and its files."""
    model = ResearchModel.objects.filter(origin_node=origin.node, origin_id=origin.id).first()
    if model is None:
        visibility = Visibility.PUBLIC if public else Visibility.PRIVATE
        model, _ = _save(
            ResearchModel,
            origin,
            {**fields, "institution": _owner(origin, institution), "visibility": visibility},
        )
    row, _ = ModelVersion.objects.get_or_create(
        model=model,
        label=version.label[:64],
        defaults={"release_notes": version.release_notes, "published_at": version.published_at},
    )
    for file in version.files:
        ModelFile.objects.update_or_create(
            version=row, filename=file.filename[:255], defaults={"artifact": _artifact(file)}
        )
    return row
