import pytest
from rest_framework.test import APIClient

from apps.accounts.models import Membership
from tests.factories import InstitutionFactory, MembershipFactory, UserFactory


@pytest.fixture(autouse=True)
def _clear_cache():
    """Throttle counters live in the (Redis) cache: each test starts with none."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def institution(db):
    return InstitutionFactory(name="Northbridge University", slug="northbridge", country="GB")


@pytest.fixture
def other_institution(db):
    return InstitutionFactory(name="Rheinau Institute", slug="rheinau", country="DE")


@pytest.fixture
def member(institution):
    return MembershipFactory(institution=institution, role=Membership.Role.MEMBER).user


@pytest.fixture
def institution_admin(institution):
    return MembershipFactory(institution=institution, role=Membership.Role.ADMIN).user


@pytest.fixture
def outsider(other_institution):
    """A member of another institution."""
    return MembershipFactory(institution=other_institution, role=Membership.Role.ADMIN).user


@pytest.fixture
def staff(db):
    return UserFactory(username="staffer", is_staff=True)


@pytest.fixture
def actors(member, institution_admin, outsider, staff):
    """Every kind of caller, by name, for permission matrices (None is anonymous)."""
    return {
        "anonymous": None,
        "outsider": outsider,
        "member": member,
        "institution_admin": institution_admin,
        "staff": staff,
    }


@pytest.fixture
def client_as(api_client, actors):
    def _client_as(actor: str) -> APIClient:
        user = actors[actor]
        if user is not None:
            api_client.force_authenticate(user)
        return api_client

    return _client_as
