"""The portal, as a researcher uses it in a browser without JavaScript."""

import pytest
from django.test import Client

from apps.accounts.models import ApiToken
from tests.factories import PASSWORD, InstitutionFactory, MembershipFactory, api_token_for

pytestmark = pytest.mark.django_db


def test_login_and_logout(member):
    client = Client(enforce_csrf_checks=False)
    response = client.post(
        "/login/", {"username": member.username, "password": PASSWORD}, follow=True
    )
    assert response.redirect_chain[-1][0] == "/"
    assert member.display_name in response.content.decode()
    assert client.post("/logout/", follow=True).status_code == 200
    assert "Log in" in client.get("/").content.decode()


def test_wrong_password_shows_an_error_and_does_not_sign_in(client, member):
    response = client.post("/login/", {"username": member.username, "password": "nope"})
    assert response.status_code == 200
    assert "correct username and password" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_home_and_institution_pages_are_public(client, member, institution):
    home = client.get("/").content.decode()
    assert "Northbridge University" in home
    listing = client.get("/institutions/").content.decode()
    assert 'href="/institutions/northbridge/"' in listing
    detail = client.get("/institutions/northbridge/").content.decode()
    assert member.display_name in detail
    assert member.email not in detail


def test_institution_search_filters_by_name(client, institution, other_institution):
    page = client.get("/institutions/?q=rhein").content.decode()
    assert "Rheinau Institute" in page and "Northbridge University" not in page


def test_institution_list_is_paginated(client, db):
    InstitutionFactory.create_batch(30)
    page = client.get("/institutions/?page=2").content.decode()
    assert "Page 2 of 2" in page


def test_unknown_institution_page_is_a_404(client, db):
    assert client.get("/institutions/nowhere/").status_code == 404


def test_only_managers_are_offered_the_manage_page(client, institution_admin, member, staff):
    manage_link = 'href="/institutions/northbridge/manage/"'
    client.force_login(member)
    assert manage_link not in client.get("/institutions/northbridge/").content.decode()
    for manager in [institution_admin, staff]:
        client.force_login(manager)
        assert manage_link in client.get("/institutions/northbridge/").content.decode()


def test_profile_requires_login(client, db):
    response = client.get("/account/profile/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=/account/profile/")


def test_profile_saves_a_valid_orcid_and_explains_an_invalid_one(client, member):
    client.force_login(member)
    page = client.get("/account/profile/").content.decode()
    assert 'for="id_orcid"' in page and "Northbridge University" in page

    invalid = client.post(
        "/account/profile/",
        {
            "first_name": "Ada",
            "last_name": "L",
            "email": "ada@example.org",
            "orcid": "0000-0002-1825-0098",
        },
    )
    assert invalid.status_code == 200
    assert "check digit does not match" in invalid.content.decode()
    member.refresh_from_db()
    assert member.orcid == "" and member.first_name != "Ada"

    saved = client.post(
        "/account/profile/",
        {
            "first_name": "Ada",
            "last_name": "L",
            "email": "ada@example.org",
            "orcid": "0000000218250097",
        },
        follow=True,
    )
    assert "Your profile has been saved." in saved.content.decode()
    member.refresh_from_db()
    assert (member.first_name, member.orcid) == ("Ada", "0000-0002-1825-0097")


def test_token_page_shows_a_new_secret_once_and_revokes(client, member):
    client.force_login(member)
    response = client.post(
        "/account/tokens/", {"name": "notebook", "scope": "read", "expires_in_days": "30"}
    )
    assert response.status_code == 302  # post/redirect/get: a reload creates nothing
    created = client.get(response["Location"]).content.decode()
    token = ApiToken.objects.get(user=member)
    assert 'id="new-token"' in created and token.prefix in created
    secret = created.split('<code id="new-token">')[1].split("</code>")[0]
    assert secret.startswith(token.prefix) and len(secret) > 40

    again = client.get("/account/tokens/").content.decode()
    assert secret not in again and "notebook" in again

    client.post(f"/account/tokens/{token.pk}/revoke/", follow=True)
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_token_form_errors_are_shown(client, member):
    client.force_login(member)
    response = client.post("/account/tokens/", {"name": "", "scope": "admin"})
    page = response.content.decode()
    assert "This field is required." in page and "Select a valid choice." in page
    assert not ApiToken.objects.exists()


def test_a_user_cannot_revoke_someone_elses_token(client, member):
    other = MembershipFactory().user
    api_token_for(other)
    client.force_login(member)
    token = ApiToken.objects.get(user=other)
    assert client.post(f"/account/tokens/{token.pk}/revoke/").status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None


def test_revoke_requires_post(client, member):
    client.force_login(member)
    assert client.get("/account/tokens/1/revoke/").status_code == 405


def test_forms_are_csrf_protected(member):
    client = Client(enforce_csrf_checks=True)
    client.force_login(member)
    response = client.post("/account/tokens/", {"name": "x", "scope": "read"})
    assert response.status_code == 403
    assert not ApiToken.objects.exists()


def test_api_docs_and_schema_are_served(client, db):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    text = schema.content.decode()
    for path in ["/api/v1/me/", "/api/v1/institutions/{slug}/members/", "/api/v1/tokens/"]:
        assert path in text
    assert "scheme: bearer" in text
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and "swagger-ui" in docs.content.decode()


def test_health_endpoint_reports_ok(client, db):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_password_change_needs_the_old_password(client, member):
    client.force_login(member)
    new = "a new long passphrase"
    wrong = client.post(
        "/account/password/",
        {"old_password": "wrong", "new_password1": new, "new_password2": new},
    )
    assert "Your old password was entered incorrectly" in wrong.content.decode()

    changed = client.post(
        "/account/password/",
        {"old_password": PASSWORD, "new_password1": new, "new_password2": new},
        follow=True,
    )
    assert "Password changed" in changed.content.decode()
    member.refresh_from_db()
    assert member.check_password(new)
