"""Following an evaluation job until it ends: its state changes, its place in the queue while it
waits, its log while it runs."""

import contextlib
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from rx_client.client import JSON, Client
from rx_client.errors import ApiError

ACTIVE_STATES = ("pending", "dispatched", "running")
FINISHED_STATES = ("succeeded", "failed", "cancelled", "timed_out")
# The command line's exit code for each way a job ends.
EXIT_CODES = {"succeeded": 0, "failed": 1, "cancelled": 3, "timed_out": 4}


def queue_place(job: JSON) -> dict[str, Any] | None:
    """`{position, pending, estimated_start, explanation}` of a pending job, where the node
    says (null where it cannot tell)."""
    queue = job.get("queue")
    if job.get("state") != "pending" or not isinstance(queue, dict):
        return None
    return queue


def _place_key(queue: dict[str, Any]) -> tuple[Any, ...]:
    """What makes a queue line worth saying again: the position, and the estimated start to
    the minute (a start estimated "now" moves at every poll; the wait's words each minute)."""
    start = queue.get("estimated_start")
    with contextlib.suppress(TypeError, ValueError):
        start = datetime.fromisoformat(start).replace(second=0, microsecond=0) if start else None
    return (queue.get("position"), start)


def follow(
    client: Client,
    job_id: int,
    *,
    poll_seconds: float = 2.0,
    on_state: Callable[[JSON], None] = lambda job: None,
    on_queue: Callable[[JSON, dict[str, Any]], None] = lambda job, queue: None,
    on_log: Callable[[str], None] = lambda text: None,
    on_attempt: Callable[[int], None] = lambda attempt: None,
) -> JSON:
    """Polls job `job_id` until it has ended and returns it as it ended. Log text is handed on
    as it arrives (each attempt's from its start); it is skipped where the caller may not read
    the job's log."""
    state = None
    place: tuple[Any, ...] | None = None
    attempt: int | None = None
    offset = 0
    logs_readable = True
    while True:
        job = client.job_get(job_id)
        if job["state"] != state:
            state = job["state"]
            on_state(job)
        queue = queue_place(job)
        if queue is not None:
            now = _place_key(queue)
            if now != place:
                place = now
                on_queue(job, queue)
        if logs_readable and job["state"] != "pending" and job.get("attempt"):
            if job["attempt"] != attempt:
                if attempt is not None:
                    on_attempt(job["attempt"])
                offset = 0
            attempt = int(job["attempt"])
            try:
                offset = _read_log(client, job_id, attempt, offset, on_log)
            except ApiError as error:
                if error.status not in (403, 404):
                    raise
                logs_readable = False
        if job["state"] in FINISHED_STATES:
            return job
        time.sleep(poll_seconds)


def _read_log(
    client: Client, job_id: int, attempt: int, offset: int, on_log: Callable[[str], None]
) -> int:
    while True:
        chunk = client.job_log(job_id, offset=offset, attempt=attempt)
        if not chunk["text"]:
            return offset
        on_log(chunk["text"])
        offset = chunk["next_offset"]
