from celery import shared_task

from apps.events import services


@shared_task(acks_late=True)
def event_deliver_task(event_id: int, mail_to: list[int]) -> None:
    services.event_mail(event_id=event_id, user_ids=mail_to)
