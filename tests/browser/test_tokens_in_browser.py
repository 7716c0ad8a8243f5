"""A researcher signs in, creates an API token in the portal, uses it, and revokes it."""

import json
import urllib.error
import urllib.request

from playwright.sync_api import expect

from tests.factories import PASSWORD, MembershipFactory


def api_status(base_url: str, path: str, token: str) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{base_url}{path}", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_create_use_and_revoke_a_token_in_the_browser(page, live_server, transactional_db):
    researcher = MembershipFactory(user__username="ada", user__first_name="Ada").user

    page.goto("/")
    page.get_by_role("link", name="Log in").click()
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("link", name=researcher.display_name)).to_be_visible()

    page.get_by_role("navigation", name="Main").get_by_role("link", name="API tokens").click()
    page.get_by_label("Name").fill("analysis notebook")
    page.get_by_label("Scope").select_option(label="Read and write")
    page.get_by_role("button", name="Create token").click()
    secret = page.locator("#new-token").inner_text()
    assert secret.startswith("rxp_")

    status, me = api_status(live_server.url, "/api/v1/me/", secret)
    assert (status, me["username"]) == (200, "ada")

    page.reload()
    expect(page.locator("#new-token")).to_have_count(0)
    page.get_by_role("button", name="Revoke token analysis notebook").click()
    expect(page.get_by_role("status")).to_contain_text("has been revoked")

    status, body = api_status(live_server.url, "/api/v1/me/", secret)
    assert status == 401
    assert body["error"]["message"] == "This API token has been revoked."
