"""Platform staff run institutions, users and tokens from the Django admin."""

import pytest

from apps.accounts.models import ApiToken
from tests.factories import api_token_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser_client(client, staff):
    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    return client


def test_admin_pages_open(superuser_client, institution, member):
    api_token_for(member)
    token = ApiToken.objects.get()
    for url in [
        "/admin/accounts/institution/",
        f"/admin/accounts/institution/{institution.pk}/change/",
        "/admin/accounts/user/",
        f"/admin/accounts/user/{member.pk}/change/",
        "/admin/accounts/apitoken/",
        f"/admin/accounts/apitoken/{token.pk}/change/",
    ]:
        assert superuser_client.get(url).status_code == 200, url


def test_staff_cannot_create_tokens_for_others(superuser_client):
    assert superuser_client.get("/admin/accounts/apitoken/add/").status_code == 403


def test_revoke_action_revokes_selected_tokens(superuser_client, member):
    api_token_for(member)
    token = ApiToken.objects.get()
    response = superuser_client.post(
        "/admin/accounts/apitoken/",
        {"action": "revoke", "_selected_action": [token.pk]},
        follow=True,
    )
    assert "Revoked 1 token(s)." in response.content.decode()
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_token_hash_is_not_editable_in_admin(superuser_client, member):
    api_token_for(member)
    token = ApiToken.objects.get()
    page = superuser_client.get(f"/admin/accounts/apitoken/{token.pk}/change/").content.decode()
    assert 'name="key_hash"' not in page
