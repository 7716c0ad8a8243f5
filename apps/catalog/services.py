"""Writes to the catalogue. Each function checks who may write, validates, and writes in one
transaction; refusals raise django.core.exceptions.ValidationError (naming the field) or
PermissionDenied.
"""

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

import jsonschema
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.storage import storages
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import Model
from django.http import Http404
from django.utils import timezone

from apps.accounts.models import Institution, User
from apps.accounts.validators import normalize_orcid
from apps.catalog import selectors
from apps.catalog.bibtex import PaperDraft, parse_bibtex
from apps.catalog.formats import Format, InvalidArtifact, inspect_artifact
from apps.catalog.models import (
    Artifact,
    Benchmark,
    CatalogRecord,
    Comment,
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
from apps.catalog.validators import (
    normalize_arxiv_id,
    normalize_doi,
    normalize_spdx_license,
)
from apps.events import services as event_services
from apps.events.models import EventType
from worker.evaluators import evaluator_specs


def artifact_storage():
    return storages["artifacts"]


def storage_name_for(sha256: str) -> str:
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}"


def artifact_store(
    *, user: User, upload: UploadedFile, filename: str = "", declared_sha256: str = ""
) -> Artifact:
    """Stores an uploaded file by its sha256 (once: the same bytes uploaded twice are one
    artifact) after checking the declared digest and the file's format header."""
    computed = upload.sha256  # type: ignore[attr-defined]  # set by HashingUploadHandler
    filename = filename or upload.name or ""
    declared = declared_sha256.strip().lower()
    if declared and declared != computed:
        raise ValidationError(
            {
                "sha256": f"The uploaded file's sha256 is {computed}, not the declared "
                f"{declared}: it changed in transit or the wrong file was sent. Nothing was stored."
            }
        )
    try:
        report = inspect_artifact(upload.temporary_file_path(), filename)  # type: ignore[attr-defined]
    except InvalidArtifact as error:
        raise ValidationError({"file": str(error)}) from error

    existing = Artifact.objects.filter(sha256=computed).first()
    if existing is not None and existing.is_stored:
        return existing

    storage = artifact_storage()
    name = storage_name_for(computed)
    size = upload.size or 0
    stored = storage.exists(name)
    if stored and storage.size(name) != size:
        storage.delete(name)  # a partial copy left by an interrupted write
        stored = False
    if not stored:
        stored_as = storage.save(name, upload)
        upload.close()  # the local storage moved the temporary file: nothing is left to delete
        if stored_as != name:  # another request stored the same bytes a moment ago
            storage.delete(stored_as)
    if existing is not None:
        # Known from a peer's feed but not fetched yet: these bytes complete it, read by us.
        Artifact.objects.filter(pk=existing.pk).update(
            storage_name=name,
            size=size,
            format=report.format,
            unsafe=report.unsafe,
            format_info=report.info,
            origin_url="",
        )
        existing.refresh_from_db()
        return existing
    try:
        with transaction.atomic():
            return Artifact.objects.create(
                sha256=computed,
                size=size,
                format=report.format,
                unsafe=report.unsafe,
                format_info=report.info,
                storage_name=name,
                uploaded_by=user,
            )
    except IntegrityError:
        return Artifact.objects.get(sha256=computed)


def artifacts_purge_unattached(*, older_than: timedelta | None = None) -> int:
    """Deletes artifacts that no record has used since their upload, and stored files that have
    no artifact row (left by a request that failed after storing its file)."""
    if older_than is None:
        older_than = timedelta(hours=settings.ARTIFACT_UNATTACHED_RETENTION_HOURS)
    cutoff = timezone.now() - older_than
    storage = artifact_storage()
    unattached = Artifact.objects.filter(
        created_at__lt=cutoff,
        model_files__isnull=True,
        dataset_files__isnull=True,
        papers__isnull=True,
    )
    purged = 0
    old_files = [
        name for name in _stored_names(storage) if storage.get_modified_time(name) < cutoff
    ]
    for start in range(0, len(old_files), 1000):
        batch = old_files[start : start + 1000]
        known = set(
            Artifact.objects.filter(storage_name__in=batch).values_list("storage_name", flat=True)
        )
        for name in set(batch) - known:
            storage.delete(name)
            purged += 1
    for artifact in unattached:
        with transaction.atomic():
            artifact.delete()
            transaction.on_commit(partial(storage.delete, artifact.storage_name))
        purged += 1
    return purged


