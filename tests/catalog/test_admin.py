"""Platform staff look after the catalogue in the Django admin."""

import pytest
from django.apps import apps
from django.utils.html import escape

from apps.catalog import services
from apps.catalog.models import Paper
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "model",
    [
        "researchmodel",
        "modelversion",
        "artifact",
        "paper",
        "dataset",
        "benchmark",
        "comment",
        "tag",
    ],
)
def test_staff_list_and_open_every_kind_of_catalogue_record(client, catalog_rows, member, model):
    catalog_rows(2)
    services.comment_create(user=member, target=Paper.objects.first(), body="Nice result.")
    record = apps.get_model("catalog", model).objects.first()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))

    listing = client.get(f"/admin/catalog/{model}/")
    change = client.get(f"/admin/catalog/{model}/{record.pk}/change/")

    assert listing.status_code == 200
    assert escape(str(record)) in listing.content.decode()
    assert change.status_code == 200
