"""Open metadata exports of catalogue records: DataCite JSON (Metadata Schema 4.5) for papers,
models and datasets, and MLCommons Croissant 1.0 JSON-LD for datasets.

Records are read through the catalogue selectors, so an export answers 404 where the record's
page would, and names only the related records its caller may see: a public paper linked to a
private dataset does not mention it. URLs are absolute, on this node's public base URL.
"""

import csv
import io
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

from django.core.cache import cache
from django.db.models import prefetch_related_objects
from django.urls import reverse
from license_expression import get_spdx_licensing

from apps.accounts.models import Institution
from apps.catalog import selectors
from apps.catalog.bibtex import papers_to_bibtex
from apps.catalog.formats import Format
from apps.catalog.models import (
    Artifact,
    Benchmark,
    Dataset,
    ModelVersion,
    Paper,
    PaperAuthor,
    ResearchModel,
)
from apps.catalog.presenters import paper_draft
from apps.catalog.selectors import Viewer
from apps.catalog.services import artifact_storage

DATACITE_MEDIA_TYPE = "application/vnd.datacite.datacite+json"
CROISSANT_MEDIA_TYPE = "application/ld+json"

DATACITE_SCHEMA_VERSION = "http://datacite.org/schema/kernel-4"
# DataCite's schema takes only DOIs with a 4-9 digit registrant as the record's own "doi".
DATACITE_DOI = re.compile(r"^10[.][0-9]{4,9}/\S+$")
SPDX_SCHEME_URI = "https://spdx.org/licenses/"
# Standard DataCite value for information that is unknown (a paper listed without authors).
UNAVAILABLE = ":unav"

CROISSANT_CONFORMS_TO = "http://mlcommons.org/croissant/1.0"
_CROISSANT_TERMS = [
    "citeAs", "column", "equivalentProperty", "extract", "field", "fileProperty", "fileObject",
    "fileSet", "format", "includes", "isLiveDataset", "jsonPath", "key", "md5", "parentField",
    "path", "recordSet", "references", "regex", "repeated", "replace", "samplingRate",
    "separator", "source", "subField", "transform",
]  # fmt: skip
# The @context of Croissant 1.0, as the specification and mlcroissant publish it.
CROISSANT_CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "sc": "https://schema.org/",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "dct": "http://purl.org/dc/terms/",
    "conformsTo": "dct:conformsTo",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "examples": {"@id": "cr:examples", "@type": "@json"},
    **{term: f"cr:{term}" for term in _CROISSANT_TERMS},
}

_MEDIA_TYPES: dict[str, str] = {
    Format.CSV: "text/csv",
    Format.JSONL: "application/jsonlines",
    Format.JSON: "application/json",
    Format.PARQUET: "application/x-parquet",
    Format.PDF: "application/pdf",
    Format.TEXT: "text/plain",
    Format.NPZ: "application/zip",
}
_SUFFIX_MEDIA_TYPES = {".tsv": "text/tab-separated-values", ".md": "text/markdown"}

# Record sets are read from the head of a file only; a CSV header or a JSON object wider than
# this yields none. Files are content-addressed, so what was read is cached for good.
_SAMPLE_BYTES = 64 * 1024
_SAMPLE_ROWS = 200
_MAX_TABULAR_FILES = 50
_COLUMNS_CACHE_SECONDS = 30 * 24 * 3600


def record_url(*, base_url: str, record: Paper | ResearchModel | Dataset | Benchmark) -> str:
    """The record's page on this node."""
    if isinstance(record, ResearchModel):
        path = reverse("catalog:model-detail", args=[record.institution.slug, record.slug])
    else:
        name = {Paper: "paper", Dataset: "dataset", Benchmark: "benchmark"}[type(record)]
        path = reverse(f"catalog:{name}-detail", args=[record.pk])
    return base_url + path


def download_url(*, base_url: str, artifact: Artifact, filename: str) -> str:
    path = reverse("artifact-download", args=[artifact.sha256])
    return f"{base_url}{path}?filename={quote(filename, safe='')}"


def media_type(*, artifact: Artifact, filename: str) -> str:
    suffix = PurePosixPath(filename).suffix.lower()
    return _SUFFIX_MEDIA_TYPES.get(suffix) or _MEDIA_TYPES.get(
        artifact.format, "application/octet-stream"
    )


