from celery import shared_task

from apps.catalog import services


@shared_task
def artifacts_purge_unattached() -> int:
    return services.artifacts_purge_unattached()
