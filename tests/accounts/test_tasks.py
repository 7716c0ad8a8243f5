"""Housekeeping runs in the control-plane Celery worker, through the real broker."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.accounts.models import ApiToken
from apps.accounts.tasks import api_tokens_purge_stale
from config.celery_app import app
from tests.conftest import wait_for
from tests.factories import UserFactory, api_token_for


def test_beat_schedule_names_registered_tasks():
    app.loader.import_default_modules()
    for entry in app.conf.beat_schedule.values():
        assert entry["task"] in app.tasks


def test_worker_purges_tokens_revoked_or_expired_past_retention(control_worker, settings):
    user = UserFactory()
    long_ago = timezone.now() - timedelta(days=settings.API_TOKEN_RETENTION_DAYS + 1)
    recently = timezone.now() - timedelta(days=1)
    for name in ["revoked long ago", "expired long ago", "revoked recently", "active"]:
        api_token_for(user, scope="read")
        ApiToken.objects.filter(name="test token").update(name=name)
    ApiToken.objects.filter(name="revoked long ago").update(revoked_at=long_ago)
    ApiToken.objects.filter(name="expired long ago").update(expires_at=long_ago)
    ApiToken.objects.filter(name="revoked recently").update(revoked_at=recently)

    api_tokens_purge_stale.apply_async(queue=control_worker)

    def purged() -> bool:
        return ApiToken.objects.filter(name__endswith="long ago").count() == 0

    assert wait_for(purged), "the worker did not purge stale tokens"
    assert sorted(ApiToken.objects.values_list("name", flat=True)) == [
        "active",
        "revoked recently",
    ]


@pytest.mark.django_db
def test_purge_keeps_tokens_within_retention(settings):
    user = UserFactory()
    api_token_for(user)
    ApiToken.objects.update(
        revoked_at=timezone.now() - timedelta(days=settings.API_TOKEN_RETENTION_DAYS - 1)
    )
    assert api_tokens_purge_stale() == 0
    assert ApiToken.objects.count() == 1