def _spdx_ids(expression: str) -> list[str]:
    """The license ids an SPDX expression names, in order (`LicenseRef-` ids included)."""
    return get_spdx_licensing().license_keys(expression)


def _is_listed_spdx(license_id: str) -> bool:
    return not license_id.lower().startswith(("licenseref-", "documentref-"))


def _datacite_rights(expression: str) -> list[dict[str, str]]:
    ids = _spdx_ids(expression)
    rights: list[dict[str, str]] = []
    if len(ids) > 1:
        rights.append({"rights": expression})
    for license_id in ids:
        if not _is_listed_spdx(license_id):
            rights.append({"rights": license_id})
            continue
        rights.append(
            {
                "rights": license_id,
                "rightsUri": f"{SPDX_SCHEME_URI}{license_id}.html",
                "rightsIdentifier": license_id.lower(),
                "rightsIdentifierScheme": "SPDX",
                "schemeUri": SPDX_SCHEME_URI,
            }
        )
    return rights


def _ror_url(institution: Institution) -> str:
    return f"https://ror.org/{institution.ror_id}" if institution.ror_id else ""


def _ror(institution: Institution, kind: str) -> dict[str, str]:
    """The institution's ROR id as DataCite names it for `kind` (name, affiliation, publisher)."""
    if not institution.ror_id:
        return {}
    return {
        f"{kind}Identifier": _ror_url(institution),
        f"{kind}IdentifierScheme": "ROR",
        "schemeUri": "https://ror.org",
    }


def _organisation(institution: Institution) -> dict[str, Any]:
    creator: dict[str, Any] = {"name": institution.name, "nameType": "Organizational"}
    if ror := _ror(institution, "name"):
        creator["nameIdentifiers"] = [ror]
    return creator


def _author(author: PaperAuthor) -> dict[str, Any]:
    creator: dict[str, Any] = {"name": author.name, "nameType": "Personal"}
    if author.orcid:
        creator["nameIdentifiers"] = [
            {
                "nameIdentifier": f"https://orcid.org/{author.orcid}",
                "nameIdentifierScheme": "ORCID",
                "schemeUri": "https://orcid.org",
            }
        ]
    if author.institution is not None:
        institution = author.institution
        creator["affiliation"] = [{"name": institution.name, **_ror(institution, "affiliation")}]
    return creator


def _dates(*dated: tuple[str, datetime | None]) -> list[dict[str, str]]:
    return [
        {"date": moment.date().isoformat(), "dateType": kind}
        for kind, moment in dated
        if moment is not None
    ]


def _subjects(names: Iterable[str]) -> list[dict[str, str]]:
    return [{"subject": name} for name in dict.fromkeys(name for name in names if name)]


def _file_facts(files: Sequence[tuple[str, Artifact]]) -> dict[str, list[str]]:
    if not files:
        return {}
    total = sum(artifact.size for _name, artifact in files)
    sizes = [f"{total} bytes"] + ([f"{len(files)} files"] if len(files) > 1 else [])
    formats = dict.fromkeys(
        media_type(artifact=artifact, filename=name) for name, artifact in files
    )
    return {"sizes": sizes, "formats": list(formats)}


def _paper_identifiers(*, base_url: str, paper: Paper) -> list[tuple[str, str]]:
    """How a related paper is named: its DOI and arXiv id, or else its page here."""
    identifiers = []
    if paper.doi:
        identifiers.append((paper.doi, "DOI"))
    if paper.arxiv_id:
        identifiers.append((f"arXiv:{paper.arxiv_id}", "arXiv"))
    return identifiers or [(record_url(base_url=base_url, record=paper), "URL")]


@dataclass(frozen=True)
class _Related:
    relation: str
    resource_type: str | None
    records: Iterable[Paper | ResearchModel | Dataset | Benchmark]


def _related_identifiers(*, base_url: str, related: Sequence[_Related]) -> list[dict[str, str]]:
    """The relations to records the caller may see: every `records` comes from a selector."""
    identifiers = []
    for group in related:
        for record in group.records:
            if isinstance(record, Paper):
                named = _paper_identifiers(base_url=base_url, paper=record)
            else:
                named = [(record_url(base_url=base_url, record=record), "URL")]
            for identifier, kind in named:
                entry = {
                    "relatedIdentifier": identifier,
                    "relatedIdentifierType": kind,
                    "relationType": group.relation,
                }
                if group.resource_type:
                    entry["resourceTypeGeneral"] = group.resource_type
                identifiers.append(entry)
    return identifiers


