import factory
from django.contrib.auth.hashers import make_password

from apps.accounts import services
from apps.accounts.models import ApiToken, Institution, Membership, User

PASSWORD = "correct horse battery staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"researcher{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.org")
    first_name = "Sam"
    last_name = factory.Sequence(lambda n: f"Tester{n}")
    password = factory.LazyFunction(lambda: make_password(PASSWORD))


class InstitutionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Institution

    name = factory.Sequence(lambda n: f"Institute of Open Science {n}")
    slug = factory.Sequence(lambda n: f"institute-{n}")
    country = "NL"


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    institution = factory.SubFactory(InstitutionFactory)
    role = Membership.Role.MEMBER


def api_token_for(user: User, scope: str = ApiToken.Scope.READ_WRITE, **kwargs) -> str:
    """Creates a token through the service and returns its secret."""
    _token, secret = services.api_token_create(user=user, name="test token", scope=scope, **kwargs)
    return secret


def isolated(**provenance) -> dict:
    """A worker's provenance as a fully isolated sandbox records it (public benchmarks refuse
    results without that record)."""
    return {"isolation": {"level": "full"}, **provenance}
