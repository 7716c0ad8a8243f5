"""The baseline of bench/compute_throughput.py: a Django-free Celery app with one no-op task,
consumed with the pool worker's settings (worker/consumer.py: JSON, acks_late, prefetch 1, the
same broker transport options). Each task counts itself in the broker's Redis database.

    BENCH_NOOP_BROKER_URL=redis://127.0.0.1:6379/9 celery -A bench.noop_celery_app worker \
        --pool threads --concurrency 4 --queues bench-throughput-noop
"""

import os
import time

import redis

from worker.consumer import consumer_app

NOOP_TASK = "bench.noop"
DONE_KEY = "bench-throughput:noop-done"
LAST_KEY = "bench-throughput:noop-last"

app = consumer_app("bench_noop", os.environ["BENCH_NOOP_BROKER_URL"])
_counter = redis.Redis.from_url(os.environ["BENCH_NOOP_BROKER_URL"])


@app.task(name=NOOP_TASK)
def noop(number: int) -> None:
    pipeline = _counter.pipeline(transaction=False)
    pipeline.incr(DONE_KEY)
    pipeline.set(LAST_KEY, repr(time.time()))
    pipeline.execute()