def _datacite(
    *,
    record: Paper | ResearchModel | Dataset,
    base_url: str,
    title: str,
    types: dict[str, str],
    creators: list[dict[str, Any]],
    publication_year: int,
    description: str,
    related: Sequence[_Related],
    **fields: Any,
) -> dict[str, Any]:
    url = record_url(base_url=base_url, record=record)
    data: dict[str, Any] = {
        "schemaVersion": DATACITE_SCHEMA_VERSION,
        "url": url,
        # A record without a DOI is identified by its page on this node.
        "alternateIdentifiers": [{"alternateIdentifier": url, "alternateIdentifierType": "URL"}],
        "types": types,
        "creators": creators,
        "titles": [{"title": title}],
        "publisher": {"name": record.institution.name, **_ror(record.institution, "publisher")},
        "publicationYear": f"{publication_year:04d}",
    }
    if description.strip():
        data["descriptions"] = [{"description": description, "descriptionType": "Abstract"}]
    if identifiers := _related_identifiers(base_url=base_url, related=related):
        data["relatedIdentifiers"] = identifiers
    data.update({key: value for key, value in fields.items() if value})
    return data


def paper_datacite(*, user: Viewer, paper_id: int, base_url: str) -> dict[str, Any]:
    paper = selectors.paper_get(user=user, paper_id=paper_id)
    authors = list(paper.authors.all())
    models = list(paper.models.all())
    prefetch_related_objects(models, "institution")  # a model's page is under its institution
    if paper.venue:
        resource_type = "JournalArticle"
    elif paper.arxiv_id and not paper.doi:
        resource_type = "Preprint"
    else:
        resource_type = "Text"
    data = _datacite(
        record=paper,
        base_url=base_url,
        title=paper.title,
        types={"resourceTypeGeneral": resource_type, "resourceType": "Paper"},
        creators=[_author(author) for author in authors] or [{"name": UNAVAILABLE}],
        publication_year=paper.year or paper.created_at.year,
        description=paper.abstract,
        related=[
            _Related("IsSupplementedBy", "Model", models),
            _Related("IsSupplementedBy", "Dataset", paper.datasets.all()),
            _Related("References", None, paper.benchmarks.all()),
        ],
        dates=_dates(("Created", paper.created_at), ("Updated", paper.updated_at)),
        container={"title": paper.venue} if paper.venue else None,
    )
    if DATACITE_DOI.match(paper.doi):
        data["doi"] = paper.doi
    elif paper.doi:
        data["alternateIdentifiers"].append(
            {"alternateIdentifier": paper.doi, "alternateIdentifierType": "DOI"}
        )
    if paper.arxiv_id:
        data["alternateIdentifiers"].append(
            {"alternateIdentifier": f"arXiv:{paper.arxiv_id}", "alternateIdentifierType": "arXiv"}
        )
    if paper.pdf is not None:
        pages = paper.pdf.format_info.get("page_count")
        data["sizes"] = [f"{paper.pdf.size} bytes"] + ([f"{pages} pages"] if pages else [])
        data["formats"] = ["application/pdf"]
    return data


def _latest_published(model: ResearchModel) -> ModelVersion | None:
    """The selector lists drafts first (for editors), then published versions, newest first."""
    return next((version for version in model.versions.all() if version.is_published), None)


def model_datacite(*, user: Viewer, model_id: int, base_url: str) -> dict[str, Any]:
    model = selectors.model_get(user=user, model_id=model_id)
    version = _latest_published(model)
    files = [(file.filename, file.artifact) for file in version.files.all()] if version else []
    published_at = version.published_at if version else None
    return _datacite(
        record=model,
        base_url=base_url,
        title=model.name,
        types={"resourceTypeGeneral": "Model", "resourceType": "Machine-learning model"},
        creators=[_organisation(model.institution)],
        publication_year=(published_at or model.created_at).year,
        description=model.summary,
        related=[
            _Related("IsSupplementTo", None, model.papers.all()),
            _Related("References", None, model.benchmarks.all()),
        ],
        version=version.label if version else None,
        rightsList=_datacite_rights(model.license),
        subjects=_subjects([model.task, *(tag.name for tag in model.tags.all())]),
        dates=_dates(
            ("Created", model.created_at),
            ("Available", published_at),
            ("Updated", model.updated_at),
        ),
        **_file_facts(files),
    )


