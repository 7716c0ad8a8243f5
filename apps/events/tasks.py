from celery import Task, shared_task
from django.conf import settings

from apps.events import services, webhooks


@shared_task(acks_late=True)
def event_deliver_task(event_id: int, mail_to: list[int]) -> None:
    services.event_mail(event_id=event_id, user_ids=mail_to)


@shared_task(acks_late=True)
def webhook_deliver_task(delivery_id: int, attempts: int) -> None:
    webhooks.webhook_delivery_attempt(delivery_id=delivery_id, attempts=attempts)


@shared_task(bind=True)
def webhooks_deliver_due_task(self: Task) -> int:
    """The beat's sweep: every delivery that is due (a retry, or a lost message) gets a task,
    on the queue the sweep itself came from (the control plane's)."""
    queue = (self.request.delivery_info or {}).get("routing_key") or (
        settings.CELERY_TASK_DEFAULT_QUEUE
    )
    due = webhooks.webhook_deliveries_claim_due()
    for delivery_id, attempts in due:
        webhook_deliver_task.apply_async((delivery_id, attempts), queue=queue)
    return len(due)