def _stored_names(storage) -> Iterator[str]:
    """Every file under the two levels of digest-prefix folders."""
    if not storage.exists(""):
        return  # nothing has been stored yet
    for first in storage.listdir("")[0]:
        for second in storage.listdir(first)[0]:
            for name in storage.listdir(f"{first}/{second}")[1]:
                yield f"{first}/{second}/{name}"


def _readable_artifact(user: User, sha256: str, *, field: str) -> Artifact:
    """An artifact the caller may read: knowing a digest must not let anyone attach (and then
    download) someone else's private file."""
    try:
        artifact = selectors.artifact_get(user=user, sha256=sha256)
    except Http404 as error:
        raise ValidationError(
            {field: f"No artifact with sha256 {sha256} that you can read on this node."}
        ) from error
    if not artifact.is_stored:
        # Only a peer's word says what it is until its bytes are fetched and read here.
        raise ValidationError(
            {field: f"sha256 {sha256} is a mirrored file not fetched yet: download it first."}
        )
    return artifact


def _artifacts_by_digest(
    user: User, files: Sequence[tuple[str, str]], *, field: str
) -> list[tuple[str, Artifact]]:
    """Resolves [(filename, sha256)] to artifacts, refusing unreadable digests and duplicate
    names."""
    resolved: list[tuple[str, Artifact]] = []
    seen: set[str] = set()
    for filename, sha256 in files:
        clean_name = _clean_filename(filename, field=field)
        if clean_name in seen:
            raise ValidationError({field: f"The file name '{clean_name}' appears twice."})
        seen.add(clean_name)
        resolved.append((clean_name, _readable_artifact(user, sha256, field=field)))
    return resolved


def _clean_filename(filename: str, *, field: str) -> str:
    name = filename.strip()
    if not name or "/" in name or "\\" in name or name in (".", "..") or len(name) > 255:
        raise ValidationError(
            {field: f"'{filename}' is not a plain file name (no folders, at most 255 characters)."}
        )
    return name


def _require_publisher(user: User, institution: Institution) -> None:
    if institution.origin_node:
        raise PermissionDenied(
            f"{institution.name} publishes on its own node ({institution.origin_node})."
        )
    if not selectors.user_can_publish_for(user=user, institution=institution):
        raise PermissionDenied(f"Only members of {institution.name} can publish for it.")


def record_require_editor(*, user: User, record: Model) -> None:
    """Refuses who may not change the record; views call it before they read the body."""
    origin_node = getattr(record, "origin_node", "")
    if origin_node:
        raise PermissionDenied(
            f"This record is mirrored from {origin_node}: it can be changed only there."
        )
    if not selectors.user_can_edit(user=user, record=record):
        raise PermissionDenied(
            "Only its creator, its institution's admins and platform staff can change this."
        )


def _set_tags(record: Model, tags: Iterable[str]) -> None:
    names = sorted({tag.strip().lower() for tag in tags if tag.strip()})
    for name in names:
        Tag(name=name).clean_fields()
    Tag.objects.bulk_create([Tag(name=name) for name in names], ignore_conflicts=True)
    record.tags.set(Tag.objects.filter(name__in=names))  # type: ignore[attr-defined]


def _normalized_identifier(value: str, normalize, field: str) -> str:
    """`normalize(value)`, its refusal named after `field`; empty stays empty."""
    if not value:
        return ""
    try:
        return normalize(value)
    except ValidationError as error:
        raise ValidationError({field: error.messages}) from error


