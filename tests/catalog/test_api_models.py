"""Research models and their versions through the API."""

import pytest

from apps.accounts import services as account_services
from apps.catalog import services
from apps.catalog.models import ModelVersion, ResearchModel, Visibility
from tests.catalog.conftest import store
from tests.catalog.samples import pickle_bytes, safetensors_bytes
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def model_payload(**fields) -> dict:
    return {
        "institution": "northbridge",
        "name": "Tiny Tabular Classifier",
        "slug": "tiny-tabular",
        "summary": "Logistic regression on digits.",
        "card": "# Card\n\nTrained on **digits**.",
        "license": "apache-2.0",
        "task": "image-classification",
        "tags": ["vision", "tabular"],
        **fields,
    }


def test_a_member_publishes_a_model_for_their_institution(client_as):
    response = client_as("member").post("/api/v1/models/", model_payload(), format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["institution"] == "northbridge"
    assert body["license"] == "Apache-2.0"
    assert body["tags"] == ["tabular", "vision"]
    assert body["latest_version"] is None


def test_an_outsider_cannot_publish_for_another_institution(client_as):
    response = client_as("outsider").post("/api/v1/models/", model_payload(), format="json")
    assert response.status_code == 403
    assert ResearchModel.objects.count() == 0


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"license": "Not-A-License"}, "license"),
        ({"slug": "has spaces"}, "slug"),
        ({"tags": "vision"}, "tags"),
        ({"visibility": "secret"}, "visibility"),
        ({"institution": "nowhere"}, "institution"),
        ({"paper_ids": [999999]}, "paper_ids"),
    ],
)
def test_bad_model_input_names_the_field(client_as, fields, field):
    response = client_as("member").post("/api/v1/models/", model_payload(**fields), format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert ResearchModel.objects.count() == 0


def test_a_slug_is_unique_within_an_institution(client_as):
    client = client_as("member")
    client.post("/api/v1/models/", model_payload(), format="json")
    response = client.post("/api/v1/models/", model_payload(name="Again"), format="json")
    assert response.status_code == 400
    assert "already has a model with this slug" in response.json()["error"]["message"]


@pytest.fixture
def model(member, institution, publish_model):
    return publish_model(member, institution)


def test_a_version_is_created_from_uploads_and_published(client_as, model, member):
    weights = store(member, safetensors_bytes(), "model.safetensors")
    response = client_as("member").post(
        f"/api/v1/models/{model.pk}/versions/",
        {
            "label": "1.0",
            "release_notes": "First release.",
            "files": [{"filename": "model.safetensors", "sha256": weights.sha256}],
            "publish": True,
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    version = response.json()
    assert version["is_published"] is True
    assert version["files"][0]["artifact"]["sha256"] == weights.sha256
    detail = client_as("member").get(f"/api/v1/models/{model.pk}/").json()
    assert detail["latest_version"] == "1.0"


def test_a_published_version_never_changes(client_as, model, member):
    weights = store(member, safetensors_bytes(), "model.safetensors")
    more = store(member, safetensors_bytes(8), "extra.safetensors")
    services.version_create(
        user=member,
        model=model,
        label="1.0",
        files=[("model.safetensors", weights.sha256)],
        publish=True,
    )

    response = client_as("member").post(
        f"/api/v1/models/{model.pk}/versions/1.0/files/",
        {"filename": "extra.safetensors", "sha256": more.sha256},
        format="json",
    )

    assert response.status_code == 400
    assert "publish a new version" in response.json()["error"]["message"]
    assert ModelVersion.objects.get().files.count() == 1


def test_a_draft_collects_files_then_publishes(client_as, model, member):
    weights = store(member, safetensors_bytes(), "model.safetensors")
    client = client_as("member")
    client.post(f"/api/v1/models/{model.pk}/versions/", {"label": "2.0-rc1"}, format="json")

    empty = client.post(f"/api/v1/models/{model.pk}/versions/2.0-rc1/publish/")
    added = client.post(
        f"/api/v1/models/{model.pk}/versions/2.0-rc1/files/",
        {"filename": "model.safetensors", "sha256": weights.sha256},
        format="json",
    )
    published = client.post(f"/api/v1/models/{model.pk}/versions/2.0-rc1/publish/")

    assert empty.status_code == 400
    assert "at least one file" in empty.json()["error"]["message"]
    assert added.status_code == 201
    assert published.status_code == 200
    assert published.json()["is_published"] is True


def test_drafts_are_hidden_from_readers_who_cannot_edit(client_as, model, member):
    services.version_create(user=member, model=model, label="draft")

    as_member = client_as("member").get(f"/api/v1/models/{model.pk}/versions/").json()
    client_as("member").force_authenticate(None)
    as_outsider = client_as("outsider").get(f"/api/v1/models/{model.pk}/versions/").json()
    draft_url = f"/api/v1/models/{model.pk}/versions/draft/"

    assert [v["label"] for v in as_member] == ["draft"]
    assert as_outsider == []
    assert client_as("outsider").get(draft_url).status_code == 404


def test_the_latest_published_version_is_the_default(model, member, client_as):
    for label in ("1.0", "1.1"):
        weights = store(member, safetensors_bytes(len(label)), f"{label}.safetensors")
        services.version_create(
            user=member, model=model, label=label, files=[("w.safetensors", weights.sha256)],
            publish=True,
        )  # fmt: skip
    services.version_create(user=member, model=model, label="2.0-draft")

    listed = client_as("anonymous").get("/api/v1/models/").json()["results"][0]
    assert listed["latest_version"] == "1.1"


def test_unknown_artifacts_and_duplicate_names_are_refused(client_as, model, member):
    weights = store(member, safetensors_bytes(), "model.safetensors")
    files = [
        {"filename": "a.safetensors", "sha256": weights.sha256},
        {"filename": "a.safetensors", "sha256": weights.sha256},
    ]
    twice = client_as("member").post(
        f"/api/v1/models/{model.pk}/versions/", {"label": "1", "files": files}, format="json"
    )
    unknown = client_as("member").post(
        f"/api/v1/models/{model.pk}/versions/",
        {"label": "1", "files": [{"filename": "a.onnx", "sha256": "ab" * 32}]},
        format="json",
    )
    folder = client_as("member").post(
        f"/api/v1/models/{model.pk}/versions/",
        {"label": "1", "files": [{"filename": "../a.onnx", "sha256": weights.sha256}]},
        format="json",
    )

    assert "appears twice" in twice.json()["error"]["message"]
    assert "No artifact with sha256" in unknown.json()["error"]["message"]
    assert "not a plain file name" in folder.json()["error"]["message"]
    assert ModelVersion.objects.count() == 0


def test_pickle_files_are_marked_unsafe_in_the_version(client_as, model, member):
    checkpoint = store(member, pickle_bytes(), "model.pt")
    services.version_create(
        user=member, model=model, label="1", files=[("model.pt", checkpoint.sha256)], publish=True
    )
    version = client_as("anonymous").get(f"/api/v1/models/{model.pk}/versions/1/").json()
    assert version["files"][0]["artifact"]["unsafe"] is True


EDITORS = {"member", "institution_admin", "staff"}  # the creator is `member`


def test_only_editors_change_a_model(client_as, actors, model):
    for actor in actors:
        response = client_as(actor).patch(
            f"/api/v1/models/{model.pk}/", {"summary": f"by {actor}"}, format="json"
        )
        expected = 200 if actor in EDITORS else (401 if actor == "anonymous" else 403)
        assert (actor, response.status_code) == (actor, expected)
        client_as(actor).force_authenticate(None)


@pytest.mark.parametrize(
    ("visibility", "readers"),
    [
        (Visibility.PUBLIC, {"anonymous", "outsider", "member", "institution_admin", "staff"}),
        (Visibility.INSTITUTION, {"member", "institution_admin", "staff"}),
        (Visibility.PRIVATE, {"member", "institution_admin", "staff"}),
    ],
)
def test_models_are_listed_and_shown_by_visibility(
    client_as, actors, member, institution, publish_model, visibility, readers
):
    model = publish_model(member, institution, visibility=visibility)
    for actor in actors:
        client = client_as(actor)
        listed = [m["id"] for m in client.get("/api/v1/models/").json()["results"]]
        detail = client.get(f"/api/v1/models/{model.pk}/").status_code
        visible = actor in readers
        assert (actor, model.pk in listed, detail) == (actor, visible, 200 if visible else 404)
        client.force_authenticate(None)


def test_a_model_is_found_by_its_institution_and_slug(
    client_as, member, institution, other_institution, publish_model
):
    wanted = publish_model(member, institution, slug="aurora")
    publish_model(member, institution, slug="aurora-large")
    elsewhere = MembershipFactory(institution=other_institution).user
    publish_model(elsewhere, other_institution, slug="aurora")
    client = client_as("member")
    found = client.get("/api/v1/models/", {"institution": "northbridge", "slug": "aurora"}).json()
    assert [row["id"] for row in found["results"]] == [wanted.pk]


def test_a_private_model_is_hidden_from_other_members(
    client_as, institution, publish_model, institution_admin
):
    from tests.factories import MembershipFactory

    colleague = MembershipFactory(institution=institution).user
    model = publish_model(institution_admin, institution, visibility=Visibility.PRIVATE)
    client = client_as("anonymous")
    client.force_authenticate(colleague)
    assert client.get(f"/api/v1/models/{model.pk}/").status_code == 404


def test_linked_papers_the_reader_cannot_see_are_left_out(client_as, member, institution, model):
    public = services.paper_create(user=member, institution=institution, title="Open paper")
    private = services.paper_create(
        user=member, institution=institution, title="Draft paper", visibility=Visibility.PRIVATE
    )
    services.model_update(user=member, model=model, paper_ids=[public.pk, private.pk])

    as_outsider = client_as("outsider").get(f"/api/v1/models/{model.pk}/").json()
    client_as("outsider").force_authenticate(None)
    as_member = client_as("member").get(f"/api/v1/models/{model.pk}/").json()

    assert [p["name"] for p in as_outsider["papers"]] == ["Open paper"]
    assert sorted(p["name"] for p in as_member["papers"]) == ["Draft paper", "Open paper"]


# The transaction's savepoint and release, the page count, the page, and one prefetch per
# relation shown (tags; authors; tags and files).
LIST_QUERIES = {"models": 5, "papers": 5, "datasets": 6, "benchmarks": 5}


@pytest.mark.parametrize(("endpoint", "queries"), LIST_QUERIES.items())
def test_list_query_count_is_pinned_and_does_not_grow_with_rows(
    endpoint, queries, client_as, django_assert_num_queries, catalog_rows
):
    client = client_as("member")
    catalog_rows(1)
    with django_assert_num_queries(queries):
        client.get(f"/api/v1/{endpoint}/")
    catalog_rows(19)
    with django_assert_num_queries(queries):
        response = client.get(f"/api/v1/{endpoint}/")
    assert response.json()["count"] == 20


def test_a_list_count_is_cached_until_the_next_write(
    client_as, catalog_rows, member, institution, django_assert_num_queries
):
    client = client_as("anonymous")
    catalog_rows(2)
    client.get("/api/v1/papers/")
    with django_assert_num_queries(LIST_QUERIES["papers"] - 1):  # no COUNT
        assert client.get("/api/v1/papers/").json()["count"] == 2

    services.paper_create(user=member, institution=institution, title="One more")
    assert client.get("/api/v1/papers/").json()["count"] == 3

    services.paper_create(
        user=member, institution=institution, title="Internal", visibility=Visibility.INSTITUTION
    )
    newcomer = UserFactory()
    client.force_authenticate(newcomer)
    assert client.get("/api/v1/papers/").json()["count"] == 3
    account_services.membership_add(institution=institution, user=newcomer)
    assert client.get("/api/v1/papers/").json()["count"] == 4


def test_model_detail_query_count_does_not_grow_with_versions(
    client_as, model, member, django_assert_num_queries
):
    # savepoint, model, tags, versions, files, papers, benchmarks, release
    client = client_as("anonymous")
    for label in ("1.0", "1.1", "2.0"):
        weights = store(member, safetensors_bytes(len(label) + 3), f"{label}.safetensors")
        services.version_create(
            user=member, model=model, label=label, files=[("w.safetensors", weights.sha256)],
            publish=True,
        )  # fmt: skip
        with django_assert_num_queries(8):
            assert client.get(f"/api/v1/models/{model.pk}/").status_code == 200


@pytest.mark.parametrize("label", ["", "1.0/beta", "a b", "x" * 65])
def test_a_version_label_must_fit_in_a_url(client_as, model, label):
    response = client_as("member").post(
        f"/api/v1/models/{model.pk}/versions/", {"label": label}, format="json"
    )
    assert response.status_code == 400
    assert "label" in response.json()["error"]["fields"]
    assert ModelVersion.objects.count() == 0
