"""Housekeeping of artifact storage: unattached uploads and files without a row go away."""

import os
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.catalog import services
from apps.catalog.models import Artifact
from tests.catalog.conftest import store, stored_files
from tests.catalog.samples import safetensors_bytes

pytestmark = pytest.mark.django_db


def _age(artifact: Artifact, artifact_dir, hours: int) -> None:
    then = timezone.now() - timedelta(hours=hours)
    Artifact.objects.filter(pk=artifact.pk).update(created_at=then)
    path = artifact_dir / artifact.storage_name
    os.utime(path, (time.time() - hours * 3600, time.time() - hours * 3600))


def test_old_unattached_uploads_are_purged_with_their_files(
    member, institution, publish_model, artifact_dir, django_capture_on_commit_callbacks
):
    used = store(member, safetensors_bytes(2), "used.safetensors")
    services.version_create(
        user=member, model=publish_model(member, institution), label="1",
        files=[("w.safetensors", used.sha256)], publish=True,
    )  # fmt: skip
    abandoned = store(member, safetensors_bytes(3), "abandoned.safetensors")
    fresh = store(member, safetensors_bytes(4), "fresh.safetensors")
    _age(used, artifact_dir, 48)
    _age(abandoned, artifact_dir, 48)

    with django_capture_on_commit_callbacks(execute=True):
        purged = services.artifacts_purge_unattached()

    assert purged == 1
    assert set(Artifact.objects.values_list("sha256", flat=True)) == {used.sha256, fresh.sha256}
    assert stored_files(artifact_dir) == sorted([used.sha256, fresh.sha256])


def test_stored_files_without_a_row_are_removed(member, artifact_dir):
    orphan = store(member, safetensors_bytes(5), "orphan.safetensors")
    _age(orphan, artifact_dir, 48)
    Artifact.objects.filter(pk=orphan.pk).delete()  # as if its request had rolled back

    assert services.artifacts_purge_unattached() == 1
    assert stored_files(artifact_dir) == []