def _visible_records(user: User, model: type[CatalogRecord], ids: Iterable[int], field: str):
    wanted = set(ids)
    found = list(model._default_manager.filter(selectors.visible_to(user), pk__in=wanted))
    missing = wanted - {record.pk for record in found}
    if missing:
        raise ValidationError(
            {field: f"No {model._meta.verbose_name} with id {sorted(missing)} that you can see."}
        )
    return found


def _apply(record: Model, fields: dict) -> None:
    for name, value in fields.items():
        setattr(record, name, value)


@transaction.atomic
def model_create(
    *,
    user: User,
    institution: Institution,
    name: str,
    slug: str,
    license: str,
    summary: str = "",
    card: str = "",
    task: str = "",
    visibility: str = Visibility.PUBLIC,
    tags: Sequence[str] = (),
    paper_ids: Sequence[int] = (),
    benchmark_ids: Sequence[int] = (),
) -> ResearchModel:
    _require_publisher(user, institution)
    model = ResearchModel(
        institution=institution,
        created_by=user,
        name=name,
        slug=slug,
        summary=summary,
        card=card,
        license=_normalized_identifier(license, normalize_spdx_license, "license"),
        task=task,
        visibility=visibility,
    )
    model.full_clean()
    model.save()
    _set_tags(model, tags)
    model.papers.set(_visible_records(user, Paper, paper_ids, "paper_ids"))
    model.benchmarks.set(_visible_records(user, Benchmark, benchmark_ids, "benchmark_ids"))
    return model


@transaction.atomic
def model_update(
    *,
    user: User,
    model: ResearchModel,
    tags: Sequence[str] | None = None,
    paper_ids: Sequence[int] | None = None,
    benchmark_ids: Sequence[int] | None = None,
    **fields,
) -> ResearchModel:
    record_require_editor(user=user, record=model)
    if "license" in fields:
        fields["license"] = _normalized_identifier(
            fields["license"], normalize_spdx_license, "license"
        )
    _apply(model, fields)
    model.full_clean()
    model.save()
    if tags is not None:
        _set_tags(model, tags)
    if paper_ids is not None:
        model.papers.set(_visible_records(user, Paper, paper_ids, "paper_ids"))
    if benchmark_ids is not None:
        model.benchmarks.set(_visible_records(user, Benchmark, benchmark_ids, "benchmark_ids"))
    return model


# Labels appear in URLs (/models/{id}/versions/{label}/).
VERSION_LABEL = re.compile(r"[\w.+-]{1,64}")


@transaction.atomic
def version_create(
    *,
    user: User,
    model: ResearchModel,
    label: str,
    release_notes: str = "",
    files: Sequence[tuple[str, str]] = (),
    publish: bool = False,
) -> ModelVersion:
    """A new version holding `files` ([(filename, sha256)] of uploaded artifacts); published
    at once when `publish` is set."""
    record_require_editor(user=user, record=model)
    label = label.strip()
    if not VERSION_LABEL.fullmatch(label):
        raise ValidationError(
            {"label": "A version label uses letters, digits and . _ + - (e.g. 1.0, 2.1-rc1)."}
        )
    version = ModelVersion(model=model, label=label, release_notes=release_notes, created_by=user)
    version.full_clean()
    version.save()
    for filename, artifact in _artifacts_by_digest(user, files, field="files"):
        ModelFile.objects.create(version=version, artifact=artifact, filename=filename)
    if publish:
        version = version_publish(user=user, version=version)
    return version


@transaction.atomic
def version_add_file(*, user: User, version: ModelVersion, filename: str, sha256: str) -> ModelFile:
    version = ModelVersion.objects.select_for_update().select_related("model").get(pk=version.pk)
    record_require_editor(user=user, record=version.model)
    if version.is_published:
        raise ValidationError(
            {
                "version": f"Version {version.label} is published and cannot change; "
                "publish a new version for new files."
            }
        )
    ((clean_name, artifact),) = _artifacts_by_digest(user, [(filename, sha256)], field="filename")
    if version.files.filter(filename=clean_name).exists():
        raise ValidationError({"filename": f"Version {version.label} already has '{clean_name}'."})
    return ModelFile.objects.create(version=version, artifact=artifact, filename=clean_name)


