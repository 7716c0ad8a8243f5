import pytest

from apps.accounts.models import Institution
from tests.factories import InstitutionFactory

pytestmark = pytest.mark.django_db


def test_staff_creates_an_institution_with_a_normalised_ror_id(api_client, staff):
    api_client.force_authenticate(staff)
    response = api_client.post(
        "/api/v1/institutions/",
        {
            "name": "California Institute of Technology",
            "slug": "caltech",
            "country": "US",
            "website": "https://www.caltech.edu",
            "ror_id": "https://ror.org/05DXPS055",
        },
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["ror_id"] == "05dxps055"
    assert body["country_name"] == "United States of America"
    assert body["member_count"] == 0
    assert api_client.get("/api/v1/institutions/caltech/").json()["name"] == body["name"]


@pytest.mark.parametrize(
    ("ror_id", "reason"),
    [("05dxps056", "check digits"), ("not-a-ror", "not a ROR id"), ("15dxps055", "not a ROR id")],
)
def test_invalid_ror_id_is_refused(api_client, staff, ror_id, reason):
    api_client.force_authenticate(staff)
    response = api_client.post(
        "/api/v1/institutions/",
        {"name": "Lab", "slug": "lab", "country": "FR", "ror_id": ror_id},
    )
    assert response.status_code == 400
    assert reason in response.json()["error"]["fields"]["ror_id"][0]
    assert not Institution.objects.filter(slug="lab").exists()


def test_duplicate_slug_is_refused(api_client, staff, institution):
    api_client.force_authenticate(staff)
    response = api_client.post(
        "/api/v1/institutions/", {"name": "Another", "slug": "northbridge", "country": "GB"}
    )
    assert response.status_code == 400
    assert "slug" in response.json()["error"]["fields"]
    assert Institution.objects.filter(slug="northbridge").count() == 1


def test_duplicate_ror_id_is_refused(api_client, staff):
    InstitutionFactory(ror_id="05dxps055")
    api_client.force_authenticate(staff)
    response = api_client.post(
        "/api/v1/institutions/",
        {"name": "Copy", "slug": "copy", "country": "US", "ror_id": "05dxps055"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "ror_id": ["Another institution already has this ROR id."]
    }


def test_unknown_country_is_refused(api_client, staff):
    api_client.force_authenticate(staff)
    response = api_client.post(
        "/api/v1/institutions/", {"name": "Lab", "slug": "lab", "country": "XX"}
    )
    assert response.status_code == 400
    assert "country" in response.json()["error"]["fields"]


def test_institution_admin_edits_profile_but_not_slug(api_client, institution_admin, institution):
    api_client.force_authenticate(institution_admin)
    response = api_client.patch(
        "/api/v1/institutions/northbridge/",
        {"website": "https://ml.northbridge.example", "ror_id": "042nb2s44"},
    )
    assert response.status_code == 200
    assert response.json()["ror_id"] == "042nb2s44"

    refused = api_client.patch("/api/v1/institutions/northbridge/", {"slug": "renamed"})
    assert refused.status_code == 400
    assert refused.json()["error"]["fields"] == {"slug": ["Unknown field."]}
    institution.refresh_from_db()
    assert institution.slug == "northbridge"


def test_admin_of_one_institution_cannot_edit_another(
    api_client, institution_admin, other_institution
):
    api_client.force_authenticate(institution_admin)
    response = api_client.patch("/api/v1/institutions/rheinau/", {"name": "Taken over"})
    assert response.status_code == 403
    other_institution.refresh_from_db()
    assert other_institution.name == "Rheinau Institute"


def test_list_filters_by_country_and_name(api_client, institution, other_institution):
    by_country = api_client.get("/api/v1/institutions/?country=DE").json()["results"]
    assert [item["slug"] for item in by_country] == ["rheinau"]
    by_name = api_client.get("/api/v1/institutions/?search=northb").json()["results"]
    assert [item["slug"] for item in by_name] == ["northbridge"]


def test_list_is_paginated_with_a_bounded_page_size(api_client, db):
    InstitutionFactory.create_batch(30)
    first = api_client.get("/api/v1/institutions/").json()
    assert first["count"] == 30 and len(first["results"]) == 25 and first["next"]
    assert len(api_client.get("/api/v1/institutions/?page_size=500").json()["results"]) == 30
    assert len(api_client.get("/api/v1/institutions/?page_size=5&page=2").json()["results"]) == 5


@pytest.mark.parametrize("institutions", [1, 20])
def test_list_query_count_is_pinned(api_client, db, django_assert_num_queries, institutions):
    InstitutionFactory.create_batch(institutions)
    # savepoint, count, page (member counts annotated), release
    with django_assert_num_queries(4):
        api_client.get("/api/v1/institutions/")


def test_unknown_institution_is_a_404_in_the_error_format(api_client, db):
    response = api_client.get("/api/v1/institutions/nowhere/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
