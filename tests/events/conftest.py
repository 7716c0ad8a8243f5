import pytest

from config.celery_app import app as celery_app
from tests.evaluations.conftest import (  # noqa: F401 - shared fixtures
    cpu_benchmark,
    gpu_node,
    make_benchmark,
    make_cpu_benchmark,
    make_model_version,
    post_result,
)


@pytest.fixture(autouse=True)
def _artifacts_in_tmp(artifact_dir):
    """Every test here stores artifacts in a folder of its own."""


@pytest.fixture
def tasks_run_here():
    """Tasks sent after commit run in this process, so that what they send (mail) lands in the
    test's outbox."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous
