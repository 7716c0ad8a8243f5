"""Webhooks end to end: real events delivered to a real receiver on 127.0.0.1 that verifies
them with the `standardwebhooks` package; retries, back-off, disabling, SSRF refusals, who
sees what, and the API."""

import itertools
import socket
import threading
import time
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from apps.accounts.models import Membership
from apps.events import webhook_http, webhooks
from apps.events.models import (
    Event,
    EventType,
    Notification,
    WebhookDelivery,
    WebhookEndpoint,
)
from apps.events.services import event_emit
from tests.evaluations.conftest import (  # noqa: F401 - shared fixtures
    cpu_benchmark,
    gpu_node,
    make_benchmark,
    make_cpu_benchmark,
    make_model_version,
    post_result,
)
from tests.events.webhook_receiver import endpoint_for, start_receiver
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _artifacts_in_tmp(artifact_dir):
    """Every test here stores artifacts in a folder of its own."""


PUBLIC_URL = "https://93.184.215.14/hooks/public"
State = WebhookDelivery.State


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


def attempt(delivery: WebhookDelivery) -> WebhookDelivery:
    delivery.refresh_from_db()
    result = webhooks.webhook_delivery_attempt(delivery_id=delivery.pk, attempts=delivery.attempts)
    assert result is not None
    return result


def emit(user=None, institution=None, type_=EventType.JOB_FAILED, **data) -> Event:
    return event_emit(
        type=type_,
        summary="Job 1 failed: Digits CNN 1.0 on Digits",
        data={"job": 1, **data},
        users=[user] if user else [],
        institution=institution,
        url="/compute/jobs/1/",
    )