@transaction.atomic
def version_publish(*, user: User, version: ModelVersion) -> ModelVersion:
    version = ModelVersion.objects.select_for_update().select_related("model").get(pk=version.pk)
    record_require_editor(user=user, record=version.model)
    if version.is_published:
        raise ValidationError({"version": f"Version {version.label} is already published."})
    if not version.files.exists():
        raise ValidationError({"files": "A version needs at least one file to be published."})
    version.published_at = timezone.now()
    version.save(update_fields=["published_at"])
    return version


@dataclass(frozen=True)
class AuthorInput:
    name: str
    orcid: str = ""
    institution: Institution | None = None


def _check_doi_unused(doi: str, visibility: str, paper: Paper | None = None) -> None:
    """One public paper per DOI. Only public papers are compared: a paper hidden from the
    caller must not show through as "taken", so non-public copies may share a DOI."""
    if not doi or visibility != Visibility.PUBLIC:
        return
    others = Paper.objects.filter(doi=doi, visibility=Visibility.PUBLIC)
    if paper is not None:
        others = others.exclude(pk=paper.pk)
    if existing := others.first():
        raise ValidationError(
            {"doi": f"Paper {existing.pk} is the public record of DOI {doi} on this node."}
        )


def _check_pdf(user: User, pdf: Artifact | None) -> None:
    if pdf is None:
        return
    _readable_artifact(user, pdf.sha256, field="pdf")
    if pdf.format != Format.PDF:
        raise ValidationError(
            {"pdf": f"The artifact {pdf.sha256[:12]}… is {pdf.format}, not a PDF."}
        )


def _set_authors(paper: Paper, authors: Sequence[AuthorInput]) -> None:
    rows = []
    for position, author in enumerate(authors):
        name = author.name.strip()
        if not name:
            raise ValidationError({"authors": f"Author {position + 1} has no name."})
        orcid = _normalized_identifier(author.orcid, normalize_orcid, "authors")
        rows.append(
            PaperAuthor(
                paper=paper,
                position=position,
                name=name[:200],
                orcid=orcid,
                institution=author.institution,
            )
        )
    paper.authors.all().delete()
    PaperAuthor.objects.bulk_create(rows)
    paper.author_names = ", ".join(row.name for row in rows)
    paper.save(update_fields=["author_names"])


@transaction.atomic
def paper_create(
    *,
    user: User,
    institution: Institution,
    title: str,
    authors: Sequence[AuthorInput] = (),
    abstract: str = "",
    venue: str = "",
    year: int | None = None,
    doi: str = "",
    arxiv_id: str = "",
    bibtex_key: str = "",
    pdf: Artifact | None = None,
    visibility: str = Visibility.PUBLIC,
    dataset_ids: Sequence[int] = (),
    benchmark_ids: Sequence[int] = (),
) -> Paper:
    _require_publisher(user, institution)
    doi = _normalized_identifier(doi, normalize_doi, "doi")
    _check_doi_unused(doi, visibility)
    _check_pdf(user, pdf)
    paper = Paper(
        institution=institution,
        created_by=user,
        title=title.strip(),
        abstract=abstract,
        venue=venue,
        year=year,
        doi=doi,
        arxiv_id=_normalized_identifier(arxiv_id, normalize_arxiv_id, "arxiv_id"),
        bibtex_key=bibtex_key,
        pdf=pdf,
        visibility=visibility,
    )
    paper.full_clean()
    paper.save()
    _set_authors(paper, authors)
    paper.datasets.set(_visible_records(user, Dataset, dataset_ids, "dataset_ids"))
    paper.benchmarks.set(_visible_records(user, Benchmark, benchmark_ids, "benchmark_ids"))
    return paper