def _dataset_with_links(
    *, user: Viewer, dataset_id: int
) -> tuple[Dataset, list[Paper], list[Benchmark]]:
    dataset = selectors.dataset_get(user=user, dataset_id=dataset_id)
    papers = list(selectors.paper_list(user=user).filter(datasets=dataset).order_by("title"))
    benchmarks = list(selectors.benchmark_list(user=user).filter(dataset=dataset).order_by("name"))
    return dataset, papers, benchmarks


def dataset_datacite(*, user: Viewer, dataset_id: int, base_url: str) -> dict[str, Any]:
    dataset, papers, benchmarks = _dataset_with_links(user=user, dataset_id=dataset_id)
    files = [(file.filename, file.artifact) for file in dataset.files.all()]
    return _datacite(
        record=dataset,
        base_url=base_url,
        title=dataset.name,
        types={"resourceTypeGeneral": "Dataset"},
        creators=[_organisation(dataset.institution)],
        publication_year=dataset.created_at.year,
        description=dataset.description,
        related=[
            _Related("IsSupplementTo", None, papers),
            _Related("IsSourceOf", None, benchmarks),
        ],
        rightsList=_datacite_rights(dataset.license),
        subjects=_subjects(tag.name for tag in dataset.tags.all()),
        dates=_dates(("Created", dataset.created_at), ("Updated", dataset.updated_at)),
        **_file_facts(files),
    )


@dataclass(frozen=True)
class _Column:
    name: str
    data_type: str


def _value_type(values: Iterable[object]) -> str | None:
    """The schema.org type every sampled value of a column has; None for nested values."""
    kinds = {type(value) for value in values if value is not None and value != ""}
    if kinds & {dict, list}:
        return None
    if kinds == {bool}:
        return "sc:Boolean"
    if kinds and kinds <= {int}:
        return "sc:Integer"
    if kinds and kinds <= {int, float}:
        return "sc:Float"
    return "sc:Text"


_INTEGER = re.compile(r"^[-+]?\d+$")
_FLOAT = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$")


def _csv_value(text: str) -> object:
    text = text.strip()
    if _INTEGER.match(text):
        return int(text)
    if _FLOAT.match(text):
        return float(text)
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def _complete_lines(sample: bytes, whole: bool) -> list[str]:
    text = sample.decode("utf-8", errors="replace")
    lines = text.splitlines()
    if not whole and lines:
        lines.pop()  # may end mid-row
    return lines[: _SAMPLE_ROWS + 1]


def _csv_columns(sample: bytes, *, whole: bool, delimiter: str) -> list[_Column]:
    lines = _complete_lines(sample.removeprefix(b"\xef\xbb\xbf"), whole)
    rows = list(csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter))
    if not rows:
        return []
    header, body = rows[0], rows[1:]
    names = [name.strip() for name in header]
    if not all(names) or len(set(names)) != len(names):
        return []  # a column without a unique name cannot be extracted
    return [
        _Column(name, _value_type(_csv_value(row[i]) for row in body if i < len(row)) or "sc:Text")
        for i, name in enumerate(names)
    ]


def _jsonl_columns(sample: bytes, *, whole: bool) -> list[_Column]:
    objects = []
    for line in _complete_lines(sample, whole):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            return []
        if not isinstance(value, dict):
            return []
        objects.append(value)
    if not objects:
        return []
    columns = []
    for name in objects[0]:
        data_type = _value_type(row.get(name) for row in objects)
        if data_type is not None:
            columns.append(_Column(name, data_type))
    return columns


def _delimiter(filename: str) -> str:
    return "\t" if PurePosixPath(filename).suffix.lower() == ".tsv" else ","


def _sample(artifact: Artifact) -> tuple[bytes, bool]:
    with artifact_storage().open(artifact.storage_name, "rb") as file:
        sample = file.read(_SAMPLE_BYTES)
    return sample, len(sample) >= artifact.size


