import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from datacite import schema45
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from apps.catalog import services
from apps.catalog.models import Visibility
from apps.catalog.services import AuthorInput
from apps.federation.exports import CROISSANT_CONFORMS_TO
from tests.catalog.conftest import store
from tests.catalog.samples import pdf_bytes, safetensors_bytes

pytestmark = pytest.mark.django_db

NODE = "https://node.example.org"
DATACITE = "application/vnd.datacite.datacite+json"
CSV = b'id,sentence,score,label\n1,A cat sits.,0.5,true\n2,"Two, words",1,false\n'
TSV = b"left\tright\nhello\tworld\n"
JSONL = b'{"text": "a", "tokens": 3, "meta": {"lang": "en"}}\n{"text": "b", "tokens": 4}\n'


@pytest.fixture(autouse=True)
def _node(settings, artifact_dir):
    settings.FEDERATION_NODE_URL = NODE


@pytest.fixture
def ror_institution(institution):
    institution.ror_id = "05dxps055"
    institution.save(update_fields=["ror_id"])
    return institution


def datacite_errors(data: dict) -> list[str]:
    return [error.message for error in schema45.validator.iter_errors(data)]


def assert_valid_datacite(data: dict) -> None:
    assert schema45.validate(data), datacite_errors(data)


def fetch(client: APIClient, path: str, media_type: str = DATACITE) -> dict:
    response = client.get(path)
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"] == media_type
    return json.loads(response.content)


def related(data: dict) -> dict[str, str]:
    return {
        entry["relatedIdentifier"]: entry["relationType"]
        for entry in data.get("relatedIdentifiers", [])
    }


