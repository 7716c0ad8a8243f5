"""Institution admins manage their institution and its members in the portal."""

import pytest

from apps.accounts.models import Membership
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

MANAGE = "/institutions/northbridge/manage/"


@pytest.mark.parametrize(
    ("actor", "status"),
    [("member", 403), ("outsider", 403), ("institution_admin", 200), ("staff", 200)],
)
def test_manage_page_is_for_institution_admins_and_staff(client, actors, actor, status):
    client.force_login(actors[actor])
    assert client.get(MANAGE).status_code == status


def test_manage_page_requires_login(client, institution):
    assert client.get(MANAGE)["Location"].startswith("/login/")


def test_admin_edits_the_institution_profile(client, institution_admin, institution):
    client.force_login(institution_admin)
    form = {
        "name": "Northbridge ML",
        "country": "GB",
        "website": "",
        "ror_id": "https://ror.org/042nb2s44",
        "description": "Vision.",
    }
    response = client.post(MANAGE, form, follow=True)
    assert "Northbridge ML has been saved." in response.content.decode()
    institution.refresh_from_db()
    assert (institution.name, institution.ror_id) == ("Northbridge ML", "042nb2s44")


def test_invalid_ror_id_is_explained_and_nothing_saved(client, institution_admin, institution):
    client.force_login(institution_admin)
    response = client.post(MANAGE, {"name": "Renamed", "country": "GB", "ror_id": "05dxps056"})
    assert response.status_code == 200
    assert "check digits do not match" in response.content.decode()
    institution.refresh_from_db()
    assert institution.name == "Northbridge University"


def test_admin_adds_promotes_and_removes_members(client, institution_admin, institution):
    UserFactory(username="newcomer", first_name="New", last_name="Comer")
    client.force_login(institution_admin)

    added = client.post(
        "/institutions/northbridge/members/add/", {"username": "newcomer", "role": "member"},
        follow=True,
    )  # fmt: skip
    assert "New Comer has been added." in added.content.decode()

    client.post("/institutions/northbridge/members/newcomer/role/", {"role": "admin"})
    assert Membership.objects.get(user__username="newcomer").role == "admin"

    client.post("/institutions/northbridge/members/newcomer/remove/")
    assert not Membership.objects.filter(user__username="newcomer").exists()


def test_unknown_user_and_last_admin_errors_are_shown(client, institution_admin):
    client.force_login(institution_admin)
    unknown = client.post(
        "/institutions/northbridge/members/add/", {"username": "ghost", "role": "member"},
        follow=True,
    )  # fmt: skip
    assert "There is no active user named &#x27;ghost&#x27;." in unknown.content.decode()

    last_admin = client.post(
        f"/institutions/northbridge/members/{institution_admin.username}/remove/", follow=True
    )
    assert "must keep at least one admin" in last_admin.content.decode()
    assert Membership.objects.filter(user=institution_admin).exists()


def test_member_of_another_institution_cannot_manage_members(client, outsider, institution):
    target = MembershipFactory(institution=institution, user__username="target")
    client.force_login(outsider)
    assert client.post("/institutions/northbridge/members/target/remove/").status_code == 403
    assert (
        client.post(
            "/institutions/northbridge/members/add/", {"username": outsider.username}
        ).status_code
        == 403
    )
    assert Membership.objects.filter(pk=target.pk).exists()
    assert not Membership.objects.filter(user=outsider, institution=institution).exists()
