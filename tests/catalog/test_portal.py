"""The catalogue's portal pages, as a researcher uses them in a browser without JavaScript."""

import re
from html import unescape

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from apps.catalog import services
from apps.catalog.models import Artifact, Comment, ModelVersion, Paper, ResearchModel, Visibility
from tests.catalog.conftest import sha256_of, store, stored_files, upload
from tests.catalog.samples import pdf_bytes, pickle_bytes, safetensors_bytes

pytestmark = pytest.mark.django_db


def page(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def field_errors(html: str, field: str) -> str:
    """The text of a form field's error list, as the portal renders it next to the field."""
    match = re.search(rf'<ul class="errorlist" id="id_{field}_errors"[^>]*>(.*?)</ul>', html, re.S)
    return unescape(match.group(1)) if match else ""


def version_form(label: str = "v1", *files, publish: bool = True, **fields) -> dict:
    return {
        "label": label,
        "release_notes": "",
        "publish": publish,
        "uploads": list(files),
        **fields,
    }


def weights(name: str = "weights.safetensors", content: bytes | None = None):
    return SimpleUploadedFile(name, content or safetensors_bytes())


@pytest.fixture
def public_model(member, institution, publish_model):
    model = publish_model(member, institution, name="Aurora Classifier", slug="aurora")
    artifact = store(member, safetensors_bytes(), "model.safetensors")
    services.version_create(
        user=member,
        model=model,
        label="1.0",
        files=[("model.safetensors", artifact.sha256)],
        publish=True,
    )
    return model


def test_every_catalogue_page_renders_public_records_for_anonymous_visitors(
    client, catalog_rows, institution
):
    catalog_rows(1)
    model = ResearchModel.objects.get()
    paper = Paper.objects.get()
    dataset = model.papers.get().benchmarks.get().dataset
    benchmark = dataset.benchmarks.get()

    assert "Model 0" in page(client.get("/models/"))
    model_page = page(client.get(f"/models/northbridge/{model.slug}/"))
    assert "Version 1.0" in model_page and "w.safetensors" in model_page
    assert f'href="/papers/{paper.pk}/"' in model_page
    assert "Paper 0" in page(client.get("/papers/"))
    assert "Ada Lovelace" in page(client.get(f"/papers/{paper.pk}/"))
    assert "data.safetensors" in page(client.get(f"/datasets/{dataset.pk}/"))
    assert "Data 0" in page(client.get("/datasets/"))
    assert "Bench 0" in page(client.get("/benchmarks/"))
    benchmark_page = page(client.get(f"/benchmarks/{benchmark.pk}/"))
    assert "higher is better" in benchmark_page
    assert "&quot;data_file&quot;: &quot;data.npz&quot;" in benchmark_page
    institution_page = page(client.get("/institutions/northbridge/"))
    for name in ["Model 0", "Paper 0", "Data 0", "Bench 0"]:
        assert name in institution_page
    assert 'href="/models/?institution=northbridge"' in institution_page
    assert 'href="/models/"' in page(client.get("/"))


def test_records_the_viewer_may_not_see_are_404_and_absent_from_lists_and_search(
    client, member, outsider, institution, publish_model
):
    publish_model(member, institution, name="Hidden Falcon", slug="falcon", visibility="private")
    publish_model(
        member, institution, name="Inside Falcon", slug="inside", visibility="institution"
    )
    paper = services.paper_create(
        user=member, institution=institution, title="Falcon notes", visibility="institution"
    )

    for viewer in [None, outsider]:
        if viewer is not None:
            client.force_login(viewer)
        for path in ["/models/northbridge/falcon/", "/models/northbridge/inside/"]:
            assert client.get(path).status_code == 404
        assert client.get(f"/papers/{paper.pk}/").status_code == 404
        assert "Falcon" not in page(client.get("/models/"))
        assert "Falcon" not in page(client.get("/papers/"))
        assert "Falcon" not in page(client.get("/institutions/northbridge/"))
        assert "No results" in page(client.get("/search/?q=falcon"))

    client.force_login(member)
    assert client.get("/models/northbridge/inside/").status_code == 200
    assert "Inside Falcon" in page(client.get("/search/?q=falcon"))


def test_the_model_list_filters_by_institution_tag_task_and_license(
    client, member, outsider, institution, other_institution, publish_model
):
    publish_model(member, institution, name="Alpha", tags=["vision"], task="detection")
    publish_model(member, institution, name="Beta", tags=["nlp"], license="Apache-2.0")
    publish_model(outsider, other_institution, name="Gamma", tags=["vision"])

    def names(query: str) -> set[str]:
        html = page(client.get(f"/models/?{query}"))
        return {name for name in ["Alpha", "Beta", "Gamma"] if f">{name}</a>" in html}

    assert names("") == {"Alpha", "Beta", "Gamma"}
    assert names("institution=northbridge") == {"Alpha", "Beta"}
    assert names("tag=vision") == {"Alpha", "Gamma"}
    assert names("task=detection") == {"Alpha"}
    assert names("license=apache-2.0&institution=") == {"Beta"}


def test_a_model_card_is_rendered_from_markdown_without_scripts(
    client, member, institution, publish_model
):
    publish_model(
        member,
        institution,
        slug="carded",
        card="## Usage\n\n**Fast** <script>alert('x')</script> [docs](javascript:alert(1))",
    )
    html = page(client.get("/models/northbridge/carded/"))

    assert "<h2>Usage</h2>" in html and "<strong>Fast</strong>" in html
    assert "<script>alert" not in html
    assert "javascript:alert" not in html


def test_a_researcher_creates_a_model_through_the_form(client, member, institution):
    client.force_login(member)
    form = page(client.get("/models/new/"))
    assert "Northbridge University" in form

    response = client.post(
        "/models/new/",
        {
            "institution": institution.pk,
            "name": "Aurora Classifier",
            "slug": "aurora",
            "summary": "Classifies aurorae.",
            "card": "Trained on *sky* images.",
            "license": "apache-2.0",
            "task": "image-classification",
            "tags": "Vision, sky",
            "visibility": Visibility.PUBLIC,
        },
    )

    assert response.status_code == 302
    assert response["Location"] == "/models/northbridge/aurora/"
    model = ResearchModel.objects.get(slug="aurora")
    assert (model.license, model.created_by) == ("Apache-2.0", member)
    assert sorted(tag.name for tag in model.tags.all()) == ["sky", "vision"]
    assert "<em>sky</em>" in page(client.get(response["Location"]))


def test_the_model_form_explains_what_the_service_refuses_on_the_field(client, member, institution):
    client.force_login(member)
    html = page(
        client.post(
            "/models/new/",
            {
                "institution": institution.pk,
                "name": "Bad licence",
                "slug": "bad-licence",
                "license": "Not A Licence",
                "visibility": Visibility.PUBLIC,
            },
        )
    )

    assert field_errors(html, "license")
    assert not ResearchModel.objects.exists()


def test_only_editors_may_edit_a_model(client, member, outsider, public_model):
    client.force_login(outsider)
    assert client.get("/models/northbridge/aurora/edit/").status_code == 403
    assert "Edit model" not in page(client.get("/models/northbridge/aurora/"))

    client.force_login(member)
    assert "Edit model" in page(client.get("/models/northbridge/aurora/"))
    response = client.post(
        "/models/northbridge/aurora/edit/",
        {"name": "Aurora v2", "license": "MIT", "tags": "", "visibility": Visibility.PUBLIC},
    )
    assert response.status_code == 302
    assert ResearchModel.objects.get(pk=public_model.pk).name == "Aurora v2"


def test_uploading_a_version_without_javascript_shows_its_files_on_the_model_page(
    client, member, publish_model, institution, artifact_dir
):
    publish_model(member, institution, slug="aurora")
    client.force_login(member)
    content = safetensors_bytes(8)

    response = client.post(
        "/models/northbridge/aurora/versions/new/",
        version_form(
            "v1",
            weights("weights.safetensors", content),
            SimpleUploadedFile("old.pt", pickle_bytes()),
        ),
    )

    assert response.status_code == 302
    assert response["Location"] == "/models/northbridge/aurora/?version=v1"
    html = page(client.get("/models/northbridge/aurora/"))
    assert "Version v1" in html and "weights.safetensors" in html
    assert sha256_of(content) in html
    download = f"/api/v1/artifacts/{sha256_of(content)}/download?filename=weights.safetensors"
    assert f'href="{download}"' in html
    assert "unsafe: pickle" in html
    assert sha256_of(content) in stored_files(artifact_dir)


def test_another_version_is_shown_when_asked_for_by_label(client, member, public_model):
    older = store(member, safetensors_bytes(2), "older.safetensors")
    services.version_create(
        user=member, model=public_model, label="0.9", files=[("older.safetensors", older.sha256)]
    )
    assert "older.safetensors" not in page(client.get("/models/northbridge/aurora/"))
    assert client.get("/models/northbridge/aurora/?version=0.9").status_code == 404

    client.force_login(member)
    html = page(client.get("/models/northbridge/aurora/?version=0.9"))
    assert "older.safetensors" in html and "Publish version 0.9" in html


def test_a_label_already_used_is_refused_before_any_file_is_stored(
    client, member, public_model, artifact_dir
):
    client.force_login(member)
    before = stored_files(artifact_dir)

    html = page(
        client.post(
            "/models/northbridge/aurora/versions/new/",
            version_form("1.0", weights(content=safetensors_bytes(16))),
        )
    )

    assert "already has a version labelled “1.0”" in field_errors(html, "label")
    assert Artifact.objects.count() == 1
    assert stored_files(artifact_dir) == before


def test_an_oversized_file_is_refused_with_the_size_limit_and_nothing_is_kept(
    member, institution, publish_model, artifact_dir, settings
):
    publish_model(member, institution, slug="aurora")
    settings.ARTIFACT_MAX_BYTES = 1000
    # CSRF checks on, as in a browser: the refusal happens while the token is being read.
    client = Client(enforce_csrf_checks=True)
    client.force_login(member)
    client.get("/models/northbridge/aurora/versions/new/")

    response = client.post(
        "/models/northbridge/aurora/versions/new/",
        {
            **version_form("2.0", SimpleUploadedFile("huge.txt", b"x" * 5000)),
            "csrfmiddlewaretoken": client.cookies["csrftoken"].value,
        },
    )

    assert response.status_code == 413
    assert "larger than this node's limit of 1000\xa0bytes" in field_errors(
        response.content.decode(), "uploads"
    )
    assert not Artifact.objects.exists()
    assert stored_files(artifact_dir) == []
    assert not ModelVersion.objects.exists()


def test_an_upload_without_the_csrf_token_is_refused(member, public_model, artifact_dir):
    client = Client(enforce_csrf_checks=True)
    client.force_login(member)
    before = stored_files(artifact_dir)

    response = client.post(
        "/models/northbridge/aurora/versions/new/", version_form("2.0", weights(content=b"{}"))
    )

    assert response.status_code == 403
    assert stored_files(artifact_dir) == before


def test_files_already_sent_to_the_api_by_the_script_make_the_version(client, member, public_model):
    client.force_login(member)
    content = safetensors_bytes(32)
    assert upload(client, content, "big.safetensors").status_code == 201

    response = client.post(
        "/models/northbridge/aurora/versions/new/",
        version_form("2.0", uploaded=[f"big.safetensors:{sha256_of(content)}"]),
    )

    assert response.status_code == 302
    version = ModelVersion.objects.get(label="2.0")
    assert [(f.filename, f.artifact.sha256) for f in version.files.all()] == [
        ("big.safetensors", sha256_of(content))
    ]


def test_an_uploaded_file_the_user_cannot_read_is_refused(
    client, member, outsider, public_model, other_institution
):
    private = services.model_create(
        user=outsider, institution=other_institution, name="Private", slug="p",
        license="MIT", visibility="private",
    )  # fmt: skip
    secret = store(outsider, safetensors_bytes(64), "secret.safetensors")
    services.version_create(
        user=outsider, model=private, label="1", files=[("s.safetensors", secret.sha256)]
    )
    client.force_login(member)

    html = page(
        client.post(
            "/models/northbridge/aurora/versions/new/",
            version_form("2.0", uploaded=[f"stolen.safetensors:{secret.sha256}"]),
        )
    )

    assert "stolen.safetensors is not on this node" in html
    assert not ModelVersion.objects.filter(label="2.0").exists()


def test_only_editors_may_upload_versions(client, outsider, public_model):
    client.force_login(outsider)
    assert client.get("/models/northbridge/aurora/versions/new/").status_code == 403
    response = client.post("/models/northbridge/aurora/versions/new/", version_form("2", weights()))
    assert response.status_code == 403
    assert not ModelVersion.objects.filter(label="2").exists()


def test_a_draft_version_is_published_from_the_model_page(
    client, member, publish_model, institution
):
    publish_model(member, institution, slug="drafty")
    client.force_login(member)
    client.post(
        "/models/northbridge/drafty/versions/new/", version_form("v1", weights(), publish=False)
    )
    assert ModelVersion.objects.get(label="v1").published_at is None

    response = client.post("/models/northbridge/drafty/versions/v1/publish/")

    assert response.status_code == 302
    assert ModelVersion.objects.get(label="v1").published_at is not None


def test_a_bad_doi_is_explained_on_the_doi_field(client, member, institution):
    client.force_login(member)
    html = page(
        client.post(
            "/papers/new/",
            {
                "institution": institution.pk,
                "title": "Deep learning",
                "authors": "Yann LeCun | 0000-0002-1825-0097\nYoshua Bengio",
                "doi": "not-a-doi",
                "visibility": Visibility.PUBLIC,
            },
        )
    )

    assert "is not a DOI" in field_errors(html, "doi")
    assert not Paper.objects.exists()


def test_a_paper_with_authors_and_a_pdf_shows_its_links_and_bibtex(client, member, institution):
    client.force_login(member)
    response = client.post(
        "/papers/new/",
        {
            "institution": institution.pk,
            "title": "Deep learning",
            "authors": "Yann LeCun | https://orcid.org/0000-0002-1825-0097\nYoshua Bengio",
            "venue": "Nature",
            "year": 2015,
            "doi": "https://doi.org/10.1038/NATURE14539",
            "arxiv_id": "arXiv:2106.09685",
            "pdf": SimpleUploadedFile("paper.pdf", pdf_bytes()),
            "visibility": Visibility.PUBLIC,
        },
    )

    assert response.status_code == 302
    html = page(client.get(response["Location"]))
    assert 'href="https://orcid.org/0000-0002-1825-0097"' in html
    assert 'href="https://doi.org/10.1038/nature14539"' in html
    assert 'href="https://arxiv.org/abs/2106.09685"' in html
    assert f'href="/api/v1/artifacts/{sha256_of(pdf_bytes())}/download?filename=paper-' in html
    assert re.search(r'<textarea id="bibtex"[^>]*readonly>@article\{', html)


def test_a_file_that_is_not_a_pdf_is_refused_on_the_pdf_field(client, member, institution):
    client.force_login(member)
    html = page(
        client.post(
            "/papers/new/",
            {
                "institution": institution.pk,
                "title": "Not really a PDF",
                "pdf": SimpleUploadedFile("paper.pdf", safetensors_bytes()),
                "visibility": Visibility.PUBLIC,
            },
        )
    )
    assert field_errors(html, "pdf")
    assert not Paper.objects.exists()


BIBTEX = """
@article{lecun2015,
  title = {Deep learning},
  author = {LeCun, Yann and Bengio, Yoshua},
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
"""


def test_bibtex_import_lists_the_new_papers_and_each_bad_entry_by_key(client, member, institution):
    client.force_login(member)
    response = client.post(
        "/papers/import/",
        {"institution": institution.pk, "bibtex": BIBTEX, "visibility": Visibility.PUBLIC},
        follow=True,
    )

    html = page(response)
    assert response.redirect_chain == [("/papers/import/", 302)]
    assert "1 paper imported" in html and "Deep learning" in html
    assert "<code>baddoi</code>" in html and "not-a-doi" in html
    assert Paper.objects.count() == 1
    assert "Import report" not in page(client.get("/papers/import/"))


def test_bibtex_import_from_a_file(client, member, institution):
    client.force_login(member)
    client.post(
        "/papers/import/",
        {
            "institution": institution.pk,
            "file": SimpleUploadedFile("refs.bib", BIBTEX.encode()),
            "visibility": Visibility.PUBLIC,
        },
    )
    assert Paper.objects.filter(doi="10.1038/nature14539").exists()


def test_paper_list_filters_and_offers_the_same_selection_as_bibtex(client, member, institution):
    services.paper_create(user=member, institution=institution, title="Old", year=1999)
    services.paper_create(user=member, institution=institution, title="New", year=2024)

    html = page(client.get("/papers/?year=2024&institution=northbridge"))

    assert "New" in html and ">Old<" not in html
    assert 'href="/api/v1/papers/bibtex?year=2024&amp;institution=northbridge"' in html


def test_comments_are_posted_replied_to_and_removed(
    client, member, outsider, institution_admin, public_model
):
    client.force_login(member)
    response = client.post(
        "/models/northbridge/aurora/discussion/", {"body": "Nice **work** <script>x()</script>"}
    )
    comment = Comment.objects.get()
    assert response["Location"] == f"/models/northbridge/aurora/#comment-{comment.pk}"
    html = page(client.get("/models/northbridge/aurora/"))
    assert "Nice <strong>work</strong>" in html and "<script>x()" not in html

    client.force_login(outsider)
    client.post(
        "/models/northbridge/aurora/discussion/", {"body": "Which data?", "parent": comment.pk}
    )
    reply = Comment.objects.get(parent=comment)
    assert client.post(f"/discussion/{comment.pk}/remove/").status_code == 403

    client.force_login(member)
    client.post(f"/discussion/{comment.pk}/edit/", {"body": "Nice work, edited"})
    assert "Nice work, edited" in page(client.get("/models/northbridge/aurora/"))
    client.post(f"/discussion/{comment.pk}/remove/")
    html = page(client.get("/models/northbridge/aurora/"))
    assert "This comment was removed." in html and "Nice work" not in html
    assert "Which data?" in html

    client.force_login(institution_admin)
    client.post(f"/discussion/{reply.pk}/remove/")
    assert Comment.objects.get(pk=reply.pk).removed_at is not None


def test_anonymous_visitors_are_asked_to_log_in_to_comment(client, public_model):
    html = page(client.get("/models/northbridge/aurora/"))
    assert "to join the discussion" in html
    response = client.post("/models/northbridge/aurora/discussion/", {"body": "hi"})
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert not Comment.objects.exists()


def test_a_dataset_is_published_with_its_files(client, member, institution):
    client.force_login(member)
    content = b"a,b\n1,2\n"
    response = client.post(
        "/datasets/new/",
        {
            "institution": institution.pk,
            "name": "Sky images",
            "slug": "sky",
            "license": "CC-BY-4.0",
            "description": "Night *sky*.",
            "tags": "vision",
            "visibility": Visibility.PUBLIC,
            "uploads": [SimpleUploadedFile("train.csv", content)],
        },
    )

    assert response.status_code == 302
    html = page(client.get(response["Location"]))
    assert "train.csv" in html and sha256_of(content) in html and "<em>sky</em>" in html


def test_the_benchmark_form_explains_invalid_json_and_metrics(client, member, institution):
    dataset = services.dataset_create(
        user=member, institution=institution, name="Sky", slug="sky", license="MIT"
    )
    client.force_login(member)
    form = {
        "institution": institution.pk,
        "name": "Sky bench",
        "slug": "sky-bench",
        "task_type": "classification",
        "dataset": dataset.pk,
        "metrics": "accuracy higher\nlog loss lower",
        "evaluator": "onnx",
        "evaluator_config": '{"task": "classification", "data_file": }',
        "gpu_count": 1,
        "gpu_memory_gb": 16,
        "time_limit_minutes": 30,
        "memory_limit_mb": 2048,
        "visibility": Visibility.PUBLIC,
    }

    html = page(client.post("/benchmarks/new/", form))
    assert "This is not valid JSON" in field_errors(html, "evaluator_config")

    html = page(client.post("/benchmarks/new/", {**form, "metrics": "accuracy best"}))
    assert "Line 1" in field_errors(html, "metrics")

    html = page(client.post("/benchmarks/new/", {**form, "evaluator_config": '{"task": "x"}'}))
    assert field_errors(html, "evaluator_config")

    config = '{"task": "classification", "data_file": "test.npz"}'
    response = client.post("/benchmarks/new/", {**form, "evaluator_config": config})
    assert response.status_code == 302
    html = page(client.get(response["Location"]))
    assert "log loss" in html and "lower is better" in html


def test_search_lists_linked_results_with_counts_per_type_and_pages(
    client, member, institution, catalog_rows
):
    catalog_rows(3)
    for number in range(25):
        services.paper_create(user=member, institution=institution, title=f"Galaxy survey {number}")

    html = page(client.get("/search/?q=model"))
    assert 'href="/models/northbridge/row-model-0/"' in html
    assert "3 results" in html

    first = page(client.get("/search/?q=galaxy&type=paper&institution=&year="))
    assert "25 results" in first and "25 papers" in first and "Next" in first
    second = page(client.get("/search/?q=galaxy&type=paper&page=2"))
    assert "Previous" in second and "Galaxy survey" in second

    assert "No results" in page(client.get("/search/?q=nonexistentword"))


@pytest.mark.parametrize("path", ["/models/", "/papers/", "/datasets/", "/benchmarks/"])
def test_list_pages_query_the_database_a_fixed_number_of_times(client, catalog_rows, path):
    catalog_rows(1)
    with CaptureQueriesContext(connection) as few:
        page(client.get(path))
    catalog_rows(5)
    with CaptureQueriesContext(connection) as many:
        page(client.get(path))
    assert len(many) == len(few)


def test_a_benchmark_page_names_its_dataset_only_to_those_who_may_see_it(member, institution):
    data = store(member, safetensors_bytes(), "digits.safetensors")
    dataset = services.dataset_create(
        user=member, institution=institution, name="Held-out digits", slug="held-out",
        license="MIT", files=[("digits.safetensors", data.sha256)],
        visibility=Visibility.INSTITUTION,
    )  # fmt: skip
    benchmark = services.benchmark_create(
        user=member, institution=institution, name="Digits accuracy", slug="digits-accuracy",
        task_type="classification", dataset=dataset,
        metrics=[{"name": "accuracy", "higher_is_better": True}], evaluator="smoke",
    )  # fmt: skip
    url = f"/benchmarks/{benchmark.pk}/"

    anonymous = page(Client().get(url))
    assert "Held-out digits" not in anonymous and "not visible to you" in anonymous

    colleague = Client()
    colleague.force_login(member)
    assert "Held-out digits" in page(colleague.get(url))
