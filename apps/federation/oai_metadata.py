"""Catalogue records as OAI-PMH metadata: unqualified Dublin Core (oai_dc) and DataCite
Metadata Schema 4.5 XML, plain (`datacite`) or in DataCite's OAI wrapper (`oai_datacite`).

Only what is public about a public record is written: its own fields, its institution, its
authors and tags. Text is cleaned of characters XML 1.0 forbids before lxml sees it.
"""

import re
from dataclasses import dataclass

from django.conf import settings
from django.urls import reverse
from lxml import etree

from apps.accounts.models import Institution
from apps.catalog.models import Benchmark, Dataset, Paper, ResearchModel
from apps.federation.oai_records import CatalogRow

XSI = "http://www.w3.org/2001/XMLSchema-instance"
OAI_DC_NS = "http://www.openarchives.org/OAI/2.0/oai_dc/"
DC_NS = "http://purl.org/dc/elements/1.1/"
DATACITE_NS = "http://datacite.org/schema/kernel-4"
DATACITE_SCHEMA = "http://schema.datacite.org/meta/kernel-4.5/metadata.xsd"
OAI_DATACITE_NS = "http://schema.datacite.org/oai/oai-1.1/"
OAI_DATACITE_SCHEMA = "http://schema.datacite.org/oai/oai-1.1/oai.xsd"


@dataclass(frozen=True)
class MetadataFormat:
    prefix: str
    schema: str
    namespace: str


FORMATS = {
    fmt.prefix: fmt
    for fmt in (
        MetadataFormat("oai_dc", "http://www.openarchives.org/OAI/2.0/oai_dc.xsd", OAI_DC_NS),
        MetadataFormat("oai_datacite", OAI_DATACITE_SCHEMA, OAI_DATACITE_NS),
        MetadataFormat("datacite", DATACITE_SCHEMA, DATACITE_NS),
    )
}

# Characters XML 1.0 cannot carry, even escaped.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# A DOI as DataCite's schema takes it for a record's own identifier.
_DATACITE_DOI = re.compile(r"^10[.][0-9]{4,9}/\S+$")
_SPDX_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+-]*$")
SPDX_URI = "https://spdx.org/licenses/"
UNAVAILABLE = ":unav"

_DC_TYPES = {"paper": "Text", "model": "Software", "dataset": "Dataset", "benchmark": "Collection"}
_KIND = {"paper": "Paper", "model": "Machine-learning model", "dataset": "Dataset"}


def clean(text: object) -> str:
    return _NOT_XML.sub("", str(text))


def _sub(
    parent: etree._Element, tag: str, text: object = None, **attributes: str
) -> etree._Element:
    element = etree.SubElement(parent, tag, {k: clean(v) for k, v in attributes.items()})
    if text is not None:
        element.text = clean(text)
    return element


def record_url(record: CatalogRow) -> str:
    if isinstance(record, ResearchModel):
        path = reverse("catalog:model-detail", args=[record.institution.slug, record.slug])
    else:
        name = {Paper: "paper", Dataset: "dataset", Benchmark: "benchmark"}[type(record)]
        path = reverse(f"catalog:{name}-detail", args=[record.pk])
    return settings.FEDERATION_NODE_URL + path


def _title(record: CatalogRow) -> str:
    return record.title if isinstance(record, Paper) else record.name


def _description(record: CatalogRow) -> str:
    if isinstance(record, Paper):
        return record.abstract
    if isinstance(record, ResearchModel):
        return record.summary or record.card
    return record.description


def _subjects(record: CatalogRow) -> list[str]:
    names = [] if isinstance(record, Paper) else [tag.name for tag in record.tags.all()]
    if isinstance(record, ResearchModel) and record.task:
        names.append(record.task)
    if isinstance(record, Benchmark):
        names.append(record.task_type)
    return list(dict.fromkeys(name for name in names if name))


def _license(record: CatalogRow) -> str:
    return "" if isinstance(record, Paper | Benchmark) else record.license


