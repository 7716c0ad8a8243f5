"""Webhooks through a real control-plane Celery worker: the delivery sent after commit, and
the beat's sweep sending a retry that is due."""

import pytest
from django.db import transaction

from apps.events.models import EventType, WebhookDelivery
from apps.events.services import event_emit
from apps.events.tasks import webhooks_deliver_due_task
from tests.conftest import wait_for
from tests.events.webhook_receiver import endpoint_for, start_receiver
from tests.factories import UserFactory

State = WebhookDelivery.State


@pytest.fixture
def receiver():
    receiver, server = start_receiver()
    yield receiver
    server.shutdown()
    server.server_close()


def test_the_worker_delivers_after_commit_and_the_sweep_sends_the_retry(
    control_worker, settings, receiver
):
    settings.CELERY_TASK_DEFAULT_QUEUE = control_worker
    owner = UserFactory(username="ada")
    endpoint = endpoint_for(owner, receiver, "worker", answers=[500])

    with transaction.atomic():
        event = event_emit(
            type=EventType.JOB_FAILED,
            summary="Job 7 failed: Digits CNN 1.0 on Digits",
            data={"job": 7, "failure_reason": "CUDA out of memory"},
            users=[owner],
            url="/compute/jobs/7/",
        )
        assert receiver.got("worker") == []  # nothing leaves before the commit
    delivery = WebhookDelivery.objects.get(event=event, endpoint=endpoint)

    assert wait_for(lambda: len(receiver.got("worker")) == 1, timeout=30), "no first attempt"
    assert wait_for(
        lambda: WebhookDelivery.objects.get(pk=delivery.pk).state == State.RETRYING, timeout=10
    )

    webhooks_deliver_due_task.apply_async(queue=control_worker)

    assert wait_for(
        lambda: WebhookDelivery.objects.get(pk=delivery.pk).state == State.SUCCEEDED, timeout=30
    ), "the sweep did not send the retry"
    first, second = receiver.got("worker")
    assert (first.answered, second.answered) == (500, 200)
    assert first.verified and second.verified
    assert second.payload["data"]["failure_reason"] == "CUDA out of memory"
    delivery.refresh_from_db()
    assert delivery.attempts == 2
    assert list(delivery.attempt_log.values_list("status_code", flat=True)) == [500, 200]
