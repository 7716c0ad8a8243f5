"""Papers through the API: identifiers, authors, PDFs, BibTeX import and export."""

import pytest

from apps.catalog import services
from apps.catalog.bibtex import parse_bibtex
from apps.catalog.models import Paper, Visibility
from tests.catalog.conftest import store
from tests.catalog.samples import pdf_bytes, safetensors_bytes

pytestmark = pytest.mark.django_db

ATTENTION = {
    "institution": "northbridge",
    "title": "Attention Is All You Need",
    "abstract": "The dominant sequence transduction models are based on recurrent networks.",
    "authors": [
        {"name": "Ashish Vaswani"},
        {"name": "Noam Shazeer", "orcid": "https://orcid.org/0000-0002-1825-0097"},
        {"name": "Niki Parmar", "institution": "northbridge"},
    ],
    "venue": "NeurIPS",
    "year": 2017,
    "doi": "https://doi.org/10.48550/arXiv.1706.03762",
    "arxiv_id": "arXiv:1706.03762v7",
}


def test_a_paper_keeps_its_authors_in_order_and_canonical_identifiers(client_as, member):
    pdf = store(member, pdf_bytes(), "paper.pdf")
    response = client_as("member").post(
        "/api/v1/papers/", {**ATTENTION, "pdf": pdf.sha256}, format="json"
    )

    assert response.status_code == 201, response.json()
    paper = response.json()
    assert [a["name"] for a in paper["authors"]] == [
        "Ashish Vaswani",
        "Noam Shazeer",
        "Niki Parmar",
    ]
    assert paper["authors"][1]["orcid"] == "0000-0002-1825-0097"
    assert paper["authors"][2]["institution"] == "northbridge"
    assert paper["doi"] == "10.48550/arxiv.1706.03762"
    assert paper["arxiv_id"] == "1706.03762v7"
    assert paper["pdf"]["format"] == "pdf"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"doi": "11.1234/nope"}, "doi"),
        ({"arxiv_id": "1713.01234"}, "arxiv_id"),
        ({"authors": [{"name": "A", "orcid": "0000-0002-1825-0098"}]}, "authors"),
        ({"authors": [{"name": ""}]}, "authors"),
        ({"year": "twenty"}, "year"),
        ({"title": ""}, "title"),
        ({"pdf": "ab" * 32}, "pdf"),
    ],
)
def test_bad_paper_input_names_the_field(client_as, fields, field):
    response = client_as("member").post("/api/v1/papers/", {**ATTENTION, **fields}, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["error"]["fields"]
    assert Paper.objects.count() == 0


def test_a_pdf_must_be_a_pdf(client_as, member):
    weights = store(member, safetensors_bytes(), "w.safetensors")
    response = client_as("member").post(
        "/api/v1/papers/", {**ATTENTION, "pdf": weights.sha256}, format="json"
    )
    assert response.status_code == 400
    assert "not a PDF" in response.json()["error"]["fields"]["pdf"][0]


def test_a_doi_has_one_public_paper(client_as):
    client = client_as("member")
    first = client.post("/api/v1/papers/", ATTENTION, format="json").json()
    response = client.post(
        "/api/v1/papers/", {**ATTENTION, "doi": "10.48550/ARXIV.1706.03762"}, format="json"
    )
    assert response.status_code == 400
    message = response.json()["error"]["fields"]["doi"][0]
    assert f"Paper {first['id']} is the public record" in message


def test_a_paper_others_cannot_see_never_shows_through_its_doi(
    api_client, outsider, member, other_institution, institution
):
    api_client.force_authenticate(outsider)
    hidden = api_client.post(
        "/api/v1/papers/",
        {**ATTENTION, "institution": other_institution.slug, "visibility": "private"},
        format="json",
    ).json()

    api_client.force_authenticate(member)
    created = api_client.post("/api/v1/papers/", ATTENTION, format="json")
    assert created.status_code == 201
    imported = api_client.post(
        "/api/v1/papers/import-bibtex/",
        {
            "institution": institution.slug,
            "visibility": "institution",
            "bibtex": "@article{a, title={Attention}, doi={10.48550/arXiv.1706.03762}}",
        },
        format="json",
    )
    assert imported.json()["errors"] == [] and len(imported.json()["created"]) == 1

    # Its owner learns of the public record only when making theirs public too.
    api_client.force_authenticate(outsider)
    response = api_client.patch(
        f"/api/v1/papers/{hidden['id']}/", {"visibility": "public"}, format="json"
    )
    assert response.status_code == 400
    assert (
        f"Paper {created.json()['id']} is the public record" in response.json()["error"]["message"]
    )


BIBTEX = r"""
@article{vaswani2017,
  title = {Attention Is {All} You Need},
  author = {Vaswani, Ashish and Shazeer, Noam},
  journal = {Advances in Neural Information Processing Systems},
  year = {2017},
  eprint = {1706.03762},
  archivePrefix = {arXiv}
}

@article{lecun2015,
  title = {Deep learning},
  author = {LeCun, Yann and Bengio, Yoshua and Hinton, Geoffrey},
  journal = {Nature},
  year = {2015},
  doi = {10.1038/nature14539}
}

@article{baddoi,
  title = {A paper with a broken identifier},
  author = {Doe, Jane},
  year = {2020},
  doi = {not-a-doi}
}

@article{lecun2015,
  title = {Deep learning, again},
  year = {2015}
}

@inproceedings{notitle,
  author = {Nobody, Anne},
  year = {2019}
}
"""


def test_bibtex_import_keeps_good_entries_and_reports_each_bad_one_by_key(client_as):
    response = client_as("member").post(
        "/api/v1/papers/import-bibtex/",
        {"institution": "northbridge", "bibtex": BIBTEX},
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert sorted(p["name"] for p in body["created"]) == [
        "Attention Is All You Need",
        "Deep learning",
    ]
    assert sorted(error["key"] for error in body["errors"]) == ["baddoi", "lecun2015", "notitle"]
    assert Paper.objects.get(doi="10.1038/nature14539").author_names == (
        "Yann LeCun, Yoshua Bengio, Geoffrey Hinton"
    )


def test_bibtex_import_from_a_file_upload(client_as):
    import io

    file = io.BytesIO(BIBTEX.encode())
    file.name = "refs.bib"
    response = client_as("member").post(
        "/api/v1/papers/import-bibtex/",
        {"institution": "northbridge", "file": file, "visibility": "institution"},
        format="multipart",
    )
    assert response.status_code == 201
    assert set(Paper.objects.values_list("visibility", flat=True)) == {Visibility.INSTITUTION}


def test_an_import_without_one_good_entry_is_a_400(client_as):
    response = client_as("member").post(
        "/api/v1/papers/import-bibtex/",
        {"institution": "northbridge", "bibtex": "@article{broken, title = {Unclosed"},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["errors"]
    assert Paper.objects.count() == 0


def test_import_for_another_institution_is_forbidden(client_as):
    response = client_as("outsider").post(
        "/api/v1/papers/import-bibtex/",
        {"institution": "northbridge", "bibtex": BIBTEX},
        format="json",
    )
    assert response.status_code == 403
    assert Paper.objects.count() == 0


def test_one_paper_exports_as_bibtex_that_reads_back(client_as):
    paper_id = client_as("member").post("/api/v1/papers/", ATTENTION, format="json").json()["id"]

    response = client_as("member").get(f"/api/v1/papers/{paper_id}/bibtex")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/x-bibtex")
    drafts, errors = parse_bibtex(response.content.decode())
    assert errors == []
    assert drafts[0].title == ATTENTION["title"]
    assert drafts[0].doi == "10.48550/arxiv.1706.03762"
    assert drafts[0].authors[0].name == "Ashish Vaswani"


def test_a_filtered_list_exports_only_what_the_reader_may_see(client_as, member, institution):
    services.paper_create(user=member, institution=institution, title="Open result", year=2024)
    services.paper_create(user=member, institution=institution, title="Old result", year=2001)
    services.paper_create(
        user=member, institution=institution, title="Unpublished result", year=2024,
        visibility=Visibility.INSTITUTION,
    )  # fmt: skip

    response = client_as("anonymous").get("/api/v1/papers/bibtex?year=2024")

    drafts, _errors = parse_bibtex(response.content.decode())
    assert [draft.title for draft in drafts] == ["Open result"]


@pytest.mark.parametrize(
    ("visibility", "readers"),
    [
        (Visibility.PUBLIC, {"anonymous", "outsider", "member", "institution_admin", "staff"}),
        (Visibility.INSTITUTION, {"member", "institution_admin", "staff"}),
        (Visibility.PRIVATE, {"member", "institution_admin", "staff"}),
    ],
)
def test_papers_follow_their_visibility_everywhere(
    client_as, actors, member, institution, visibility, readers
):
    paper = services.paper_create(
        user=member, institution=institution, title="Visibility of results", visibility=visibility
    )
    for actor in actors:
        client = client_as(actor)
        listed = [p["id"] for p in client.get("/api/v1/papers/").json()["results"]]
        detail = client.get(f"/api/v1/papers/{paper.pk}/").status_code
        bibtex = client.get(f"/api/v1/papers/{paper.pk}/bibtex").status_code
        exported = "Visibility of results" in client.get("/api/v1/papers/bibtex").content.decode()
        visible = actor in readers
        expected = 200 if visible else 404
        assert (actor, paper.pk in listed, detail, bibtex, exported) == (
            actor, visible, expected, expected, visible,
        )  # fmt: skip
        client.force_authenticate(None)
