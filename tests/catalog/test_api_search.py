"""Ranked full-text search across the catalogue (PostgreSQL: the generated search vectors)."""

import pytest

from apps.catalog import services
from apps.catalog.models import Visibility

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalogue(member, institution, outsider, other_institution, publish_model):
    title_hit = services.paper_create(
        user=member, institution=institution, title="Protein folding with transformers", year=2021,
        abstract="We study structure prediction.",
    )  # fmt: skip
    abstract_hit = services.paper_create(
        user=member, institution=institution, title="Learning rates revisited", year=2019,
        abstract="Among the applications is protein structure.",
    )  # fmt: skip
    model = publish_model(
        member, institution, name="ProteinNet", summary="Folds proteins.", task="structure",
        tags=["biology"],
    )  # fmt: skip
    private = publish_model(
        outsider, other_institution, name="Secret protein model", visibility=Visibility.PRIVATE
    )
    return {
        "title_hit": title_hit,
        "abstract_hit": abstract_hit,
        "model": model,
        "private": private,
    }


def hits(response) -> list[tuple[str, int]]:
    assert response.status_code == 200, response.json()
    return hits_of(response.json())


def hits_of(body: dict) -> list[tuple[str, int]]:
    return [(hit["type"], hit["id"]) for hit in body["results"]]


def test_search_ranks_title_matches_above_abstract_matches(api_client, catalogue):
    found = hits(api_client.get("/api/v1/search/?q=protein&type=paper"))
    assert found == [("paper", catalogue["title_hit"].pk), ("paper", catalogue["abstract_hit"].pk)]


def test_search_spans_types_and_stems_words(api_client, catalogue):
    body = api_client.get("/api/v1/search/?q=proteins").json()
    assert body["counts"] == {"model": 1, "paper": 2, "dataset": 0, "benchmark": 0}
    assert ("model", catalogue["model"].pk) in hits(api_client.get("/api/v1/search/?q=proteins"))


def test_search_respects_visibility(client_as, catalogue):
    secret = ("model", catalogue["private"].pk)
    assert secret not in hits(client_as("anonymous").get("/api/v1/search/?q=secret"))
    assert secret not in hits(client_as("member").get("/api/v1/search/?q=secret"))
    client_as("member").force_authenticate(None)
    assert secret in hits(client_as("outsider").get("/api/v1/search/?q=secret"))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("q=protein&year=2019", {"abstract_hit"}),
        ("q=protein&tag=biology", {"model"}),
        ("q=protein&task=structure", {"model"}),
        ("q=protein&institution=rheinau", set()),
        ("q=protein&type=model&type=paper&license=MIT", {"model"}),
    ],
)
def test_search_filters(api_client, catalogue, query, expected):
    found = set(hits(api_client.get(f"/api/v1/search/?{query}")))
    keys = {(record._meta.model_name, record.pk): key for key, record in catalogue.items()}
    assert {keys[(kind.replace("model", "researchmodel"), pk)] for kind, pk in found} == expected


def test_the_search_index_follows_edits(api_client, member, catalogue):
    services.model_update(user=member, model=catalogue["model"], name="FoldMaster")
    assert ("model", catalogue["model"].pk) in hits(api_client.get("/api/v1/search/?q=foldmaster"))


def test_quoted_phrases_and_exclusions_work(api_client, catalogue):
    phrase = hits(api_client.get('/api/v1/search/?q="protein folding"'))
    excluded = hits(api_client.get("/api/v1/search/?q=protein -revisited&type=paper"))
    assert phrase == [("paper", catalogue["title_hit"].pk)]
    assert excluded == [("paper", catalogue["title_hit"].pk)]


@pytest.mark.parametrize(
    ("query", "field"),
    [("", "q"), ("q=x&type=people", "type"), ("q=x&page=0", "page"), ("q=x&year=abc", "year")],
)
def test_bad_search_parameters_are_explained(api_client, query, field):
    response = api_client.get(f"/api/v1/search/?{query}")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_common_words_are_counted_and_ranked_among_the_newest_matches_only(
    api_client, catalogue, monkeypatch
):
    from apps.catalog import selectors

    monkeypatch.setattr(selectors, "SEARCH_RANKED_CANDIDATES", 1)
    body = api_client.get("/api/v1/search/?q=protein&type=paper").json()

    assert body["counts"]["paper"] == 1
    # The title match ranks higher, but only the newest match was a candidate.
    assert hits_of(body) == [("paper", catalogue["abstract_hit"].pk)]