def _year(record: CatalogRow) -> int:
    if isinstance(record, Paper) and record.year:
        return record.year
    return record.created_at.year


def _kind(record_type: str, record: CatalogRow) -> tuple[str, str]:
    """DataCite's resourceTypeGeneral and a free-text type."""
    if isinstance(record, Paper):
        if record.venue:
            return "JournalArticle", "Paper"
        if record.arxiv_id and not record.doi:
            return "Preprint", "Paper"
        return "Text", "Paper"
    general = {"model": "Model", "dataset": "Dataset", "benchmark": "Other"}[record_type]
    return general, _KIND.get(record_type, "Benchmark")


def oai_dc(record_type: str, record: CatalogRow) -> etree._Element:
    fmt = FORMATS["oai_dc"]
    root = etree.Element(f"{{{OAI_DC_NS}}}dc", nsmap={"oai_dc": OAI_DC_NS, "dc": DC_NS, "xsi": XSI})
    root.set(f"{{{XSI}}}schemaLocation", f"{fmt.namespace} {fmt.schema}")

    def dc(name: str, value: object) -> None:
        if value:
            _sub(root, f"{{{DC_NS}}}{name}", value)

    dc("title", _title(record))
    if isinstance(record, Paper):
        for author in record.authors.all():
            dc("creator", author.name)
    else:
        dc("creator", record.institution.name)
    for subject in _subjects(record):
        dc("subject", subject)
    dc("description", _description(record))
    dc("publisher", record.institution.name)
    dc("date", str(record.year) if isinstance(record, Paper) and record.year else "")
    dc("date", record.created_at.date().isoformat())
    dc("type", _DC_TYPES[record_type])
    dc("identifier", record_url(record))
    if isinstance(record, Paper):
        dc("identifier", f"https://doi.org/{record.doi}" if record.doi else "")
        dc("identifier", f"arXiv:{record.arxiv_id}" if record.arxiv_id else "")
        dc("source", record.venue)
    if isinstance(record, Benchmark):
        dc("relation", record_url(record.dataset))
    dc("rights", _license(record))
    return root


def _datacite_organisation(parent: etree._Element, tag: str, institution: Institution) -> None:
    ns = f"{{{DATACITE_NS}}}"
    if tag == "creator":
        creator = _sub(parent, f"{ns}creator")
        _sub(creator, f"{ns}creatorName", institution.name, nameType="Organizational")
        if institution.ror_id:
            _sub(
                creator,
                f"{ns}nameIdentifier",
                f"https://ror.org/{institution.ror_id}",
                nameIdentifierScheme="ROR",
                schemeURI="https://ror.org",
            )
        return
    attributes = {}
    if institution.ror_id:
        attributes = {
            "publisherIdentifier": f"https://ror.org/{institution.ror_id}",
            "publisherIdentifierScheme": "ROR",
            "schemeURI": "https://ror.org",
        }
    _sub(parent, f"{ns}publisher", institution.name, **attributes)


def _datacite_creators(resource: etree._Element, record: CatalogRow) -> None:
    ns = f"{{{DATACITE_NS}}}"
    creators = _sub(resource, f"{ns}creators")
    if not isinstance(record, Paper):
        _datacite_organisation(creators, "creator", record.institution)
        return
    authors = list(record.authors.all())
    if not authors:
        _sub(_sub(creators, f"{ns}creator"), f"{ns}creatorName", UNAVAILABLE)
    for author in authors:
        creator = _sub(creators, f"{ns}creator")
        _sub(creator, f"{ns}creatorName", author.name, nameType="Personal")
        if author.orcid:
            _sub(
                creator,
                f"{ns}nameIdentifier",
                f"https://orcid.org/{author.orcid}",
                nameIdentifierScheme="ORCID",
                schemeURI="https://orcid.org",
            )
        if author.institution is not None:
            _sub(creator, f"{ns}affiliation", author.institution.name)


