"""What a stranger or a broken client can send never makes a 500: each class of hostile input is
a 4xx in the API's error format, and writes nothing."""

import json

import pytest
from django.urls import get_resolver

from apps.accounts.models import ApiToken
from apps.catalog.models import Benchmark, Paper, ResearchModel
from apps.compute import services as compute_services
from apps.compute.models import Allocation, ComputeRequest
from tests.core.test_api_errors import assert_error_shape

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/artifacts/a%00b/",
        "/api/v1/papers/?institution=%00",
        "/api/v1/results/?model_institution=north%00bridge",
        "/api/v1/search/?q=a%00b",
        "/api/v1/papers/?doi%00=1",
    ],
)
def test_a_nul_in_the_path_or_query_is_a_400(api_client, path):
    error = assert_error_shape(api_client.get(path), 400)
    assert "NUL" in error["message"]


def test_a_nul_in_a_portal_path_is_a_plain_400(client, db):
    response = client.get("/models/?q=%00")
    assert response.status_code == 400
    assert b"NUL" in response.content


def test_a_leaderboard_with_a_nul_institution_is_a_400(api_client, db):
    error = assert_error_shape(
        api_client.get("/api/v1/benchmarks/1/leaderboard/?institution=%00"), 400
    )
    assert "query string" in error["message"]


def test_a_nul_anywhere_in_a_json_body_is_refused_and_nothing_is_written(client_as, institution):
    client = client_as("member")
    response = client.post(
        "/api/v1/models/",
        {"institution": "north\u0000bridge", "name": "M", "slug": "m", "license": "MIT"},
    )
    error = assert_error_shape(response, 400)
    assert "$.institution" in error["message"] and "NUL" in error["message"]

    nested = {
        "institution": "northbridge",
        "name": "Bench",
        "task": "classification",
        "evaluator": "smoke",
        "config": {"options": [{"deep\u0000key": 1}]},
        "metrics": [{"name": "files", "higher_is_better": True}],
    }
    error = assert_error_shape(client.post("/api/v1/benchmarks/", nested), 400)
    assert "$.config.options[0]" in error["message"]
    assert not ResearchModel.objects.exists() and not Benchmark.objects.exists()


def test_a_nul_from_a_worker_is_refused(api_client, institution_admin, institution):
    node, secret = compute_services.node_create(
        user=institution_admin, institution=institution, name="gpu-01"
    )
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    response = api_client.post(
        "/api/v1/worker/register", {"gpus": [], "cpu_slots": 7, "host": {"name": "gpu\u0000host"}}
    )
    assert "$.host.name" in assert_error_shape(response, 400)["message"]
    node.refresh_from_db()
    assert node.cpu_slots != 7


def test_a_nul_in_a_multipart_field_is_refused(client_as, institution):
    client = client_as("member")
    response = client.post(
        "/api/v1/papers/import-bibtex/",
        {"institution": "north\x00bridge", "visibility": "public", "bibtex": "@article{a}"},
        format="multipart",
    )
    assert "NUL" in assert_error_shape(response, 400)["message"]


@pytest.mark.parametrize("depth", [100, 2_000, 100_000])
def test_deeply_nested_json_is_a_400(client_as, institution, depth):
    body = (
        '{"institution": "northbridge", "name": "B", "config": ' + "[" * depth + "]" * depth + "}"
    )
    response = client_as("member").generic(
        "POST", "/api/v1/benchmarks/", body, content_type="application/json"
    )
    error = assert_error_shape(response, 400)
    assert "levels deep" in error["message"]


def test_an_unknown_charset_is_a_415(client_as, institution):
    response = client_as("member").generic(
        "POST",
        "/api/v1/models/",
        json.dumps({"institution": "northbridge", "name": "M", "slug": "m", "license": "MIT"}),
        content_type="application/json; charset=rot13",
    )
    error = assert_error_shape(response, 415)
    assert "rot13" in error["message"]
    assert not ResearchModel.objects.exists()