def signed_in(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def linked(member, ror_institution):
    """A public paper with a public model and dataset, a private dataset and a benchmark."""
    data = store(member, CSV, "train.csv")
    public_data = services.dataset_create(
        user=member, institution=ror_institution, name="Open sentences", slug="open",
        license="CC-BY-4.0", tags=["nlp"], files=[("train.csv", data.sha256)],
    )  # fmt: skip
    private_data = services.dataset_create(
        user=member, institution=ror_institution, name="Secret sentences", slug="secret",
        license="CC-BY-4.0", visibility=Visibility.PRIVATE,
    )  # fmt: skip
    benchmark = services.benchmark_create(
        user=member, institution=ror_institution, name="Sentence bench", slug="bench",
        task_type="pool-check", dataset=public_data, evaluator="smoke", evaluator_config={},
        metrics=[{"name": "files", "higher_is_better": True}],
    )  # fmt: skip
    pdf = store(member, pdf_bytes(), "paper.pdf")
    paper = services.paper_create(
        user=member, institution=ror_institution, title="Attention Is All You Need",
        authors=[
            AuthorInput(name="Ashish Vaswani", orcid="0000-0002-1825-0097",
                        institution=ror_institution),
            AuthorInput(name="Noam Shazeer"),
        ],
        abstract="The dominant sequence transduction models...", venue="NeurIPS", year=2017,
        doi="10.48550/arXiv.1706.03762", arxiv_id="1706.03762", pdf=pdf,
        dataset_ids=[public_data.pk, private_data.pk], benchmark_ids=[benchmark.pk],
    )  # fmt: skip
    weights = store(member, safetensors_bytes(3), "model.safetensors")
    model = services.model_create(
        user=member, institution=ror_institution, name="Transformer", slug="transformer",
        license="MIT OR Apache-2.0", summary="A sequence model.", task="translation",
        tags=["nlp", "seq2seq"], paper_ids=[paper.pk], benchmark_ids=[benchmark.pk],
    )  # fmt: skip
    services.version_create(
        user=member, model=model, label="1.0", publish=True,
        files=[("model.safetensors", weights.sha256)],
    )  # fmt: skip
    return {
        "paper": paper,
        "model": model,
        "dataset": public_data,
        "private_dataset": private_data,
        "benchmark": benchmark,
    }


def test_paper_datacite_is_valid_and_carries_authors_identifiers_and_links(api_client, linked):
    paper, dataset = linked["paper"], linked["dataset"]

    data = fetch(api_client, f"/api/v1/papers/{paper.pk}/datacite/")

    assert_valid_datacite(data)
    assert data["doi"] == "10.48550/arxiv.1706.03762"
    assert data["url"] == f"{NODE}/papers/{paper.pk}/"
    assert data["types"]["resourceTypeGeneral"] == "JournalArticle"
    assert data["publicationYear"] == "2017"
    assert data["titles"] == [{"title": "Attention Is All You Need"}]
    vaswani, shazeer = data["creators"]
    assert vaswani["nameIdentifiers"][0] == {
        "nameIdentifier": "https://orcid.org/0000-0002-1825-0097",
        "nameIdentifierScheme": "ORCID",
        "schemeUri": "https://orcid.org",
    }
    assert vaswani["affiliation"][0]["affiliationIdentifier"] == "https://ror.org/05dxps055"
    assert vaswani["affiliation"][0]["affiliationIdentifierScheme"] == "ROR"
    assert shazeer == {"name": "Noam Shazeer", "nameType": "Personal"}
    assert data["publisher"]["publisherIdentifier"] == "https://ror.org/05dxps055"
    assert {"alternateIdentifier": "arXiv:1706.03762", "alternateIdentifierType": "arXiv"} in data[
        "alternateIdentifiers"
    ]
    assert data["descriptions"][0]["descriptionType"] == "Abstract"
    assert data["formats"] == ["application/pdf"]
    assert data["sizes"][1] == "1 pages"
    assert related(data) == {
        f"{NODE}/models/northbridge/transformer/": "IsSupplementedBy",
        f"{NODE}/datasets/{dataset.pk}/": "IsSupplementedBy",
        f"{NODE}/benchmarks/{linked['benchmark'].pk}/": "References",
    }


def test_related_identifiers_name_hidden_records_only_to_those_who_may_see_them(
    api_client, linked, member, outsider
):
    paper, hidden = linked["paper"], linked["private_dataset"]
    hidden_url = f"{NODE}/datasets/{hidden.pk}/"
    path = f"/api/v1/papers/{paper.pk}/datacite/"

    for client in [api_client, signed_in(outsider)]:
        exported = fetch(client, path)
        assert hidden_url not in related(exported)
        assert "Secret sentences" not in json.dumps(exported)
    assert related(fetch(signed_in(member), path))[hidden_url] == "IsSupplementedBy"


def test_a_public_dataset_does_not_cite_a_private_paper(api_client, linked, member, outsider):
    dataset = linked["dataset"]
    draft = services.paper_create(
        user=member, institution=dataset.institution, title="Unpublished draft",
        visibility=Visibility.PRIVATE, dataset_ids=[dataset.pk],
    )  # fmt: skip
    draft_url = f"{NODE}/papers/{draft.pk}/"
    datacite = f"/api/v1/datasets/{dataset.pk}/datacite/"
    croissant = f"/api/v1/datasets/{dataset.pk}/croissant/"

    for client in [api_client, signed_in(outsider)]:
        assert draft_url not in related(fetch(client, datacite))
        exported = fetch(client, croissant, "application/ld+json")
        assert "Unpublished draft" not in json.dumps(exported)
        assert "Attention Is All You Need" in exported["citeAs"]
    assert related(fetch(signed_in(member), datacite))[draft_url] == "IsSupplementTo"
    assert (
        "Unpublished draft" in fetch(signed_in(member), croissant, "application/ld+json")["citeAs"]
    )


def test_model_datacite_is_valid_with_its_institution_license_and_files(api_client, linked):
    model = linked["model"]

    data = fetch(api_client, f"/api/v1/models/{model.pk}/datacite/")

    assert_valid_datacite(data)
    assert "doi" not in data
    assert data["alternateIdentifiers"] == [
        {"alternateIdentifier": data["url"], "alternateIdentifierType": "URL"}
    ]
    assert data["types"]["resourceTypeGeneral"] == "Model"
    assert data["creators"] == [
        {
            "name": "Northbridge University",
            "nameType": "Organizational",
            "nameIdentifiers": [
                {
                    "nameIdentifier": "https://ror.org/05dxps055",
                    "nameIdentifierScheme": "ROR",
                    "schemeUri": "https://ror.org",
                }
            ],
        }
    ]
    assert data["version"] == "1.0"
    identifiers = [entry.get("rightsIdentifier") for entry in data["rightsList"]]
    assert identifiers == [None, "mit", "apache-2.0"]
    assert data["rightsList"][0] == {"rights": "MIT OR Apache-2.0"}
    assert {entry["subject"] for entry in data["subjects"]} == {"translation", "nlp", "seq2seq"}
    assert data["sizes"] == [f"{len(safetensors_bytes(3))} bytes"]
    assert {entry["dateType"] for entry in data["dates"]} == {"Created", "Available", "Updated"}
    assert related(data) == {
        "10.48550/arxiv.1706.03762": "IsSupplementTo",
        "arXiv:1706.03762": "IsSupplementTo",
        f"{NODE}/benchmarks/{linked['benchmark'].pk}/": "References",
    }


def test_dataset_datacite_is_valid_and_links_its_papers_and_benchmarks(api_client, linked):
    dataset = linked["dataset"]

    data = fetch(api_client, f"/api/v1/datasets/{dataset.pk}/datacite/")

    assert_valid_datacite(data)
    assert data["types"] == {"resourceTypeGeneral": "Dataset"}
    assert data["rightsList"][0]["rightsIdentifier"] == "cc-by-4.0"
    assert data["formats"] == ["text/csv"]
    assert related(data) == {
        "10.48550/arxiv.1706.03762": "IsSupplementTo",
        "arXiv:1706.03762": "IsSupplementTo",
        f"{NODE}/benchmarks/{linked['benchmark'].pk}/": "IsSourceOf",
    }


def test_an_export_costs_the_same_queries_however_many_records_it_links(
    api_client, member, institution
):
    paper = services.paper_create(user=member, institution=institution, title="Survey")

    made = iter(range(100))

    def queries_with(count: int) -> int:
        for number in [next(made) for _ in range(count)]:
            services.model_create(
                user=member, institution=institution, name=f"M{number}", slug=f"m{number}",
                license="MIT", paper_ids=[paper.pk],
            )  # fmt: skip
        with CaptureQueriesContext(connection) as queries:
            fetch(api_client, f"/api/v1/papers/{paper.pk}/datacite/")
        return len(queries)

    assert queries_with(1) == queries_with(3)


def test_a_paper_without_doi_authors_or_venue_is_still_valid(api_client, member, institution):
    paper = services.paper_create(
        user=member, institution=institution, title="Notes", arxiv_id="2301.01234"
    )

    data = fetch(api_client, f"/api/v1/papers/{paper.pk}/datacite/")

    assert_valid_datacite(data)
    assert "doi" not in data
    assert data["creators"] == [{"name": ":unav"}]
    assert data["types"]["resourceTypeGeneral"] == "Preprint"
    assert data["publisher"] == {"name": "Northbridge University"}


TABULAR_FILES = {
    "train.csv": CSV,
    "pairs.tsv": TSV,
    "texts.jsonl": JSONL,
    "weights.safetensors": safetensors_bytes(2),
}


@pytest.fixture
def tabular_dataset(member, institution):
    stored = {name: store(member, content, name) for name, content in TABULAR_FILES.items()}
    return services.dataset_create(
        user=member, institution=institution, name="Sentences", slug="sentences",
        license="CC-BY-4.0", description="Short sentences, scored.", tags=["nlp"],
        visibility=Visibility.INSTITUTION,
        files=[(name, artifact.sha256) for name, artifact in stored.items()],
    )  # fmt: skip


def mlcroissant_validate(path: Path) -> subprocess.CompletedProcess:
    """The validator's own command line, with every proxy dead: it must not need the network."""
    dead = "http://127.0.0.1:9"
    env = {**os.environ, "HTTP_PROXY": dead, "HTTPS_PROXY": dead, "NO_PROXY": ""}
    env |= {"http_proxy": dead, "https_proxy": dead, "no_proxy": ""}
    command = Path(sys.executable).with_name("mlcroissant")
    return subprocess.run(
        [command, "validate", "--jsonld", str(path)],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip


def test_croissant_passes_mlcroissant_validate_with_files_and_record_sets(
    tabular_dataset, member, tmp_path
):
    client = signed_in(member)

    data = fetch(client, f"/api/v1/datasets/{tabular_dataset.pk}/croissant/", "application/ld+json")
    path = tmp_path / "croissant.json"
    path.write_text(json.dumps(data))
    result = mlcroissant_validate(path)

    assert result.returncode == 0, result.stderr
    assert "error" not in result.stderr.lower().replace("errors=0", ""), result.stderr
    assert "not standard" not in result.stderr, "the @context is Croissant's own"
    assert data["conformsTo"] == CROISSANT_CONFORMS_TO
    assert data["license"] == "https://spdx.org/licenses/CC-BY-4.0.html"
    assert data["url"] == f"{NODE}/datasets/{tabular_dataset.pk}/"
    files = {entry["name"]: entry for entry in data["distribution"]}
    assert set(files) == {"train.csv", "pairs.tsv", "texts.jsonl", "weights.safetensors"}
    csv_file = files["train.csv"]
    assert csv_file["@type"] == "cr:FileObject"
    assert csv_file["encodingFormat"] == "text/csv"
    assert csv_file["sha256"] == hashlib.sha256(CSV).hexdigest()
    assert csv_file["contentSize"] == f"{len(CSV)} B"
    assert csv_file["contentUrl"].startswith(f"{NODE}/api/v1/artifacts/")
    assert files["pairs.tsv"]["encodingFormat"] == "text/tab-separated-values"
    assert files["texts.jsonl"]["encodingFormat"] == "application/jsonlines"
    fields = {
        record_set["name"]: {field["name"]: field["dataType"] for field in record_set["field"]}
        for record_set in data["recordSet"]
    }
    assert fields == {
        "train.csv-records": {
            "id": "sc:Integer",
            "sentence": "sc:Text",
            "score": "sc:Float",
            "label": "sc:Boolean",
        },
        "pairs.tsv-records": {"left": "sc:Text", "right": "sc:Text"},
        # A nested value has no flat field.
        "texts.jsonl-records": {"text": "sc:Text", "tokens": "sc:Integer"},
    }


READ_RECORDS = """
import json, sys
import mlcroissant as mlc
dataset = mlc.Dataset(sys.argv[1])
records = {
    record_set.name: [
        {key.split("/")[-1]: value.decode() if isinstance(value, bytes) else value
         for key, value in record.items()}
        for record in dataset.records(record_set.uuid)
    ]
    for record_set in dataset.metadata.record_sets
}
print(json.dumps(records))
"""


def test_mlcroissant_reads_the_records_the_export_describes(tabular_dataset, member, tmp_path):
    """With the files beside the JSON-LD, as a downloader leaves them, mlcroissant checks their
    sha256 and reads every record set with the declared columns and types."""
    data = fetch(
        signed_in(member),
        f"/api/v1/datasets/{tabular_dataset.pk}/croissant/",
        "application/ld+json",
    )
    for entry in data["distribution"]:
        (tmp_path / entry["name"]).write_bytes(TABULAR_FILES[entry["name"]])
        entry["contentUrl"] = entry["name"]
    path = tmp_path / "croissant.json"
    path.write_text(json.dumps(data))

    result = subprocess.run(
        [sys.executable, "-c", READ_RECORDS, str(path)],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
        env={**os.environ, "CROISSANT_CACHE": str(tmp_path / "cache")},
    )  # fmt: skip

    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout) == {
        "train.csv-records": [
            {"id": 1, "sentence": "A cat sits.", "score": 0.5, "label": True},
            {"id": 2, "sentence": "Two, words", "score": 1.0, "label": False},
        ],
        "pairs.tsv-records": [{"left": "hello", "right": "world"}],
        "texts.jsonl-records": [{"text": "a", "tokens": 3}, {"text": "b", "tokens": 4}],
    }


def test_croissant_content_urls_download_the_described_bytes(tabular_dataset, member):
    client = signed_in(member)
    data = fetch(client, f"/api/v1/datasets/{tabular_dataset.pk}/croissant/", "application/ld+json")

    for entry in data["distribution"]:
        response = client.get(entry["contentUrl"].removeprefix(NODE))
        content = b"".join(response.streaming_content)
        assert hashlib.sha256(content).hexdigest() == entry["sha256"]
        assert f"{len(content)} B" == entry["contentSize"]


def test_mlcroissant_validate_refuses_a_broken_export(tabular_dataset, member, tmp_path):
    """The check above can fail: a record set reading a file the export does not have."""
    data = fetch(
        signed_in(member),
        f"/api/v1/datasets/{tabular_dataset.pk}/croissant/",
        "application/ld+json",
    )
    data["recordSet"][0]["field"][0]["source"]["fileObject"]["@id"] = "missing.csv"
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(data))

    assert mlcroissant_validate(path).returncode == 1


