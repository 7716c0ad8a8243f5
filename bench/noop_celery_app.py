"""The baseline of bench/compute_throughput.py: a Django-free Celery app with one no-op task,
consumed with the pool worker's settings (worker/consumer.py: JSON, acks_late, prefetch 1, the
same broker transport options). Each task counts itself in the broker's Redis database.

    BENCH_NOOP_BROKER_URL=redis://127.0.0.1:6379/9 celery -A bench.noop_celery_app worker \
        --pool threads --concurrency 4 --queues bench-throughput-noop
"""

import os
import time

import redis
from celery import Celery

from worker.consumer import broker_connection

NOOP_TASK = "bench.noop"
DONE_KEY = "bench-throughput:noop-done"
LAST_KEY = "bench-throughput:noop-last"

_broker_url, _transport_options = broker_connection(os.environ["BENCH_NOOP_BROKER_URL"])
app = Celery("bench_noop", broker=_broker_url, set_as_current=False, fixups=[])
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_backend=None,
    task_ignore_result=True,
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_reject_on_worker_lost=True,
    broker_connection_retry_on_startup=True,
    broker_transport_options=_transport_options,
    worker_send_task_events=False,
)
_counter = redis.Redis.from_url(_broker_url)


@app.task(name=NOOP_TASK)
def noop(number: int) -> None:
    pipeline = _counter.pipeline(transaction=False)
    pipeline.incr(DONE_KEY)
    pipeline.set(LAST_KEY, repr(time.time()))
    pipeline.execute()
