from dataclasses import asdict

from celery import shared_task

from apps.compute import services


@shared_task
def jobs_dispatch_task() -> list[int]:
    return services.jobs_dispatch()


@shared_task
def jobs_reconcile_task() -> dict:
    return asdict(services.jobs_reconcile())