class TestDelivery:
    def test_a_finished_job_reaches_the_submitters_endpoint_signed_as_the_standard_says(
        self,
        member,
        institution,
        receiver,
        make_model_version,  # noqa: F811
        cpu_benchmark,  # noqa: F811
        post_result,  # noqa: F811
    ):
        endpoint = endpoint_for(member, receiver, "mine")
        version = make_model_version(member, institution, name="Digits CNN")
        result = post_result(member, version, cpu_benchmark, {"accuracy": 0.97, "loss": 0.1})
        (delivery,) = WebhookDelivery.objects.filter(endpoint=endpoint)

        delivery = attempt(delivery)

        assert delivery.state == State.SUCCEEDED and delivery.last_status_code == 200
        (got,) = receiver.got("mine")
        assert got.verified, got.error
        event = delivery.event
        assert got.headers["webhook-id"] == f"msg_{event.public_id.hex}"
        assert got.headers["Content-Type"] == "application/json"
        assert got.headers["User-Agent"].startswith("ResearchExchange-Webhooks/")
        assert got.payload["type"] == "job.succeeded"
        assert got.payload["timestamp"] == event.created_at.isoformat()
        data = got.payload["data"]
        assert data["job"] == result.job_id and data["metrics"]["accuracy"] == 0.97
        assert data["url"].endswith(f"/compute/jobs/{result.job_id}/")
        assert data["summary"].startswith(f"Job {result.job_id} succeeded: Digits CNN 1.0")

    def test_an_altered_body_or_another_secret_fails_verification(self, member, receiver):
        endpoint = endpoint_for(member, receiver, "forged")
        attempt(WebhookDelivery.objects.get(event=emit(member), endpoint=endpoint))
        (got,) = receiver.got("forged")
        assert got.verified

        altered = got.body.replace(b'"job":1', b'"job":2')
        assert altered != got.body
        with pytest.raises(WebhookVerificationError):
            Webhook(endpoint.secret).verify(altered, got.headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(webhooks._new_secret()).verify(got.body, got.headers)

    def test_a_receiver_error_is_retried_until_it_answers_2xx(self, member, receiver):
        endpoint = endpoint_for(member, receiver, "flaky", answers=[500])
        delivery = WebhookDelivery.objects.get(event=emit(member), endpoint=endpoint)

        first = attempt(delivery)

        assert first.state == State.RETRYING and first.last_status_code == 500
        assert first.next_attempt_at > timezone.now() - timedelta(seconds=1)
        endpoint.refresh_from_db()
        assert endpoint.consecutive_failures == 1

        second = attempt(delivery)

        assert second.state == State.SUCCEEDED and second.attempts == 2
        assert second.next_attempt_at is None and second.last_error == ""
        log = list(second.attempt_log.values_list("number", "status_code"))
        assert log == [(1, 500), (2, 200)]
        assert [got.verified for got in receiver.got("flaky")] == [True, True]
        ids = {got.headers["webhook-id"] for got in receiver.got("flaky")}
        assert len(ids) == 1  # the same message on every attempt
        endpoint.refresh_from_db()
        assert endpoint.consecutive_failures == 0

    def test_a_delivery_fails_for_good_once_its_attempts_run_out(self, member, receiver, settings):
        settings.WEBHOOK_MAX_ATTEMPTS = 2
        endpoint = endpoint_for(member, receiver, "down", answers=[503, 503, 503])
        delivery = WebhookDelivery.objects.get(event=emit(member), endpoint=endpoint)

        attempt(delivery)
        final = attempt(delivery)

        assert final.state == State.FAILED and final.next_attempt_at is None
        assert final.last_error == "The receiver answered 503."
        assert webhooks.webhook_delivery_attempt(delivery_id=delivery.pk, attempts=2) is None
        assert len(receiver.got("down")) == 2

    def test_a_message_delivered_twice_sends_once(self, member, receiver):
        endpoint = endpoint_for(member, receiver, "twice")
        delivery = WebhookDelivery.objects.get(event=emit(member), endpoint=endpoint)

        attempt(delivery)
        assert webhooks.webhook_delivery_attempt(delivery_id=delivery.pk, attempts=0) is None

        assert len(receiver.got("twice")) == 1

    def test_an_answer_for_an_endpoint_deleted_meanwhile_is_dropped(self, member, receiver):
        endpoint = endpoint_for(member, receiver, "deleted")
        delivery = WebhookDelivery.objects.get(event=emit(member), endpoint=endpoint)
        endpoint.delete()  # while its receiver was being called

        answer = webhook_http.Answer(status_code=200, body="", error="", duration_ms=5)
        assert webhooks._record(delivery_id=delivery.pk, answer=answer) is None
        assert webhooks.webhook_delivery_attempt(delivery_id=delivery.pk, attempts=0) is None

    def test_back_off_doubles_with_jitter_up_to_the_cap(self, settings):
        settings.WEBHOOK_RETRY_SECONDS = 30
        settings.WEBHOOK_RETRY_MAX_SECONDS = 6 * 3600

        delays = [webhooks.retry_delay(n).total_seconds() for n in range(1, 16)]

        assert all(later > earlier for earlier, later in itertools.pairwise(delays[:10]))
        assert 24 <= delays[0] <= 36 and 48 <= delays[1] <= 72
        assert max(delays) <= 6 * 3600 * 1.2 and delays[-1] >= 6 * 3600 * 0.8

    def test_the_sweep_sends_what_is_due_and_not_what_waits(self, member, receiver):
        endpoint = endpoint_for(member, receiver, "sweep")
        due = WebhookDelivery.objects.get(event=emit(member), endpoint=endpoint)
        later = WebhookDelivery.objects.get(event=emit(member), endpoint=endpoint)
        WebhookDelivery.objects.filter(pk=later.pk).update(
            next_attempt_at=timezone.now() + timedelta(hours=1)
        )

        claimed = webhooks.webhook_deliveries_claim_due()

        assert claimed == [(due.pk, 0)]
        assert webhooks.webhook_deliveries_claim_due() == []  # claimed: its message is queued


class TestDisabling:
    def test_an_endpoint_failing_again_and_again_is_disabled_and_its_owner_told(
        self, member, receiver, settings, client_as
    ):
        settings.WEBHOOK_DISABLE_AFTER_FAILURES = 3
        endpoint = endpoint_for(member, receiver, "broken", answers=[500] * 10)
        deliveries = [
            WebhookDelivery.objects.get(event=emit(member), endpoint=endpoint) for _ in range(4)
        ]

        for delivery in deliveries[:3]:
            attempt(delivery)

        endpoint.refresh_from_db()
        assert not endpoint.enabled and endpoint.disabled_at is not None
        assert "3 failed attempts in a row" in endpoint.disabled_reason
        notice = Notification.objects.get(user=member, event__type=EventType.WEBHOOK_DISABLED)
        assert endpoint.url in notice.event.summary
        assert notice.event.url == f"/account/webhooks/{endpoint.pk}/"

        last = attempt(deliveries[3])
        assert last.state == State.FAILED
        assert last.last_error == "Not sent: the endpoint is disabled."
        assert len(receiver.got("broken")) == 3

        client = client_as("member")
        shown = client.get(f"/api/v1/webhooks/{endpoint.pk}/").json()
        assert shown["enabled"] is False and "in a row" in shown["disabled_reason"]
        enabled = client.patch(f"/api/v1/webhooks/{endpoint.pk}/", {"enabled": True}).json()
        assert enabled["enabled"] is True and enabled["consecutive_failures"] == 0
        assert enabled["disabled_reason"] == ""

    def test_a_success_resets_the_count(self, member, receiver, settings):
        settings.WEBHOOK_DISABLE_AFTER_FAILURES = 2
        endpoint = endpoint_for(member, receiver, "recovers", answers=[500, 200, 500])

        for _ in range(3):
            attempt(WebhookDelivery.objects.get(event=emit(member), endpoint=endpoint))

        endpoint.refresh_from_db()
        assert endpoint.enabled and endpoint.consecutive_failures == 1


class TestAudience:
    def test_an_institution_endpoint_receives_its_institutions_events_only(
        self, institution_admin, institution, other_institution, member, receiver
    ):
        endpoint = endpoint_for(institution_admin, receiver, "lab", institution=institution)

        ours = emit(member, institution=institution)
        emit(None, institution=other_institution)
        emit(institution_admin)  # personal to the admin, not the institution's

        assert list(
            WebhookDelivery.objects.filter(endpoint=endpoint).values_list("event", flat=True)
        ) == [ours.pk]

    def test_an_institution_endpoint_set_by_an_admin_who_is_demoted_stops_until_an_admin_enables_it(
        self, institution_admin, institution, member, receiver, api_client
    ):
        endpoint = endpoint_for(institution_admin, receiver, "lab", institution=institution)
        other_admin = MembershipFactory(institution=institution, role=Membership.Role.ADMIN).user
        Membership.objects.filter(user=institution_admin, institution=institution).update(
            role=Membership.Role.MEMBER
        )

        emit(member, institution=institution)

        endpoint.refresh_from_db()
        assert not WebhookDelivery.objects.filter(endpoint=endpoint).exists()
        assert not endpoint.enabled
        assert "no longer administers Northbridge University" in endpoint.disabled_reason
        told = Notification.objects.filter(event__type=EventType.WEBHOOK_DISABLED)
        assert [notice.user for notice in told] == [other_admin]

        api_client.force_authenticate(other_admin)
        enabled = api_client.patch(
            f"/api/v1/webhooks/{endpoint.pk}/", {"enabled": True}, format="json"
        )
        assert enabled.status_code == 200, enabled.json()
        event = emit(member, institution=institution)
        assert WebhookDelivery.objects.filter(endpoint=endpoint, event=event).exists()

    def test_a_personal_endpoint_receives_what_its_owner_is_told(
        self, member, outsider, institution, receiver
    ):
        mine = endpoint_for(member, receiver, "member")
        theirs = endpoint_for(outsider, receiver, "outsider")

        event = emit(member, institution=institution)

        assert [d.endpoint_id for d in WebhookDelivery.objects.filter(event=event)] == [mine.pk]
        assert not WebhookDelivery.objects.filter(endpoint=theirs).exists()

    def test_chosen_types_and_disabled_endpoints_filter_deliveries(self, member, receiver):
        failures_only = endpoint_for(
            member, receiver, "failures", event_types=[EventType.JOB_FAILED]
        )
        off = endpoint_for(member, receiver, "off", enabled=False)

        emit(member, type_=EventType.JOB_SUCCEEDED)
        emit(member, type_=EventType.JOB_FAILED)

        types = list(
            WebhookDelivery.objects.filter(endpoint=failures_only).values_list(
                "event__type", flat=True
            )
        )
        assert types == [EventType.JOB_FAILED]
        assert not WebhookDelivery.objects.filter(endpoint=off).exists()


class TestAddresses:
    @pytest.mark.parametrize(
        ("url", "reason"),
        [
            ("http://127.0.0.1:8000/hook", "loopback"),
            ("http://localhost/hook", "loopback"),
            ("http://10.0.0.1/hook", "private"),
            ("http://169.254.169.254/latest/meta-data/", "link-local"),
            ("http://[::1]/hook", "loopback"),
            ("http://[::ffff:127.0.0.1]/hook", "loopback"),
            ("http://[2002:a00:1::1]/hook", "private"),
            ("http://[2002:7f00:1::1]/hook", "loopback"),
            ("http://[fec0::1]/hook", "site-local"),
            ("http://0.0.0.0/hook", "unspecified"),
            ("http://224.0.0.1/hook", "multicast"),
            ("ftp://93.184.215.14/hook", "http:// or https://"),
            ("file:///etc/passwd", "http:// or https://"),
            ("http://user:pw@93.184.215.14/hook", "user name or password"),
        ],
    )
    def test_creating_an_endpoint_on_a_non_public_address_is_a_400_saying_why(
        self, client_as, url, reason
    ):
        response = client_as("member").post("/api/v1/webhooks/", {"url": url})

        assert response.status_code == 400, response.json()
        assert reason in response.json()["error"]["fields"]["url"][0]
        assert not WebhookEndpoint.objects.exists()

    def test_a_host_that_now_resolves_to_a_private_address_is_not_called(self, member, receiver):
        endpoint = endpoint_for(member, receiver, "rebound")
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(allow_private_addresses=False)

        delivery = attempt(WebhookDelivery.objects.get(event=emit(member), endpoint=endpoint))

        assert delivery.state == State.RETRYING and delivery.last_status_code is None
        assert "loopback" in delivery.last_error and delivery.last_error.startswith("Not sent")
        assert receiver.got("rebound") == []

    def test_only_staff_allow_private_addresses(self, client_as, receiver, member):
        url = receiver.url("staff")
        refused = client_as("member").post(
            "/api/v1/webhooks/", {"url": url, "allow_private_addresses": True}
        )
        assert refused.status_code == 400
        assert "staff" in refused.json()["error"]["fields"]["allow_private_addresses"][0]

        created = client_as("staff").post(
            "/api/v1/webhooks/", {"url": url, "allow_private_addresses": True}
        )
        assert created.status_code == 201, created.json()
        assert created.json()["allow_private_addresses"] is True

    def test_an_owner_cannot_turn_the_allowance_on_and_loses_it_with_a_new_url(
        self, member, receiver, client_as
    ):
        endpoint = endpoint_for(member, receiver, "dev")
        client = client_as("member")

        off = client.patch(f"/api/v1/webhooks/{endpoint.pk}/", {"allow_private_addresses": False})
        assert off.status_code == 400
        moved = client.patch(f"/api/v1/webhooks/{endpoint.pk}/", {"url": PUBLIC_URL})
        assert moved.status_code == 200
        assert moved.json()["allow_private_addresses"] is False
        back = client.patch(f"/api/v1/webhooks/{endpoint.pk}/", {"url": receiver.url("dev")})
        assert back.status_code == 400 and "loopback" in back.json()["error"]["message"]


def dribbling_receiver(first: bytes) -> tuple[str, threading.Event]:
    """A receiver that reads the POST, sends `first`, then one more byte every 50 ms until
    the connection is shut: it never finishes answering."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    stop = threading.Event()

    def serve() -> None:
        connection, _address = listener.accept()
        with connection, listener:
            connection.recv(65536)
            try:
                connection.sendall(first)
                while not stop.is_set():
                    connection.sendall(b"x")
                    time.sleep(0.05)
            except OSError:
                pass

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}/hooks/slow", stop


class TestSlowReceivers:
    @pytest.mark.parametrize(
        "first",
        [
            b"HTTP/1.1 200 OK\r\nX-Slow: ",  # the headers never end
            b"HTTP/1.1 500 Oops\r\nContent-Length: 100000\r\n\r\n",  # nor the body
        ],
    )
    def test_a_receiver_dribbling_its_answer_is_cut_off_at_the_attempts_deadline(
        self, member, settings, first
    ):
        settings.WEBHOOK_CONNECT_TIMEOUT_SECONDS = 0.5
        settings.WEBHOOK_READ_TIMEOUT_SECONDS = 1
        url, stop = dribbling_receiver(first)
        endpoint = WebhookEndpoint.objects.create(
            user=member,
            created_by=member,
            url=url,
            secret=webhooks._new_secret(),
            allow_private_addresses=True,
        )
        delivery = WebhookDelivery.objects.get(event=emit(member), endpoint=endpoint)

        started = time.monotonic()
        try:
            delivery = attempt(delivery)
        finally:
            stop.set()

        assert time.monotonic() - started < 3
        assert delivery.state == State.RETRYING
        assert delivery.last_error == "The receiver did not finish answering in time."


class TestApi:
    def test_an_owner_registers_an_endpoint_and_sees_its_secret(self, client_as, member):
        response = client_as("member").post(
            "/api/v1/webhooks/",
            {"url": PUBLIC_URL, "description": "CI", "event_types": ["job.failed"]},
        )

        assert response.status_code == 201, response.json()
        body = response.json()
        assert body["owner"] == "user" and body["username"] == member.username
        assert body["secret"].startswith("whsec_")
        assert body["event_types"] == ["job.failed"] and body["enabled"] is True
        assert "peer.requested" not in body["receivable_event_types"]

    @pytest.mark.parametrize(
        ("payload", "field", "says"),
        [
            ({"event_types": ["job.exploded"]}, "event_types", "Unknown event type"),
            ({"event_types": ["peer.requested"]}, "event_types", "cannot reach"),
            ({"institution": "nowhere"}, "institution", "No institution"),
            ({"institution": "rheinau"}, "institution", "Only the admins"),
        ],
    )
    def test_bad_input_is_a_400_naming_the_field(
        self, client_as, other_institution, payload, field, says
    ):
        response = client_as("member").post("/api/v1/webhooks/", {"url": PUBLIC_URL, **payload})

        assert response.status_code == 400
        assert says in response.json()["error"]["fields"][field][0]

    def test_an_institution_admin_registers_one_for_the_institution(self, client_as, institution):
        response = client_as("institution_admin").post(
            "/api/v1/webhooks/", {"url": PUBLIC_URL, "institution": institution.slug}
        )

        assert response.status_code == 201, response.json()
        assert response.json()["owner"] == "institution"
        assert response.json()["institution"] == institution.slug
        refused = client_as("institution_admin").post(
            "/api/v1/webhooks/",
            {
                "url": PUBLIC_URL,
                "institution": institution.slug,
                "event_types": ["result.published"],
            },
        )
        assert refused.status_code == 400

    def test_outsiders_and_plain_members_see_no_one_elses_endpoint(
        self, institution_admin, institution, member, receiver, api_client, outsider
    ):
        lab = endpoint_for(institution_admin, receiver, "lab", institution=institution)
        personal = endpoint_for(member, receiver, "personal")
        attempt(WebhookDelivery.objects.get(event=emit(member), endpoint=personal))

        api_client.force_authenticate(outsider)
        for endpoint in (lab, personal):
            for suffix in ("", "deliveries/"):
                assert api_client.get(f"/api/v1/webhooks/{endpoint.pk}/{suffix}").status_code == 404
            assert api_client.post(f"/api/v1/webhooks/{endpoint.pk}/test/").status_code == 404
            assert api_client.delete(f"/api/v1/webhooks/{endpoint.pk}/").status_code == 404
        assert api_client.get("/api/v1/webhooks/").json()["count"] == 0

        api_client.force_authenticate(member)
        listed = [item["id"] for item in api_client.get("/api/v1/webhooks/").json()["results"]]
        assert listed == [personal.pk]
        assert api_client.get(f"/api/v1/webhooks/{lab.pk}/").status_code == 404

        api_client.force_authenticate(institution_admin)
        listed = [item["id"] for item in api_client.get("/api/v1/webhooks/").json()["results"]]
        assert listed == [lab.pk]

    def test_the_delivery_log_shows_each_attempt(
        self, member, receiver, client_as, django_assert_max_num_queries
    ):
        endpoint = endpoint_for(member, receiver, "log", answers=[500])
        for _ in range(3):
            attempt(WebhookDelivery.objects.get(event=emit(member), endpoint=endpoint))
        client = client_as("member")

        with django_assert_max_num_queries(8):
            body = client.get(f"/api/v1/webhooks/{endpoint.pk}/deliveries/").json()

        assert body["count"] == 3
        newest = body["results"][0]
        assert newest["event_type"] == "job.failed" and newest["state"] == "succeeded"
        assert newest["attempts"] == 1 and newest["last_status_code"] == 200
        assert newest["message_id"] == f"msg_{Event.objects.order_by('-id')[0].public_id.hex}"
        first = body["results"][2]
        assert [a["status_code"] for a in first["attempt_log"]] == [500]
        assert first["state"] == "retrying" and first["next_attempt_at"]

    def test_a_test_event_is_delivered_and_a_rotated_secret_signs_from_then_on(
        self, member, receiver, client_as
    ):
        endpoint = endpoint_for(member, receiver, "ping")
        client = client_as("member")

        sent = client.post(f"/api/v1/webhooks/{endpoint.pk}/test/")
        assert sent.status_code == 202 and sent.json()["event_type"] == "webhook.test"
        attempt(WebhookDelivery.objects.get(pk=sent.json()["id"]))
        rotated = client.post(f"/api/v1/webhooks/{endpoint.pk}/rotate-secret/").json()
        assert rotated["secret"] != endpoint.secret
        attempt(
            WebhookDelivery.objects.get(
                pk=client.post(f"/api/v1/webhooks/{endpoint.pk}/test/").json()["id"]
            )
        )

        first, second = receiver.got("ping")
        assert first.verified and first.payload["type"] == "webhook.test"
        assert not second.verified  # the receiver still holds the old secret
        Webhook(rotated["secret"]).verify(second.body, second.headers)

    def test_a_test_event_waits_for_the_one_still_being_delivered(
        self, member, receiver, client_as
    ):
        endpoint = endpoint_for(member, receiver, "ping-once")
        client = client_as("member")
        first = client.post(f"/api/v1/webhooks/{endpoint.pk}/test/")
        assert first.status_code == 202

        again = client.post(f"/api/v1/webhooks/{endpoint.pk}/test/")

        assert again.status_code == 400
        assert "still being delivered" in again.json()["error"]["message"]
        attempt(WebhookDelivery.objects.get(pk=first.json()["id"]))
        assert client.post(f"/api/v1/webhooks/{endpoint.pk}/test/").status_code == 202

    def test_a_disabled_endpoint_takes_no_test_event(self, member, receiver, client_as):
        endpoint = endpoint_for(member, receiver, "sleeping", enabled=False)

        response = client_as("member").post(f"/api/v1/webhooks/{endpoint.pk}/test/")

        assert response.status_code == 400 and "enable it" in response.json()["error"]["message"]

    def test_deleting_an_endpoint_removes_its_log(self, member, receiver, client_as):
        endpoint = endpoint_for(member, receiver, "gone")
        emit(member)

        assert client_as("member").delete(f"/api/v1/webhooks/{endpoint.pk}/").status_code == 204

        assert not WebhookEndpoint.objects.exists() and not WebhookDelivery.objects.exists()


class TestAdmin:
    def test_staff_let_an_endpoint_reach_private_addresses_from_the_admin(
        self, client, member, staff
    ):
        endpoint = webhooks.webhook_endpoint_create(user=member, url=PUBLIC_URL)
        staff.is_superuser = True
        staff.save()
        client.force_login(staff)

        response = client.post(
            "/admin/events/webhookendpoint/",
            {"action": "allow_private_addresses", "_selected_action": [endpoint.pk]},
        )

        assert response.status_code == 302
        endpoint.refresh_from_db()
        assert endpoint.allow_private_addresses
        page = client.get(f"/admin/events/webhookendpoint/{endpoint.pk}/change/")
        assert page.status_code == 200 and endpoint.secret not in page.content.decode()

    def test_the_service_refuses_anyone_but_staff(self, member):
        endpoint = webhooks.webhook_endpoint_create(user=member, url=PUBLIC_URL)

        with pytest.raises(PermissionDenied):
            webhooks.webhook_private_addresses_set(user=member, endpoint=endpoint, allow=True)
