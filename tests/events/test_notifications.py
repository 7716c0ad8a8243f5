"""In-portal notifications, each user's channels by type of event, mail, benchmark watches, and
the events that comments and results raise: through the API, the portal and the services."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.catalog import mirrors
from apps.catalog import services as catalog_services
from apps.catalog.models import ResearchModel, Visibility
from apps.evaluations.mirrors import result_mirror
from apps.events import services as event_services
from apps.events.models import BenchmarkWatch, Event, EventType, Notification
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

METRICS = {"accuracy": 0.91, "loss": 0.2}


def notify(user, summary="Your evaluation succeeded", url="/results/", **kwargs) -> Notification:
    event = event_services.event_emit(
        type=kwargs.pop("type", EventType.JOB_SUCCEEDED),
        summary=summary,
        data={},
        users=[user],
        url=url,
        **kwargs,
    )
    return event.notifications.get(user=user)


def summaries(user, type: str | None = None) -> list[str]:
    notifications = Notification.objects.filter(user=user)
    if type is not None:
        notifications = notifications.filter(event__type=type)
    return list(
        notifications.order_by("-created_at", "-id").values_list("event__summary", flat=True)
    )


class TestApi:
    def test_the_list_holds_only_the_callers_notifications_newest_first(
        self, client_as, member, outsider
    ):
        notify(member, "First")
        notify(outsider, "Someone else's")
        notify(member, "Second")

        response = client_as("member").get("/api/v1/notifications/")

        assert response.status_code == 200
        body = response.json()
        assert body["count"] == 2
        assert [item["summary"] for item in body["results"]] == ["Second", "First"]
        first = body["results"][1]
        assert first["read"] is False and first["read_at"] is None
        assert first["type"] == "job.succeeded" and first["url"] == "/results/"

    def test_the_list_filters_unread_and_the_count_says_how_many(self, client_as, member):
        read = notify(member, "Seen")
        notify(member, "Not seen")
        client = client_as("member")
        client.post(f"/api/v1/notifications/{read.pk}/read/")

        unread = client.get("/api/v1/notifications/?unread=true").json()["results"]
        seen = client.get("/api/v1/notifications/?unread=false").json()["results"]

        assert [item["summary"] for item in unread] == ["Not seen"]
        assert [item["summary"] for item in seen] == ["Seen"]
        assert seen[0]["read"] is True
        assert client.get("/api/v1/notifications/unread-count/").json() == {"unread": 1}

    def test_an_unreadable_filter_value_is_a_400(self, client_as, member):
        response = client_as("member").get("/api/v1/notifications/?unread=perhaps")

        assert response.status_code == 400
        assert "unread" in response.json()["error"]["fields"]

    def test_the_list_costs_the_same_queries_for_many_notifications(self, client_as, member):
        client = client_as("member")
        notify(member)
        with CaptureQueriesContext(connection) as few:
            client.get("/api/v1/notifications/")
        for number in range(10):
            notify(member, f"Event {number}")
        with CaptureQueriesContext(connection) as many:
            client.get("/api/v1/notifications/")

        assert len(many) == len(few)

    def test_mark_all_read_marks_only_the_callers(self, client_as, member, outsider):
        notify(member)
        notify(member)
        theirs = notify(outsider)

        response = client_as("member").post("/api/v1/notifications/read-all/")

        assert response.json() == {"marked": 2}
        assert not Notification.objects.filter(user=member, read_at__isnull=True).exists()
        theirs.refresh_from_db()
        assert theirs.read_at is None

    @pytest.mark.parametrize("actor", ["outsider", "institution_admin", "staff"])
    def test_nobody_reads_or_marks_another_users_notification(self, client_as, member, actor):
        mine = notify(member, "For the member only")
        client = client_as(actor)

        marked = client.post(f"/api/v1/notifications/{mine.pk}/read/")
        listed = client.get("/api/v1/notifications/").json()["results"]

        assert marked.status_code == 404
        assert marked.json()["error"]["status"] == 404
        assert listed == []
        mine.refresh_from_db()
        assert mine.read_at is None

    def test_preferences_show_the_defaults_and_the_mail_address(self, client_as, member):
        body = client_as("member").get("/api/v1/notifications/preferences/").json()

        assert body["email_address"] == member.email
        by_type = {row["event_type"]: row for row in body["preferences"]}
        assert "peer.requested" not in by_type  # staff only
        assert (by_type["job.failed"]["portal"], by_type["job.failed"]["email"]) == (True, True)
        comment = by_type["comment.created"]
        assert (comment["portal"], comment["email"]) == (True, False)
        assert comment["default_email"] is False

    def test_put_sets_the_types_named_and_keeps_the_others(self, client_as, member):
        client = client_as("member")

        response = client.put(
            "/api/v1/notifications/preferences/",
            {"preferences": [{"event_type": "comment.created", "portal": False, "email": True}]},
        )

        assert response.status_code == 200
        by_type = {row["event_type"]: row for row in response.json()["preferences"]}
        assert (by_type["comment.created"]["portal"], by_type["comment.created"]["email"]) == (
            False,
            True,
        )
        assert by_type["job.failed"]["email"] is True
        assert event_services.notification_channels(
            users=[member], event_type=EventType.COMMENT_CREATED
        ) == {member.pk: (False, True)}

    @pytest.mark.parametrize(
        "preferences",
        [
            [{"event_type": "peer.requested", "portal": False, "email": False}],
            [{"event_type": "no.such", "portal": True, "email": True}],
            [
                {"event_type": "job.failed", "portal": True, "email": False},
                {"event_type": "job.failed", "portal": False, "email": False},
            ],
            [{"event_type": "job.failed", "portal": "yes please", "email": False}],
        ],
        ids=["staff-only", "unknown", "twice", "not-a-boolean"],
    )
    def test_a_preference_a_member_cannot_set_is_a_400_and_changes_nothing(
        self, client_as, member, preferences
    ):
        response = client_as("member").put(
            "/api/v1/notifications/preferences/", {"preferences": preferences}
        )

        assert response.status_code == 400
        assert not member.notification_preferences.exists()

    def test_staff_choose_how_they_hear_of_peering_requests(self, client_as, staff):
        client = client_as("staff")

        response = client.put(
            "/api/v1/notifications/preferences/",
            {"preferences": [{"event_type": "peer.requested", "portal": True, "email": False}]},
        )

        assert response.status_code == 200
        by_type = {row["event_type"]: row for row in response.json()["preferences"]}
        assert by_type["peer.requested"]["email"] is False

    def test_a_benchmark_is_watched_and_unwatched(
        self, client_as, member, institution, make_cpu_benchmark
    ):
        benchmark = make_cpu_benchmark(member, institution, visibility=Visibility.INSTITUTION)
        client = client_as("member")
        path = f"/api/v1/benchmarks/{benchmark.pk}/watch/"

        assert client.post(path).json() == {"benchmark": benchmark.pk, "watching": True}
        assert client.post(path).status_code == 200  # again: no second watch
        assert client.get(path).json()["watching"] is True
        assert BenchmarkWatch.objects.filter(user=member, benchmark=benchmark).count() == 1
        assert client.delete(path).json() == {"benchmark": benchmark.pk, "watching": False}
        assert not BenchmarkWatch.objects.filter(user=member).exists()

    def test_a_benchmark_the_caller_cannot_see_is_not_found(
        self, client_as, member, outsider, institution, make_cpu_benchmark
    ):
        hidden = make_cpu_benchmark(member, institution, visibility=Visibility.INSTITUTION)
        client = client_as("outsider")
        path = f"/api/v1/benchmarks/{hidden.pk}/watch/"

        assert client.post(path).status_code == 404
        assert client.get(path).status_code == 404
        assert client.get("/api/v1/benchmarks/999999/watch/").status_code == 404
        assert not BenchmarkWatch.objects.exists()


class TestPortal:
    def test_the_bell_shows_the_unread_count_to_its_user_only(self, client, member, outsider):
        notify(member)
        notify(member)

        client.force_login(member)
        page = client.get("/").content.decode()
        client.force_login(outsider)
        other = client.get("/").content.decode()

        assert 'aria-label="Notifications: 2 unread"' in page
        assert 'data-unread="2"' in page
        assert 'aria-label="Notifications"' in other and "data-unread" not in other

    def test_nobody_signed_out_sees_a_bell(self, client):
        assert "/notifications/" not in client.get("/").content.decode()

    def test_the_list_shows_unread_first_marked_and_paginates(self, client, member):
        for number in range(27):
            notify(member, f"Event {number}")
        client.force_login(member)

        first = client.get("/notifications/").content.decode()
        second = client.get("/notifications/?page=2").content.decode()

        assert first.index("Event 26") < first.index("Event 25")
        assert first.count("notification unread") == 25
        assert "Event 1<" in second and "Event 0<" in second
        assert "Event 26" not in second

    def test_opening_a_notification_marks_it_read_and_goes_to_its_page(self, client, member):
        notification = notify(member, url="/benchmarks/7/#comment-3")
        client.force_login(member)

        response = client.get(f"/notifications/{notification.pk}/")

        assert response.status_code == 302
        assert response["Location"] == "/benchmarks/7/#comment-3"
        notification.refresh_from_db()
        assert notification.read_at is not None

    @pytest.mark.parametrize(
        "url", ["https://elsewhere.example/", "//elsewhere.example/x", "/\\elsewhere.example", ""]
    )
    def test_opening_never_leaves_this_node(self, client, member, url):
        notification = notify(member, url=url)
        client.force_login(member)

        response = client.get(f"/notifications/{notification.pk}/")

        assert response["Location"] == "/notifications/"

    def test_another_users_notification_does_not_open_or_mark(self, client, member, outsider):
        theirs = notify(outsider)
        client.force_login(member)

        assert client.get(f"/notifications/{theirs.pk}/").status_code == 404
        assert client.post(f"/notifications/{theirs.pk}/read/").status_code == 404
        theirs.refresh_from_db()
        assert theirs.read_at is None

    def test_mark_read_and_mark_all_read_are_post_forms(self, client, member):
        one = notify(member, "One")
        notify(member, "Two")
        client.force_login(member)
        page = client.get("/notifications/").content.decode()
        assert f'action="/notifications/{one.pk}/read/"' in page
        assert 'action="/notifications/read-all/"' in page
        assert client.get(f"/notifications/{one.pk}/read/").status_code == 405

        client.post(f"/notifications/{one.pk}/read/", {"page": "1"})
        assert Notification.objects.filter(user=member, read_at__isnull=True).count() == 1
        response = client.post("/notifications/read-all/")

        assert response.status_code == 302
        assert not Notification.objects.filter(user=member, read_at__isnull=True).exists()
        assert "data-unread" not in client.get("/notifications/").content.decode()

    def test_the_preferences_page_saves_the_checkboxes(self, client, member):
        client.force_login(member)
        page = client.get("/account/notifications/").content.decode()
        assert member.email in page
        assert "peer.requested" not in page
        assert 'name="job.failed:email" id="id_job.failed:email" checked' in page

        # Only what is ticked is sent: job.failed loses its mail, comments gain one.
        ticked = {f"{kind}:portal": "on" for kind in EventType if kind != "peer.requested"}
        ticked |= {"comment.created:email": "on"}
        response = client.post("/account/notifications/", ticked)

        assert response.status_code == 302
        channels = {
            kind: event_services.notification_channels(users=[member], event_type=kind)[member.pk]
            for kind in (EventType.JOB_FAILED, EventType.COMMENT_CREATED)
        }
        assert channels == {
            EventType.JOB_FAILED: (True, False),
            EventType.COMMENT_CREATED: (True, True),
        }

    def test_the_preferences_page_says_mail_needs_an_address(self, client):
        user = UserFactory(email="")
        client.force_login(user)

        assert (
            "Mail needs an address on your account"
            in client.get("/account/notifications/").content.decode()
        )

    def test_staff_see_the_peering_row(self, client, staff):
        client.force_login(staff)

        assert "peer.requested" in client.get("/account/notifications/").content.decode()

    def test_the_benchmark_page_has_a_watch_button(
        self, client, member, outsider, institution, make_cpu_benchmark
    ):
        benchmark = make_cpu_benchmark(member, institution)
        client.force_login(outsider)
        page = f"/benchmarks/{benchmark.pk}/"
        assert ">Watch</button>" in client.get(page).content.decode()

        response = client.post(f"/benchmarks/{benchmark.pk}/watch/", {"watch": "1"})
        assert response["Location"] == page
        assert ">Unwatch</button>" in client.get(page).content.decode()
        client.post(f"/benchmarks/{benchmark.pk}/watch/", {"watch": "0"})

        assert not BenchmarkWatch.objects.exists()

    def test_a_hidden_benchmark_cannot_be_watched_from_the_portal(
        self, client, member, outsider, institution, make_cpu_benchmark
    ):
        hidden = make_cpu_benchmark(member, institution, visibility=Visibility.PRIVATE)
        client.force_login(outsider)

        assert client.post(f"/benchmarks/{hidden.pk}/watch/").status_code == 404
        assert not BenchmarkWatch.objects.exists()


class TestComments:
    @pytest.fixture
    def model(self, member, institution):
        return catalog_services.model_create(
            user=member, institution=institution, name="Heron", slug="heron", license="MIT"
        )

    def test_a_comment_tells_the_records_creator_and_not_the_commenter(
        self, model, member, outsider
    ):
        comment = catalog_services.comment_create(
            user=outsider, target=model, body="Which **dataset** did you train on?"
        )
        catalog_services.comment_create(user=member, target=model, body="My own note.")

        event = Event.objects.get(type=EventType.COMMENT_CREATED, data__comment_id=comment.pk)
        assert list(event.notifications.values_list("user", flat=True)) == [member.pk]
        assert event.institution == model.institution
        assert event.url == f"/models/northbridge/heron/#comment-{comment.pk}"
        assert event.data["record"] == {"type": "model", "id": model.pk, "title": "Heron"}
        assert event.data["author"] == outsider.display_name
        assert event.data["excerpt"] == "Which **dataset** did you train on?"
        assert summaries(outsider, EventType.COMMENT_CREATED) == []

    def test_a_reply_also_tells_the_parent_comments_author(self, model, member, outsider):
        third = MembershipFactory(institution=model.institution).user
        question = catalog_services.comment_create(user=outsider, target=model, body="Why?")

        catalog_services.comment_create(user=third, target=model, body="Because.", parent=question)

        reply_event = Event.objects.filter(type=EventType.COMMENT_CREATED).first()
        assert set(reply_event.notifications.values_list("user", flat=True)) == {
            member.pk,
            outsider.pk,
        }
        assert reply_event.data["parent_id"] == question.pk

    def test_a_long_comment_is_cut_to_an_excerpt(self, model, outsider):
        catalog_services.comment_create(user=outsider, target=model, body="word " * 200)

        excerpt = Event.objects.get().data["excerpt"]
        assert len(excerpt) <= 200 and excerpt.endswith("…")

    def test_nobody_who_can_no_longer_see_the_record_is_told(self, model, member, outsider):
        question = catalog_services.comment_create(user=outsider, target=model, body="Why?")
        ResearchModel.objects.filter(pk=model.pk).update(visibility=Visibility.INSTITUTION)
        model.refresh_from_db()

        catalog_services.comment_create(
            user=member, target=model, body="Now internal.", parent=question
        )

        assert summaries(outsider, EventType.COMMENT_CREATED) == []

    def test_a_mirrored_records_discussion_tells_no_one(self, model, outsider):
        ResearchModel.objects.filter(pk=model.pk).update(
            origin_node="https://peer.example", origin_id="9"
        )
        model.refresh_from_db()

        catalog_services.comment_create(user=outsider, target=model, body="Hello from here.")

        assert not Event.objects.exists()


class TestResults:
    def test_watchers_hear_of_a_result_only_when_they_may_see_it(
        self, member, institution, outsider, institution_admin, make_model_version,
        cpu_benchmark, post_result,
    ):  # fmt: skip
        for watcher in (outsider, institution_admin):
            event_services.benchmark_watch(user=watcher, benchmark_id=cpu_benchmark.pk)
        private = make_model_version(member, institution, name="Secret", visibility="private")
        public = make_model_version(member, institution, name="Open")

        hidden = post_result(member, private, cpu_benchmark, METRICS)
        shown = post_result(member, public, cpu_benchmark, METRICS)

        published = EventType.RESULT_PUBLISHED
        assert summaries(outsider, published) == [f"New result on {cpu_benchmark.name}: Open 1.0"]
        assert summaries(institution_admin, published) == [
            f"New result on {cpu_benchmark.name}: Open 1.0",
            f"New result on {cpu_benchmark.name}: Secret 1.0",
        ]
        hidden_event = Event.objects.get(data__result_id=hidden.pk)
        assert hidden_event.url == f"/results/{hidden.pk}/"
        assert hidden_event.data["model"] == {
            "id": private.model_id,
            "name": "Secret",
            "version": "1.0",
        }
        assert hidden_event.data["metrics"] == METRICS
        assert Event.objects.get(data__result_id=shown.pk).institution is None

    def test_a_result_nobody_watches_raises_no_event(
        self, member, institution, make_model_version, cpu_benchmark, post_result
    ):
        post_result(member, make_model_version(member, institution), cpu_benchmark, METRICS)

        assert not Event.objects.filter(type=EventType.RESULT_PUBLISHED).exists()

    def test_watchers_who_left_or_were_deactivated_hear_nothing(
        self, member, institution, make_model_version, make_cpu_benchmark, post_result
    ):
        benchmark = make_cpu_benchmark(member, institution, visibility=Visibility.INSTITUTION)
        former = MembershipFactory(institution=institution)
        inactive = MembershipFactory(institution=institution).user
        for watcher in (former.user, inactive):
            event_services.benchmark_watch(user=watcher, benchmark_id=benchmark.pk)
        former.delete()
        type(inactive).objects.filter(pk=inactive.pk).update(is_active=False)

        post_result(member, make_model_version(member, institution), benchmark, METRICS)

        assert not Notification.objects.filter(event__type=EventType.RESULT_PUBLISHED).exists()


def test_a_result_mirrored_from_a_peer_is_announced_once_to_the_watchers(outsider):
    peer = "https://peer.example.org"
    now = timezone.now()

    def origin(id: str) -> mirrors.Origin:
        return mirrors.Origin(node=peer, id=id, url=f"{peer}/{id}", synced_at=now)

    mirrors.institution_mirror(
        origin=origin("1"), fields={"name": "Lakeshore", "slug": "lakeshore", "country": "CA"}
    )
    mirrors.dataset_mirror(
        origin=origin("2"), institution="1", fields={"name": "Digits", "slug": "digits",
        "license": "MIT"}, tags=[], files=[],
    )  # fmt: skip
    benchmark = mirrors.benchmark_mirror(
        origin=origin("3"), institution="1", dataset="2", tags=[],
        fields={"name": "Peer digits", "slug": "peer-digits", "task_type": "classification",
                "evaluator": "smoke", "metrics": [{"name": "accuracy", "higher_is_better": True}]},
    )  # fmt: skip
    mirrors.model_mirror(
        origin=origin("4"), institution="1", tags=[], papers=[], benchmarks=[],
        fields={"name": "Peer net", "slug": "peer-net", "license": "MIT", "task": ""},
        versions=[mirrors.MirroredVersion("1.0", "", now, [])],
    )  # fmt: skip
    event_services.benchmark_watch(user=outsider, benchmark_id=benchmark.pk)

    def sync():
        return result_mirror(
            origin=origin("5"), model="4", version="1.0", benchmark="3", institution="1",
            metrics={"accuracy": 0.9}, provenance={}, gpu_seconds=1.0, started_at=now,
            finished_at=now,
        )  # fmt: skip

    result = sync()
    sync()  # the next sync updates the same result: nobody is told twice

    assert summaries(outsider, EventType.RESULT_PUBLISHED) == [
        "New result on Peer digits: Peer net 1.0"
    ]
    assert Event.objects.get(type=EventType.RESULT_PUBLISHED).url == f"/results/{result.pk}/"


class TestMail:
    def test_mail_follows_each_users_preference_and_needs_an_address(
        self, member, tasks_run_here, mailoutbox, django_capture_on_commit_callbacks
    ):
        quiet = UserFactory(username="quiet")
        event_services.notification_preferences_set(
            user=quiet, channels={EventType.JOB_SUCCEEDED: (True, False)}
        )
        no_address = UserFactory(username="noaddress", email="")

        with django_capture_on_commit_callbacks(execute=True):
            event = event_services.event_emit(
                type=EventType.JOB_SUCCEEDED,
                summary="Your evaluation of Heron succeeded",
                data={},
                users=[member, quiet, no_address],
                url="/jobs/4/",
            )

        assert [message.to for message in mailoutbox] == [[member.email]]
        message = mailoutbox[0]
        assert message.subject.endswith("Your evaluation of Heron succeeded")
        assert "/jobs/4/" in message.body and "/account/notifications/" in message.body
        assert message.extra_headers["X-Research-Exchange-Event"] == "job.succeeded"
        # The portal still shows it to all three.
        assert event.notifications.count() == 3

    def test_a_comment_is_mailed_only_to_who_asked_for_it(
        self, member, institution, outsider, tasks_run_here, mailoutbox,
        django_capture_on_commit_callbacks,
    ):  # fmt: skip
        model = catalog_services.model_create(
            user=member, institution=institution, name="Heron", slug="heron", license="MIT"
        )
        with django_capture_on_commit_callbacks(execute=True):
            catalog_services.comment_create(user=outsider, target=model, body="First!")
        assert mailoutbox == []  # comments are not mailed by default

        event_services.notification_preferences_set(
            user=member, channels={EventType.COMMENT_CREATED: (False, True)}
        )
        with django_capture_on_commit_callbacks(execute=True):
            catalog_services.comment_create(user=outsider, target=model, body="Second!")

        assert [message.to for message in mailoutbox] == [[member.email]]
        # Mail only, as chosen: the portal shows the first comment, not the second.
        assert summaries(member, EventType.COMMENT_CREATED) == [
            f"{outsider.display_name} commented on Heron"
        ]