def datacite_resource(record_type: str, record: CatalogRow) -> etree._Element:
    """The record as a DataCite 4.5 `resource`. Its identifier is its DOI when it has one
    DataCite accepts, else its page here (as OpenAIRE's guidelines allow); the page is also an
    alternate identifier."""
    ns = f"{{{DATACITE_NS}}}"
    resource = etree.Element(f"{ns}resource", nsmap={None: DATACITE_NS, "xsi": XSI})
    resource.set(f"{{{XSI}}}schemaLocation", f"{DATACITE_NS} {DATACITE_SCHEMA}")
    url = record_url(record)
    doi = record.doi if isinstance(record, Paper) else ""
    if _DATACITE_DOI.match(doi):
        _sub(resource, f"{ns}identifier", doi, identifierType="DOI")
    else:
        _sub(resource, f"{ns}identifier", url, identifierType="URL")
    _datacite_creators(resource, record)
    _sub(_sub(resource, f"{ns}titles"), f"{ns}title", _title(record))
    _datacite_organisation(resource, "publisher", record.institution)
    _sub(resource, f"{ns}publicationYear", f"{_year(record):04d}")
    general, kind = _kind(record_type, record)
    _sub(resource, f"{ns}resourceType", kind, resourceTypeGeneral=general)
    if subjects := _subjects(record):
        container = _sub(resource, f"{ns}subjects")
        for subject in subjects:
            _sub(container, f"{ns}subject", subject)
    dates = _sub(resource, f"{ns}dates")
    _sub(dates, f"{ns}date", record.created_at.date().isoformat(), dateType="Created")
    _sub(dates, f"{ns}date", record.updated_at.date().isoformat(), dateType="Updated")
    alternates = _sub(resource, f"{ns}alternateIdentifiers")
    _sub(alternates, f"{ns}alternateIdentifier", url, alternateIdentifierType="URL")
    if isinstance(record, Paper):
        if doi and not _DATACITE_DOI.match(doi):
            _sub(alternates, f"{ns}alternateIdentifier", doi, alternateIdentifierType="DOI")
        if record.arxiv_id:
            _sub(
                alternates,
                f"{ns}alternateIdentifier",
                f"arXiv:{record.arxiv_id}",
                alternateIdentifierType="arXiv",
            )
    if isinstance(record, Benchmark):
        related = _sub(resource, f"{ns}relatedIdentifiers")
        _sub(
            related,
            f"{ns}relatedIdentifier",
            record_url(record.dataset),
            relatedIdentifierType="URL",
            relationType="References",
            resourceTypeGeneral="Dataset",
        )
    if license_expression := _license(record):
        rights = _sub(resource, f"{ns}rightsList")
        if _SPDX_ID.match(license_expression):
            _sub(
                rights,
                f"{ns}rights",
                license_expression,
                rightsURI=f"{SPDX_URI}{license_expression}.html",
                rightsIdentifier=license_expression.lower(),
                rightsIdentifierScheme="SPDX",
                schemeURI=SPDX_URI,
            )
        else:
            _sub(rights, f"{ns}rights", license_expression)
    if description := _description(record):
        descriptions = _sub(resource, f"{ns}descriptions")
        _sub(descriptions, f"{ns}description", description, descriptionType="Abstract")
    return resource


def oai_datacite(record_type: str, record: CatalogRow) -> etree._Element:
    ns = f"{{{OAI_DATACITE_NS}}}"
    root = etree.Element(f"{ns}oai_datacite", nsmap={None: OAI_DATACITE_NS, "xsi": XSI})
    root.set(f"{{{XSI}}}schemaLocation", f"{OAI_DATACITE_NS} {OAI_DATACITE_SCHEMA}")
    _sub(root, f"{ns}schemaVersion", "4.5")
    _sub(root, f"{ns}datacentreSymbol", settings.NODE_NAME)
    _sub(root, f"{ns}payload").append(datacite_resource(record_type, record))
    return root


def metadata(prefix: str, record_type: str, record: CatalogRow) -> etree._Element:
    if prefix == "oai_dc":
        return oai_dc(record_type, record)
    if prefix == "oai_datacite":
        return oai_datacite(record_type, record)
    return datacite_resource(record_type, record)
