import pytest

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_me_shows_profile_and_memberships(api_client, institution_admin):
    api_client.force_authenticate(institution_admin)
    body = api_client.get("/api/v1/me/").json()
    assert body["username"] == institution_admin.username
    assert body["memberships"] == [
        {
            "institution": "northbridge",
            "institution_name": "Northbridge University",
            "role": "admin",
        }
    ]


def test_orcid_is_validated_by_checksum_and_stored_canonically(api_client, member):
    api_client.force_authenticate(member)
    response = api_client.patch("/api/v1/me/", {"orcid": "https://orcid.org/0000-0002-1694-233x"})
    assert response.status_code == 200
    assert response.json()["orcid"] == "0000-0002-1694-233X"

    refused = api_client.patch("/api/v1/me/", {"orcid": "0000-0002-1825-0098"})
    assert refused.status_code == 400
    assert "check digit" in refused.json()["error"]["fields"]["orcid"][0]
    member.refresh_from_db()
    assert member.orcid == "0000-0002-1694-233X"


def test_an_orcid_belongs_to_one_account(api_client, member):
    UserFactory(orcid="0000-0002-1825-0097")
    api_client.force_authenticate(member)
    response = api_client.patch("/api/v1/me/", {"orcid": "0000-0002-1825-0097"})
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "orcid": ["This ORCID iD is already linked to another account."]
    }
    member.refresh_from_db()
    assert member.orcid == ""


def test_orcid_can_be_cleared(api_client, member):
    member.orcid = "0000-0002-1825-0097"
    member.save()
    api_client.force_authenticate(member)
    assert api_client.patch("/api/v1/me/", {"orcid": ""}).json()["orcid"] == ""


def test_invalid_email_is_refused_and_nothing_changes(api_client, member):
    api_client.force_authenticate(member)
    response = api_client.patch("/api/v1/me/", {"first_name": "New", "email": "not-an-email"})
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["email"]
    member.refresh_from_db()
    assert member.first_name != "New"