EXPORTS = [
    "/api/v1/datasets/{dataset}/datacite/",
    "/api/v1/datasets/{dataset}/croissant/",
]


@pytest.mark.parametrize("route", EXPORTS)
def test_a_hidden_dataset_is_not_found_by_those_who_may_not_see_it(
    route, member, outsider, institution
):
    dataset = services.dataset_create(
        user=member, institution=institution, name="Mine", slug="mine", license="MIT",
        visibility=Visibility.PRIVATE,
    )  # fmt: skip
    path = route.format(dataset=dataset.pk)

    for client in [APIClient(), signed_in(outsider)]:
        response = client.get(path)
        assert response.status_code == 404
        assert response["Content-Type"] == "application/json"
        assert response.json()["error"]["status"] == 404
    assert signed_in(member).get(path).status_code == 200


def test_hidden_papers_and_models_are_not_found(member, outsider, institution):
    paper = services.paper_create(
        user=member, institution=institution, title="Draft", visibility=Visibility.PRIVATE
    )
    model = services.model_create(
        user=member, institution=institution, name="Internal", slug="internal", license="MIT",
        visibility=Visibility.INSTITUTION,
    )  # fmt: skip
    paths = [f"/api/v1/papers/{paper.pk}/datacite/", f"/api/v1/models/{model.pk}/datacite/"]

    for path in paths:
        assert APIClient().get(path).status_code == 404
        assert signed_in(outsider).get(path).status_code == 404
        assert_valid_datacite(fetch(signed_in(member), path))


