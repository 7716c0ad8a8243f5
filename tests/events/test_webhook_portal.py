"""The portal's webhook pages: an owner registers an endpoint, sees its secret, rotates it,
sends a test event, disables and enables it, and reads the delivery log; nobody else sees it."""

import pytest

from apps.events import webhooks
from apps.events.models import WebhookDelivery, WebhookEndpoint
from tests.events.test_webhooks import PUBLIC_URL, attempt, emit
from tests.events.webhook_receiver import endpoint_for, start_receiver

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def _receiver_server():
    receiver, server = start_receiver()
    yield receiver
    server.shutdown()
    server.server_close()


@pytest.fixture
def receiver(_receiver_server):
    _receiver_server.reset()
    return _receiver_server


def test_an_owner_registers_an_endpoint_and_its_page_shows_the_secret(client, member):
    client.force_login(member)

    response = client.post(
        "/account/webhooks/",
        {"url": PUBLIC_URL, "description": "CI", "event_types": ["job.failed"]},
    )

    endpoint = WebhookEndpoint.objects.get()
    assert (
        response.status_code == 302 and response["Location"] == f"/account/webhooks/{endpoint.pk}/"
    )
    page = client.get(response["Location"]).content.decode()
    assert endpoint.secret in page and PUBLIC_URL in page
    assert endpoint.user == member and endpoint.event_types == ["job.failed"]
    listing = client.get("/account/webhooks/").content.decode()
    assert PUBLIC_URL in listing


def test_a_private_address_is_refused_on_the_form_with_the_reason(client, member):
    client.force_login(member)

    response = client.post("/account/webhooks/", {"url": "http://169.254.169.254/latest/"})

    assert response.status_code == 200
    assert "link-local" in response.content.decode()
    assert not WebhookEndpoint.objects.exists()
    assert "Allow private addresses" not in response.content.decode()  # staff only


def test_an_institution_admin_registers_one_for_the_institution(
    client, institution_admin, institution
):
    client.force_login(institution_admin)

    client.post("/account/webhooks/", {"url": PUBLIC_URL, "owner": institution.slug})

    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.institution == institution and endpoint.user is None


def test_rotate_test_disable_enable_and_the_log(client, member, receiver):
    endpoint = endpoint_for(member, receiver, "portal", answers=[500])
    attempt(WebhookDelivery.objects.get(event=emit(member), endpoint=endpoint))
    client.force_login(member)
    base = f"/account/webhooks/{endpoint.pk}/"

    client.post(base + "rotate-secret/")
    endpoint.refresh_from_db()
    receiver.expect("portal", endpoint.secret)
    client.post(base + "test/")
    test_delivery = WebhookDelivery.objects.get(event__type=webhooks.TEST_EVENT_TYPE)
    attempt(test_delivery)
    client.post(base + "enabled/", {"enabled": "0"})
    endpoint.refresh_from_db()
    assert not endpoint.enabled and "Disabled by" in endpoint.disabled_reason
    client.post(base + "enabled/", {"enabled": "1"})
    endpoint.refresh_from_db()
    assert endpoint.enabled

    page = client.get(base).content.decode()
    assert endpoint.secret in page
    assert "webhook.test" in page and "job.failed" in page
    assert "Retrying" in page and "Succeeded" in page
    assert "The receiver answered 500." in page
    failed, ping = receiver.got("portal")
    assert failed.answered == 500
    assert ping.verified and ping.payload["type"] == "webhook.test"  # signed with the new secret


def test_someone_elses_endpoint_is_not_found_and_anonymous_must_log_in(
    client, member, outsider, receiver
):
    endpoint = endpoint_for(member, receiver, "hidden")
    client.force_login(outsider)
    base = f"/account/webhooks/{endpoint.pk}/"

    assert client.get(base).status_code == 404
    assert client.post(base + "rotate-secret/").status_code == 404
    assert client.post(base + "delete/").status_code == 404
    assert endpoint.secret not in client.get("/account/webhooks/").content.decode()
    client.logout()
    assert client.get("/account/webhooks/").status_code == 302
    assert WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()
