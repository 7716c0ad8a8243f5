"""A stand-in for a GPU host's worker, for tests on machines without a GPU: a real Celery worker
process that takes `worker.run_job` messages from one node's queue, claims each attempt through
the worker endpoints, "runs" for RUN_SECONDS, and posts a result.

celery -A tests.compute.gpu_test_worker worker --queues <node queue> (env: TEST_WORKER_BROKER_URL,
TEST_WORKER_NODE_URL, TEST_WORKER_NODE_TOKEN).
"""

import os
import time

from worker.consumer import consumer_app
from worker.node_client import NodeClient
from worker.protocol import RUN_JOB_TASK
from worker.settings import WorkerSettings

RUN_SECONDS = 1.5

settings = WorkerSettings(
    broker_url=os.environ["TEST_WORKER_BROKER_URL"],
    node_url=os.environ["TEST_WORKER_NODE_URL"],
    node_token=os.environ["TEST_WORKER_NODE_TOKEN"],
)
app = consumer_app("gpu_test_worker", settings.broker_url)


@app.task(name=RUN_JOB_TASK)
def run_job(job: int, attempt: int) -> str:
    client = NodeClient(settings)
    details = client.claim(job, attempt)
    if details is None:
        return "stale"
    time.sleep(RUN_SECONDS)
    files = details["model"]["files"] + details["benchmark"]["dataset"]["files"]
    client.post_result(
        job,
        attempt,
        metrics={"files": len(files)},
        provenance={
            "gpus": details["gpu_indices"],
            "worker": "gpu test worker",
            "isolation": {"level": "full"},
        },
    )
    return "done"
