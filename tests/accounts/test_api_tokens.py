"""Personal API tokens: shown once, stored hashed, scoped, expiring, revocable, use recorded."""

import hashlib
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.models import ApiToken
from tests.factories import api_token_for

pytestmark = pytest.mark.django_db


def bearer(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_created_token_is_shown_once_and_stored_only_as_its_hash(api_client, member):
    api_client.force_login(member)
    response = api_client.post("/api/v1/tokens/", {"name": "lab CI", "scope": "read_write"})
    assert response.status_code == 201
    secret = response.json()["secret"]
    assert secret.startswith("rxp_") and len(secret) > 40

    token = ApiToken.objects.get(user=member)
    assert token.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in {token.key_hash, token.prefix, token.name}
    assert secret.startswith(token.prefix)

    listed = api_client.get("/api/v1/tokens/").json()["results"]
    detail = api_client.get(f"/api/v1/tokens/{token.pk}/").json()
    assert "secret" not in listed[0] and "secret" not in detail
    assert secret not in str(listed) + str(detail)


def test_token_authenticates_its_owner(member):
    response = bearer(api_token_for(member, scope="read")).get("/api/v1/me/")
    assert response.status_code == 200
    assert response.json()["username"] == member.username


def test_read_token_cannot_write_but_read_write_token_can(member):
    read_only = bearer(api_token_for(member, scope="read"))
    refused = read_only.patch("/api/v1/me/", {"first_name": "Changed"})
    assert refused.status_code == 403
    assert "read-only" in refused.json()["error"]["message"]
    member.refresh_from_db()
    assert member.first_name != "Changed"

    read_write = bearer(api_token_for(member, scope="read_write"))
    assert read_write.patch("/api/v1/me/", {"first_name": "Changed"}).status_code == 200
    member.refresh_from_db()
    assert member.first_name == "Changed"


def test_read_token_cannot_revoke_tokens_either(member):
    secret = api_token_for(member, scope="read")
    token = ApiToken.objects.get(user=member)
    assert bearer(secret).delete(f"/api/v1/tokens/{token.pk}/").status_code == 403
    token.refresh_from_db()
    assert token.revoked_at is None


def test_expired_token_is_refused(member):
    secret = api_token_for(member, expires_at=timezone.now() + timedelta(seconds=1))
    ApiToken.objects.filter(user=member).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = bearer(secret).get("/api/v1/me/")
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "This API token has expired."
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_expiry_in_the_past_is_refused_at_creation(api_client, member):
    api_client.force_login(member)
    response = api_client.post(
        "/api/v1/tokens/", {"name": "old", "expires_at": "2001-01-01T00:00:00Z"}
    )
    assert response.status_code == 400
    assert "expires_at" in response.json()["error"]["fields"]
    assert not ApiToken.objects.filter(user=member).exists()


def test_revoked_token_is_refused(api_client, member):
    secret = api_token_for(member)
    token = ApiToken.objects.get(user=member)
    api_client.force_login(member)
    assert api_client.delete(f"/api/v1/tokens/{token.pk}/").status_code == 204
    token.refresh_from_db()
    assert token.revoked_at is not None
    response = bearer(secret).get("/api/v1/me/")
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "This API token has been revoked."


def test_a_token_can_revoke_itself(member):
    secret = api_token_for(member, scope="read_write")
    token = ApiToken.objects.get(user=member)
    assert bearer(secret).delete(f"/api/v1/tokens/{token.pk}/").status_code == 204
    assert bearer(secret).get("/api/v1/me/").status_code == 401


def test_unknown_and_malformed_tokens_are_refused(member):
    assert bearer("rxp_not-a-real-token").get("/api/v1/me/").status_code == 401
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer two parts")
    response = client.get("/api/v1/me/")
    assert response.status_code == 401
    assert "Malformed" in response.json()["error"]["message"]


def test_token_of_a_disabled_account_is_refused(member):
    secret = api_token_for(member)
    member.is_active = False
    member.save()
    assert bearer(secret).get("/api/v1/me/").status_code == 401


def test_last_used_time_is_recorded(member):
    secret = api_token_for(member, scope="read")
    token = ApiToken.objects.get(user=member)
    assert token.last_used_at is None
    before = timezone.now()
    bearer(secret).get("/api/v1/institutions/")
    token.refresh_from_db()
    assert token.last_used_at is not None and token.last_used_at >= before


def test_tokens_cannot_mint_tokens(member):
    response = bearer(api_token_for(member, scope="read_write")).post(
        "/api/v1/tokens/", {"name": "another"}
    )
    assert response.status_code == 403
    assert ApiToken.objects.filter(user=member).count() == 1


def test_default_scope_is_read_only(api_client, member):
    api_client.force_login(member)
    response = api_client.post("/api/v1/tokens/", {"name": "reader"})
    assert response.status_code == 201
    assert response.json()["scope"] == "read"
