"""Shared by the OAI-PMH tests: the schema checks every response goes through, and a small
catalogue with every kind of record the endpoint must expose, hide or report as deleted."""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lxml import etree

from apps.accounts.models import Institution
from apps.catalog.models import (
    Benchmark,
    Dataset,
    Paper,
    PaperAuthor,
    ResearchModel,
    Tag,
    Visibility,
)
from apps.federation.models import FeedEntry

SCHEMAS = Path(__file__).parent / "schemas"
OAI_NS = "http://www.openarchives.org/OAI/2.0/"
OAI_DC_NS = "http://www.openarchives.org/OAI/2.0/oai_dc/"
DC_NS = "http://purl.org/dc/elements/1.1/"
DATACITE_NS = "http://datacite.org/schema/kernel-4"
OAI_DATACITE_NS = "http://schema.datacite.org/oai/oai-1.1/"
NS = {"oai": OAI_NS, "dc": DC_NS, "oai_dc": OAI_DC_NS, "dcite": DATACITE_NS, "w": OAI_DATACITE_NS}

OAI_SCHEMA = etree.XMLSchema(etree.parse(str(SCHEMAS / "OAI-PMH.xsd")))
OAI_DC_SCHEMA = etree.XMLSchema(etree.parse(str(SCHEMAS / "oai_dc.xsd")))

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PUBLIC, PRIVATE, INSTITUTION = Visibility.PUBLIC, Visibility.PRIVATE, Visibility.INSTITUTION
PEER = "https://peer.example.org"


def _standalone(element: etree._Element) -> etree._Element:
    return etree.fromstring(etree.tostring(element))


def _check_datacite(resource: etree._Element) -> None:
    """DataCite's mandatory properties: Identifier, Creator, Title, Publisher, PublicationYear,
    ResourceType (no DataCite XSD is shipped; see the report in README)."""
    identifier = resource.find("dcite:identifier", NS)
    assert identifier is not None and identifier.text and identifier.get("identifierType")
    names = resource.findall("dcite:creators/dcite:creator/dcite:creatorName", NS)
    assert names and all(name.text for name in names)
    assert resource.findtext("dcite:titles/dcite:title", namespaces=NS)
    assert resource.findtext("dcite:publisher", namespaces=NS)
    year = resource.findtext("dcite:publicationYear", namespaces=NS)
    assert year is not None and len(year) == 4 and year.isdigit()
    resource_type = resource.find("dcite:resourceType", NS)
    assert resource_type is not None and resource_type.get("resourceTypeGeneral")


def check_document(body: bytes) -> etree._Element:
    """Parses a response and validates it: the envelope against OAI-PMH.xsd, each oai_dc
    record against oai_dc.xsd, each DataCite record for its mandatory properties."""
    document = etree.fromstring(body)
    OAI_SCHEMA.assertValid(document)
    for dc in document.iter(f"{{{OAI_DC_NS}}}dc"):
        OAI_DC_SCHEMA.assertValid(_standalone(dc))
    for wrapper in document.iter(f"{{{OAI_DATACITE_NS}}}oai_datacite"):
        assert wrapper.findtext("w:schemaVersion", namespaces=NS) == "4.5"
        assert wrapper.findtext("w:datacentreSymbol", namespaces=NS)
        assert wrapper.find("w:payload/dcite:resource", NS) is not None
    for resource in document.iter(f"{{{DATACITE_NS}}}resource"):
        _check_datacite(resource)
    return document


@dataclass
class Catalogue:
    """Identifiers (type/id) by what the endpoint must do with them."""

    live: dict[str, datetime] = field(default_factory=dict)
    deleted: dict[str, datetime] = field(default_factory=dict)
    hidden: set[str] = field(default_factory=set)
    institutions: dict[str, Institution] = field(default_factory=dict)

    def key(self, record: object) -> str:
        kind = {Paper: "paper", ResearchModel: "model", Dataset: "dataset", Benchmark: "benchmark"}
        return f"{kind[type(record)]}/{record.pk}"  # type: ignore[attr-defined]


def _stamp(record: object, moment: datetime) -> None:
    type(record).objects.filter(pk=record.pk).update(updated_at=moment)  # type: ignore[attr-defined]