@pytest.mark.parametrize("accept", ["text/html,application/xhtml+xml,*/*;q=0.8", DATACITE])
def test_the_document_is_answered_whatever_the_accept_header(api_client, linked, accept):
    """A browser following the portal's link gets the document, not the browsable API."""
    response = api_client.get(f"/api/v1/papers/{linked['paper'].pk}/datacite/", HTTP_ACCEPT=accept)

    assert response.status_code == 200
    assert response["Content-Type"] == DATACITE
    assert response["Content-Disposition"] == (
        f'inline; filename="paper-{linked["paper"].pk}.datacite.json"'
    )
    assert_valid_datacite(json.loads(response.content))


def test_record_pages_link_their_exports(client, linked):
    paper, model, dataset = linked["paper"], linked["model"], linked["dataset"]

    paper_page = client.get(f"/papers/{paper.pk}/").content.decode()
    model_page = client.get("/models/northbridge/transformer/").content.decode()
    dataset_page = client.get(f"/datasets/{dataset.pk}/").content.decode()

    assert f'href="/api/v1/papers/{paper.pk}/datacite/"' in paper_page
    assert f'href="/api/v1/models/{model.pk}/datacite/"' in model_page
    assert f'href="/api/v1/datasets/{dataset.pk}/datacite/"' in dataset_page
    assert f'href="/api/v1/datasets/{dataset.pk}/croissant/"' in dataset_page


def test_a_signed_in_session_reads_the_export_its_page_links(client, member, institution):
    """The portal links to the API: the session that sees a private page reads its export."""
    dataset = services.dataset_create(
        user=member, institution=institution, name="Mine", slug="mine", license="MIT",
        visibility=Visibility.PRIVATE,
    )  # fmt: skip
    client.force_login(member)

    page = client.get(f"/datasets/{dataset.pk}/")
    export = client.get(f"/api/v1/datasets/{dataset.pk}/croissant/")

    assert page.status_code == export.status_code == 200
    assert export.json()["name"] == "Mine"