def _columns(artifact: Artifact, filename: str) -> list[_Column]:
    """The columns of a CSV/TSV or JSON Lines file, read from its head."""
    if artifact.format == Format.CSV:
        key = f"federation:croissant-columns:{artifact.sha256}:{_delimiter(filename)!r}"
    else:
        key = f"federation:croissant-columns:{artifact.sha256}:jsonl"
    cached = cache.get(key)
    if cached is not None:
        return [_Column(name, data_type) for name, data_type in cached]
    sample, whole = _sample(artifact)
    if artifact.format == Format.CSV:
        columns = _csv_columns(sample, whole=whole, delimiter=_delimiter(filename))
    else:
        columns = _jsonl_columns(sample, whole=whole)
    cache.set(key, [(c.name, c.data_type) for c in columns], _COLUMNS_CACHE_SECONDS)
    return columns


def _croissant_id(*parts: str) -> str:
    return "/".join(quote(part, safe="") for part in parts)


def _record_set(filename: str, columns: list[_Column], *, jsonl: bool) -> dict[str, Any]:
    file_id = _croissant_id(filename)
    records_id = _croissant_id(f"{filename}-records")
    fields = []
    for column in columns:
        fields.append(
            {
                "@type": "cr:Field",
                "@id": f"{records_id}/{_croissant_id(column.name)}",
                "name": column.name,
                "dataType": column.data_type,
                "source": {"fileObject": {"@id": file_id}, "extract": {"column": column.name}},
            }
        )
    return {
        "@type": "cr:RecordSet",
        "@id": records_id,
        "name": f"{filename}-records",
        "description": f"The records of {filename}, one per {'line' if jsonl else 'row'}.",
        "field": fields,
    }


def _croissant_license(expression: str) -> str:
    ids = _spdx_ids(expression)
    if len(ids) == 1 and _is_listed_spdx(ids[0]):
        return f"{SPDX_SCHEME_URI}{ids[0]}.html"
    return expression


def _croissant_creator(institution: Institution) -> dict[str, Any]:
    creator: dict[str, Any] = {"@type": "sc:Organization", "name": institution.name}
    if url := _ror_url(institution) or institution.website:
        creator["url"] = url
    return creator


def dataset_croissant(*, user: Viewer, dataset_id: int, base_url: str) -> dict[str, Any]:
    dataset, papers, _benchmarks = _dataset_with_links(user=user, dataset_id=dataset_id)
    distribution, record_sets = [], []
    tabular = 0
    for file in dataset.files.all():
        artifact = file.artifact
        distribution.append(
            {
                "@type": "cr:FileObject",
                "@id": _croissant_id(file.filename),
                "name": file.filename,
                "contentUrl": download_url(
                    base_url=base_url, artifact=artifact, filename=file.filename
                ),
                "encodingFormat": media_type(artifact=artifact, filename=file.filename),
                "sha256": artifact.sha256,
                "contentSize": f"{artifact.size} B",
            }
        )
        readable = artifact.is_stored and artifact.format in (Format.CSV, Format.JSONL)
        if readable and tabular < _MAX_TABULAR_FILES:
            tabular += 1
            jsonl = artifact.format == Format.JSONL
            if columns := _columns(artifact, file.filename):
                record_sets.append(_record_set(file.filename, columns, jsonl=jsonl))
    data: dict[str, Any] = {
        "@context": CROISSANT_CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": CROISSANT_CONFORMS_TO,
        "name": dataset.name,
        "description": dataset.description.strip() or dataset.name,
        "license": _croissant_license(dataset.license),
        "url": record_url(base_url=base_url, record=dataset),
        "creator": _croissant_creator(dataset.institution),
        "publisher": _croissant_creator(dataset.institution),
        "datePublished": dataset.created_at.date().isoformat(),
        "dateModified": dataset.updated_at.date().isoformat(),
        "distribution": distribution,
    }
    if keywords := [tag.name for tag in dataset.tags.all()]:
        data["keywords"] = keywords
    if papers:
        # The publications that describe the dataset, as Croissant asks: BibTeX.
        data["citeAs"] = papers_to_bibtex(paper_draft(paper) for paper in papers)
        data["citation"] = [
            f"https://doi.org/{paper.doi}"
            if paper.doi
            else record_url(base_url=base_url, record=paper)
            for paper in papers
        ]
    if record_sets:
        data["recordSet"] = record_sets
    return data