def tombstone(record_type: str, record_id: int, moment: datetime, *, ever_public: bool) -> None:
    FeedEntry.objects.update_or_create(
        record_type=record_type,
        record_id=record_id,
        defaults={"ever_public": ever_public, "changed_at": moment, "seq": None},
    )


def build_catalogue() -> Catalogue:
    """Public local records an hour apart from T0; records that are private, institution-only,
    mirrored or on a private dataset; a deleted paper and a downgraded model (both once public),
    and a private paper whose feed entry says it was never public."""
    catalogue = Catalogue()
    north = Institution.objects.create(
        name="Northbridge University", slug="northbridge", country="GB"
    )
    rheinau = Institution.objects.create(
        name="Rheinau Institute", slug="rheinau", country="DE", ror_id="05dxps055"
    )
    mirrored = Institution.objects.create(
        name="Peer Lab", slug="peer-lab", country="FR", origin_node=PEER, origin_id="7"
    )
    catalogue.institutions = {"north": north, "rheinau": rheinau, "mirrored": mirrored}
    tag = Tag.objects.create(name="vision")

    paper = Paper.objects.create(
        title="Sparse\x0b attention\x1f at scale", abstract="We study sparse attention.",
        institution=north, year=2025, doi="10.12345/sparse.2025", arxiv_id="2501.00001",
        venue="Journal of Sparse Things",
    )  # fmt: skip
    PaperAuthor.objects.create(
        paper=paper, position=1, name="Ada Lovelace", orcid="0000-0002-1825-0097"
    )
    PaperAuthor.objects.create(paper=paper, position=2, name="Alan Turing", institution=rheinau)
    other_paper = Paper.objects.create(title="Benchmarks considered harmful", institution=rheinau)
    model = ResearchModel.objects.create(
        name="TinyNet", slug="tinynet", institution=north, license="MIT", task="classification",
        summary="A small network.",
    )  # fmt: skip
    model.tags.add(tag)
    dataset = Dataset.objects.create(
        name="Digits", slug="digits", institution=rheinau, license="CC-BY-4.0 OR MIT"
    )
    dataset.tags.add(tag)
    benchmark = Benchmark.objects.create(
        name="Digits accuracy", slug="digits-acc", institution=rheinau, dataset=dataset,
        task_type="classification", evaluator="onnx",
    )  # fmt: skip
    for hour, record in enumerate([paper, model, dataset, benchmark, other_paper]):
        moment = T0 + timedelta(hours=hour)
        _stamp(record, moment)
        catalogue.live[catalogue.key(record)] = moment
    # A public record the change feed has no entry for is still a record.
    FeedEntry.objects.filter(record_type="paper", record_id=paper.pk).delete()

    private_dataset = Dataset.objects.create(
        name="Secret", slug="secret", institution=north, license="MIT", visibility=PRIVATE
    )
    hidden = [
        Paper.objects.create(title="Private draft", institution=north, visibility=PRIVATE),
        Paper.objects.create(title="Internal", institution=north, visibility=INSTITUTION),
        Paper.objects.create(
            title="Peer paper", institution=mirrored, origin_node=PEER, origin_id="1"
        ),
        ResearchModel.objects.create(
            name="Peer model",
            slug="peer-model",
            institution=mirrored,
            license="MIT",
            origin_node=PEER,
            origin_id="2",
        ),
        private_dataset,
        Benchmark.objects.create(
            name="On secret data",
            slug="secret-acc",
            institution=north,
            dataset=private_dataset,
            task_type="classification",
            evaluator="onnx",
        ),
    ]
    for record in hidden:
        catalogue.hidden.add(catalogue.key(record))
    # The private draft's entry exists but it was never public: never named, not even deleted.
    tombstone("paper", hidden[0].pk, T0 + timedelta(hours=10), ever_public=False)

    gone = Paper.objects.create(title="Retracted", institution=north)
    gone_id = gone.pk
    gone.delete()
    tombstone("paper", gone_id, T0 + timedelta(hours=6), ever_public=True)
    catalogue.deleted[f"paper/{gone_id}"] = T0 + timedelta(hours=6)
    downgraded = ResearchModel.objects.create(
        name="Withdrawn", slug="withdrawn", institution=rheinau, license="MIT", visibility=PRIVATE
    )
    tombstone("model", downgraded.pk, T0 + timedelta(hours=7), ever_public=True)
    catalogue.deleted[catalogue.key(downgraded)] = T0 + timedelta(hours=7)
    return catalogue
