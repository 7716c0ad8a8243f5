"""Who may do what, tried from the outside for every endpoint of the accounts API.

Actors: anonymous, a member of another institution (outsider), a member, an admin of the
institution, and platform staff.
"""

import pytest

from apps.accounts.models import ApiToken, Membership
from tests.factories import MembershipFactory, UserFactory

ACTORS = ["anonymous", "outsider", "member", "institution_admin", "staff"]


def expected(table: dict[str, int]) -> list:
    return [pytest.param(actor, table[actor], id=actor) for actor in ACTORS]


pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("actor", "status"),
    expected(
        {"anonymous": 401, "outsider": 200, "member": 200, "institution_admin": 200, "staff": 200}
    ),
)
def test_me(client_as, actor, status):
    response = client_as(actor).get("/api/v1/me/")
    assert response.status_code == status


@pytest.mark.parametrize("actor", ACTORS)
def test_institution_list_and_detail_are_public(client_as, actor, institution):
    client = client_as(actor)
    listing = client.get("/api/v1/institutions/")
    assert listing.status_code == 200
    assert "northbridge" in [item["slug"] for item in listing.json()["results"]]
    assert client.get("/api/v1/institutions/northbridge/").status_code == 200


@pytest.mark.parametrize(
    ("actor", "status"),
    expected(
        {"anonymous": 401, "outsider": 403, "member": 403, "institution_admin": 403, "staff": 201}
    ),
)
def test_create_institution(client_as, actor, status):
    response = client_as(actor).post(
        "/api/v1/institutions/", {"name": "New Lab", "slug": "new-lab", "country": "FR"}
    )
    assert response.status_code == status, response.json()


@pytest.mark.parametrize(
    ("actor", "status"),
    expected(
        {"anonymous": 401, "outsider": 403, "member": 403, "institution_admin": 200, "staff": 200}
    ),
)
def test_update_institution(client_as, actor, status, institution):
    response = client_as(actor).patch(
        "/api/v1/institutions/northbridge/", {"description": "Edited"}
    )
    assert response.status_code == status
    institution.refresh_from_db()
    assert (institution.description == "Edited") == (status == 200)


@pytest.mark.parametrize("actor", ACTORS)
def test_member_list_is_public(client_as, actor, member):
    response = client_as(actor).get("/api/v1/institutions/northbridge/members/")
    assert response.status_code == 200
    assert member.username in [item["username"] for item in response.json()["results"]]


@pytest.mark.parametrize(
    ("actor", "status"),
    expected(
        {"anonymous": 401, "outsider": 403, "member": 403, "institution_admin": 201, "staff": 201}
    ),
)
def test_add_member(client_as, actor, status, institution):
    newcomer = UserFactory(username="newcomer")
    response = client_as(actor).post(
        "/api/v1/institutions/northbridge/members/", {"username": "newcomer"}
    )
    assert response.status_code == status
    assert Membership.objects.filter(user=newcomer, institution=institution).exists() == (
        status == 201
    )


@pytest.mark.parametrize(
    ("actor", "status"),
    expected(
        {"anonymous": 401, "outsider": 403, "member": 403, "institution_admin": 200, "staff": 200}
    ),
)
def test_change_member_role(client_as, actor, status, institution):
    target = MembershipFactory(institution=institution, user__username="target")
    response = client_as(actor).patch(
        "/api/v1/institutions/northbridge/members/target/", {"role": "admin"}
    )
    assert response.status_code == status
    target.refresh_from_db()
    assert (target.role == Membership.Role.ADMIN) == (status == 200)


@pytest.mark.parametrize(
    ("actor", "status"),
    expected(
        {"anonymous": 401, "outsider": 403, "member": 403, "institution_admin": 204, "staff": 204}
    ),
)
def test_remove_member(client_as, actor, status, institution):
    target = MembershipFactory(institution=institution, user__username="target")
    response = client_as(actor).delete("/api/v1/institutions/northbridge/members/target/")
    assert response.status_code == status
    assert Membership.objects.filter(pk=target.pk).exists() == (status != 204)


@pytest.mark.parametrize(
    ("actor", "status"),
    expected(
        {"anonymous": 401, "outsider": 200, "member": 200, "institution_admin": 200, "staff": 200}
    ),
)
def test_token_list_shows_only_own_tokens(client_as, actors, actor, status):
    someone_else = UserFactory()
    ApiToken.objects.create(user=someone_else, name="theirs", prefix="rxp_x", key_hash="0" * 64)
    response = client_as(actor).get("/api/v1/tokens/")
    assert response.status_code == status
    if status == 200:
        assert [item["name"] for item in response.json()["results"]] == []


@pytest.mark.parametrize(
    ("actor", "status"),
    expected(
        {"anonymous": 401, "outsider": 404, "member": 404, "institution_admin": 404, "staff": 404}
    ),
)
def test_nobody_can_see_or_revoke_another_users_token(client_as, actor, status):
    theirs = ApiToken.objects.create(
        user=UserFactory(), name="theirs", prefix="rxp_x", key_hash="1" * 64
    )
    client = client_as(actor)
    assert client.get(f"/api/v1/tokens/{theirs.pk}/").status_code == status
    assert client.delete(f"/api/v1/tokens/{theirs.pk}/").status_code == status
    theirs.refresh_from_db()
    assert theirs.revoked_at is None