@transaction.atomic
def paper_update(
    *,
    user: User,
    paper: Paper,
    authors: Sequence[AuthorInput] | None = None,
    dataset_ids: Sequence[int] | None = None,
    benchmark_ids: Sequence[int] | None = None,
    **fields,
) -> Paper:
    record_require_editor(user=user, record=paper)
    if "doi" in fields:
        fields["doi"] = _normalized_identifier(fields["doi"], normalize_doi, "doi")
    if "doi" in fields or "visibility" in fields:
        _check_doi_unused(
            fields.get("doi", paper.doi), fields.get("visibility", paper.visibility), paper
        )
    if "arxiv_id" in fields:
        fields["arxiv_id"] = _normalized_identifier(
            fields["arxiv_id"], normalize_arxiv_id, "arxiv_id"
        )
    if "pdf" in fields:
        _check_pdf(user, fields["pdf"])
    _apply(paper, fields)
    paper.full_clean()
    paper.save()
    if authors is not None:
        _set_authors(paper, authors)
    if dataset_ids is not None:
        paper.datasets.set(_visible_records(user, Dataset, dataset_ids, "dataset_ids"))
    if benchmark_ids is not None:
        paper.benchmarks.set(_visible_records(user, Benchmark, benchmark_ids, "benchmark_ids"))
    return paper


@dataclass(frozen=True)
class BibtexImportReport:
    created: list[Paper]
    errors: list[dict]


def papers_import_bibtex(
    *, user: User, institution: Institution, text: str, visibility: str = Visibility.PUBLIC
) -> BibtexImportReport:
    """Creates one paper per good entry; each bad entry is reported by its key and skipped."""
    _require_publisher(user, institution)
    drafts, entry_errors = parse_bibtex(text)
    errors = [
        {"key": error.key, "line": error.line, "message": error.message} for error in entry_errors
    ]
    created: list[Paper] = []
    for draft in drafts:
        try:
            with transaction.atomic():
                created.append(_paper_from_draft(user, institution, draft, visibility))
        except ValidationError as error:
            errors.append({"key": draft.key, "line": None, "message": "; ".join(error.messages)})
    return BibtexImportReport(created=created, errors=errors)


def _paper_from_draft(
    user: User, institution: Institution, draft: PaperDraft, visibility: str
) -> Paper:
    return paper_create(
        user=user,
        institution=institution,
        title=draft.title,
        authors=[AuthorInput(name=author.name, orcid=author.orcid) for author in draft.authors],
        abstract=draft.abstract,
        venue=draft.venue[:300],
        year=draft.year,
        doi=draft.doi,
        arxiv_id=draft.arxiv_id,
        bibtex_key=draft.key[:100],
        visibility=visibility,
    )


@transaction.atomic
def dataset_create(
    *,
    user: User,
    institution: Institution,
    name: str,
    slug: str,
    license: str,
    description: str = "",
    visibility: str = Visibility.PUBLIC,
    tags: Sequence[str] = (),
    files: Sequence[tuple[str, str]] = (),
) -> Dataset:
    _require_publisher(user, institution)
    dataset = Dataset(
        institution=institution,
        created_by=user,
        name=name,
        slug=slug,
        description=description,
        license=_normalized_identifier(license, normalize_spdx_license, "license"),
        visibility=visibility,
    )
    dataset.full_clean()
    dataset.save()
    _set_tags(dataset, tags)
    for filename, artifact in _artifacts_by_digest(user, files, field="files"):
        DatasetFile.objects.create(dataset=dataset, artifact=artifact, filename=filename)
    return dataset


@transaction.atomic
def dataset_update(
    *, user: User, dataset: Dataset, tags: Sequence[str] | None = None, **fields
) -> Dataset:
    record_require_editor(user=user, record=dataset)
    if "license" in fields:
        fields["license"] = _normalized_identifier(
            fields["license"], normalize_spdx_license, "license"
        )
    _apply(dataset, fields)
    dataset.full_clean()
    dataset.save()
    if tags is not None:
        _set_tags(dataset, tags)
    return dataset


