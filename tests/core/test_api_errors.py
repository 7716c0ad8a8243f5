"""Every 4xx of the API has one shape, says what is wrong, and writes nothing."""

import pytest
from django.test import override_settings
from rest_framework.settings import api_settings

from apps.accounts.models import Institution

pytestmark = pytest.mark.django_db


def assert_error_shape(response, status: int) -> dict:
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"status", "code", "message", "fields"}
    assert error["status"] == status and error["message"]
    return error


def test_malformed_json_is_a_400_that_says_so(api_client, staff):
    api_client.force_authenticate(staff)
    response = api_client.generic(
        "POST", "/api/v1/institutions/", '{"name": "Lab", ', content_type="application/json"
    )
    error = assert_error_shape(response, 400)
    assert error["code"] == "parse_error"
    assert "JSON parse error" in error["message"]
    assert not Institution.objects.exists()


@pytest.mark.parametrize("number", ["1e400", "-1e400", "NaN", "Infinity"])
def test_numbers_no_database_can_store_are_a_400(api_client, staff, number):
    api_client.force_authenticate(staff)
    response = api_client.generic(
        "POST",
        "/api/v1/institutions/",
        f'{{"name": "Lab", "slug": "lab", "country": "GB", "ror_id": {number}}}',
        content_type="application/json",
    )
    error = assert_error_shape(response, 400)
    assert error["code"] == "parse_error"
    assert not Institution.objects.exists()


def test_a_json_list_instead_of_an_object_is_refused(api_client, staff):
    api_client.force_authenticate(staff)
    response = api_client.post("/api/v1/institutions/", ["name", "Lab"])
    error = assert_error_shape(response, 400)
    assert "Expected a dictionary" in error["message"]


def test_unknown_fields_are_refused_by_name(api_client, staff):
    api_client.force_authenticate(staff)
    response = api_client.post(
        "/api/v1/institutions/",
        {"name": "Lab", "slug": "lab", "country": "FR", "budget": 10, "owner": "me"},
    )
    error = assert_error_shape(response, 400)
    assert error["fields"] == {"budget": ["Unknown field."], "owner": ["Unknown field."]}
    assert not Institution.objects.exists()


def test_wrong_types_are_refused_by_name(api_client, staff):
    api_client.force_authenticate(staff)
    response = api_client.post(
        "/api/v1/institutions/", {"name": 42, "slug": ["lab"], "country": "FR"}
    )
    error = assert_error_shape(response, 400)
    assert error["fields"]["name"] == ["Expected a string, got int."]
    assert error["fields"]["slug"] == ["Expected a string, got list."]
    assert error["message"].startswith("name: Expected a string")


def test_missing_required_fields_are_listed(api_client, staff):
    api_client.force_authenticate(staff)
    error = assert_error_shape(api_client.post("/api/v1/institutions/", {}), 400)
    assert set(error["fields"]) == {"name", "slug", "country"}


def test_unsupported_media_type_is_a_415(api_client, staff):
    api_client.force_authenticate(staff)
    response = api_client.generic(
        "POST", "/api/v1/institutions/", "name=Lab", content_type="text/plain"
    )
    assert_error_shape(response, 415)


def test_wrong_method_is_a_405(api_client, staff):
    api_client.force_authenticate(staff)
    assert_error_shape(api_client.delete("/api/v1/institutions/"), 405)


def test_unknown_api_path_is_a_json_404(api_client, db):
    error = assert_error_shape(api_client.get("/api/v1/nothing-here/"), 404)
    assert "/api/v1/nothing-here/" in error["message"]


def test_unauthenticated_write_is_a_401_with_a_challenge(api_client, institution):
    response = api_client.patch("/api/v1/institutions/northbridge/", {"name": "x"})
    assert_error_shape(response, 401)
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def throttle_rates(anon: str, user: str) -> dict:
    return {
        "REST_FRAMEWORK": {
            **api_settings.user_settings,
            "DEFAULT_THROTTLE_RATES": {"anon": anon, "user": user},
        }
    }


def test_anonymous_clients_are_throttled(api_client, institution):
    with override_settings(**throttle_rates(anon="3/minute", user="100/minute")):
        statuses = [api_client.get("/api/v1/institutions/").status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        response = api_client.get("/api/v1/institutions/")
        error = assert_error_shape(response, 429)
        assert error["code"] == "throttled"
        assert int(response["Retry-After"]) > 0


def test_signed_in_users_have_their_own_higher_limit(api_client, member):
    api_client.force_authenticate(member)
    with override_settings(**throttle_rates(anon="1/minute", user="5/minute")):
        statuses = [api_client.get("/api/v1/me/").status_code for _ in range(6)]
        assert statuses == [200] * 5 + [429]


def test_a_write_that_loses_a_race_is_a_409_not_a_500():
    from django.db import IntegrityError

    from apps.core.exceptions import api_exception_handler

    response = api_exception_handler(IntegrityError("duplicate key"), {})
    assert response.status_code == 409
    assert response.data["error"]["code"] == "conflict"
    assert "retry" in response.data["error"]["message"]