def test_a_body_over_the_upload_limit_is_a_json_413(client_as, institution, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    body = {"institution": "northbridge", "name": "M", "slug": "m", "license": "MIT"}
    body["summary"] = "x" * 20_000
    error = assert_error_shape(client_as("member").post("/api/v1/models/", body), 413)
    assert "10000 bytes" in error["message"]

    form = {f"field{index}": "x" * 100 for index in range(200)}
    response = client_as("member").post("/api/v1/papers/import-bibtex/", form, format="multipart")
    assert_error_shape(response, 413)
    assert not ResearchModel.objects.exists()


def test_errors_raised_outside_the_api_views_answer_in_the_error_format(rf):
    resolver = get_resolver()
    for status in (400, 403, 500):
        handler = resolver.resolve_error_handler(status)
        request = rf.get("/api/v1/models/")
        response = handler(request) if status == 500 else handler(request, Exception("Bad."))
        response.json = lambda response=response: json.loads(response.content)
        assert_error_shape(response, status)
        page = rf.get("/models/")
        portal = handler(page) if status == 500 else handler(page, Exception("Bad."))
        assert portal["Content-Type"].startswith("text/html")


@pytest.fixture
def paper(member, institution):
    from apps.catalog import services

    return services.paper_create(
        user=member,
        institution=institution,
        title="Attention",
        authors=[services.AuthorInput(name="A. Author")],
        visibility="public",
    )


def test_an_author_without_a_name_is_a_field_error_in_an_edit(client_as, paper):
    response = client_as("member").patch(f"/api/v1/papers/{paper.pk}/", {"authors": [{}]})
    error = assert_error_shape(response, 400)
    assert "authors" in error["fields"]
    assert [author.name for author in Paper.objects.get().authors.all()] == ["A. Author"]


@pytest.mark.parametrize("body", [{"authors": [{}]}, {"title": 5}, {"nonsense": True}])
def test_who_may_not_edit_is_refused_before_the_body_is_read(client_as, paper, body):
    response = client_as("outsider").patch(f"/api/v1/papers/{paper.pk}/", body)
    assert_error_shape(response, 403)


def test_a_window_far_in_the_future_is_refused_at_input(client_as, institution, staff):
    response = client_as("member").post(
        "/api/v1/compute-requests/",
        {
            "institution": "northbridge",
            "purpose": "Evaluations",
            "gpu_hours": "10",
            "starts_on": "2030-01-01",
            "ends_on": "9999-12-31",
        },
    )
    error = assert_error_shape(response, 400)
    assert "2099-12-31" in error["fields"]["ends_on"][0]
    assert not ComputeRequest.objects.exists()

    response = client_as("staff").post(
        "/api/v1/allocations/",
        {
            "institution": "northbridge",
            "name": "Forever",
            "gpu_hours": "10",
            "starts_at": "2030-01-01T00:00:00Z",
            "ends_at": "9999-12-31T23:59:59Z",
        },
    )
    assert "ends_at" in assert_error_shape(response, 400)["fields"]
    assert not Allocation.objects.exists()


def test_a_token_expiring_past_the_date_range_is_refused(client, member):
    client.force_login(member)
    response = client.post(
        "/api/v1/tokens/",
        {"name": "ci", "expires_at": "9999-12-31T23:59:59Z"},
        content_type="application/json",
    )
    assert "expires_at" in assert_error_shape(response, 400)["fields"]
    assert not ApiToken.objects.exists()


def test_a_stored_request_with_an_unbounded_window_is_refused_not_a_crash(
    client_as, member, institution
):
    from datetime import date

    stored = ComputeRequest.objects.create(
        requester=member,
        institution=institution,
        purpose="Stored before dates were bounded",
        gpu_hours=10,
        starts_on=date(2030, 1, 1),
        ends_on=date(9999, 12, 31),
    )
    response = client_as("staff").post(f"/api/v1/compute-requests/{stored.pk}/approve/", {})
    assert "ends_on" in assert_error_shape(response, 400)["fields"]
    stored.refresh_from_db()
    assert stored.state == ComputeRequest.State.SUBMITTED and not Allocation.objects.exists()


def test_a_write_to_a_path_no_route_matches_is_a_json_404_even_with_a_token(db, member):
    from rest_framework.test import APIClient

    from tests.factories import api_token_for

    client = APIClient(enforce_csrf_checks=True)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token_for(member)}")
    for method in ("post", "patch", "delete"):
        response = getattr(client, method)("/api/v1/nodes/x/rotate-token/")
        assert_error_shape(response, 404)


def test_a_session_write_without_its_csrf_token_is_a_json_403(member):
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=True)
    client.force_login(member)
    response = client.post("/api/v1/tokens/", {"name": "ci"}, format="json")
    assert "CSRF" in assert_error_shape(response, 403)["message"]