def _validate_metrics(metrics: list) -> list[dict]:
    if not isinstance(metrics, list) or not metrics:
        raise ValidationError({"metrics": "Name at least one metric."})
    names: set[str] = set()
    clean = []
    for metric in metrics:
        if (
            not isinstance(metric, dict)
            or not isinstance(metric.get("name"), str)
            or not isinstance(metric.get("higher_is_better"), bool)
            or set(metric) - {"name", "higher_is_better"}
        ):
            raise ValidationError(
                {"metrics": 'Each metric is {"name": "...", "higher_is_better": true|false}.'}
            )
        name = metric["name"].strip()
        if not name or len(name) > 64 or name in names:
            raise ValidationError(
                {"metrics": f"Metric names must be unique and 1-64 characters: '{name}'."}
            )
        names.add(name)
        clean.append({"name": name, "higher_is_better": metric["higher_is_better"]})
    return clean


def _validate_evaluator(evaluator: str, config: dict) -> None:
    specs = evaluator_specs()
    spec = specs.get(evaluator)
    if spec is None:
        known = ", ".join(sorted(specs))
        raise ValidationError(
            {"evaluator": f"Unknown evaluator '{evaluator}'; this node has {known}."}
        )
    validator = jsonschema.Draft202012Validator(spec.config_schema)
    problems = sorted(validator.iter_errors(config), key=lambda error: list(error.path))
    if problems:
        raise ValidationError(
            {
                "evaluator_config": [
                    f"{'.'.join(str(p) for p in problem.path) or '(config)'}: {problem.message}"
                    for problem in problems
                ]
            }
        )


HIDDEN_OR_MISSING_DATASET = "No such dataset that you can see."


@transaction.atomic
def benchmark_create(
    *,
    user: User,
    institution: Institution,
    name: str,
    slug: str,
    task_type: str,
    dataset: Dataset,
    metrics: list,
    evaluator: str,
    evaluator_config: dict | None = None,
    description: str = "",
    gpu_count: int = 0,
    gpu_memory_gb: int = 0,
    time_limit_minutes: int = 60,
    memory_limit_mb: int = 8192,
    requires_full_isolation: bool | None = None,
    reproduction_tolerance: float = 0.0,
    visibility: str = Visibility.PUBLIC,
    tags: Sequence[str] = (),
) -> Benchmark:
    _require_publisher(user, institution)
    if not Dataset.objects.filter(selectors.visible_to(user), pk=dataset.pk).exists():
        raise ValidationError({"dataset": HIDDEN_OR_MISSING_DATASET})
    evaluator_config = evaluator_config or {}
    _validate_evaluator(evaluator, evaluator_config)
    benchmark = Benchmark(
        institution=institution,
        created_by=user,
        name=name,
        slug=slug,
        description=description,
        task_type=task_type,
        dataset=dataset,
        metrics=_validate_metrics(metrics),
        evaluator=evaluator,
        evaluator_config=evaluator_config,
        gpu_count=gpu_count,
        gpu_memory_gb=gpu_memory_gb,
        time_limit_minutes=time_limit_minutes,
        memory_limit_mb=memory_limit_mb,
        requires_full_isolation=requires_full_isolation,
        reproduction_tolerance=reproduction_tolerance,
        visibility=visibility,
    )
    benchmark.full_clean()
    benchmark.save()
    _set_tags(benchmark, tags)
    return benchmark


@transaction.atomic
def benchmark_update(
    *, user: User, benchmark: Benchmark, tags: Sequence[str] | None = None, **fields
) -> Benchmark:
    record_require_editor(user=user, record=benchmark)
    if "metrics" in fields:
        fields["metrics"] = _validate_metrics(fields["metrics"])
    _apply(benchmark, fields)
    _validate_evaluator(benchmark.evaluator, benchmark.evaluator_config)
    benchmark.full_clean()
    benchmark.save()
    if tags is not None:
        _set_tags(benchmark, tags)
    return benchmark


