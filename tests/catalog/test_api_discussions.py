"""Discussions on models, papers and benchmarks through the API."""

import pytest

from apps.catalog import services
from apps.catalog.models import Comment, Visibility

pytestmark = pytest.mark.django_db


@pytest.fixture
def paper(member, institution):
    return services.paper_create(user=member, institution=institution, title="Scaling laws")


def test_researchers_comment_and_reply(client_as, paper):
    client = client_as("outsider")
    first = client.post(
        "/api/v1/discussions/", {"paper": paper.pk, "body": "Which **seed**?"}, format="json"
    )
    reply = client.post(
        "/api/v1/discussions/",
        {"paper": paper.pk, "parent": first.json()["id"], "body": "Answering myself: 0."},
        format="json",
    )

    assert first.status_code == 201, first.json()
    assert reply.json()["parent"] == first.json()["id"]
    listed = client.get(f"/api/v1/discussions/?paper={paper.pk}").json()["results"]
    assert [c["body"] for c in listed] == ["Which **seed**?", "Answering myself: 0."]


def test_a_comment_names_exactly_one_record(client_as, paper, member, institution, publish_model):
    model = publish_model(member, institution)
    response = client_as("member").post(
        "/api/v1/discussions/", {"paper": paper.pk, "model": model.pk, "body": "x"}, format="json"
    )
    assert response.status_code == 400
    assert Comment.objects.count() == 0


def test_a_reply_stays_in_its_discussion(client_as, paper, member, institution):
    other = services.paper_create(user=member, institution=institution, title="Other")
    parent = services.comment_create(user=member, target=other, body="elsewhere")
    response = client_as("member").post(
        "/api/v1/discussions/", {"paper": paper.pk, "parent": parent.pk, "body": "x"}, format="json"
    )
    assert response.status_code == 400
    assert "another discussion" in response.json()["error"]["message"]


def test_only_the_author_edits_a_comment(client_as, paper, outsider):
    comment = services.comment_create(user=outsider, target=paper, body="first thought")

    by_member = client_as("member").patch(
        f"/api/v1/discussions/{comment.pk}/", {"body": "hijacked"}, format="json"
    )
    client_as("member").force_authenticate(None)
    by_author = client_as("outsider").patch(
        f"/api/v1/discussions/{comment.pk}/", {"body": "second thought"}, format="json"
    )

    assert by_member.status_code == 403
    assert by_author.status_code == 200
    assert by_author.json()["edited_at"] is not None
    comment.refresh_from_db()
    assert comment.body == "second thought"


@pytest.mark.parametrize(
    ("actor", "allowed"),
    [("outsider", True), ("member", False), ("institution_admin", True), ("staff", True)],
)
def test_authors_and_moderators_remove_comments(client_as, paper, outsider, actor, allowed):
    comment = services.comment_create(user=outsider, target=paper, body="off topic")
    response = client_as(actor).delete(f"/api/v1/discussions/{comment.pk}/")

    comment.refresh_from_db()
    assert response.status_code == (204 if allowed else 403)
    assert (comment.removed_at is not None) is allowed
    if allowed:
        shown = client_as(actor).get(f"/api/v1/discussions/{comment.pk}/").json()
        assert (shown["body"], shown["is_removed"]) == ("", True)


def test_discussions_follow_the_visibility_of_their_record(client_as, member, institution):
    hidden = services.paper_create(
        user=member, institution=institution, title="Internal", visibility=Visibility.INSTITUTION
    )
    comment = services.comment_create(user=member, target=hidden, body="internal remark")

    outsider = client_as("outsider")
    assert outsider.get(f"/api/v1/discussions/{comment.pk}/").status_code == 404
    assert outsider.get(f"/api/v1/discussions/?paper={hidden.pk}").json()["count"] == 0
    posted = outsider.post(
        "/api/v1/discussions/", {"paper": hidden.pk, "body": "let me in"}, format="json"
    )
    assert posted.status_code == 400
    assert posted.json()["error"]["fields"] == {"paper": ["No such paper that you can see."]}
    assert client_as("anonymous").post(
        "/api/v1/discussions/", {"paper": hidden.pk, "body": "x"}, format="json"
    ).status_code in (400, 401)


@pytest.fixture
def hidden_records(member, institution):
    """A private paper with a comment and a private model, each with a comment."""
    paper = services.paper_create(
        user=member, institution=institution, title="Unpublished", visibility="private"
    )
    model = services.model_create(
        user=member, institution=institution, name="Secret", slug="secret", license="MIT",
        visibility="private",
    )  # fmt: skip
    comment = services.comment_create(user=member, target=paper, body="Draft notes")
    services.comment_create(user=member, target=model, body="Draft notes")
    return {"paper": paper.pk, "model": model.pk, "parent": comment.pk}


@pytest.mark.parametrize("record", ["model", "paper", "benchmark", "parent"])
def test_a_hidden_record_filters_like_a_missing_one(client_as, hidden_records, record):
    missing_id = 10**9
    hidden_id = hidden_records.get(record, missing_id - 1)
    outsider = client_as("outsider")
    for_hidden = outsider.get(f"/api/v1/discussions/?{record}={hidden_id}")
    for_missing = outsider.get(f"/api/v1/discussions/?{record}={missing_id}")
    assert for_hidden.status_code == for_missing.status_code == 200
    assert for_hidden.json() == for_missing.json()
    assert for_hidden.json()["count"] == 0


@pytest.mark.parametrize("record", ["model", "paper", "parent"])
def test_a_comment_on_a_hidden_record_is_refused_like_one_on_a_missing_record(
    client_as, hidden_records, paper, record
):
    """The answer is the documented 400 on the field, and says nothing of which ids exist."""
    missing_id = 10**9
    outsider = client_as("outsider")

    def post(record_id: int):
        body = {record: record_id, "body": "hello"}
        if record == "parent":
            body["paper"] = paper.pk
        return outsider.post("/api/v1/discussions/", body, format="json")

    for_hidden, for_missing = post(hidden_records[record]), post(missing_id)
    assert for_hidden.status_code == for_missing.status_code == 400
    assert for_hidden.json() == for_missing.json()
    assert list(for_hidden.json()["error"]["fields"]) == [record]
