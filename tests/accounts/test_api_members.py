import pytest

from apps.accounts.models import Membership
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

MEMBERS = "/api/v1/institutions/northbridge/members/"


def test_admin_adds_promotes_and_removes_a_member(api_client, institution_admin, institution):
    UserFactory(username="newcomer", orcid="0000-0002-1825-0097")
    api_client.force_authenticate(institution_admin)

    added = api_client.post(MEMBERS, {"username": "newcomer"})
    assert added.status_code == 201
    assert added.json()["role"] == "member"
    assert added.json()["orcid"] == "0000-0002-1825-0097"
    assert "email" not in added.json()

    promoted = api_client.patch(f"{MEMBERS}newcomer/", {"role": "admin"})
    assert promoted.json()["role"] == "admin"

    assert api_client.delete(f"{MEMBERS}newcomer/").status_code == 204
    assert not Membership.objects.filter(user__username="newcomer").exists()


def test_adding_an_unknown_user_names_them(api_client, institution_admin):
    api_client.force_authenticate(institution_admin)
    response = api_client.post(MEMBERS, {"username": "ghost"})
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["username"] == [
        "There is no active user named 'ghost'."
    ]


def test_adding_a_member_twice_is_refused(api_client, institution_admin, member):
    api_client.force_authenticate(institution_admin)
    response = api_client.post(MEMBERS, {"username": member.username})
    assert response.status_code == 400
    assert "already a member" in response.json()["error"]["message"]
    assert Membership.objects.filter(user=member).count() == 1


def test_invalid_role_is_refused(api_client, institution_admin, member):
    api_client.force_authenticate(institution_admin)
    response = api_client.patch(f"{MEMBERS}{member.username}/", {"role": "owner"})
    assert response.status_code == 400
    assert "role" in response.json()["error"]["fields"]


def test_the_last_admin_can_be_neither_demoted_nor_removed(api_client, institution_admin):
    api_client.force_authenticate(institution_admin)
    demoted = api_client.patch(f"{MEMBERS}{institution_admin.username}/", {"role": "member"})
    assert demoted.status_code == 400
    assert "at least one admin" in demoted.json()["error"]["message"]
    removed = api_client.delete(f"{MEMBERS}{institution_admin.username}/")
    assert removed.status_code == 400
    assert Membership.objects.get(user=institution_admin).role == Membership.Role.ADMIN


def test_an_admin_can_step_down_once_another_admin_exists(
    api_client, institution_admin, institution
):
    MembershipFactory(institution=institution, role=Membership.Role.ADMIN)
    api_client.force_authenticate(institution_admin)
    response = api_client.patch(f"{MEMBERS}{institution_admin.username}/", {"role": "member"})
    assert response.status_code == 200


def test_member_of_another_institution_is_not_found_here(api_client, outsider):
    assert api_client.get(f"{MEMBERS}{outsider.username}/").status_code == 404


@pytest.mark.parametrize("members", [1, 20])
def test_member_list_query_count_is_pinned(
    api_client, institution, django_assert_num_queries, members
):
    MembershipFactory.create_batch(members, institution=institution)
    # savepoint, institution, count, page (users joined), release
    with django_assert_num_queries(5):
        api_client.get(MEMBERS)