COMMENT_MAX_LENGTH = 20_000


def _clean_body(body: str) -> str:
    body = body.strip()
    if not body:
        raise ValidationError({"body": "A comment needs some text."})
    if len(body) > COMMENT_MAX_LENGTH:
        raise ValidationError({"body": f"A comment has at most {COMMENT_MAX_LENGTH} characters."})
    return body


@transaction.atomic
def comment_create(
    *,
    user: User,
    target: ResearchModel | Paper | Benchmark,
    body: str,
    parent: Comment | None = None,
) -> Comment:
    """Anyone signed in who can see the record can join its discussion."""
    field = selectors.comment_target_field(target)
    if not type(target).objects.filter(selectors.visible_to(user), pk=target.pk).exists():
        raise PermissionDenied("You cannot see this record.")
    if parent is not None:
        if getattr(parent, f"{field}_id") != target.pk:
            raise ValidationError({"parent": "The comment you reply to is in another discussion."})
        if parent.removed_at is not None:
            raise ValidationError({"parent": "You cannot reply to a removed comment."})
    comment = Comment.objects.create(
        **{field: target}, parent=parent, author=user, body=_clean_body(body)
    )
    _comment_announce(comment=comment, target=target, field=field)
    return comment


COMMENT_EXCERPT_LENGTH = 200


def _comment_announce(
    *, comment: Comment, target: ResearchModel | Paper | Benchmark, field: str
) -> None:
    """Tells the record's creator, and for a reply the parent comment's author, never the
    commenter, and only those who may still see the record. A mirrored record's creator is at
    its origin node: nobody here is told."""
    if target.origin_node:
        return
    candidates = [target.created_by, comment.parent.author if comment.parent else None]
    audience = {
        user.pk: user
        for user in candidates
        if user is not None
        and user.pk != comment.author_id
        and type(target).objects.filter(selectors.visible_to(user), pk=target.pk).exists()
    }
    title = str(target)
    author = comment.author.display_name if comment.author else ""
    excerpt = " ".join(comment.body.split())
    if len(excerpt) > COMMENT_EXCERPT_LENGTH:
        excerpt = excerpt[: COMMENT_EXCERPT_LENGTH - 1].rstrip() + "…"
    event_services.event_emit(
        type=EventType.COMMENT_CREATED,
        summary=f"{author} commented on {title}",
        data={
            "record": {"type": field, "id": target.pk, "title": title},
            "comment_id": comment.pk,
            "parent_id": comment.parent_id,
            "author": author,
            "excerpt": excerpt,
        },
        users=audience.values(),
        institution=target.institution,
        url=f"{selectors.record_page_url(target)}#comment-{comment.pk}",
    )


def comment_require_author(*, user: User, comment: Comment) -> None:
    if comment.author_id != user.pk:
        raise PermissionDenied("Only its author can edit a comment.")


@transaction.atomic
def comment_edit(*, user: User, comment: Comment, body: str) -> Comment:
    comment_require_author(user=user, comment=comment)
    if comment.removed_at is not None:
        raise ValidationError({"body": "A removed comment cannot be edited."})
    comment.body = _clean_body(body)
    comment.edited_at = timezone.now()
    comment.save(update_fields=["body", "edited_at"])
    return comment


@transaction.atomic
def comment_remove(*, user: User, comment: Comment) -> Comment:
    """Its author removes a comment, or a moderator (the record's institution admins, staff).
    The text goes; the place in the thread stays so replies keep their context."""
    if comment.author_id != user.pk and not selectors.user_can_moderate(user=user, comment=comment):
        raise PermissionDenied("Only its author and moderators can remove a comment.")
    if comment.removed_at is None:
        comment.removed_at = timezone.now()
        comment.removed_by = user
        comment.body = ""
        comment.save(update_fields=["removed_at", "removed_by", "body"])
    return comment
